import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { FALL, HealthChecker, httpProbe, type Probe, type ProbeResult, type ProbeTarget } from '../../router/health/health-checker';
import { memoryLogger } from '../../router/log';
import { buildPushData } from '../../router/model/push-payload';
import type { Backend, DesiredState, StaticRoute } from '../../router/model/types';
import { checkHealthCheck, checkHealthInterval, checkHealthPath, formatInterval } from '../../router/model/validate';
import { freePort, waitFor } from '../support/net';

const reasonOf = (c: { ok: boolean; reason?: string }) => (c.ok ? null : c.reason!);

describe('health check validation', () => {
  // the path only ever reaches the router's HTTP client as the request target (the host and
  // port are given separately), never nginx config; `//x/y` is harmless there
  test.each(['/health', '/', '/v1/models', '/healthz/', '/a.b~c_d-e/f', '/health?full=1', '/h?a=1&b=x.y~z_-', '/' + 'a'.repeat(199), '//x/y'])('path %s is accepted as is', (p) => {
    expect(checkHealthPath(p)).toEqual({ ok: true, value: p });
  });

  test.each([
    ['health', 'no leading slash'],
    ['', 'empty'],
    ['/health;rm -rf', 'semicolon'],
    ['/h{x}', 'braces'],
    ['/h"x', 'double quote'],
    ["/h'x", 'single quote'],
    ['/h\nx', 'newline'],
    ['/h\r\nHost: evil', 'header injection'],
    ['/h x', 'space'],
    ['/../etc/passwd', 'dot-dot segment'],
    ['/a/./b', 'dot segment'],
    ['/a/..', 'trailing dot-dot'],
    ['/h?', 'empty query'],
    ['/h?a=1?b=2', 'second question mark'],
    ['/h?a=%41', 'percent in the query'],
    ['/h%2e%2e/x', 'percent-encoding'],
    ['/h#frag', 'fragment'],
    ['http://evil/', 'absolute URL'],
    ['/\u202ehtap', 'bidi override'],
    ['/' + 'a'.repeat(200), 'too long'],
  ])('path %j (%s)', (p, why) => {
    const c = checkHealthPath(p);
    expect([why, c.ok]).toEqual([why, false]);
    const reason = reasonOf(c)!;
    expect(reason).toMatch(/^health check path /);
    expect(reason).not.toMatch(/[\n\r\u202e]/);
    expect(reason.split('\n')).toHaveLength(1);
  });

  test('a path that is not a string names the field and what is expected', () => {
    expect(reasonOf(checkHealthPath(42))).toBe('health check path must be a string such as /health, got "42"');
    expect(reasonOf(checkHealthPath('x'))).toBe(
      'health check path "x" must start with / and use only [A-Za-z0-9._~/-], optionally followed by ?query of [A-Za-z0-9._~=&-], at most 200 characters, no . or .. segments',
    );
  });

  test.each<[unknown, number]>([
    ['10s', 10_000],
    ['1s', 1000],
    ['1000ms', 1000],
    ['1500ms', 1500],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['2.5s', 2500],
    [' 5s ', 5000],
    [30, 30_000],
    ['30', 30_000],
  ])('interval %j is %d ms', (v, ms) => {
    expect(checkHealthInterval(v)).toEqual({ ok: true, value: ms });
  });

  test.each<unknown>(['500ms', '999ms', '0s', '0', '61m', '2h', '1d', '-1s', 'ten seconds', '10 s', '10sec', '', '1e3', 0.5, -5, NaN, Infinity, null, true, {}, [], '9'.repeat(30)])('interval %j is refused', (v) => {
    const reason = reasonOf(checkHealthInterval(v))!;
    expect(reason).toMatch(/^health check interval .* must be a duration from 1s to 1h such as 10s, 1500ms or 1m$/);
  });

  test('a health check: path required, interval defaults to 10 s, unknown keys refused', () => {
    expect(checkHealthCheck(undefined)).toEqual({ ok: true, value: null });
    expect(checkHealthCheck(null)).toEqual({ ok: true, value: null });
    expect(checkHealthCheck({ path: '/health' })).toEqual({ ok: true, value: { path: '/health', intervalMs: 10_000 } });
    expect(checkHealthCheck({ path: '/health', interval: null })).toEqual({ ok: true, value: { path: '/health', intervalMs: 10_000 } });
    expect(checkHealthCheck({ path: '/ready', interval: '2s' })).toEqual({ ok: true, value: { path: '/ready', intervalMs: 2000 } });
    expect(reasonOf(checkHealthCheck({ interval: '2s' }))).toBe('health check needs a path such as /health');
    expect(reasonOf(checkHealthCheck({ path: '/h', timeout: '1s' }))).toBe('health check has unknown key "timeout"; expected path and interval');
    expect(reasonOf(checkHealthCheck('/health'))).toBe('health check must be a mapping such as { path: /health, interval: 10s }, got "/health"');
    expect(reasonOf(checkHealthCheck([]))).toMatch(/^health check must be a mapping/);
    expect(reasonOf(checkHealthCheck({ path: '/h', interval: '100ms' }))).toMatch(/^health check interval "100ms" must be/);
  });

  test.each<[number, string]>([
    [1000, '1s'],
    [10_000, '10s'],
    [1500, '1500ms'],
    [60_000, '1m'],
    [90_000, '90s'],
    [3_600_000, '1h'],
  ])('formatInterval(%d) is %s and parses back', (ms, text) => {
    expect(formatInterval(ms)).toBe(text);
    expect(checkHealthInterval(text)).toEqual({ ok: true, value: ms });
  });
});

