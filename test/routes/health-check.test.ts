import http from 'node:http';
import { formatRoutes } from '../../router/cli';
import { emptySnapshot, type Snapshot, type StaticRoute } from '../../router/model/types';
import { assignSessions, whoAnswers } from '../support/affinity';
import { startEcho, type EchoBackend } from '../support/echo-backend';
import { startTestGateway, type TestGateway } from '../support/gateway-harness';
import { req } from '../support/http';
import { ManualProvider } from '../support/manual-provider';
import { waitFor } from '../support/net';

const SESSIONS = 200;

describe('static routes: active health check (real nginx, 3 backends, one bound from a task)', () => {
  let g: TestGateway;
  let backends: EchoBackend[];
  const provider = new ManualProvider();
  let agent: http.Agent;

  const route = (name: string, bs: EchoBackend[], extra: Partial<StaticRoute> = {}): StaticRoute => ({
    name, path: `/${name}/`, subdomain: null, backends: bs.map((b) => ({ host: '127.0.0.1', port: b.port })), allowedGroups: [], stripPrefix: true, enabled: true, healthCheck: null, provider: 'manual', ...extra,
  });
  const snap = (p: Partial<Snapshot>): Snapshot => ({ ...emptySnapshot(), ...p });

  beforeAll(async () => {
    backends = await Promise.all(['b0', 'b1', 'b2'].map((n) => startEcho(n)));
    provider.snapshot = snap({
      // b0 and b1 configured, b2 bound from a task: all three are checked
      static: [route('hc', backends.slice(0, 2), { healthCheck: { path: '/health', intervalMs: 1000 } }), route('plain', backends)],
      bindings: [{ route: 'hc', taskId: 'beef', endpoint: '', backend: { host: '127.0.0.1', port: backends[2]!.port }, provider: 'manual' }],
    });
    g = await startTestGateway({ providers: [provider] });
    agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    await waitFor(async () => (await req(`${g.url}/hc/`, { headers: { 'x-gateway-token': g.adminToken } })).status === 200, 5000, 'route live');
  });

  afterAll(async () => {
    agent?.destroy();
    await g?.stop();
    await Promise.all(backends.map((b) => b.close()));
  });

  afterEach(() => {
    for (const b of backends) b.healthStatus = 200;
    expect(g.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
  });

  const who = (path: string, session: string) => whoAnswers(`${g.url}${path}`, { 'x-gateway-token': g.adminToken, 'x-session-id': session }, agent);
  const assign = (path = '/hc/x') => assignSessions(`${g.url}${path}`, SESSIONS, { 'x-gateway-token': g.adminToken }, agent);

  /** Requests a backend got through the gateway (not the router's probes of /health). */
  const proxied = (b: EchoBackend) => b.seen.filter((s) => s.url !== '/health').length;
  const hcStatus = () => g.gw.router.status().routes.find((r) => r.kind === 'static' && r.id === 'hc')!;
  const addr = (b: EchoBackend) => `127.0.0.1:${b.port}`;

  test('a backend failing its health check gets no request within 3 s, with no reload; it gets its sessions back when it passes', async () => {
    const base = await assign();
    expect(new Set(base.values())).toEqual(new Set(['b0', 'b1', 'b2']));
    const pids = g.workerPids();
    const reloads = g.gw.router.stats.reloads;
    const victim = backends[1]!;

    victim.healthStatus = 503;
    const t0 = Date.now();
    await waitFor(async () => [...(await assign()).values()].every((b) => b === 'b0' || b === 'b2'), 3500, 'b1 taken out', 100);
    process.stdout.write(`health check took b1 out after ${Date.now() - t0} ms\n`);
    const before = proxied(victim);
    const during = await assign();
    expect([...during.values()].filter((b) => b !== 'b0' && b !== 'b2')).toEqual([]);
    expect(proxied(victim)).toBe(before);
    // only b1's sessions moved
    expect([...base.keys()].filter((k) => base.get(k) !== during.get(k)).every((k) => base.get(k) === 'b1')).toBe(true);
    // a route without a health check still uses it
    expect(new Set((await assign('/plain/x')).values())).toContain('b1');

    const st = hcStatus();
    expect(st.backends).toEqual([addr(backends[0]!), addr(backends[2]!)].sort());
    expect(st.status).toBe('Routing');
    expect(st.health).toMatchObject({ path: '/health', interval_ms: 1000 });
    expect(st.health!.backends.find((b) => b.backend === addr(victim))).toMatchObject({ state: 'down', reason: 'status 503' });
    expect(st.health!.backends.filter((b) => b.state === 'up').map((b) => b.backend).sort()).toEqual([addr(backends[0]!), addr(backends[2]!)].sort());
    // `appgw routes` shows the same, one line per checked route
    const shown = formatRoutes(g.gw.router.status()).split('\n').filter((l) => l.startsWith('health '));
    expect(shown).toEqual([`health hc: health check GET /health every 1s: ${st.health!.backends.map((b) => `${b.backend} ${b.state}${b.state === 'down' ? ' (status 503)' : ''}`).join(', ')}`]);
    expect(shown[0]).toContain(`${addr(victim)} down (status 503)`);
    const down = g.log.lines.filter((l) => l.fields.component === 'health' && l.level === 'warn');
    expect(down).toEqual([expect.objectContaining({ fields: expect.objectContaining({ route: 'hc', backend: addr(victim), reason: 'status 503' }) })]);

    victim.healthStatus = 200;
    await waitFor(async () => [...(await assign()).values()].includes('b1'), 3000, 'b1 back', 100);
    const back = await assign();
    expect([...base.keys()].filter((k) => base.get(k) !== back.get(k))).toEqual([]);
    expect(g.log.lines.filter((l) => l.fields.component === 'health' && l.level === 'info')).toEqual([
      expect.objectContaining({ fields: expect.objectContaining({ route: 'hc', backend: addr(victim), status: 200 }) }),
    ]);
    expect(hcStatus().backends).toHaveLength(3);

    expect(g.workerPids()).toEqual(pids);
    expect(g.gw.router.stats.reloads).toBe(reloads);
  }, 30000);

  test('every backend failing: 503 no_backend with Retry-After, status Pending; routing again once one passes, no reload', async () => {
    const pids = g.workerPids();
    const reloads = g.gw.router.stats.reloads;
    for (const b of backends) b.healthStatus = 500;
    const r = await waitFor(async () => {
      const x = await req(`${g.url}/hc/`, { headers: { 'x-gateway-token': g.adminToken } });
      return x.status === 503 ? x : null;
    }, 3500, 'every backend out', 100);
    expect(r!.json()).toMatchObject({ error: 'no_backend', route: 'hc' });
    expect(r!.headers['retry-after']).toBeDefined();
    expect(hcStatus()).toMatchObject({ backends: [], status: 'Pending' });
    // the route without a health check is untouched
    expect((await req(`${g.url}/plain/`, { headers: { 'x-gateway-token': g.adminToken } })).status).toBe(200);

    backends[2]!.healthStatus = 200;
    await waitFor(async () => (await who('/hc/x', 'anyone')) === 'b2', 3000, 'b2 back', 100);
    expect(new Set((await assign()).values())).toEqual(new Set(['b2']));
    backends[0]!.healthStatus = 200;
    backends[1]!.healthStatus = 200;
    await waitFor(async () => new Set((await assign()).values()).size === 3, 3000, 'all back', 100);
    expect(g.workerPids()).toEqual(pids);
    expect(g.gw.router.stats.reloads).toBe(reloads);
  }, 30000);

  test('removing the health check pushes every backend again at once and stops its probes', async () => {
    backends[1]!.healthStatus = 503;
    await waitFor(async () => !hcStatus().backends.includes(addr(backends[1]!)), 3000, 'b1 out', 50);
    const reloads = g.gw.router.stats.reloads;
    provider.set(snap({ ...provider.snapshot, static: provider.snapshot.static.map((r) => (r.name === 'hc' ? { ...r, healthCheck: null } : r)) }));
    // unhealthy but no longer checked: routed again (only the edge's passive cool-down applies)
    await waitFor(async () => [...(await assign()).values()].includes('b1'), 3000, 'b1 routed without a health check', 50);
    expect(hcStatus().health).toBeUndefined();
    expect(g.gw.router.stats.reloads).toBe(reloads);
    const probes = () => backends.reduce((n, b) => n + b.seen.filter((s) => s.url === '/health').length, 0);
    const n = probes();
    await new Promise((r) => setTimeout(r, 1500));
    expect(probes()).toBe(n);
  }, 30000);
});
