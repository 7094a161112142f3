import fs from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { buildRouteViews, createAdminApi } from '../../router/api/admin-api';
import { registerRouteCommands } from '../../router/commands/route';
import type { StaticRoute } from '../../router/model/types';
import { parseRoutesFile } from '../../router/providers/routes-file';
import { buildStoreSnapshot } from '../../router/providers/store-provider';
import type { RouterStatus } from '../../router/router';
import { openDb } from '../../router/store/sqlite';
import { CLI_ACTOR, MIGRATIONS, openStore, type StoredRoute } from '../../router/store/store';
import { runCli } from '../support/cli';
import { thrown } from '../support/errors';

const dirs: string[] = [];
const tempDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'appgw-health-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const PATH_RULE = 'must start with / and use only [A-Za-z0-9._~/-], optionally followed by ?query of [A-Za-z0-9._~=&-], at most 200 characters, no . or .. segments';
const INTERVAL_RULE = 'must be a duration from 1s to 1h such as 10s, 1500ms or 1m';

describe('routes file: health_check', () => {
  const one = (hc: unknown, file = 'routes.yaml') => {
    const text = file.endsWith('.json') ? JSON.stringify({ routes: [{ name: 'a', path: '/a/', health_check: hc }] }) : stringify({ routes: [{ name: 'a', path: '/a/', health_check: hc }, { name: 'b', path: '/b/' }] });
    const r = parseRoutesFile(text, file);
    if (!r.ok) throw new Error(r.error.reason);
    return r;
  };

  test('YAML as documented: path and interval; path alone defaults to 10 s; absent is null', () => {
    const r = parseRoutesFile('routes:\n  - name: llm\n    path: /llm/\n    health_check: { path: /health, interval: 5s }\n  - name: b\n    path: /b/\n    health_check:\n      path: /v1/models?x=1\n  - name: c\n    path: /c/\n', 'routes.yaml');
    expect(r.ok && r.rejections).toEqual([]);
    expect(r.ok && r.snapshot.static.map((s) => [s.name, s.healthCheck])).toEqual([
      ['llm', { path: '/health', intervalMs: 5000 }],
      ['b', { path: '/v1/models?x=1', intervalMs: 10_000 }],
      ['c', null],
    ]);
    expect(one({ path: '/h', interval: 30 }).snapshot.static[0]!.healthCheck).toEqual({ path: '/h', intervalMs: 30_000 });
    expect(one({ path: '/h', interval: '1m' }, 'routes.json').snapshot.static[0]!.healthCheck).toEqual({ path: '/h', intervalMs: 60_000 });
    expect(one(null).snapshot.static[0]!.healthCheck).toBeNull();
  });

  test.each<[string, unknown, string]>([
    ['no leading slash', { path: 'health' }, `health check path "health" ${PATH_RULE}`],
    ['a semicolon', { path: '/h;x' }, `health check path "/h;x" ${PATH_RULE}`],
    ['a brace', { path: '/h}' }, `health check path "/h}" ${PATH_RULE}`],
    ['a quote', { path: '/h"' }, `health check path "/h\\"" ${PATH_RULE}`],
    ['a newline', { path: '/h\nHost: x' }, `health check path "/h\\nHost: x" ${PATH_RULE}`],
    ['a dot-dot segment', { path: '/a/../b' }, `health check path "/a/../b" ${PATH_RULE}`],
    ['a too short interval', { path: '/h', interval: '100ms' }, `health check interval "100ms" ${INTERVAL_RULE}`],
    ['a too long interval', { path: '/h', interval: '2h' }, `health check interval "2h" ${INTERVAL_RULE}`],
    ['a word for an interval', { path: '/h', interval: 'often' }, `health check interval "often" ${INTERVAL_RULE}`],
    ['no path', { interval: '5s' }, 'health check needs a path such as /health'],
    ['an unknown key', { path: '/h', timeout: '1s' }, 'health check has unknown key "timeout"; expected path and interval'],
    ['a bare string', '/health', 'health check must be a mapping such as { path: /health, interval: 10s }, got "/health"'],
  ])('%s: the entry is rejected with one line naming the field; the other routes stay', (_case, hc, reason) => {
    const r = one(hc);
    expect(r.snapshot.static.map((s) => s.name)).toEqual(['b']);
    expect(r.rejections).toEqual([{ provider: 'file', source: 'routes.yaml: routes[0] (name "a")', reason: `health_check: ${reason}` }]);
    expect(r.rejections[0]!.reason).not.toMatch(/[\r\n]/);
  });
});