describe('httpProbe (real sockets)', () => {
  const servers: Array<http.Server | net.Server> = [];
  afterAll(() => servers.forEach((s) => s.close()));

  async function serve(handler: http.RequestListener): Promise<{ port: number; seen: Array<{ url: string; host: string; method: string }> }> {
    const seen: Array<{ url: string; host: string; method: string }> = [];
    const s = http.createServer((q, r) => {
      seen.push({ url: q.url ?? '', host: String(q.headers.host), method: q.method ?? '' });
      handler(q, r);
    });
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    return { port: (s.address() as AddressInfo).port, seen };
  }
  const target = (port: number, extra: Partial<ProbeTarget> = {}): ProbeTarget => ({ ip: '127.0.0.1', host: 'gpu-1.internal', port, path: '/health?deep=1', timeoutMs: 1000, ...extra });

  test('2xx and 3xx pass; the path and query go as given, with the configured host in Host', async () => {
    let status = 200;
    const s = await serve((_q, r) => {
      r.writeHead(status, status === 302 ? { location: '/elsewhere' } : {});
      r.end('ok');
    });
    expect(await httpProbe(target(s.port))).toEqual({ ok: true, status: 200 });
    status = 204;
    expect(await httpProbe(target(s.port))).toEqual({ ok: true, status: 204 });
    status = 302;
    expect(await httpProbe(target(s.port))).toEqual({ ok: true, status: 302 });
    expect(s.seen[0]).toEqual({ url: '/health?deep=1', host: `gpu-1.internal:${s.port}`, method: 'GET' });
    expect(s.seen).toHaveLength(3);
  });

  test.each([404, 429, 500, 503])('status %d fails with "status %d"', async (code) => {
    const s = await serve((_q, r) => {
      r.writeHead(code);
      r.end();
    });
    expect(await httpProbe(target(s.port))).toEqual({ ok: false, reason: `status ${code}` });
  });

  test('a refused connection, a timeout, a reset and a non-HTTP answer fail with a short reason', async () => {
    expect(await httpProbe(target(await freePort()))).toEqual({ ok: false, reason: 'connection refused' });

    const silent = net.createServer(() => undefined);
    servers.push(silent);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const t0 = Date.now();
    expect(await httpProbe(target((silent.address() as AddressInfo).port, { timeoutMs: 300 }))).toEqual({ ok: false, reason: 'timeout after 300 ms' });
    expect(Date.now() - t0).toBeLessThan(1500);

    const slow = await serve((_q, r) => setTimeout(() => r.end('late'), 2000).unref());
    expect(await httpProbe(target(slow.port, { timeoutMs: 200 }))).toEqual({ ok: false, reason: 'timeout after 200 ms' });

    const rst = net.createServer((sock) => sock.once('data', () => sock.resetAndDestroy()));
    servers.push(rst);
    await new Promise<void>((r) => rst.listen(0, '127.0.0.1', () => r()));
    expect(await httpProbe(target((rst.address() as AddressInfo).port))).toEqual({ ok: false, reason: 'connection reset' });

    const junk = net.createServer((sock) => sock.once('data', () => sock.end('SSH-2.0-OpenSSH_9.2\r\n')));
    servers.push(junk);
    await new Promise<void>((r) => junk.listen(0, '127.0.0.1', () => r()));
    expect(await httpProbe(target((junk.address() as AddressInfo).port))).toEqual({ ok: false, reason: 'not an HTTP answer' });
  });

  test('an abort ends the probe at once', async () => {
    const silent = net.createServer(() => undefined);
    servers.push(silent);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const ctrl = new AbortController();
    const p = httpProbe(target((silent.address() as AddressInfo).port, { timeoutMs: 5000 }), ctrl.signal);
    setTimeout(() => ctrl.abort(), 50);
    expect(await p).toEqual({ ok: false, reason: 'aborted' });
  });
});

