import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryLogger } from '../../router/log';
import type { ProviderState, Rejection, Snapshot } from '../../router/model/types';
import type { ProviderStatus } from '../../router/providers/provider';
import { DockerProvider, type DockerProviderOptions } from '../../router/providers/docker-provider';
import { waitFor } from '../support/net';

/**
 * No Docker engine runs here, so these tests talk to a fake Engine API: node:http on a unix socket
 * in a temp dir, answering `GET /containers/json` with ContainerSummary objects and honouring the
 * `filters` query (label and status) the way the engine does.
 */
class FakeEngine {
  readonly requests: Array<{ at: number; method: string; path: string; filters: unknown }> = [];
  /** ok: answer; error: HTTP 500 as the engine does on a daemon error; hang: never answer. */
  mode: 'ok' | 'error' | 'hang' = 'ok';
  private containers: Array<Record<string, unknown>> = [];
  private server: http.Server | null = null;
  private seq = 0;

  private constructor(readonly socketPath: string) {}

  static async start(dir: string): Promise<FakeEngine> {
    const e = new FakeEngine(join(dir, 'docker.sock'));
    await e.up();
    return e;
  }

  /** Runs a container; returns its 64-hex id. */
  run(name: string, labels: Record<string, string>, ip = `172.17.0.${10 + this.seq}`): string {
    const n = ++this.seq;
    const id = n.toString(16).padStart(12, '0') + 'c'.repeat(52);
    this.containers.push({
      Id: id,
      Names: [`/${name}`],
      Image: 'example/app:latest',
      ImageID: 'sha256:' + 'd'.repeat(64),
      Command: 'serve',
      Created: 1_700_000_000 + n,
      Ports: [],
      Labels: labels,
      State: 'running',
      Status: 'Up 1 second',
      HostConfig: { NetworkMode: 'bridge' },
      NetworkSettings: { Networks: { bridge: { NetworkID: 'n'.repeat(64), EndpointID: 'e'.repeat(64), Gateway: '172.17.0.1', IPAddress: ip, IPPrefixLen: 16, IPv6Gateway: '', GlobalIPv6Address: '', GlobalIPv6PrefixLen: 0, MacAddress: '02:42:ac:11:00:02' } } },
      Mounts: [],
    });
    return id;
  }

  setState(id: string, state: string): void {
    const c = this.containers.find((x) => x.Id === id)!;
    c.State = state;
  }

  remove(id: string): void {
    this.containers = this.containers.filter((x) => x.Id !== id);
  }

  listRequests(): number {
    return this.requests.filter((r) => r.path === '/containers/json').length;
  }

  /** Stops answering: the socket goes away, as when the daemon stops. */
  async down(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  async up(): Promise<void> {
    try {
      unlinkSync(this.socketPath);
    } catch {
      // not there
    }
    const server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
    this.server = server;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://docker');
    const path = url.pathname.replace(/^\/v1\.\d+/, '');
    let filters: Record<string, string[]> = {};
    try {
      filters = JSON.parse(url.searchParams.get('filters') ?? '{}') as Record<string, string[]>;
    } catch {
      // the engine answers 400 on bad filters; the test then sees no listing
    }
    this.requests.push({ at: Date.now(), method: req.method ?? '', path, filters });
    if (this.mode === 'hang') return;
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'api-version': '1.45' });
      res.end(JSON.stringify(body));
    };
    if (this.mode === 'error') return send(500, { message: 'Cannot connect to the containerd socket\n\u0000' + 'x'.repeat(1000) });
    if (req.method !== 'GET' || path !== '/containers/json') return send(404, { message: 'page not found' });
    const all = url.searchParams.get('all') === 'true' || url.searchParams.get('all') === '1';
    const listed = this.containers.filter((c) => {
      if (!all && c.State !== 'running') return false;
      if (filters.status && !filters.status.includes(String(c.State))) return false;
      const labels = c.Labels as Record<string, string>;
      for (const f of filters.label ?? []) {
        const eq = f.indexOf('=');
        if (eq < 0 ? !(f in labels) : labels[f.slice(0, eq)] !== f.slice(eq + 1)) return false;
      }
      return true;
    });
    send(200, [...listed].reverse()); // newest first, as the engine lists them
  }
}

