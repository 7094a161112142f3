import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { emptySnapshot, type Snapshot, type StaticRoute } from '../../router/model/types';
import { assignSessions, whoAnswers } from '../support/affinity';
import { startEcho, type EchoBackend } from '../support/echo-backend';
import { startTestGateway, type TestGateway } from '../support/gateway-harness';
import { req } from '../support/http';
import { ManualProvider } from '../support/manual-provider';
import { waitFor } from '../support/net';

const SESSIONS = 1000;

describe('static routes: affinity, balance, failover, subdomains (real nginx, 4 backends)', () => {
  let g: TestGateway;
  let backends: EchoBackend[];
  const provider = new ManualProvider();
  let agent: http.Agent;

  const route = (name: string, bs: EchoBackend[], extra: Partial<StaticRoute> = {}): StaticRoute => ({
    name, path: `/${name}/`, subdomain: null, backends: bs.map((b) => ({ host: '127.0.0.1', port: b.port })), allowedGroups: [], stripPrefix: true, enabled: true, provider: 'manual', ...extra,
  });
  const snap = (p: Partial<Snapshot>): Snapshot => ({ ...emptySnapshot(), ...p });

  beforeAll(async () => {
    backends = await Promise.all(['b0', 'b1', 'b2', 'b3'].map((n) => startEcho(n)));
    provider.snapshot = snap({ static: [route('llm', backends), route('llm-sub', backends, { path: null, subdomain: 'llm' }), route('empty', [])] });
    g = await startTestGateway({ providers: [provider], env: { ROUTER_DOMAIN: 'apps.test' } });
    agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    await waitFor(async () => (await req(`${g.url}/llm/`, { headers: { 'x-gateway-token': g.adminToken } })).status === 200, 5000, 'route live');
  });

  afterAll(async () => {
    agent?.destroy();
    await g?.stop();
    await Promise.all(backends.map((b) => b.close()));
  });

  afterEach(() => {
    // connection refusals from the backend stopped on purpose are expected; nothing else is
    const lines = g.errorLog().split('\n').filter((l) => !/connect\(\) failed \(111: Connection refused\) while connecting to upstream/.test(l));
    expect(lines.join('\n')).not.toMatch(/\[(error|crit|alert|emerg)\]/);
  });

  const assign = (path = '/llm/x', extra: Record<string, string> = {}) => assignSessions(`${g.url}${path}`, SESSIONS, { 'x-gateway-token': g.adminToken, ...extra }, agent);

  const histogram = (m: Map<string, string>) => {
    const h: Record<string, number> = {};
    for (const b of m.values()) h[b] = (h[b] ?? 0) + 1;
    return h;
  };
  const moved = (a: Map<string, string>, b: Map<string, string>) => [...a.keys()].filter((k) => a.get(k) !== b.get(k));

  let base: Map<string, string>;

  test('1,000 sessions: each always lands on the same backend, load within ±25% of even', async () => {
    base = await assign();
    const again = await assign();
    expect(moved(base, again).map((k) => `${k}:${base.get(k)}->${again.get(k)}`)).toEqual([]);
    const h = histogram(base);
    process.stdout.write(`sessions per backend: ${JSON.stringify(h)}\n`);
    expect(Object.keys(h).sort()).toEqual(['b0', 'b1', 'b2', 'b3']);
    for (const n of Object.values(h)) {
      expect(n).toBeGreaterThanOrEqual(SESSIONS / 4 * 0.75);
      expect(n).toBeLessThanOrEqual(SESSIONS / 4 * 1.25);
    }
  });

  test('bounded load: one busy session spills over to other backends, and its in-flight count returns to zero', async () => {
    const busy = new http.Agent({ keepAlive: true, maxSockets: 200 });
    const slow = (n: number) =>
      Promise.all(Array.from({ length: n }, () => whoAnswers(`${g.url}/llm/sleep/400`, { 'x-gateway-token': g.adminToken, 'x-session-id': 'session-7' }, busy)));
    const home = base.get('session-7')!;
    try {
      // below the floor of 8 in flight per backend (per worker): affinity is exact
      expect(new Set(await slow(6))).toEqual(new Set([home]));
      // 80 at once with one session id: the home backend takes its bounded share, the rest spill
      const many = await slow(80);
      const h: Record<string, number> = {};
      for (const b of many) h[b] = (h[b] ?? 0) + 1;
      process.stdout.write(`80 concurrent requests of one session: ${JSON.stringify(h)}\n`);
      expect(many.every((b) => /^b[0-3]$/.test(b))).toBe(true);
      expect(h[home]).toBeGreaterThanOrEqual(16);
      expect(h[home]).toBeLessThan(80);
      expect(Object.keys(h).length).toBeGreaterThanOrEqual(2);
      // every request was released in the log phase: the session is back home, all of it
      expect(new Set(await slow(6))).toEqual(new Set([home]));
    } finally {
      busy.destroy();
    }
  }, 20000);

  test('removing a backend moves only its sessions, adding it back moves about a quarter, no reload', async () => {
    const pids = g.workerPids();
    const reloads = g.gw.router.stats.reloads;
    provider.set(snap({ ...provider.snapshot, static: [route('llm', backends.slice(0, 3)), ...provider.snapshot.static.slice(1)] }));
    await waitFor(async () => (await assign()).size > 0 && [...(await assign()).values()].every((b) => b !== 'b3'), 3000, 'b3 removed');
    const without = await assign();
    const m1 = moved(base, without);
    expect(m1.every((k) => base.get(k) === 'b3')).toBe(true);
    expect(m1.length).toBe([...base.values()].filter((b) => b === 'b3').length);
    provider.set(snap({ ...provider.snapshot, static: [route('llm', backends), ...provider.snapshot.static.slice(1)] }));
    await waitFor(async () => [...(await assign()).values()].includes('b3'), 3000, 'b3 back');
    const back = await assign();
    const m2 = moved(without, back);
    process.stdout.write(`removing b3 moved ${m1.length}/${SESSIONS} sessions; adding it back moved ${m2.length}/${SESSIONS}\n`);
    expect(m2.length / SESSIONS).toBeGreaterThan(0.15);
    expect(m2.length / SESSIONS).toBeLessThan(0.35);
    expect(moved(base, back)).toEqual([]);
    expect(g.workerPids()).toEqual(pids);
    expect(g.gw.router.stats.reloads).toBe(reloads);
  });

  test('a failing backend: its sessions fail over on the next request, nobody else moves, and they return', async () => {
    const victim = backends[1]!;
    const port = victim.port;
    await victim.close();
    const during = await assign();
    const m = moved(base, during);
    expect(m.length).toBe([...base.values()].filter((b) => b === 'b1').length);
    expect([...during.values()].every((b) => b.startsWith('b') && b !== 'b1')).toBe(true);
    // it recovers on the same port: after the cool-down its sessions come back
    backends[1] = await startEcho('b1', port);
    await waitFor(async () => moved(base, await assign()).length === 0, 15000, 'sessions back on b1', 500);
  }, 30000);

  test('callers with a token id need no affinity cookie; anonymous callers get none', async () => {
    const first = await new Promise<{ cookie: string; backend: string }>((resolve) => {
      http.get(`${g.url}/llm/`, { headers: { cookie: 'x=1' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ cookie: String(res.headers['set-cookie'] ?? ''), backend: JSON.parse(Buffer.concat(chunks).toString()).backend ?? '' }));
      });
    }).catch(() => ({ cookie: '', backend: '' }));
    // no credentials: 401, no cookie set for anonymous callers
    expect(first.cookie).toBe('');
    const viaCookie = await new Promise<string>((resolve) => {
      http.get(`${g.url}/llm/`, { headers: { cookie: `appgw_session=${g.adminToken}` } }, (res) => {
        res.resume();
        // a session-cookie identity has a token id, so no extra cookie is needed
        resolve(String(res.headers['set-cookie'] ?? ''));
      });
    });
    expect(viaCookie).toBe('');
  });

  test('the same route by subdomain; an unknown subdomain is 404, never another route', async () => {
    const sub = await req(`${g.url}/v1/models`, { headers: { host: 'llm.apps.test', 'x-gateway-token': g.adminToken, 'x-session-id': 'session-1' } });
    expect(sub.status).toBe(200);
    expect(sub.json().url).toBe('/v1/models');
    expect(sub.json().backend).toBe(base.get('session-1'));
    const unknown = await req(`${g.url}/llm/`, { headers: { host: 'other.apps.test', 'x-gateway-token': g.adminToken } });
    expect(unknown.status).toBe(404);
    expect(unknown.json().error).toBe('route_not_found');
  });

  test('a route with no backends answers 503 and starts routing when a task binds to it, without a reload', async () => {
    const r = await req(`${g.url}/empty/`, { headers: { 'x-gateway-token': g.adminToken } });
    expect(r.status).toBe(503);
    expect(r.json()).toMatchObject({ error: 'no_backend', route: 'empty' });
    const reloads = g.gw.router.stats.reloads;
    provider.set(snap({ ...provider.snapshot, bindings: [{ route: 'empty', taskId: 'cafe', endpoint: '', backend: { host: '127.0.0.1', port: backends[2]!.port }, provider: 'manual' }] }));
    await waitFor(async () => (await req(`${g.url}/empty/`, { headers: { 'x-gateway-token': g.adminToken } })).status === 200, 3000, 'bound');
    expect(g.gw.router.stats.reloads).toBe(reloads);
    const pub = provider.publications.find((p) => p.taskId === 'cafe');
    expect(pub).toMatchObject({ protocol: 'http', url: `${g.url}/empty/` });
  });

  test('an OpenAI-style SSE stream through the route arrives chunk by chunk', async () => {
    const calls: Array<{ url: string; body: string }> = [];
    const llm = http.createServer((q, s) => {
      let body = '';
      q.on('data', (c) => (body += c));
      q.on('end', () => {
        calls.push({ url: q.url ?? '', body });
        s.writeHead(200, { 'content-type': 'text/event-stream' });
        let i = 0;
        const t = setInterval(() => {
          if (i < 5) s.write(`data: ${JSON.stringify({ choices: [{ delta: { content: `tok${i}` } }] })}\n\n`);
          else {
            s.end('data: [DONE]\n\n');
            clearInterval(t);
          }
          i += 1;
        }, 150);
      });
    });
    await new Promise<void>((r) => llm.listen(0, '127.0.0.1', () => r()));
    const port = (llm.address() as AddressInfo).port;
    provider.set(snap({ ...provider.snapshot, static: [...provider.snapshot.static, route('chat', [])].map((x) => (x.name === 'chat' ? { ...x, backends: [{ host: '127.0.0.1', port }] } : x)) }));
    await waitFor(async () => (await req(`${g.url}/chat/`, { headers: { 'x-gateway-token': g.adminToken } })).status !== 404, 5000, 'chat route');
    const arrivals: number[] = [];
    const t0 = Date.now();
    const text = await new Promise<string>((resolve, reject) => {
      const r = http.request(`${g.url}/chat/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${g.adminToken}`, 'content-type': 'application/json' } }, (res) => {
        let all = '';
        res.on('data', (c: Buffer) => {
          arrivals.push(Date.now() - t0);
          all += c.toString();
        });
        res.on('end', () => resolve(all));
      });
      r.on('error', reject);
      r.end(JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] }));
    });
    llm.close();
    const call = calls.find((c) => c.url === '/v1/chat/completions');
    expect(call && JSON.parse(call.body).stream).toBe(true);
    expect(text).toContain('tok0');
    expect(text).toContain('[DONE]');
    expect(arrivals.length).toBeGreaterThanOrEqual(5);
    expect(arrivals[arrivals.length - 1]! - arrivals[0]!).toBeGreaterThan(500);
  });
});