describe('HealthChecker', () => {
  const b = (port: number): Backend => ({ host: '10.0.0.1', port });
  const route = (name: string, ports: number[], extra: Partial<StaticRoute> = {}): StaticRoute => ({
    name, path: `/${name}/`, subdomain: null, backends: ports.map(b), allowedGroups: [], stripPrefix: true, enabled: true, healthCheck: { path: '/health', intervalMs: 20 }, provider: 'test', ...extra,
  });
  const resolve = (x: Backend) => x.host;

  /** A probe whose answer per port the test sets; records every call. */
  function fakeProbe() {
    const answers = new Map<number, ProbeResult>();
    const calls: ProbeTarget[] = [];
    const probe: Probe = async (t) => {
      calls.push(t);
      return answers.get(t.port) ?? { ok: true, status: 200 };
    };
    return { probe, answers, calls };
  }

  function setup(probe: Probe) {
    const log = memoryLogger();
    let changes = 0;
    const hc = new HealthChecker({ log, probe, onChange: () => void (changes += 1) });
    return { hc, log, changes: () => changes };
  }

  test('healthy before the first probe; 1 failure keeps it, 2 in a row take it out (one change, one log line); 1 success puts it back', async () => {
    const f = fakeProbe();
    const { hc, log, changes } = setup(f.probe);
    f.answers.set(2, { ok: false, reason: 'status 503' });
    hc.sync([route('llm', [1, 2])], resolve);
    expect(hc.healthy('llm', b(2))).toBe(true);
    expect(hc.view('llm')!.map((x) => x.state)).toEqual(['unknown', 'unknown']);
    await waitFor(() => f.calls.filter((c) => c.port === 2).length === 1, 2000, 'first probe');
    await waitFor(() => hc.view('llm')!.find((x) => x.backend === '10.0.0.1:2')!.failures >= 1, 2000, 'first failure recorded');
    expect(FALL).toBe(2);
    await waitFor(() => !hc.healthy('llm', b(2)), 2000, 'taken out');
    expect(hc.healthy('llm', b(1))).toBe(true);
    expect(changes()).toBe(1);
    const v = hc.view('llm')!;
    expect(v.find((x) => x.backend === '10.0.0.1:2')).toMatchObject({ state: 'down', reason: 'status 503' });
    expect(v.find((x) => x.backend === '10.0.0.1:1')).toMatchObject({ state: 'up', reason: null, failures: 0 });
    // more failures: no more changes and no more log lines
    const n = f.calls.length;
    await waitFor(() => f.calls.length > n + 4, 2000, 'more probes');
    expect(changes()).toBe(1);
    const warns = log.lines.filter((l) => l.level === 'warn');
    expect(warns).toEqual([{ level: 'warn', msg: 'backend failed its health check; taken out of the route', fields: { component: 'health', route: 'llm', backend: '10.0.0.1:2', reason: 'status 503', failures: 2 } }]);
    // the path (and any query) is never logged
    expect(JSON.stringify(log.lines)).not.toContain('/health');

    f.answers.delete(2);
    await waitFor(() => hc.healthy('llm', b(2)), 2000, 'back');
    expect(changes()).toBe(2);
    expect(log.lines.filter((l) => l.level === 'info')).toEqual([{ level: 'info', msg: 'backend passed its health check; back in the route', fields: { component: 'health', route: 'llm', backend: '10.0.0.1:2', status: 200 } }]);
    hc.stop();
  });

  test('probes use the interval, a timeout of min(interval, 5 s), the resolved IP and the route path', async () => {
    const f = fakeProbe();
    const { hc } = setup(f.probe);
    hc.sync([route('a', [1], { healthCheck: { path: '/ready?x=1', intervalMs: 1000 } }), route('b', [1], { healthCheck: { path: '/b', intervalMs: 20 } })], () => '192.0.2.7');
    await waitFor(() => f.calls.filter((c) => c.path === '/b').length >= 5, 2000, 'b probes');
    const a = f.calls.filter((c) => c.path === '/ready?x=1');
    // the same backend in two routes is checked per route; `a` only once so far (1 s interval)
    expect(a).toEqual([{ ip: '192.0.2.7', host: '10.0.0.1', port: 1, path: '/ready?x=1', timeoutMs: 1000 }]);
    expect(f.calls.find((c) => c.path === '/b')!.timeoutMs).toBe(20);
    hc.sync([route('a', [1], { healthCheck: { path: '/ready?x=1', intervalMs: 60_000 } })], () => '192.0.2.7');
    expect(hc.view('b')).toBeNull();
    hc.stop();
    const f2 = fakeProbe();
    const { hc: hc2 } = setup(f2.probe);
    hc2.sync([route('slow', [1], { healthCheck: { path: '/h', intervalMs: 3_600_000 } })], resolve);
    await waitFor(() => f2.calls.length === 1, 2000, 'first probe');
    expect(f2.calls[0]!.timeoutMs).toBe(5000);
    hc2.stop();
  });

  test('sync follows the routes: removed backends, disabled routes and routes without a check stop being probed; a new path starts over', async () => {
    const f = fakeProbe();
    const { hc } = setup(f.probe);
    f.answers.set(2, { ok: false, reason: 'status 500' });
    hc.sync([route('llm', [1, 2]), route('off', [3], { enabled: false }), route('none', [4], { healthCheck: null })], resolve);
    await waitFor(() => !hc.healthy('llm', b(2)), 2000, 'down');
    expect(f.calls.some((c) => c.port === 3 || c.port === 4)).toBe(false);
    expect(hc.view('off')).toBeNull();
    expect(hc.view('none')).toBeNull();
    expect(hc.healthy('none', b(4))).toBe(true);
    // a new path: the old verdict no longer applies
    hc.sync([route('llm', [1, 2], { healthCheck: { path: '/other', intervalMs: 20 } })], resolve);
    expect(hc.healthy('llm', b(2))).toBe(true);
    expect(hc.view('llm')!.map((x) => x.state)).toEqual(['unknown', 'unknown']);
    // removing a backend drops its check
    hc.sync([route('llm', [1], { healthCheck: { path: '/other', intervalMs: 20 } })], resolve);
    expect(hc.view('llm')!.map((x) => x.backend)).toEqual(['10.0.0.1:1']);
    await new Promise((r) => setTimeout(r, 60));
    const n = f.calls.filter((c) => c.port === 2).length;
    await new Promise((r) => setTimeout(r, 100));
    expect(f.calls.filter((c) => c.port === 2).length).toBe(n);
    // an unresolved backend is not probed (it is not pushed either)
    hc.sync([route('llm', [9])], () => null);
    await new Promise((r) => setTimeout(r, 100));
    expect(f.calls.some((c) => c.port === 9)).toBe(false);
    expect(hc.healthy('llm', b(9))).toBe(true);
    hc.stop();
  });

  test('stop clears every timer and aborts probes in flight; nothing runs or calls back after it', async () => {
    let aborted = 0;
    let started = 0;
    const probe: Probe = (_t, signal) =>
      new Promise((res) => {
        started += 1;
        signal.addEventListener('abort', () => {
          aborted += 1;
          res({ ok: false, reason: 'aborted' });
        });
      });
    const { hc, changes, log } = setup(probe);
    hc.sync([route('llm', [1, 2, 3])], resolve);
    await waitFor(() => started === 3, 2000, 'probes in flight');
    hc.stop();
    expect(aborted).toBe(3);
    hc.sync([route('llm', [4])], resolve);
    await new Promise((r) => setTimeout(r, 100));
    expect(started).toBe(3);
    expect(changes()).toBe(0);
    expect(log.lines.filter((l) => l.level !== 'debug')).toEqual([]);
  });

  test('a probe that throws or rejects counts as a failure; an onChange that throws is logged; nothing reaches the event loop', async () => {
    const errors: unknown[] = [];
    const onError = (e: unknown) => errors.push(e);
    process.on('unhandledRejection', onError);
    try {
      let mode = 0;
      const probe: Probe = (t) => {
        if (t.port === 1) throw new Error('boom');
        mode += 1;
        return Promise.reject(new Error(`nope ${mode}`));
      };
      const log = memoryLogger();
      const hc = new HealthChecker({
        log,
        probe,
        onChange: () => {
          throw new Error('reconcile exploded');
        },
      });
      hc.sync([route('llm', [1, 2])], resolve);
      await waitFor(() => !hc.healthy('llm', b(1)) && !hc.healthy('llm', b(2)), 2000, 'both down');
      expect(hc.view('llm')!.map((x) => x.reason)).toEqual(['probe failed: boom', expect.stringMatching(/^probe failed: nope \d+$/)]);
      await waitFor(() => log.lines.filter((l) => l.msg === 'reacting to a health change failed').length === 2, 2000, 'onChange errors logged');
      hc.stop();
      await new Promise((r) => setTimeout(r, 50));
      expect(errors).toEqual([]);
    } finally {
      process.off('unhandledRejection', onError);
    }
  });

  test('against a real backend: a timeout reason, then back', async () => {
    let hang = true;
    const s = http.createServer((_q, r) => {
      if (!hang) r.end('ok');
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    const port = (s.address() as AddressInfo).port;
    const log = memoryLogger();
    let changes = 0;
    const hc = new HealthChecker({ log, onChange: () => void (changes += 1) });
    const r: StaticRoute = { ...route('llm', []), backends: [{ host: '127.0.0.1', port }], healthCheck: { path: '/health', intervalMs: 100 } };
    try {
      hc.sync([r], (x) => x.host);
      await waitFor(() => !hc.healthy('llm', r.backends[0]!), 3000, 'down');
      expect(hc.view('llm')![0]).toMatchObject({ state: 'down', reason: 'timeout after 100 ms' });
      hang = false;
      await waitFor(() => hc.healthy('llm', r.backends[0]!), 3000, 'up');
      expect(changes).toBe(2);
    } finally {
      hc.stop();
      s.closeAllConnections();
      s.close();
    }
  });
});

describe('buildPushData with health', () => {
  const desired: DesiredState = {
    ephemeral: [],
    static: [
      { name: 'llm', path: '/llm/', subdomain: null, backends: [{ host: '10.0.0.1', port: 1 }, { host: '10.0.0.2', port: 1 }], allowedGroups: [], stripPrefix: true, enabled: true, healthCheck: { path: '/h', intervalMs: 1000 }, provider: 't' },
      { name: 'dead', path: '/dead/', subdomain: null, backends: [{ host: '10.0.0.3', port: 1 }], allowedGroups: [], stripPrefix: true, enabled: true, healthCheck: { path: '/h', intervalMs: 1000 }, provider: 't' },
    ],
    tcp: [],
    rejections: [],
  };
  const identity = { tokens: {}, users: {}, shares: {} };
  const settings = { clearml_cookie: 'c', secure: false, read_timeout_s: 60 };

  test('unhealthy backends are left out; a route with none left is pushed with an empty list', () => {
    const data = buildPushData(desired, (b) => b.host, identity, settings, (route, b) => !(route === 'llm' && b.host === '10.0.0.2') && route !== 'dead');
    expect(data.routes['s:llm']!.b).toEqual([['10.0.0.1', 1]]);
    expect(data.routes['s:dead']!.b).toEqual([]);
  });

  test('without the filter every backend is pushed (as before)', () => {
    const data = buildPushData(desired, (b) => b.host, identity, settings);
    expect(data.routes['s:llm']!.b).toHaveLength(2);
    expect(data.routes['s:dead']!.b).toHaveLength(1);
  });
});
