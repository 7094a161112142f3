import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createAdminApi } from '../../router/api/admin-api';
import { memoryLogger } from '../../router/log';
import { FileProvider } from '../../router/providers/file-provider';
import { StoreProvider } from '../../router/providers/store-provider';
import { openStore, type Store } from '../../router/store/store';
import { createToken } from '../../router/store/tokens';
import { StoreTokens } from '../../router/store-tokens';
import { startEcho, type EchoBackend } from '../support/echo-backend';
import { startTestGateway, type TestGateway } from '../support/gateway-harness';
import { req, type Res } from '../support/http';
import { type CliRun } from '../support/cli';
import { freePort, waitFor } from '../support/net';

const SETUP = { name: 'test-setup', principal: null, client: null };
const REPO = resolve(__dirname, '..', '..');

/**
 * `appgw route ...` in a separate process (tsx, like bin/appgw) on the suite's DATA_DIR: the
 * running router must notice the change through the store alone.
 */
function appgwRoute(env: { DATA_DIR: string; ROUTES_FILE: string }, ...args: string[]): Promise<CliRun> {
  const script = `
    require('tsx/cjs');
    const { Command } = require('commander');
    const { registerRouteCommands } = require(${JSON.stringify(join(REPO, 'router/commands/route.ts'))});
    const { openStore } = require(${JSON.stringify(join(REPO, 'router/store/store.ts'))});
    const program = new Command('appgw').exitOverride();
    registerRouteCommands(program, () => openStore({ dataDir: process.env.DATA_DIR }), () => process.env.ROUTES_FILE || null);
    program.parseAsync(process.argv.slice(1), { from: 'user' }).catch((e) => { process.exitCode = typeof e.exitCode === 'number' ? e.exitCode : 1; });
  `;
  return new Promise((done) => {
    execFile(process.execPath, ['-e', script, ...args], { cwd: REPO, env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout, err: stderr });
    });
  });
}

