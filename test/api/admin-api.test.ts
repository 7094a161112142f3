import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAdminApi } from '../../router/api/admin-api';
import { memoryLogger } from '../../router/log';
import { StoreProvider } from '../../router/providers/store-provider';
import { openStore, type Store } from '../../router/store/store';
import { createToken } from '../../router/store/tokens';
import { StoreTokens } from '../../router/store-tokens';
import { startEcho, type EchoBackend } from '../support/echo-backend';
import { startTestGateway, type TestGateway } from '../support/gateway-harness';
import { req, type Res } from '../support/http';
import { waitFor } from '../support/net';

const SETUP = { name: 'test-setup', principal: null, client: null };
const TASK = '0123456789abcdef0123456789abcdef';

describe('admin API through the real edge (SQLite store, real nginx)', () => {
  let g: TestGateway;
  let store: Store;
  let storeDir: string;
  let echo: EchoBackend;
  let admin: string;
  let bobToken: string;
  /** Every plaintext token this suite saw: none may show up where secrets must not be. */
  const secrets: string[] = [];
  const secretOf = (token: string) => token.split('_').slice(2).join('_');

  const api = (method: string, path: string, body?: unknown, token: string | null = admin): Promise<Res> => {
    const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    // Content-Length always: node sends a DELETE body unframed otherwise
    const framing: Record<string, string> = text === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) };
    return req(`${g.url}/_gateway/api/${path}`, { method, headers: { ...(token ? { 'x-gateway-token': token } : {}), ...framing }, body: text });
  };

  beforeAll(async () => {
    echo = await startEcho('echo');
    storeDir = mkdtempSync(join(tmpdir(), 'appgw-api-'));
    store = openStore({ dataDir: storeDir, tokenMaxDays: 30 });
    store.addUser({ id: 'admin', name: 'Administrator', admin: true }, SETUP);
    store.addUser({ id: 'bob', name: 'Bob' }, SETUP);
    admin = createToken(store, { label: 'suite admin', expiresInMs: 3600_000, as: 'admin' }, SETUP).token;
    bobToken = createToken(store, { label: 'bob laptop', expiresInMs: 3600_000, as: 'bob' }, SETUP).token;
    secrets.push(secretOf(admin), secretOf(bobToken));
    const adminApi = createAdminApi({ store, status: () => g?.gw.router.status() ?? null });
    g = await startTestGateway({ providers: [new StoreProvider(store, memoryLogger(), { pollMs: 50 })], tokens: new StoreTokens(store), api: adminApi });
    await waitFor(async () => (await api('GET', 'status')).status === 200, 5000, 'admin API through the edge');
  });

  afterAll(async () => {
    await g?.stop();
    store?.close();
    rmSync(storeDir, { recursive: true, force: true });
    await echo?.close();
  });

  afterEach(() => {
    expect(g.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
  });

  test('no credentials: 401; a valid non-admin token: 403; a bad token: 401 — the router never sees them', async () => {
    const none = await api('GET', 'tokens', undefined, null);
    expect(none.status).toBe(401);
    expect(none.json()).toMatchObject({ error: 'credentials_required' });
    const bob = await api('GET', 'tokens', undefined, bobToken);
    expect(bob.status).toBe(403);
    expect(bob.json()).toMatchObject({ error: 'admin_required' });
    const post = await api('POST', 'users', { id: 'mallory' }, bobToken);
    expect(post.status).toBe(403);
    expect(store.getUser('mallory')).toBeNull();
    const forged = await req(`${g.url}/_gateway/api/users`, { headers: { 'x-forwarded-user': 'admin' } });
    expect(forged.status).toBe(401);
    const wrong = await api('GET', 'tokens', undefined, admin.slice(0, -3) + 'xyz');
    expect(wrong.status).toBe(401);
  });

  test('GET /status: generation, providers, routes, last failure', async () => {
    const r = await api('GET', 'status');
    expect(r.status).toBe(200);
    const s = r.json();
    expect(s.generation).toBe(g.gw.router.status().generation);
    expect(s.providers).toEqual([expect.objectContaining({ name: 'store', state: 'ok' })]);
    expect(Array.isArray(s.routes)).toBe(true);
    expect(s).toHaveProperty('lastFailure', null);
  });

  test('tokens: created once with its secret, listed without it, works at the edge, rotated, revoked', async () => {
    store.createGroup({ name: 'team' }, SETUP);
    store.addMember('team', 'bob', SETUP);
    const route = await api('POST', 'routes', { name: 'team-echo', path: '/team-echo/', allowed_groups: ['team'], backends: [`127.0.0.1:${echo.port}`] });
    expect(route.status).toBe(201);
    // the new route needs a reload: wait until it is live and no old worker still accepts
    await waitFor(async () => (await req(`${g.url}/team-echo/`, { headers: { 'x-gateway-token': admin } })).status === 200, 5000, 'route live');
    await waitFor(async () => g.gw.router.stats.lastApply?.generation === (await req(`${g.url}/_gateway/health`)).json().generation, 5000, 'reload confirmed');
    await waitFor(() => g.workerPids().length === 2, 10_000, 'old workers gone');

    const created = await api('POST', 'tokens', { label: 'ci job', expires_in: '7d', as: 'bob', routes: ['team-echo'] });
    expect(created.status).toBe(201);
    const c = created.json();
    expect(c.token).toMatch(/^appgw_[a-z0-9]+_[A-Za-z0-9_-]+$/);
    expect(c.record).toMatchObject({ label: 'ci job', grants_as: 'bob', routes: ['team-echo'], state: 'active', created_by: 'admin' });
    expect(c.notice).toMatch(/shown only in this answer/);
    secrets.push(secretOf(c.token));
    const id = c.record.id as string;

    // the router pushes the new token; the edge admits it on its route
    await waitFor(async () => (await req(`${g.url}/team-echo/hello`, { headers: { 'x-gateway-token': c.token } })).status === 200, 5000, 'new token admitted at the edge');
    const seen = await req(`${g.url}/team-echo/hello`, { headers: { 'x-gateway-token': c.token } });
    expect(seen.json()).toMatchObject({ backend: 'echo', url: '/hello' });
    expect(seen.json().headers['x-forwarded-user']).toBe('bob');

    const list = await api('GET', 'tokens');
    expect(list.status).toBe(200);
    const views = list.json().tokens as Array<Record<string, unknown>>;
    expect(views.find((t) => t.id === id)).toMatchObject({ label: 'ci job', grants_as: 'bob', state: 'active' });
    for (const v of views) {
      expect(v).not.toHaveProperty('secretSha256');
      expect(v).not.toHaveProperty('token');
    }
    expect(list.body).not.toContain(c.token);

    const rotated = await api('POST', `tokens/${id}/rotate`, {});
    expect(rotated.status).toBe(201);
    const r = rotated.json();
    secrets.push(secretOf(r.token));
    expect(r.record).toMatchObject({ label: 'ci job', rotated_from: id, routes: ['team-echo'] });
    expect(r.old).toMatchObject({ id, state: 'revoked' });
    await waitFor(async () => (await req(`${g.url}/team-echo/`, { headers: { 'x-gateway-token': c.token } })).status === 401, 2000, 'old token refused');
    await waitFor(async () => (await req(`${g.url}/team-echo/`, { headers: { 'x-gateway-token': r.token } })).status === 200, 2000, 'rotated token admitted');

    const revoked = await api('DELETE', `tokens/${r.record.id}`);
    expect(revoked.status).toBe(200);
    expect(revoked.json()).toMatchObject({ changed: true, record: { id: r.record.id, state: 'revoked' } });
    await waitFor(async () => (await req(`${g.url}/team-echo/`, { headers: { 'x-gateway-token': r.token } })).status === 401, 2000, 'revoked token refused');
    expect((await api('DELETE', `tokens/${r.record.id}`)).json()).toMatchObject({ changed: false });
  });

  test('tokens: clear errors for bad input, unknown ids and lifetimes beyond TOKEN_MAX_DAYS', async () => {
    const tooLong = await api('POST', 'tokens', { label: 'x', expires_in: '90d', as: 'bob' });
    expect(tooLong.status).toBe(400);
    expect(tooLong.json()).toMatchObject({ error: 'token_invalid' });
    expect(tooLong.json().message).toMatch(/TOKEN_MAX_DAYS \(30 days\)/);
    expect((await api('POST', 'tokens', { label: 'x', as: 'bob' })).json()).toMatchObject({ error: 'invalid_input', message: 'expires_in is required' });
    expect((await api('POST', 'tokens', { label: 'x', expires_in: 'soon' })).status).toBe(400);
    expect((await api('POST', 'tokens', { label: 'x', expires_in: '1d', as: 'nobody' })).status).toBe(404);
    expect((await api('POST', 'tokens', { label: 'x', expires_in: '1d', secret: 'mine' })).json()).toMatchObject({ error: 'invalid_input' });
    expect((await api('DELETE', 'tokens/zzzzzzzzzzzz')).status).toBe(404);
    expect((await api('DELETE', 'tokens/NOT-AN-ID')).status).toBe(400);
    expect((await api('POST', 'tokens/zzzzzzzzzzzz/rotate', { grace: 'forever' })).status).toBe(400);
    // the acting admin is the default principal
    const mine = await api('POST', 'tokens', { label: 'admin laptop', expires_in: '12h' });
    expect(mine.status).toBe(201);
    secrets.push(secretOf(mine.json().token));
    expect(mine.json().record.grants_as).toBe('admin');
  });

  test('rotate with a grace period keeps the old token working until then', async () => {
    const c = (await api('POST', 'tokens', { label: 'graceful', expires_in: '1d', as: 'bob' })).json();
    secrets.push(secretOf(c.token));
    const r = await api('POST', `tokens/${c.record.id}/rotate`, { grace: '10m' });
    expect(r.status).toBe(201);
    secrets.push(secretOf(r.json().token));
    expect(r.json().old.state).toBe('active');
    expect(Date.parse(r.json().old.expires_at) - Date.now()).toBeLessThanOrEqual(600_000);
  });

  test('users: list, add, make admin, remove; conflicts and unknown ids', async () => {
    const add = await api('POST', 'users', { id: 'carol', name: 'Carol', kind: 'service' });
    expect(add.status).toBe(201);
    expect(add.json().user).toMatchObject({ id: 'carol', name: 'Carol', kind: 'service', admin: false, groups: [], created_by: 'admin' });
    expect((await api('POST', 'users', { id: 'carol' })).status).toBe(409);
    expect((await api('POST', 'users', { id: 'bad id!' })).json()).toMatchObject({ error: 'invalid_input' });
    expect((await api('POST', 'users', { id: 'dave', kind: 'robot' })).status).toBe(400);
    const list = (await api('GET', 'users')).json().users as Array<{ id: string }>;
    expect(list.map((u) => u.id)).toEqual(expect.arrayContaining(['admin', 'bob', 'carol']));
    expect((await api('PUT', 'users/carol', { admin: true })).json().user.admin).toBe(true);
    expect((await api('PUT', 'users/carol', { admin: 'yes' })).status).toBe(400);
    expect((await api('DELETE', 'users/carol')).json()).toEqual({ removed: 'user', id: 'carol' });
    expect((await api('DELETE', 'users/carol')).status).toBe(404);
  });

  test('groups: create, members in and out, delete', async () => {
    expect((await api('POST', 'groups', { name: 'ml-team', description: 'the ML team' })).status).toBe(201);
    expect((await api('POST', 'groups', { name: 'ml-team' })).json()).toMatchObject({ error: 'conflict' });
    const added = await api('POST', 'groups/ml-team/members/bob');
    expect(added.status).toBe(201);
    expect(added.json().group).toMatchObject({ name: 'ml-team', members: ['bob'] });
    expect((await api('POST', 'groups/ml-team/members/bob')).status).toBe(409);
    expect((await api('POST', 'groups/ml-team/members/nobody')).status).toBe(404);
    expect((await api('GET', 'groups')).json().groups).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'ml-team', description: 'the ML team', members: ['bob'] })]));
    expect((await api('DELETE', 'groups/ml-team/members/bob')).json().group.members).toEqual([]);
    expect((await api('DELETE', 'groups/ml-team/members/bob')).status).toBe(404);
    expect((await api('DELETE', 'groups/ml-team')).status).toBe(200);
    expect((await api('DELETE', 'groups/ml-team')).status).toBe(404);
  });

  test('shares: share a task with a user and a group, set its policy, unshare', async () => {
    store.createGroup({ name: 'viewers' }, SETUP);
    expect((await api('POST', 'shares', { task: TASK, user: 'bob' })).status).toBe(201);
    expect((await api('POST', 'shares', { task: TASK, group: 'viewers' })).json().share).toMatchObject({ task: TASK, group: 'viewers', user: null });
    expect((await api('POST', 'shares', { task: TASK, user: 'bob' })).status).toBe(409);
    expect((await api('POST', 'shares', { task: TASK, user: 'bob', group: 'viewers' })).status).toBe(400);
    expect((await api('POST', 'shares', { task: 'NOT A TASK', user: 'bob' })).status).toBe(400);
    expect((await api('PUT', `shares/${TASK}/policy`, { policy: 'company' })).json()).toEqual({ task: TASK, policy: 'company' });
    expect((await api('PUT', `shares/${TASK}/policy`, { policy: 'everyone' })).status).toBe(400);
    const list = (await api('GET', `shares?task=${TASK}`)).json();
    expect(list.shares).toHaveLength(2);
    expect(list.policies).toEqual({ [TASK]: 'company' });
    expect((await api('DELETE', 'shares', { task: TASK, user: 'bob' })).status).toBe(200);
    expect((await api('DELETE', `shares?task=${TASK}&group=viewers`)).status).toBe(200);
    expect((await api('DELETE', 'shares', { task: TASK, user: 'bob' })).status).toBe(404);
    expect((await api('GET', `shares?task=${TASK}`)).json().shares).toEqual([]);
  });

  test('audit: every API change is recorded with the admin and the client address, never a secret', async () => {
    await api('POST', 'groups', { name: 'audited' });
    const r = await api('GET', 'audit?limit=500');
    expect(r.status).toBe(200);
    const entries = r.json().entries as Array<Record<string, unknown>>;
    expect(entries[0]).toMatchObject({ actor: 'admin', action: 'group.create', target: 'audited', client: '127.0.0.1' });
    expect(entries.some((e) => e.action === 'token.create' && e.actor === 'admin')).toBe(true);
    expect(entries.some((e) => e.action === 'route.create' && e.target === 'team-echo')).toBe(true);
    expect((await api('GET', 'audit?limit=0')).status).toBe(400);
    expect((await api('GET', 'audit?limit=2')).json().entries).toHaveLength(2);
  });

  test('errors: unknown endpoint 404, wrong method 405, bad JSON 400, unknown field 400', async () => {
    expect((await api('GET', 'nothing')).json()).toMatchObject({ error: 'not_found' });
    const m = await api('PATCH', 'tokens');
    expect(m.status).toBe(405);
    expect(m.json().message).toMatch(/GET, POST/);
    expect((await api('POST', 'groups', '{not json')).json()).toMatchObject({ error: 'invalid_json' });
    expect((await api('POST', 'groups', '[1,2]')).json()).toMatchObject({ error: 'invalid_json' });
    expect((await api('POST', 'groups', { name: 'x', colour: 'red' })).json()).toMatchObject({ error: 'invalid_input', message: expect.stringContaining('colour') });
    expect((await api('GET', 'users/%E0%A4%A')).status).toBe(400);
  });

  test('secrets never appear in API list output or the audit log', async () => {
    const outputs = await Promise.all(['tokens', 'users', 'groups', 'shares', 'audit?limit=10000', 'status', 'routes'].map((p) => api('GET', p)));
    expect(secrets.length).toBeGreaterThanOrEqual(6);
    for (const o of outputs) {
      expect(o.status).toBe(200);
      for (const s of secrets) expect(o.body).not.toContain(s);
    }
    const rows = JSON.stringify(store.listAudit({ limit: 100_000 }));
    for (const s of secrets) expect(rows).not.toContain(s);
  });
});