const POLL_MS = 100;
/** Room for timers and the socket round trip on a busy machine. */
const SLACK_MS = 300;

/** A provider that records its emits. */
class Harness {
  readonly emits: Array<{ state: ProviderState; rejections: Rejection[]; at: number }> = [];
  readonly log = memoryLogger();
  readonly provider: DockerProvider;

  constructor(engine: FakeEngine, options: DockerProviderOptions = {}) {
    this.provider = new DockerProvider(engine.socketPath, this.log, { pollMs: POLL_MS, backoffMaxMs: 400, timeoutMs: 1000, ...options });
  }

  async start(): Promise<this> {
    await this.provider.start((state, rejections) => this.emits.push({ state, rejections, at: Date.now() }));
    return this;
  }

  snapshot(): Snapshot | null {
    const last = this.emits[this.emits.length - 1]?.state;
    return last?.kind === 'ready' ? last.snapshot : null;
  }

  routeIds(): string[] | null {
    const s = this.snapshot();
    return s ? [...s.ephemeral.map((r) => r.id), ...s.bindings.map((b) => `${b.route}<-${b.taskId}`), ...s.tcp.map((r) => `tcp:${r.id}`)] : null;
  }
}

let dir: string;
let engine: FakeEngine;
const harnesses: Harness[] = [];
async function harness(options: DockerProviderOptions = {}): Promise<Harness> {
  const h = new Harness(engine, options);
  harnesses.push(h);
  return h.start();
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'appgw-docker-'));
  engine = await FakeEngine.start(dir);
});
afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.provider.stop();
  await engine.down();
  rmSync(dir, { recursive: true, force: true });
});

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Waits until the provider reports itself degraded; returns that status. */
async function degraded(h: Harness, timeoutMs: number): Promise<ProviderStatus> {
  const st = await waitFor(() => {
    const s = h.provider.status();
    return s.state === 'degraded' ? s : null;
  }, timeoutMs, 'the provider to be degraded');
  return st!;
}