describe('static routes from the store (API and CLI) through the real edge', () => {
  let g: TestGateway;
  let store: Store;
  let dir: string;
  let storeDir: string;
  let routesFile: string;
  let a: EchoBackend;
  let b: EchoBackend;
  let admin: string;
  let bob: string;
  let carol: string;

  const api = (method: string, path: string, body?: unknown): Promise<Res> => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const framing: Record<string, string> = text === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) };
    return req(`${g.url}/_gateway/api/${path}`, { method, headers: { 'x-gateway-token': admin, ...framing }, body: text });
  };
  const get = (path: string, token = admin, headers: Record<string, string> = {}) => req(`${g.url}${path}`, { headers: { 'x-gateway-token': token, ...headers } });
  /** Worker pids once the last reload is confirmed and no old worker is still draining (an old worker may still accept a connection right after a reload). */
  const settledPids = async () => {
    await waitFor(async () => g.gw.router.stats.lastApply?.generation === (await req(`${g.url}/_gateway/health`)).json().generation, 10_000, 'last apply confirmed');
    return waitFor(() => (g.workerPids().length === 2 ? g.workerPids() : null), 10_000, 'two workers');
  };
  /**
   * Waits until a change that needs a reload is live and stays so: the condition must hold on
   * every check for a second (longer than the coalescing window, RELOAD_MIN_INTERVAL 300 ms plus
   * settle), because a data push can make a change visible before the reload that renders it — and
   * a reload rendered just before the change can briefly undo it — and an old worker may still
   * accept a connection right after a reload.
   */
  const untilLive = async (cond: () => Promise<boolean>, what: string) => {
    let since: number | null = null;
    await waitFor(async () => {
      if (!(await cond())) since = null;
      else since ??= Date.now();
      return since !== null && Date.now() - since >= 1000;
    }, 10_000, `${what} (and stable for 1 s)`, 25);
    await settledPids();
  };
  const errorLog = () => (existsSync(join(storeDir, 'logs', 'error.log')) ? readFileSync(join(storeDir, 'logs', 'error.log'), 'utf8') : '');

  beforeAll(async () => {
    a = await startEcho('a');
    b = await startEcho('b');
    dir = mkdtempSync(join(tmpdir(), 'appgw-routes-'));
    storeDir = join(dir, 'data');
    routesFile = join(dir, 'routes.yaml');
    writeFileSync(routesFile, `routes:\n  - name: filed\n    path: /filed/\n    backends: ["127.0.0.1:${a.port}"]\n`);
    store = openStore({ dataDir: storeDir });
    store.addUser({ id: 'admin', admin: true }, SETUP);
    store.addUser({ id: 'bob' }, SETUP);
    store.addUser({ id: 'carol' }, SETUP);
    store.createGroup({ name: 'ml-team' }, SETUP);
    store.addMember('ml-team', 'bob', SETUP);
    admin = createToken(store, { label: 'admin', expiresInMs: 3600_000, as: 'admin' }, SETUP).token;
    bob = createToken(store, { label: 'bob', expiresInMs: 3600_000, as: 'bob' }, SETUP).token;
    carol = createToken(store, { label: 'carol', expiresInMs: 3600_000, as: 'carol' }, SETUP).token;
    const log = memoryLogger();
    g = await startTestGateway({
      providers: [new FileProvider(routesFile, log, { debounceMs: 20 }), new StoreProvider(store, log)],
      tokens: new StoreTokens(store),
      api: createAdminApi({ store, status: () => g?.gw.router.status() ?? null, routesFile }),
      // one DATA_DIR for the router and the store, as in production: the CLI reads status.json there
      env: { ROUTER_DOMAIN: 'gw.test', DATA_DIR: storeDir },
    });
    await untilLive(async () => (await get('/filed/')).status === 200, 'file route live');
  });

  afterAll(async () => {
    await g?.stop();
    store?.close();
    rmSync(dir, { recursive: true, force: true });
    await a?.close();
    await b?.close();
  });

  afterEach(() => {
    expect(existsSync(join(storeDir, 'logs', 'error.log'))).toBe(true);
    expect(errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
  });

  test('a route created through the API with no backend answers 503 JSON naming it, with Retry-After; status Not in use', async () => {
    const created = await api('POST', 'routes', { name: 'llm', path: '/llm/', description: 'the team LLM' });
    expect(created.status).toBe(201);
    expect(created.json().route).toMatchObject({ name: 'llm', source: 'store', read_only: false, path: '/llm/', backends: [], description: 'the team LLM', strip_prefix: true, enabled: true });
    await untilLive(async () => (await get('/llm/v1/models')).status === 503, 'route live without backends');
    const r = await get('/llm/v1/models');
    expect(r.headers['retry-after']).toBe('5');
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.json()).toMatchObject({ error: 'no_backend', route: 'llm' });
    expect((await api('GET', 'routes/llm')).json().route).toMatchObject({ status: 'Not in use', live_backends: [], url: `${g.url}/llm/` });
  });

  test('adding backends is a data push: the route starts routing with no reload (worker pids unchanged)', async () => {
    const pids = await settledPids();
    const reloads = g.gw.router.stats.reloads;
    const put = await api('PUT', 'routes/llm', { backends: [`127.0.0.1:${a.port}`] });
    expect(put.status).toBe(200);
    expect(put.json().route).toMatchObject({ name: 'llm', path: '/llm/', description: 'the team LLM', backends: [`127.0.0.1:${a.port}`] });
    await waitFor(async () => (await get('/llm/v1/models')).status === 200, 2000, 'route routing');
    expect((await get('/llm/v1/models')).json()).toMatchObject({ backend: 'a', url: '/v1/models' });

    await api('PUT', 'routes/llm', { backends: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`] });
    await waitFor(async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 40; i++) seen.add((await get('/llm/', admin, { 'x-session-id': `s${i}` })).json().backend);
      return seen.size === 2;
    }, 3000, 'both backends serve');
    expect(g.workerPids()).toEqual(pids);
    expect(g.gw.router.stats.reloads).toBe(reloads);
    const view = (await api('GET', 'routes/llm')).json().route;
    expect(view).toMatchObject({ status: 'Routing', source: 'store' });
    expect(view.live_backends.sort()).toEqual([`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`].sort());
  });

  test('a backend that accepts no connection leaves the route Pending', async () => {
    const closed = await freePort();
    expect((await api('POST', 'routes', { name: 'cold', path: '/cold/', backends: [`127.0.0.1:${closed}`] })).status).toBe(201);
    await waitFor(async () => (await api('GET', 'routes/cold')).json().route.live_backends.length === 1, 3000, 'router took the route in');
    expect((await api('GET', 'routes/cold')).json().route).toMatchObject({ status: 'Pending', backends: [`127.0.0.1:${closed}`] });
    expect((await api('DELETE', 'routes/cold')).status).toBe(200);
  });

  test('allowed groups: a member passes, a valid non-member gets 403', async () => {
    expect((await api('PUT', 'routes/llm', { allowed_groups: ['ml-team'] })).json().route.allowed_groups).toEqual(['ml-team']);
    await waitFor(async () => (await get('/llm/', carol)).status === 403, 3000, 'non-member refused');
    const denied = await get('/llm/', carol);
    expect(denied.json()).toMatchObject({ error: 'not_in_allowed_groups' });
    expect((await get('/llm/', bob)).status).toBe(200);
    expect(denied.json()).toMatchObject({ route: 'llm' });
  });

  test('a subdomain route answers on <sub>.<ROUTER_DOMAIN>; an unknown subdomain is 404', async () => {
    expect((await api('POST', 'routes', { name: 'chat', subdomain: 'chat', backends: [`127.0.0.1:${b.port}`] })).status).toBe(201);
    await untilLive(async () => (await get('/v1/x', admin, { host: 'chat.gw.test' })).status === 200, 'subdomain route live');
    expect((await get('/v1/x', admin, { host: 'chat.gw.test' })).json()).toMatchObject({ backend: 'b', url: '/v1/x' });
    expect((await get('/v1/x', admin, { host: 'other.gw.test' })).status).toBe(404);
  });

  test('a disabled route is not served; enabling it brings it back', async () => {
    expect((await api('PUT', 'routes/chat', { enabled: false })).json().route).toMatchObject({ enabled: false, status: 'Disabled' });
    await untilLive(async () => (await get('/', admin, { host: 'chat.gw.test' })).status === 404, 'disabled route gone');
    await api('PUT', 'routes/chat', { enabled: true });
    await untilLive(async () => (await get('/', admin, { host: 'chat.gw.test' })).status === 200, 'enabled again');
  });

  test('deleting a route: its URL answers 404', async () => {
    expect((await api('DELETE', 'routes/chat')).json()).toEqual({ removed: 'route', name: 'chat' });
    await untilLive(async () => (await get('/', admin, { host: 'chat.gw.test' })).status === 404, 'deleted route gone');
    expect((await api('GET', 'routes/chat')).status).toBe(404);
    expect((await api('DELETE', 'routes/chat')).status).toBe(404);
  });

  test('a route created by `appgw route` in another process goes live without a restart; update and delete too', async () => {
    const env = { DATA_DIR: storeDir, ROUTES_FILE: routesFile };
    const created = await appgwRoute(env, 'route', 'create', 'from-cli', '--path', '/from-cli/', '--group', 'ml-team', '--description', 'made by the CLI');
    expect(created).toMatchObject({ code: 0, err: '' });
    expect(created.out).toMatch(/^created route from-cli: path \/from-cli\/; backends none/);
    await untilLive(async () => (await get('/from-cli/', bob)).status === 503, 'CLI route live');

    const pids = await settledPids();
    const added = await appgwRoute(env, 'route', 'update', 'from-cli', '--add-backend', `127.0.0.1:${b.port}`);
    expect(added.code).toBe(0);
    await waitFor(async () => (await get('/from-cli/hi', bob)).status === 200, 3000, 'CLI backend routing');
    expect((await get('/from-cli/hi', bob)).json()).toMatchObject({ backend: 'b', url: '/hi' });
    expect(g.workerPids()).toEqual(pids);

    const list = await appgwRoute(env, 'route', 'list');
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/from-cli\s+store\s+Routing\s+\/from-cli\/\s+127\.0\.0\.1:\d+\s+127\.0\.0\.1:\d+\s+ml-team\s+made by the CLI/);
    expect(list.out).toMatch(/filed\s+file\s+Routing\s+\/filed\//);
    expect(list.out).toContain(`come from the routes file ${routesFile} (ROUTES_FILE) and are read-only here`);
    const audit = store.listAudit({ limit: 5 });
    expect(audit.find((e) => e.target === 'from-cli')).toMatchObject({ actor: 'cli', action: 'route.update', client: null });

    const deleted = await appgwRoute(env, 'route', 'delete', 'from-cli');
    expect(deleted).toMatchObject({ code: 0, out: 'deleted route from-cli\n' });
    await untilLive(async () => (await get('/from-cli/', bob)).status === 404, 'CLI route gone');

    const readOnly = await appgwRoute(env, 'route', 'update', 'filed', '--add-backend', `127.0.0.1:${b.port}`);
    expect(readOnly.code).toBe(2);
    expect(readOnly.out).toBe('');
    expect(readOnly.err).toBe(`appgw: route filed is defined in the routes file ${routesFile}; edit it there\n`);
  });

  test('a file-defined route is listed as read-only and cannot be changed through the API (409)', async () => {
    const list = (await api('GET', 'routes')).json();
    expect(list.routes_file).toBe(routesFile);
    expect(list.routes.find((r: { name: string }) => r.name === 'filed')).toMatchObject({
      source: 'file',
      read_only: true,
      defined_in: routesFile,
      path: '/filed/',
      status: 'Routing',
      backends: [`127.0.0.1:${a.port}`],
      live_backends: [`127.0.0.1:${a.port}`],
    });
    const message = `route filed is defined in the routes file ${routesFile}; edit it there`;
    for (const r of [
      await api('PUT', 'routes/filed', { backends: [`127.0.0.1:${b.port}`] }),
      await api('DELETE', 'routes/filed'),
      await api('POST', 'routes', { name: 'filed', path: '/other/' }),
    ]) {
      expect(r.status).toBe(409);
      expect(r.json()).toEqual({ error: 'read_only', message });
    }
    const clash = await api('POST', 'routes', { name: 'copycat', path: '/filed/' });
    expect(clash.status).toBe(409);
    expect(clash.json()).toMatchObject({ error: 'conflict', message: expect.stringContaining('path /filed/') });
    expect(store.getRoute('filed')).toBeNull();
    expect((await get('/filed/')).json()).toMatchObject({ backend: 'a' });
  });

  test('input is validated: 400 with the reason, 409 for a taken name or path, 404 for an unknown route', async () => {
    const bad = async (body: unknown, re: RegExp) => {
      const r = await api('POST', 'routes', body);
      expect(r.status).toBe(400);
      expect(r.json().error).toBe('invalid_input');
      expect(r.json().message).toMatch(re);
    };
    await bad({ name: 'Bad_Name', path: '/x/' }, /route name/);
    await bad({ name: 'svc', path: '/service/' }, /reserved/);
    await bad({ name: 'x1', path: '/x1/', subdomain: 'x1' }, /exactly one of path and subdomain/);
    await bad({ name: 'x2' }, /exactly one of path and subdomain/);
    await bad({ name: 'x3', path: '/x3/', backends: ['nope'] }, /backend/);
    await bad({ name: 'x4', path: '/x4/', backends: 'a:1' }, /backends must be a list/);
    await bad({ name: 'x5', path: '/x5/', enabled: 'yes' }, /enabled must be true or false/);
    await bad({ name: 'x6', path: '/x6/', allowed_group: ['a'] }, /unknown field "allowed_group"/);
    await bad({ name: 'x7', subdomain: 'x; } server {' }, /subdomain/);
    expect((await api('POST', 'routes', { name: 'llm', path: '/llm2/' })).json()).toMatchObject({ error: 'conflict' });
    expect((await api('POST', 'routes', { name: 'llm2', path: '/llm/' })).json()).toMatchObject({ error: 'conflict', message: expect.stringContaining('path /llm/') });
    expect((await api('PUT', 'routes/nope', { enabled: false })).status).toBe(404);
    expect((await api('PUT', 'routes/llm', { name: 'renamed' })).status).toBe(400);
    expect(store.listRoutes().map((r) => r.name)).toEqual(['llm']);
  });
});
