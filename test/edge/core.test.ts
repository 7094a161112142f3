import WebSocket from 'ws';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EphemeralRoute, Snapshot, StaticRoute } from '../../router/model/types';
import type { ProxyControl } from '../../router/proxy/control';
import { startEcho, type EchoBackend } from '../support/echo-backend';
import { startTestGateway, type TestGateway } from '../support/gateway-harness';
import { req } from '../support/http';
import { ManualProvider } from '../support/manual-provider';
import { waitFor } from '../support/net';

const TASK = '0123456789abcdef0123456789abcdef';

function task(id: string, port: number, extra: Partial<EphemeralRoute> = {}): EphemeralRoute {
  return { id, taskId: id.split('-')[0]!, endpoint: id.split('-')[1] ?? '', owner: 'alice', company: null, backend: { host: '127.0.0.1', port }, stripPrefix: true, provider: 'manual', ...extra };
}

function route(name: string, ports: number[], extra: Partial<StaticRoute> = {}): StaticRoute {
  return { name, path: `/${name}/`, subdomain: null, backends: ports.map((port) => ({ host: '127.0.0.1', port })), allowedGroups: [], stripPrefix: true, enabled: true, provider: 'manual', ...extra };
}

function snap(p: Partial<Snapshot>): Snapshot {
  return { ephemeral: [], static: [], bindings: [], tcp: [], ...p };
}

