import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import type { EdgeShare, EdgeToken, EdgeUser } from '../../router/model/push-payload';
import type { EdgeDenial, TokenSource } from '../../router/router';
import type { SessionIdentity } from '../../router/api/router-socket';
import type { EphemeralRoute, StaticRoute } from '../../router/model/types';
import { startEcho, type EchoBackend } from '../support/echo-backend';
import { startTestGateway, type TestGateway, MemoryTokens } from '../support/gateway-harness';
import { req } from '../support/http';
import { ManualProvider } from '../support/manual-provider';
import { waitFor } from '../support/net';

/** Tokens, users and shares held in memory, with revocation. */
class Identities extends MemoryTokens implements TokenSource {
  private ver = 1000;
  readonly usersTable: Record<string, EdgeUser> = {};
  readonly sharesTable: Record<string, EdgeShare> = {};
  readonly denials: EdgeDenial[] = [];
  override version(): number {
    return this.ver + super.version();
  }
  bump(): void {
    this.ver += 1;
  }
  users(): Record<string, EdgeUser> {
    return { ...this.usersTable };
  }
  shares(): Record<string, EdgeShare> {
    return { ...this.sharesTable };
  }
  recordDenials(entries: EdgeDenial[]): void {
    this.denials.push(...entries);
  }
  revoke(token: string): void {
    delete this.tokens[token.split('_')[1]!];
    this.bump();
  }
}

const ALICE_TASK = 'a11cea11cea11cea11cea11cea11cea1';
const BOB_TASK = 'b0bb0bb0bb0bb0bb0bb0bb0bb0bb0bb0';