describe('store: health check columns', () => {
  test('round trip through put, get, list, update and removal; audited', () => {
    const dir = tempDir();
    const store = openStore({ dataDir: dir });
    const r = store.putRoute({ name: 'llm', path: '/llm/', backends: ['10.0.0.1:80'], healthCheck: { path: '/health', intervalMs: 5000 } }, CLI_ACTOR);
    expect(r.healthCheck).toEqual({ path: '/health', intervalMs: 5000 });
    expect(store.getRoute('llm')!.healthCheck).toEqual({ path: '/health', intervalMs: 5000 });
    store.putRoute({ name: 'plain', path: '/plain/' }, CLI_ACTOR);
    expect(store.listRoutes().map((x) => [x.name, x.healthCheck])).toEqual([
      ['llm', { path: '/health', intervalMs: 5000 }],
      ['plain', null],
    ]);
    expect(store.listAudit({ limit: 2 })[1]!.detail).toMatchObject({ healthCheck: { path: '/health', intervalMs: 5000 } });
    const v = store.routesVersion();
    store.putRoute({ ...store.getRoute('llm')!, healthCheck: { path: '/ready?deep=1', intervalMs: 60_000 } }, CLI_ACTOR);
    expect(store.routesVersion()).toBe(v + 1);
    expect(store.getRoute('llm')!.healthCheck).toEqual({ path: '/ready?deep=1', intervalMs: 60_000 });
    store.putRoute({ ...store.getRoute('llm')!, healthCheck: null }, CLI_ACTOR);
    expect(store.getRoute('llm')!.healthCheck).toBeNull();
    store.close();
  });

  test.each<[string, unknown, RegExp]>([
    ['a hostile path', { path: '/h;rm -rf /', intervalMs: 5000 }, /^health check path "\/h;rm -rf \/" must start with \//],
    ['a path with a newline', { path: '/h\n', intervalMs: 5000 }, /^health check path "\/h\\n" must/],
    ['an interval below 1 s', { path: '/h', intervalMs: 500 }, /^health check interval "500" must be whole milliseconds from 1000 to 3600000$/],
    ['an interval as text', { path: '/h', intervalMs: '10s' }, /^health check interval "10s" must be whole milliseconds/],
    ['not an object', '/health', /^health check "\/health" must be \{ path, intervalMs \}$/],
  ])('%s is INVALID_INPUT and changes nothing', (_case, healthCheck, message) => {
    const store = openStore({ dataDir: tempDir() });
    const e = thrown(() => store.putRoute({ name: 'x', path: '/x/', healthCheck: healthCheck as never }, CLI_ACTOR));
    expect(e.code).toBe('INVALID_INPUT');
    expect(e.message).toMatch(message);
    expect(store.listRoutes()).toEqual([]);
    store.close();
  });

  test('migration 2 on an existing database: routes kept without a health check, then round trip', () => {
    const dir = tempDir();
    const old = openDb(dir, MIGRATIONS.slice(0, 1));
    old.run(`INSERT INTO static_routes (name, path, subdomain, allowed_groups, backends, enabled, description, strip_prefix, created_at, updated_at)
             VALUES ('legacy', '/legacy/', NULL, '["ops"]', '[{"host":"10.0.0.9","port":80}]', 1, 'from before', 1, 1, 2)`);
    old.close();
    const store = openStore({ dataDir: dir });
    expect(store.getRoute('legacy')).toEqual({
      name: 'legacy', path: '/legacy/', subdomain: null, allowedGroups: ['ops'], backends: [{ host: '10.0.0.9', port: 80 }], enabled: true, description: 'from before', stripPrefix: true, healthCheck: null, createdAt: 1, updatedAt: 2,
    });
    store.putRoute({ ...store.getRoute('legacy')!, healthCheck: { path: '/health', intervalMs: 10_000 } }, CLI_ACTOR);
    store.close();
    const again = openStore({ dataDir: dir });
    expect(again.getRoute('legacy')!.healthCheck).toEqual({ path: '/health', intervalMs: 10_000 });
    again.close();
    const db = openDb(dir, MIGRATIONS);
    expect(db.all('SELECT version, name FROM schema_migrations ORDER BY version')).toEqual([
      { version: 1, name: 'identity-routes-ports-audit' },
      { version: 2, name: 'static-route-health-check' },
    ]);
    db.close();
  });

  test('the store provider passes the health check on and re-validates rows', () => {
    const row = (name: string, healthCheck: StoredRoute['healthCheck']): StoredRoute => ({
      name, path: `/${name}/`, subdomain: null, allowedGroups: [], backends: [], enabled: true, description: '', stripPrefix: true, healthCheck, createdAt: 0, updatedAt: 0,
    });
    const { snapshot, rejections } = buildStoreSnapshot([row('ok', { path: '/h', intervalMs: 2000 }), row('none', null), row('tampered', { path: '/h"; x', intervalMs: 2000 })]);
    expect(snapshot.static.map((s) => [s.name, s.healthCheck])).toEqual([
      ['ok', { path: '/h', intervalMs: 2000 }],
      ['none', null],
    ]);
    expect(rejections).toEqual([{ provider: 'store', source: 'store route "tampered"', reason: expect.stringMatching(/^health check path "\/h\\"; x" must start with \//) }]);
  });
});

describe('appgw route: --health-path, --health-interval, --no-health-check', () => {
  function setup() {
    const dataDir = path.join(tempDir(), 'data');
    const appgw = (...argv: string[]) => runCli((program) => registerRouteCommands(program, () => openStore({ dataDir }), () => null), argv);
    const health = (name: string) => {
      const s = openStore({ dataDir });
      try {
        return s.getRoute(name)?.healthCheck;
      } finally {
        s.close();
      }
    };
    return { dataDir, appgw, health };
  }

  test('create and update set, change and remove the health check; other updates keep it', async () => {
    const { appgw, health } = setup();
    expect(await appgw('route', 'create', 'llm', '--path', '/llm/', '--backend', '10.0.0.1:80', '--health-path', '/health')).toEqual({
      code: 0,
      err: '',
      out: 'created route llm: path /llm/; backends 10.0.0.1:80; groups none (any signed-in user); enabled; strips its prefix; health check GET /health every 10s\n',
    });
    expect(health('llm')).toEqual({ path: '/health', intervalMs: 10_000 });
    expect((await appgw('route', 'create', 'tts', '--path', '/tts/', '--health-path', '/v1/models?ready=1', '--health-interval', '1500ms')).out).toMatch(/; health check GET \/v1\/models\?ready=1 every 1500ms\n$/);
    expect(health('tts')).toEqual({ path: '/v1/models?ready=1', intervalMs: 1500 });

    expect((await appgw('route', 'update', 'llm', '--health-interval', '30s')).out).toMatch(/; health check GET \/health every 30s\n$/);
    expect((await appgw('route', 'update', 'llm', '--health-path', '/ready')).out).toMatch(/; health check GET \/ready every 30s\n$/);
    expect((await appgw('route', 'update', 'llm', '--add-backend', '10.0.0.2:80')).out).toMatch(/; health check GET \/ready every 30s\n$/);
    expect(health('llm')).toEqual({ path: '/ready', intervalMs: 30_000 });
    expect((await appgw('route', 'update', 'llm', '--no-health-check')).out).toBe('updated route llm: path /llm/; backends 10.0.0.1:80,10.0.0.2:80; groups none (any signed-in user); enabled; strips its prefix\n');
    expect(health('llm')).toBeNull();
    // a path on a route without a check: the default interval
    await appgw('route', 'update', 'llm', '--health-path', '/health');
    expect(health('llm')).toEqual({ path: '/health', intervalMs: 10_000 });
  });

  test.each<[string, string[], string]>([
    ['an interval without a path on create', ['create', 'x', '--path', '/x/', '--health-interval', '5s'], 'appgw: --health-interval needs --health-path\n'],
    ['a path without a slash', ['create', 'x', '--path', '/x/', '--health-path', 'health'], `appgw: health check path "health" ${PATH_RULE}\n`],
    ['a hostile path', ['create', 'x', '--path', '/x/', '--health-path', '/h;$(reboot)'], `appgw: health check path "/h;$(reboot)" ${PATH_RULE}\n`],
    ['a path with a newline', ['create', 'x', '--path', '/x/', '--health-path', '/h\nx'], `appgw: health check path "/h\\nx" ${PATH_RULE}\n`],
    ['a too short interval', ['create', 'x', '--path', '/x/', '--health-path', '/h', '--health-interval', '500ms'], `appgw: health check interval "500ms" ${INTERVAL_RULE}\n`],
    ['a too long interval', ['create', 'x', '--path', '/x/', '--health-path', '/h', '--health-interval', '90m'], `appgw: health check interval "90m" ${INTERVAL_RULE}\n`],
    ['an interval on a route without a check', ['update', 'base', '--health-interval', '5s'], 'appgw: --health-interval needs --health-path (route base has no health check)\n'],
    ['removing and setting at once', ['update', 'base', '--no-health-check', '--health-path', '/h'], 'appgw: --no-health-check cannot be combined with --health-path or --health-interval\n'],
  ])('%s: one line, exit code 2, nothing changed', async (_case, args, message) => {
    const { appgw, health } = setup();
    await appgw('route', 'create', 'base', '--path', '/base/');
    expect(await appgw('route', ...args)).toEqual({ code: 2, out: '', err: message });
    expect(health('x')).toBeUndefined();
    expect(health('base')).toBeNull();
  });

  test('list shows each checked backend with its last state; --json has health_check and backend_health', async () => {
    const { appgw, dataDir } = setup();
    await appgw('route', 'create', 'llm', '--path', '/llm/', '--backend', '10.0.0.1:80', '--backend', '10.0.0.2:80', '--health-path', '/health', '--health-interval', '5s');
    await appgw('route', 'create', 'plain', '--path', '/plain/', '--backend', '10.0.0.3:80');
    const status: RouterStatus = {
      router: 'r', generation: 'g000001', lastApply: null, lastFailure: null, reloads: 0, pushes: 1, dataVersion: 1, providers: [], rejections: [],
      routes: [
        {
          kind: 'static', id: 'llm', url: 'http://gw/llm/', backends: ['10.0.0.1:80'], status: 'Routing', provider: 'store',
          health: { path: '/health', interval_ms: 5000, backends: [
            { backend: '10.0.0.1:80', state: 'up', reason: null, failures: 0, since: '2030-01-01T00:00:00.000Z', checked_at: '2030-01-01T00:00:05.000Z' },
            { backend: '10.0.0.2:80', state: 'down', reason: 'status 503', failures: 4, since: '2030-01-01T00:00:02.000Z', checked_at: '2030-01-01T00:00:05.000Z' },
          ] },
        },
        { kind: 'static', id: 'plain', url: 'http://gw/plain/', backends: ['10.0.0.3:80'], status: 'Routing', provider: 'store' },
      ],
    };
    fs.writeFileSync(path.join(dataDir, 'status.json'), JSON.stringify(status));
    const list = await appgw('route', 'list');
    expect(list.code).toBe(0);
    // the failed backend is configured but not live
    expect(list.out).toMatch(/\nllm\s+store\s+\S+\s+\/llm\/\s+10\.0\.0\.1:80,10\.0\.0\.2:80\s+10\.0\.0\.1:80\s+-\s*\n/);
    expect(list.out).toContain('\nllm: health check GET /health every 5s: 10.0.0.1:80 up, 10.0.0.2:80 down (status 503)\n');
    expect(list.out).not.toContain('plain: health check');
    const json = JSON.parse((await appgw('route', 'list', '--json')).out);
    const llm = json.routes.find((r: { name: string }) => r.name === 'llm');
    expect(llm).toMatchObject({
      live_backends: ['10.0.0.1:80'],
      health_check: { path: '/health', interval: '5s' },
      backend_health: [
        { backend: '10.0.0.1:80', state: 'up', reason: null },
        { backend: '10.0.0.2:80', state: 'down', reason: 'status 503', since: '2030-01-01T00:00:02.000Z' },
      ],
    });
    expect(json.routes.find((r: { name: string }) => r.name === 'plain')).toMatchObject({ health_check: null, backend_health: null });
  });
});

describe('admin API: health_check in the route body and views', () => {
  function setup(status: () => RouterStatus | null = () => null) {
    const store = openStore({ dataDir: tempDir() });
    const api = createAdminApi({ store, status, probe: null });
    const call = async (method: string, url: string, body?: unknown) => {
      const r = await api({ method, url: `/_gateway/api/${url}`, headers: {} } as unknown as http.IncomingMessage, body === undefined ? '' : JSON.stringify(body), 'admin');
      return r as { status: number; body: any };
    };
    return { store, call };
  }

  test('POST sets it, PUT without it keeps it, PUT changes or removes it (null)', async () => {
    const { store, call } = setup();
    const c = await call('POST', 'routes', { name: 'llm', path: '/llm/', backends: ['10.0.0.1:80'], health_check: { path: '/health', interval: '5s' } });
    expect(c.status).toBe(201);
    expect(c.body.route).toMatchObject({ name: 'llm', health_check: { path: '/health', interval: '5s' }, backend_health: null });
    expect(store.getRoute('llm')!.healthCheck).toEqual({ path: '/health', intervalMs: 5000 });
    expect((await call('PUT', 'routes/llm', { description: 'x' })).body.route.health_check).toEqual({ path: '/health', interval: '5s' });
    expect((await call('PUT', 'routes/llm', { health_check: { path: '/ready' } })).body.route.health_check).toEqual({ path: '/ready', interval: '10s' });
    expect((await call('PUT', 'routes/llm', { health_check: { path: '/ready', interval: 90 } })).body.route.health_check).toEqual({ path: '/ready', interval: '90s' });
    expect((await call('PUT', 'routes/llm', { health_check: null })).body.route.health_check).toBeNull();
    expect(store.getRoute('llm')!.healthCheck).toBeNull();
    expect((await call('POST', 'routes', { name: 'plain', path: '/plain/' })).body.route.health_check).toBeNull();
  });

  test.each<[string, unknown, string]>([
    ['a bad path', { path: 'health' }, `health_check: health check path "health" ${PATH_RULE}`],
    ['a hostile path', { path: '/h\r\nX-Evil: 1' }, `health_check: health check path "/h\\r\\nX-Evil: 1" ${PATH_RULE}`],
    ['a bad interval', { path: '/h', interval: '10ms' }, `health_check: health check interval "10ms" ${INTERVAL_RULE}`],
    ['no path', { interval: '10s' }, 'health_check: health check needs a path such as /health'],
    ['an unknown key', { path: '/h', every: '1s' }, 'health_check: health check has unknown key "every"; expected path and interval'],
    ['a boolean', true, 'health_check: health check must be a mapping such as { path: /health, interval: 10s }, got "true"'],
  ])('%s: 400 invalid_input naming the field; nothing stored', async (_case, hc, message) => {
    const { store, call } = setup();
    const r = await call('POST', 'routes', { name: 'llm', path: '/llm/', health_check: hc });
    expect(r).toEqual({ status: 400, body: { error: 'invalid_input', message } });
    expect(store.listRoutes()).toEqual([]);
  });

  test('views: a backend the check took out is not live; all out is Pending with a problem', () => {
    const stored: StoredRoute = { name: 'llm', path: '/llm/', subdomain: null, allowedGroups: [], backends: [{ host: '10.0.0.1', port: 80 }, { host: '10.0.0.2', port: 80 }], enabled: true, description: '', stripPrefix: true, healthCheck: { path: '/health', intervalMs: 10_000 }, createdAt: 0, updatedAt: 0 };
    const file: StaticRoute = { name: 'filed', path: '/filed/', subdomain: null, backends: [{ host: '10.0.0.3', port: 80 }], allowedGroups: [], stripPrefix: true, enabled: true, healthCheck: { path: '/h', intervalMs: 60_000 }, provider: 'file' };
    const hb = (backend: string, state: 'up' | 'down' | 'unknown', reason: string | null = null) => ({ backend, state, reason, failures: state === 'down' ? 2 : 0, since: null, checked_at: null });
    const status = (llmLive: string[], llmHealth: ReturnType<typeof hb>[]): RouterStatus => ({
      router: 'r', generation: 'g1', lastApply: null, lastFailure: null, reloads: 0, pushes: 0, dataVersion: 1, providers: [], rejections: [],
      routes: [
        { kind: 'static', id: 'llm', url: 'u', backends: llmLive, status: llmLive.length ? 'Routing' : 'Pending', provider: 'store', health: { path: '/health', interval_ms: 10_000, backends: llmHealth } },
        { kind: 'static', id: 'filed', url: 'u', backends: [], status: 'Pending', provider: 'file', health: { path: '/h', interval_ms: 60_000, backends: [hb('10.0.0.3:80', 'down', 'timeout after 5000 ms')] } },
      ],
    });
    const some = buildRouteViews({ stored: [stored], fileRoutes: [file], status: status(['10.0.0.1:80'], [hb('10.0.0.1:80', 'up'), hb('10.0.0.2:80', 'down', 'status 503')]), reachable: null, routesFile: 'routes.yaml' });
    expect(some.find((v) => v.name === 'llm')).toMatchObject({ status: 'Routing', problem: null, live_backends: ['10.0.0.1:80'], backend_health: [{ backend: '10.0.0.1:80', state: 'up' }, { backend: '10.0.0.2:80', state: 'down', reason: 'status 503' }] });
    expect(some.find((v) => v.name === 'filed')).toMatchObject({
      status: 'Pending',
      live_backends: [],
      health_check: { path: '/h', interval: '1m' },
      problem: 'every backend fails its health check; the route answers 503 until one passes',
    });
    const none = buildRouteViews({ stored: [stored], fileRoutes: [], status: status([], [hb('10.0.0.1:80', 'down', 'connection refused'), hb('10.0.0.2:80', 'down', 'status 503')]), reachable: null, routesFile: null });
    expect(none.find((v) => v.name === 'llm')).toMatchObject({ status: 'Pending', problem: 'every backend fails its health check; the route answers 503 until one passes' });
  });
});