describe('edge core (real nginx, echo backends)', () => {
  let g: TestGateway;
  let a: EchoBackend;
  let b: EchoBackend;
  const provider = new ManualProvider();
  let failNextTest = false;

  beforeAll(async () => {
    a = await startEcho('a');
    b = await startEcho('b');
    provider.snapshot = snap({
      ephemeral: [task(TASK, a.port), task(`${TASK}-api`, b.port), task(`${TASK}-lab`, a.port, { stripPrefix: false })],
      static: [route('llm', [b.port]), route('empty', []), route('team', [a.port]), route('team-deep', [b.port], { path: '/team/deep/er/' }), route('upper', [a.port], { path: '/Upper/' })],
    });
    const wrapControl = (c: ProxyControl): ProxyControl => ({
      test: async (conf) => {
        if (failNextTest) {
          failNextTest = false;
          return { ok: false, output: 'forced failure by the test seam' };
        }
        return c.test(conf);
      },
      reload: () => c.reload(),
      running: () => c.running(),
    });
    g = await startTestGateway({ providers: [provider], wrapControl });
    await waitFor(async () => (await req(`${g.url}/llm/`, { headers: { 'x-gateway-token': g.adminToken } })).status === 200, 5000, 'static route live');
  });

  afterAll(async () => {
    await g?.stop();
    await a?.close();
    await b?.close();
  });

  afterEach(() => {
    expect(g.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
  });

  const auth = () => ({ 'x-gateway-token': g.adminToken });

  test('a task route reaches its backend with the prefix stripped and forwarded headers; the token never arrives', async () => {
    const r = await req(`${g.url}/service/${TASK}/some/path?x=1&y=%2F`, { headers: { ...auth(), 'x-forwarded-user': 'mallory' } });
    expect(r.status).toBe(200);
    const body = r.json();
    expect(body.backend).toBe('a');
    expect(body.url).toBe('/some/path?x=1&y=%2F');
    expect(body.headers['x-forwarded-prefix']).toBe(`/service/${TASK}`);
    expect(body.headers['x-forwarded-proto']).toBe('http');
    expect(body.headers['x-forwarded-host']).toBe('127.0.0.1');
    expect(body.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(body.headers['x-forwarded-user']).toBe('admin');
    expect(body.headers['x-gateway-token']).toBeUndefined();
    expect(JSON.stringify(body.headers)).not.toContain(g.adminToken);
  });

  test('a named endpoint and an endpoint that keeps its prefix', async () => {
    const api = await req(`${g.url}/service/${TASK}-api/v1/models`, { headers: auth() });
    expect(api.json()).toMatchObject({ backend: 'b', url: '/v1/models' });
    const lab = await req(`${g.url}/service/${TASK}-lab/lab/tree`, { headers: auth() });
    expect(lab.json()).toMatchObject({ backend: 'a', url: `/service/${TASK}-lab/lab/tree` });
  });

  test('a static path route strips its prefix; the bare prefix redirects to the slash form', async () => {
    const r = await req(`${g.url}/llm/v1/chat/completions`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: '{"model":"m"}' });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ backend: 'b', method: 'POST', url: '/v1/chat/completions', body: '{"model":"m"}' });
    expect(r.json().headers['x-forwarded-prefix']).toBe('/llm');
    const bare = await req(`${g.url}/service/${TASK}?q=1`, { headers: auth() });
    expect(bare.status).toBe(301);
    expect(bare.headers.location).toMatch(new RegExp(`/service/${TASK}/\\?q=1$`));
  });

  test('static path routes: the longest path wins, paths are case-sensitive, a bare path redirects, unknown paths are 404 before credentials', async () => {
    const deep = await req(`${g.url}/team/deep/er/x?y=1`, { headers: auth() });
    expect(deep.json()).toMatchObject({ backend: 'b', url: '/x?y=1' });
    expect(deep.json().headers['x-forwarded-prefix']).toBe('/team/deep/er');
    const shallow = await req(`${g.url}/team/deep/x`, { headers: auth() });
    expect(shallow.json()).toMatchObject({ backend: 'a', url: '/deep/x' });
    const five = await req(`${g.url}/team/deep/er/a/b/c/d`, { headers: auth() });
    expect(five.json()).toMatchObject({ backend: 'b', url: '/a/b/c/d' });
    const upper = await req(`${g.url}/Upper/v1`, { headers: auth() });
    expect(upper.json()).toMatchObject({ backend: 'a', url: '/v1' });
    const lower = await req(`${g.url}/upper/v1`, { headers: auth() });
    expect(lower.status).toBe(404);
    expect(lower.json().error).toBe('route_not_found');
    for (const [path, to] of [['/team/deep/er?q=1', '/team/deep/er/?q=1'], ['/llm', '/llm/']]) {
      const bare = await req(`${g.url}${path}`, { headers: auth() });
      expect(bare.status).toBe(301);
      expect(bare.headers.location).toBe(to);
    }
    const anon = await req(`${g.url}/nothing/here`);
    expect(anon.status).toBe(404);
    expect(anon.json().error).toBe('route_not_found');
    expect((await req(`${g.url}/team/x`)).status).toBe(401);
    // the same answers again (memoised per worker) and from every worker
    for (let i = 0; i < 20; i++) {
      expect((await req(`${g.url}/team/deep/er/x`, { headers: auth() })).json().backend).toBe('b');
      expect((await req(`${g.url}/upper/v1`, { headers: auth() })).status).toBe(404);
    }
  });

  test('no credentials: 401 JSON for programs, a page for browsers; a wrong token: 401', async () => {
    const r = await req(`${g.url}/service/${TASK}/`);
    expect(r.status).toBe(401);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.json()).toMatchObject({ error: 'credentials_required', status: 401 });
    const browser = await req(`${g.url}/service/${TASK}/x?y=1`, { headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(browser.status).toBe(302);
    expect(browser.headers.location).toBe(`/_gateway/login?next=${encodeURIComponent(`/service/${TASK}/x?y=1`)}`);
    const page = await req(`${g.url}${browser.headers.location}`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.body).toContain('<h1>Sign in</h1>');
    const post = await req(`${g.url}/service/${TASK}/`, { method: 'POST', headers: { accept: 'text/html' } });
    expect(post.status).toBe(401);
    expect(post.body).toContain('<h1>Sign-in required</h1>');
    const wrong = await req(`${g.url}/service/${TASK}/`, { headers: { 'x-gateway-token': g.adminToken.slice(0, -2) + 'xx' } });
    expect(wrong.status).toBe(401);
    expect(wrong.json().error).toBe('bad_token');
    expect(a.seen.some((s) => s.headers['x-gateway-token'])).toBe(false);
  });

  test('unknown routes are 404 JSON; a route with no backend is 503 JSON with Retry-After', async () => {
    const r = await req(`${g.url}/service/ffffffffffffffffffffffffffffffff/`, { headers: auth() });
    expect(r.status).toBe(404);
    expect(r.json().error).toBe('route_not_found');
    const other = await req(`${g.url}/nothing/here`, { headers: auth() });
    expect(other.status).toBe(404);
    const empty = await req(`${g.url}/empty/`, { headers: auth() });
    expect(empty.status).toBe(503);
    expect(empty.headers['retry-after']).toBe('5');
    expect(empty.json()).toMatchObject({ error: 'no_backend', route: 'empty' });
  });

  test('health answers without credentials with the live generation', async () => {
    const r = await req(`${g.url}/_gateway/health`);
    expect(r.status).toBe(200);
    expect(r.json().generation).toBe(g.gw.router.status().generation);
    expect(r.json().data_version).toBeGreaterThan(0);
  });

  test('SSE chunks arrive as they are sent, not all at the end', async () => {
    const arrivals: number[] = [];
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      http.get(`${g.url}/service/${TASK}/sse?n=5&gap=200`, { headers: auth() }, (res) => {
        expect(res.statusCode).toBe(200);
        res.on('data', () => arrivals.push(Date.now() - started));
        res.on('end', () => resolve());
        res.on('error', reject);
      });
    });
    expect(arrivals.length).toBeGreaterThanOrEqual(5);
    // the first chunk comes ~200 ms in, the last ~1000 ms: spread, not bunched at the end
    expect(arrivals[0]!).toBeLessThan(600);
    expect(arrivals[arrivals.length - 1]! - arrivals[0]!).toBeGreaterThan(500);
  });

  test('tasks appear and go within a second with no reload (worker pids unchanged)', async () => {
    const pids = g.workerPids();
    const reloads = g.gw.router.stats.reloads;
    const id = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1';
    provider.set(snap({ ...provider.snapshot, ephemeral: [...provider.snapshot.ephemeral, task(id, b.port)] }));
    const t0 = Date.now();
    await waitFor(async () => (await req(`${g.url}/service/${id}/`, { headers: auth() })).status === 200, 1000, 'new task reachable');
    const appeared = Date.now() - t0;
    provider.set(snap({ ...provider.snapshot, ephemeral: provider.snapshot.ephemeral.filter((r) => r.id !== id) }));
    await waitFor(async () => (await req(`${g.url}/service/${id}/`, { headers: auth() })).status === 404, 1000, 'task gone');
    expect(appeared).toBeLessThan(1000);
    expect(g.workerPids()).toEqual(pids);
    expect(g.gw.router.stats.reloads).toBe(reloads);
  });

  test('a WebSocket echoes through a route and stays open across a reload caused by a static-route change', async () => {
    const ws = new WebSocket(`${g.url.replace('http', 'ws')}/service/${TASK}/ws`, { headers: auth() });
    const messages: string[] = [];
    ws.on('message', (d) => messages.push(d.toString()));
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    ws.send('one');
    await waitFor(() => messages.includes('a:one'), 2000, 'first echo');
    const pids = g.workerPids();
    const reloads = g.gw.router.stats.reloads;
    provider.set(snap({ ...provider.snapshot, static: [...provider.snapshot.static, route('ws-reload', [a.port])] }));
    await waitFor(() => g.gw.router.stats.reloads > reloads, 5000, 'reload');
    await waitFor(() => g.workerPids().some((p) => !pids.includes(p)), 5000, 'new workers');
    ws.send('two');
    await waitFor(() => messages.includes('a:two'), 2000, 'echo after reload');
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.close();
    expect(a.seen.filter((s) => s.method === 'WS').every((s) => !s.headers['x-gateway-token'])).toBe(true);
  });

  test('a burst of static-route changes causes exactly one reload', async () => {
    const before = g.gw.router.stats.reloads;
    for (let i = 0; i < 5; i++) {
      provider.set(snap({ ...provider.snapshot, static: [...provider.snapshot.static.filter((r) => !r.name.startsWith('burst')), route(`burst${i}`, [a.port])] }));
      // 5 ms apart: well inside the harness's 100 ms settle time even on a loaded machine
      await new Promise((r) => setTimeout(r, 5));
    }
    await waitFor(async () => (await req(`${g.url}/burst4/`, { headers: auth() })).status === 200, 5000, 'burst route live');
    await new Promise((r) => setTimeout(r, 700));
    expect(g.gw.router.stats.reloads - before).toBe(1);
    expect((await req(`${g.url}/burst0/`, { headers: auth() })).status).toBe(404);
  });

  test('a generation failing nginx -t is rolled back: the previous config serves, the failure is in status', async () => {
    const live = g.gw.router.status().generation;
    failNextTest = true;
    provider.set(snap({ ...provider.snapshot, static: [...provider.snapshot.static, route('doomed', [a.port])] }));
    await waitFor(() => g.gw.router.status().lastFailure !== null, 5000, 'failed apply');
    const st = g.gw.router.status();
    expect(st.lastFailure).toMatchObject({ ok: false, stage: 'test' });
    expect(st.generation).toBe(live);
    expect((await req(`${g.url}/_gateway/health`)).json().generation).toBe(live);
    expect((await req(`${g.url}/llm/`, { headers: auth() })).status).toBe(200);
    // status.json is written off the reconcile path: it shows the failure once its write lands
    await waitFor(() => JSON.parse(readFileSync(join(g.dir, 'status.json'), 'utf8')).lastFailure?.stage === 'test', 3000, 'the failure in status.json');
    expect(g.log.lines.some((l) => l.level === 'error' && /nginx -t/.test(l.msg))).toBe(true);
    // the next change renders again and applies
    provider.set(snap({ ...provider.snapshot, static: [...provider.snapshot.static, route('revived', [a.port])] }));
    await waitFor(async () => (await req(`${g.url}/revived/`, { headers: auth() })).status === 200, 5000, 'next change applied');
  });
});