describe('identity and access at the edge (real nginx)', () => {
  let g: TestGateway;
  let echo: EchoBackend;
  const ids = new Identities();
  const provider = new ManualProvider();
  const sessions = new Map<string, SessionIdentity>();
  let clearmlDown = false;
  let alice: string, bob: string, carol: string, partner: string, expired: string;

  beforeAll(async () => {
    echo = await startEcho('echo');
    const task = (id: string, owner: string, company = 'acme'): EphemeralRoute => ({ id, taskId: id, endpoint: '', owner, company, backend: { host: '127.0.0.1', port: echo.port }, stripPrefix: true, provider: 'manual' });
    const route = (name: string, groups: string[]): StaticRoute => ({ name, path: `/${name}/`, subdomain: null, backends: [{ host: '127.0.0.1', port: echo.port }], allowedGroups: groups, stripPrefix: true, enabled: true, provider: 'manual' });
    provider.snapshot = { ephemeral: [task(ALICE_TASK, 'alice'), task(BOB_TASK, 'bob')], static: [route('llm', ['ml-team']), route('partner-llm', ['nobody-group'])], bindings: [], tcp: [] };
    alice = ids.add({ u: 'alice', g: ['ml-team'] });
    bob = ids.add({ u: 'bob', g: [] });
    carol = ids.add({ u: 'carol', g: ['reviewers'] });
    partner = ids.add({ u: 'partner-svc', g: [], r: ['partner-llm'] });
    expired = ids.add({ u: 'alice', g: ['ml-team'], e: Math.floor(Date.now() / 1000) - 5 });
    ids.usersTable['u-clearml-alice'] = { a: false, g: ['ml-team'] };
    ids.sharesTable[BOB_TASK] = { p: 'owner', u: [], g: ['reviewers'] };
    sessions.set('cookie-alice', { user: 'alice', company: 'acme', role: 'user', name: 'Alice' });
    sessions.set('cookie-mallory', { user: 'mallory', company: 'acme', role: 'user', name: 'Mallory' });
    g = await startTestGateway({
      providers: [provider],
      tokens: ids,
      env: { AUTH_COOKIE_NAME: 'clearml_token_basic' },
      sessions: async (cookie) => {
        if (clearmlDown) throw new Error('ECONNREFUSED');
        return sessions.get(cookie) ?? null;
      },
    });
    await waitFor(async () => (await req(`${g.url}/llm/`, { headers: { 'x-gateway-token': alice } })).status === 200, 5000, 'routes live');
  });

  afterAll(async () => {
    await g?.stop();
    await echo?.close();
  });

  afterEach(() => {
    expect(g.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
  });

  const svc = (id: string) => `${g.url}/service/${id}/x`;

  test('each credential form admits the owner', async () => {
    expect((await req(svc(ALICE_TASK), { headers: { 'x-gateway-token': alice } })).status).toBe(200);
    expect((await req(svc(ALICE_TASK), { headers: { authorization: `Bearer ${alice}` } })).status).toBe(200);
    expect((await req(svc(ALICE_TASK), { headers: { cookie: `appgw_session=${alice}` } })).status).toBe(200);
    expect((await req(svc(ALICE_TASK), { headers: { cookie: 'clearml_token_basic=cookie-alice' } })).status).toBe(200);
    // gw_token: exchanged for the session cookie, redirected to the same URL without it
    const first = await req(`${svc(ALICE_TASK)}?a=1&gw_token=${encodeURIComponent(alice)}&b=2`, { headers: { accept: 'text/html' } });
    expect(first.status).toBe(302);
    expect(first.headers.location).toBe(`/service/${ALICE_TASK}/x?a=1&b=2`);
    const setCookie = String(first.headers['set-cookie']);
    expect(setCookie).toMatch(/^appgw_session=appgw_[^;]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=\d+$/);
    const cookie = setCookie.split(';')[0]!;
    const second = await req(`${g.url}${first.headers.location}`, { headers: { cookie } });
    expect(second.status).toBe(200);
    expect(second.json().url).toBe('/x?a=1&b=2');
  });

  test('missing, garbled, forged, expired and revoked credentials get 401', async () => {
    const id = alice.split('_')[1]!;
    const cases: Array<Record<string, string>> = [
      {},
      { 'x-gateway-token': 'garbage' },
      { 'x-gateway-token': `appgw_${id}_${randomBytes(32).toString('base64url')}` },
      { 'x-gateway-token': `appgw_zzzzzzzzzzzz_${randomBytes(32).toString('base64url')}` },
      { 'x-gateway-token': expired },
      { authorization: `Bearer ${alice.slice(0, -1)}` },
      { cookie: 'appgw_session=appgw_nope_nope' },
      { cookie: 'clearml_token_basic=forged-cookie' },
    ];
    for (const headers of cases) {
      const r = await req(svc(ALICE_TASK), { headers });
      expect([JSON.stringify(headers), r.status]).toEqual([JSON.stringify(headers), 401]);
      expect(r.headers['content-type']).toBe('application/json');
    }
    const revoked = ids.add({ u: 'alice', g: [] });
    await waitFor(async () => (await req(svc(ALICE_TASK), { headers: { 'x-gateway-token': revoked } })).status === 200, 2000, 'new token live');
    ids.revoke(revoked);
    await waitFor(async () => (await req(svc(ALICE_TASK), { headers: { 'x-gateway-token': revoked } })).status === 401, 1000, 'revoked token refused');
    expect(echo.seen.every((s) => !JSON.stringify(s.headers).includes('appgw_'))).toBe(true);
  });

  test('valid identities that may not pass get 403; shares, groups and admins pass', async () => {
    expect((await req(svc(BOB_TASK), { headers: { 'x-gateway-token': alice } })).status).toBe(403);
    expect((await req(svc(ALICE_TASK), { headers: { cookie: 'clearml_token_basic=cookie-mallory' } })).status).toBe(403);
    expect((await req(svc(BOB_TASK), { headers: { 'x-gateway-token': bob } })).status).toBe(200);
    expect((await req(svc(BOB_TASK), { headers: { 'x-gateway-token': carol } })).status).toBe(200); // shared with group reviewers
    expect((await req(svc(BOB_TASK), { headers: { 'x-gateway-token': g.adminToken } })).status).toBe(200);
    expect((await req(`${g.url}/llm/`, { headers: { 'x-gateway-token': alice } })).status).toBe(200);
    const outsider = await req(`${g.url}/llm/`, { headers: { 'x-gateway-token': bob } });
    expect(outsider.status).toBe(403);
    expect(outsider.json()).toMatchObject({ error: 'not_in_allowed_groups', route: 'llm' });
    const page = await req(`${g.url}/llm/`, { headers: { 'x-gateway-token': bob, accept: 'text/html' } });
    expect(page.status).toBe(403);
    expect(page.body).toContain('<h1>Access denied</h1>');
  });

  test('a route-scoped token passes on its route and gets 403 everywhere else', async () => {
    expect((await req(`${g.url}/partner-llm/v1/models`, { headers: { authorization: `Bearer ${partner}` } })).status).toBe(200);
    expect((await req(`${g.url}/llm/`, { headers: { authorization: `Bearer ${partner}` } })).status).toBe(403);
    const svcRes = await req(svc(ALICE_TASK), { headers: { authorization: `Bearer ${partner}` } });
    expect(svcRes.status).toBe(403);
    expect(svcRes.json().error).toBe('outside_token_scope');
  });

  test('the backend never sees a gateway credential or a client-forged identity; other cookies and API keys pass', async () => {
    const r = await req(svc(ALICE_TASK), {
      headers: {
        'x-gateway-token': alice,
        authorization: 'Bearer sk-backend-key-123',
        cookie: `theme=dark; appgw_session=${alice}; clearml_token_basic=cookie-alice; lang=en`,
        'x-forwarded-user': 'root',
        'x-forwarded-groups': 'admins',
      },
    });
    expect(r.status).toBe(200);
    const h = r.json().headers;
    expect(h.authorization).toBe('Bearer sk-backend-key-123');
    expect(h.cookie).toBe('theme=dark; lang=en');
    expect(h['x-gateway-token']).toBeUndefined();
    expect(h['x-forwarded-user']).toBe('alice');
    expect(h['x-forwarded-groups']).toBe('ml-team');
    const viaBearer = await req(svc(ALICE_TASK), { headers: { authorization: `Bearer ${alice}`, cookie: 'clearml_token_basic=cookie-alice' } });
    expect(viaBearer.json().headers.authorization).toBeUndefined();
    expect(viaBearer.json().headers.cookie).toBeUndefined();
  });

  test('a ClearML outage fails closed with 503, and recovery admits again', async () => {
    clearmlDown = true;
    const r = await req(svc(ALICE_TASK), { headers: { cookie: 'clearml_token_basic=cookie-not-cached-yet' } });
    expect(r.status).toBe(503);
    expect(r.json().error).toBe('session_check_unavailable');
    clearmlDown = false;
    sessions.set('cookie-not-cached-yet', { user: 'alice', company: 'acme', role: 'user', name: 'Alice' });
    expect((await req(svc(ALICE_TASK), { headers: { cookie: 'clearml_token_basic=cookie-not-cached-yet' } })).status).toBe(200);
  });

  test('the WebSocket upgrade is authorized like any request', async () => {
    const url = `${g.url.replace('http', 'ws')}/service/${BOB_TASK}/ws`;
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(url, { headers: { 'x-gateway-token': alice } });
      ws.on('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
    });
    expect(refused).toBe(403);
    const ws = new WebSocket(url, { headers: { 'x-gateway-token': bob } });
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    ws.close();
  });

  test('denials reach the audit sink with route, credential id and reason, never a secret', async () => {
    await req(svc(BOB_TASK), { headers: { 'x-gateway-token': alice } });
    await waitFor(() => ids.denials.some((d) => d.status === 403 && d.reason === 'not_shared_with_you' && d.token === alice.split('_')[1]), 5000, 'denial recorded');
    expect(JSON.stringify(ids.denials)).not.toContain(alice.slice(`appgw_${alice.split('_')[1]}_`.length));
    expect(ids.denials.some((d) => d.status === 401 && d.client === '127.0.0.1')).toBe(true);
  });
});