describe('DockerProvider against a fake Engine API', () => {
  test('the first listing asks the engine for running, labelled containers only and emits a complete snapshot', async () => {
    const vllm = engine.run('vllm', { 'appgw.enable': 'true', 'appgw.port': '8000', 'appgw.owner': 'alice' }, '172.17.0.5');
    engine.run('unlabelled', { 'com.example': 'x' });
    const stopped = engine.run('stopped', { 'appgw.enable': 'true', 'appgw.port': '8000' });
    engine.setState(stopped, 'exited');
    const h = await harness();
    expect(engine.requests[0]).toEqual({ at: expect.any(Number), method: 'GET', path: '/containers/json', filters: { label: ['appgw.enable=true'], status: ['running'] } });
    expect(h.emits).toHaveLength(1);
    const first = h.emits[0]!;
    expect(first.rejections).toEqual([]);
    expect(first.state).toEqual({
      kind: 'ready',
      at: expect.any(Number),
      degradedSince: null,
      error: null,
      snapshot: {
        ephemeral: [{ id: vllm.slice(0, 12), taskId: vllm.slice(0, 12), endpoint: '', owner: 'alice', company: null, backend: { host: '172.17.0.5', port: 8000 }, stripPrefix: true, provider: 'docker' }],
        static: [],
        bindings: [],
        tcp: [],
      },
    });
    expect(h.provider.status()).toMatchObject({ name: 'docker', state: 'ok', degradedSince: null, lastError: null, lastSuccess: expect.any(Number), rejections: [] });
  });

  test('no labelled container: an authoritative empty snapshot, not silence', async () => {
    const h = await harness();
    expect(h.emits.map((e) => e.state.kind)).toEqual(['ready']);
    expect(h.routeIds()).toEqual([]);
  });

  test('containers that appear and disappear show in the next snapshot, within one poll', async () => {
    const h = await harness();
    expect(h.routeIds()).toEqual([]);

    const t0 = Date.now();
    const a = engine.run('jupyter', { 'appgw.enable': 'true', 'appgw.id': 'lab', 'appgw.port': '8888', 'appgw.strip_prefix': 'false', 'appgw.tcp.port': '22' });
    await waitFor(() => same(h.routeIds(), ['lab', 'tcp:lab']), 2000, 'the new container');
    expect(Date.now() - t0).toBeLessThan(POLL_MS + SLACK_MS);
    expect(h.snapshot()!.ephemeral[0]).toMatchObject({ stripPrefix: false });

    const t1 = Date.now();
    const b = engine.run('llm1', { 'appgw.enable': 'true', 'appgw.port': '8000', 'appgw.route': 'llm' });
    await waitFor(() => same(h.routeIds(), ['lab', `llm<-${b.slice(0, 12)}`, 'tcp:lab']), 2000, 'the second container');
    expect(Date.now() - t1).toBeLessThan(POLL_MS + SLACK_MS);

    const t2 = Date.now();
    engine.setState(a, 'exited');
    await waitFor(() => same(h.routeIds(), [`llm<-${b.slice(0, 12)}`]), 2000, 'the stopped container to go');
    expect(Date.now() - t2).toBeLessThan(POLL_MS + SLACK_MS);

    engine.remove(b);
    await waitFor(() => same(h.routeIds(), []), 2000, 'the removed container to go');
    // an unchanged view is not emitted again
    const n = h.emits.length;
    const polls = engine.listRequests();
    await waitFor(() => engine.listRequests() >= polls + 3, 2000, 'three more polls');
    expect(h.emits).toHaveLength(n);
  });

  test('bad labels are rejected with the container named, the rest routed; status lists the rejections', async () => {
    engine.run('good', { 'appgw.enable': 'true', 'appgw.id': 'good', 'appgw.port': '8000' });
    engine.run('evil', { 'appgw.enable': 'true', 'appgw.port': '8000; }\nserver {', 'appgw.endpoints.ok.port': '8001' });
    const h = await harness();
    expect(h.routeIds()).toEqual(['good', expect.stringMatching(/^[0-9a-f]{12}-ok$/)]);
    const rejections = h.emits[0]!.rejections;
    expect(rejections).toEqual([
      { provider: 'docker', source: expect.stringMatching(/^container evil \([0-9a-f]{12}\) label appgw\.port$/), reason: expect.stringContaining('control or invisible characters') },
    ]);
    expect(h.provider.status().rejections).toEqual(rejections);
    expect(h.log.lines.some((l) => l.level === 'warn' && l.msg === 'containers have rejected labels')).toBe(true);
  });

  test('before the first successful listing nothing is emitted; then the snapshot comes', async () => {
    engine.run('vllm', { 'appgw.enable': 'true', 'appgw.id': 'vllm', 'appgw.port': '8000' });
    await engine.down();
    const h = await harness();
    expect(h.emits).toEqual([]);
    const st = h.provider.status();
    expect(st).toMatchObject({ state: 'degraded', lastSuccess: null, degradedSince: expect.any(Number) });
    expect(st.lastError).toContain(engine.socketPath);
    expect(h.log.lines.some((l) => l.msg === 'Docker engine unreachable; nothing routed from Docker yet')).toBe(true);

    await engine.up();
    await waitFor(() => same(h.routeIds(), ['vllm']), 3000, 'the first snapshot after the engine came up');
    expect(h.provider.status()).toMatchObject({ state: 'ok', degradedSince: null, lastError: null });
  });

  test('engine down: the last view is kept, status degraded with reason and since when; recovery emits the new view', async () => {
    engine.run('vllm', { 'appgw.enable': 'true', 'appgw.id': 'vllm', 'appgw.port': '8000' });
    const h = await harness();
    expect(h.routeIds()).toEqual(['vllm']);
    const emitted = h.emits.length;

    const before = Date.now();
    await engine.down();
    const st = await degraded(h, 2000);
    expect(st.degradedSince).toBeGreaterThanOrEqual(before);
    expect(st.lastError).toMatch(/^cannot list containers through the Docker engine at .*docker\.sock: .*(ENOENT|ECONNREFUSED)/);
    expect(st.lastSuccess).toBeLessThanOrEqual(before);
    expect(h.log.lines.filter((l) => l.msg === 'Docker engine unreachable; keeping the last good routes')).toHaveLength(1);

    // while down, more attempts fail; the view is neither withdrawn nor re-emitted and degradedSince holds
    engine.run('late', { 'appgw.enable': 'true', 'appgw.id': 'late', 'appgw.port': '9000' });
    await new Promise((r) => setTimeout(r, 3 * POLL_MS));
    expect(h.emits).toHaveLength(emitted);
    expect(h.routeIds()).toEqual(['vllm']);
    expect(h.provider.status().degradedSince).toBe(st.degradedSince);

    await engine.up();
    await waitFor(() => same(h.routeIds(), ['vllm', 'late']), 3000, 'the view after recovery');
    expect(h.provider.status()).toMatchObject({ state: 'ok', degradedSince: null, lastError: null });
    expect(h.log.lines.some((l) => l.msg === 'Docker engine reachable again')).toBe(true);
  });

  test('an engine error (HTTP 500) degrades the same way, with the engine message; the view is kept', async () => {
    engine.run('vllm', { 'appgw.enable': 'true', 'appgw.id': 'vllm', 'appgw.port': '8000' });
    const h = await harness();
    engine.mode = 'error';
    const st = await degraded(h, 2000);
    expect(st.lastError).toContain('Cannot connect to the containerd socket');
    expect(st.lastError).not.toMatch(/[\u0000-\u001f]/);
    expect(st.lastError!.length).toBeLessThan(500);
    expect(h.routeIds()).toEqual(['vllm']);
    engine.mode = 'ok';
    await waitFor(() => h.provider.status().state === 'ok', 3000, 'recovery');
    expect(h.routeIds()).toEqual(['vllm']);
  });

  test('failed listings back off exponentially up to the cap, and the rhythm returns after recovery', async () => {
    const h = await harness({ random: () => 1 });
    engine.mode = 'error';
    const from = engine.requests.length;
    await waitFor(() => engine.requests.length >= from + 6, 5000, 'six failed attempts');
    const times = engine.requests.slice(from).map((r) => r.at);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    // 100, 200, 400, 400, 400 ms (pollMs doubling, capped at backoffMaxMs), give or take the timers
    expect(gaps[0]!).toBeGreaterThanOrEqual(90);
    expect(gaps[1]!).toBeGreaterThanOrEqual(190);
    expect(gaps[2]!).toBeGreaterThanOrEqual(390);
    expect(gaps[3]!).toBeGreaterThanOrEqual(390);
    expect(Math.max(...gaps)).toBeLessThan(400 + SLACK_MS);

    engine.mode = 'ok';
    await waitFor(() => h.provider.status().state === 'ok', 3000, 'recovery');
    const back = engine.requests.length;
    await waitFor(() => engine.requests.length >= back + 3, 2000, 'polls at the usual rhythm');
    const t = engine.requests.slice(back).map((r) => r.at);
    expect(t[2]! - t[0]!).toBeLessThan(2 * POLL_MS + SLACK_MS);
  });

  test('an engine that does not answer times out into degraded; the view is kept', async () => {
    engine.run('vllm', { 'appgw.enable': 'true', 'appgw.id': 'vllm', 'appgw.port': '8000' });
    const h = await harness({ timeoutMs: 200 });
    engine.mode = 'hang';
    const st = await degraded(h, 3000);
    expect(st.lastError).toMatch(/: no answer within 200 ms$/);
    expect(h.routeIds()).toEqual(['vllm']);

  });

  test('stop() cancels a listing in flight instead of waiting for the engine', async () => {
    engine.mode = 'hang';
    const h = new Harness(engine, { timeoutMs: 60_000 });
    harnesses.push(h);
    const started = h.start();
    await waitFor(() => engine.listRequests() > 0, 2000, 'a hanging request');
    const t = Date.now();
    await h.provider.stop();
    await started;
    expect(Date.now() - t).toBeLessThan(1000);
    engine.mode = 'ok';
    await new Promise((r) => setTimeout(r, 3 * POLL_MS));
    expect(h.emits).toEqual([]);
    expect(engine.listRequests()).toBe(1);
  });

  test('nothing is emitted after stop()', async () => {
    const h = await harness();
    await h.provider.stop();
    const n = h.emits.length;
    const polls = engine.listRequests();
    engine.run('vllm', { 'appgw.enable': 'true', 'appgw.port': '8000' });
    await new Promise((r) => setTimeout(r, 3 * POLL_MS));
    expect(h.emits).toHaveLength(n);
    expect(engine.listRequests()).toBe(polls);
  });
});
