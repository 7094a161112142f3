import { memoryLogger } from '../../router/log';
import type { ProviderState, Rejection, Snapshot } from '../../router/model/types';
import { ClearmlClient } from '../../router/providers/clearml/api-client';
import { ClearmlProvider, type ClearmlProviderConfig, type ClearmlProviderOptions, queuePattern } from '../../router/providers/clearml/clearml-provider';
import type { Publication } from '../../router/providers/provider';
import { FakeClearml, type FakeTask } from '../fakes/fake-clearml';
import { waitFor } from '../support/net';

const ROUTER_URL = 'https://gw.example.com';
const POLL_MS = 100;

/** SDK 2.1 runtime after request_external_endpoint(8000), (8001, "api"), (22, "tcp") — clearml-protocol.md §1.4. */
const SDK21 = {
  _SERVICE: 'EXTERNAL_TCP',
  _ADDRESS: '10.0.3.17',
  _PORT: 8000,
  _SERVICE__api: 'EXTERNAL',
  _ADDRESS__api: '10.0.3.17',
  _PORT__api: 8001,
  external_address: '10.0.3.17',
  external_tcp_port: 22,
  upstream_task_port: 22,
  _exec_agent_hostname: 'worker-1',
};

/** What `_wait_for_external_endpoint` of SDK 2.1 returns for a runtime (clearml-protocol.md §1.10), or null to keep waiting. */
function sdkWait(runtime: Record<string, unknown>, protocol: 'http' | 'tcp', name = ''): Record<string, unknown> | null {
  const k = (base: string) => (name ? `${base}__${name}` : base);
  const portKey = protocol === 'http' ? '_PORT' : 'external_tcp_port';
  if (!(k(portKey) in runtime)) return null;
  let endpoint: unknown = null;
  let browser: unknown = null;
  if (protocol === 'http') {
    endpoint = runtime[k('endpoint')] ?? null;
    browser = runtime[k('browser_endpoint')] ?? null;
  } else if (runtime[k('upstream_task_port')] && k('external_address') in runtime && k('external_tcp_port') in runtime) {
    endpoint = `${runtime[k('external_address')]}:${runtime[k('external_tcp_port')]}`;
  }
  if (!endpoint && !browser) return null;
  return { endpoint, browser_endpoint: browser, port: runtime[k(portKey)], protocol, name: name || null };
}

function config(fake: FakeClearml, queues: string[] = []): ClearmlProviderConfig {
  return {
    routerUrl: ROUTER_URL,
    clearml: { apiHost: fake.url, accessKey: 'admin-key', secretKey: 'admin-secret', pollIntervalMs: POLL_MS, listenQueues: queues, stripPrefix: true },
    tcp: { routerAddress: 'gw.example.com', portStart: 30000, portEnd: 30100, allowCidrs: [] },
  };
}

/** A provider with a stand-in router: records emits and, like the router after each reconcile, publishes. */
class Harness {
  readonly emits: Array<{ state: ProviderState; rejections: Rejection[] }> = [];
  readonly log = memoryLogger();
  readonly provider: ClearmlProvider;
  private readonly tcpPorts = new Map<string, number>();
  lastPublications: Publication[] = [];

  constructor(
    readonly fake: FakeClearml,
    readonly o: { queues?: string[]; autoPublish?: boolean; options?: ClearmlProviderOptions } = {},
  ) {
    this.provider = new ClearmlProvider(config(fake, o.queues), this.log, { backoffMaxMs: 400, clientOptions: { timeoutMs: 1000 }, ...o.options });
  }

  async start(): Promise<this> {
    await this.provider.start((state, rejections) => {
      this.emits.push({ state, rejections });
      if (this.o.autoPublish !== false) setImmediate(() => this.publish());
    });
    return this;
  }

  snapshot(): Snapshot | null {
    const last = this.emits[this.emits.length - 1]?.state;
    return last?.kind === 'ready' ? last.snapshot : null;
  }

  /** The publications the router would make for the last snapshot (TCP ports allocated from 30001). */
  publish(): void {
    const s = this.snapshot();
    if (!s) return;
    const pubs: Publication[] = [];
    for (const r of s.ephemeral) pubs.push({ protocol: 'http', taskId: r.taskId, endpoint: r.endpoint, url: `${ROUTER_URL}/service/${r.id}/`, browserUrl: `${ROUTER_URL}/service/${r.id}/` });
    for (const b of s.bindings) pubs.push({ protocol: 'http', taskId: b.taskId, endpoint: b.endpoint, url: `${ROUTER_URL}/${b.route}/`, browserUrl: `${ROUTER_URL}/${b.route}/` });
    for (const r of s.tcp) {
      if (!this.tcpPorts.has(r.id)) this.tcpPorts.set(r.id, 30001 + this.tcpPorts.size);
      pubs.push({ protocol: 'tcp', taskId: r.taskId, endpoint: r.endpoint, address: 'gw.example.com', port: this.tcpPorts.get(r.id)!, upstreamPort: r.backend.port });
    }
    this.lastPublications = pubs;
    this.provider.published(pubs);
  }

  stop(): Promise<void> {
    return this.provider.stop();
  }
}

let fake: FakeClearml;
const harnesses: Harness[] = [];
async function harness(o: ConstructorParameters<typeof Harness>[1] = {}): Promise<Harness> {
  const h = new Harness(fake, o);
  harnesses.push(h);
  return h.start();
}

beforeEach(async () => {
  fake = await FakeClearml.start();
});
afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.stop();
  await fake.close();
});

const running = (n: number, extra: Partial<FakeTask> = {}) =>
  Array.from({ length: n }, (_, i) => fake.addTask({ runtime: { _ADDRESS: `10.1.${Math.floor(i / 250)}.${i % 250}`, _PORT: 8000 }, ...extra }));
const routeIds = (s: Snapshot | null) => (s ? s.ephemeral.map((r) => r.id) : []);

describe('discovery', () => {
  test('nothing is emitted before the first successful poll; then a complete snapshot', async () => {
    const [t] = running(1);
    await fake.down('refuse');
    const h = await harness();
    expect(h.emits).toEqual([]);
    expect(h.provider.status()).toMatchObject({ state: 'degraded', lastSuccess: null, lastError: expect.stringMatching(/unreachable \(auth.login\): ECONNREFUSED/) });
    await fake.up();
    await waitFor(() => h.emits.length === 1, 5000, 'the first snapshot');
    expect(h.emits[0]!.state).toMatchObject({ kind: 'ready', degradedSince: null, error: null });
    expect(routeIds(h.snapshot())).toEqual([t!.id]);
    expect(h.provider.status()).toMatchObject({ state: 'ok', degradedSince: null, lastError: null });
  });

  test('1,200 running tasks are all discovered through paging; stopped, untagged tasks are not; hidden ones are', async () => {
    const tasks = running(1200);
    const hidden = running(10, { system_tags: ['external_service', 'hidden'] });
    running(30, { status: 'stopped' });
    running(30, { system_tags: [] });
    const h = await harness({ autoPublish: false });
    expect(new Set(routeIds(h.snapshot()))).toEqual(new Set([...tasks, ...hidden].map((t) => t.id)));
    const listing = fake.calls.filter((c) => c.endpoint === 'tasks.get_all');
    expect(listing.map((c) => c.body.page)).toEqual([0, 1, 2]);
    expect(listing[0]!.body).toMatchObject({ system_tags: ['external_service'], status: ['in_progress'], search_hidden: true, page_size: 500, order_by: ['id'], only_fields: expect.arrayContaining(['id', 'runtime', 'user', 'company']) });
  });

  test('a task that stops loses its route within one poll, also on the timer', async () => {
    const [a, b, c] = running(3);
    const h = await harness({ autoPublish: false });
    expect(routeIds(h.snapshot())).toHaveLength(3);
    fake.updateTask(a!.id, { status: 'stopped' });
    await h.provider.pollNow();
    expect(routeIds(h.snapshot()).sort()).toEqual([b!.id, c!.id].sort());
    fake.updateTask(b!.id, { status: 'completed' });
    const t0 = Date.now();
    await waitFor(() => routeIds(h.snapshot()).length === 1, 2000, 'the second task to go');
    expect(Date.now() - t0).toBeLessThan(POLL_MS * 6);
  });

  test('a task skipped by offset paging while another stops is confirmed by id, not dropped', async () => {
    const tasks = running(600).sort((x, y) => (x.id < y.id ? -1 : 1));
    const h = await harness({ autoPublish: false });
    expect(routeIds(h.snapshot())).toHaveLength(600);
    // the first task stops right after page 0 was answered: page 1 then starts one task later
    fake.interleaveAfter('tasks.get_all', () => fake.updateTask(tasks[0]!.id, { status: 'stopped' }));
    await h.provider.pollNow();
    // tasks[0] was still running when page 0 was read; tasks[500] fell between the pages
    expect(new Set(routeIds(h.snapshot()))).toEqual(new Set(tasks.map((t) => t.id)));
    const byId = fake.calls.filter((c) => c.endpoint === 'tasks.get_all' && Array.isArray(c.body.id));
    expect(byId).toHaveLength(1);
    expect(byId[0]!.body).toMatchObject({ id: [tasks[500]!.id], status: ['in_progress'], system_tags: ['external_service'] });
    await h.provider.pollNow();
    expect(new Set(routeIds(h.snapshot()))).toEqual(new Set(tasks.slice(1).map((t) => t.id)));
  });

  test('LISTEN_QUEUE_NAME wildcards include matching queues and exclude the rest; new queues are picked up', async () => {
    const q = (name: string) => fake.addQueue(name);
    const [a100, h100, cpu, dev1, dev10] = [q('gpu-a100'), q('gpu-h100'), q('cpu-small'), q('dev_1'), q('dev_10')];
    const inQueue = (queue: string | null) => running(1, { execution: { queue } })[0]!.id;
    const want = [inQueue(a100), inQueue(h100), inQueue(dev1)];
    for (const other of [cpu, dev10, null]) inQueue(other);
    const h = await harness({ queues: ['gpu-*,dev_?'], autoPublish: false, options: { queueRefreshPolls: 2 } });
    expect(routeIds(h.snapshot()).sort()).toEqual(want.sort());
    const listing = fake.calls.find((c) => c.endpoint === 'tasks.get_all')!;
    expect((listing.body['execution.queue'] as string[]).sort()).toEqual([a100, h100, dev1].sort());
    expect(fake.calls.find((c) => c.endpoint === 'queues.get_all')!.body).toMatchObject({ only_fields: ['id', 'name'] });
    const later = inQueue(q('gpu-new'));
    await waitFor(() => routeIds(h.snapshot()).includes(later), 3000, 'the task of the new queue');
    expect(h.log.lines.some((l) => l.msg === 'listening to ClearML queues' && (l.fields.count as number) === 4)).toBe(true);
  });

  test('a queue filter that matches no queue routes nothing, never everything', async () => {
    fake.addQueue('gpu');
    running(5);
    const h = await harness({ queues: ['nothing-*'], autoPublish: false });
    expect(h.emits).toHaveLength(1);
    expect(h.snapshot()).toEqual({ ephemeral: [], static: [], bindings: [], tcp: [] });
    expect(fake.count('tasks.get_all')).toBe(0);
    expect(h.log.lines.some((l) => l.level === 'warn' && /matches no ClearML queue/.test(l.msg))).toBe(true);
  });

  test('a malformed task never hides the others; its problems reach the emit and status()', async () => {
    const [good] = running(1);
    fake.addTask({ id: 'x; } server { listen 80', runtime: { _ADDRESS: '10.0.0.1', _PORT: 80 } });
    const bad = fake.addTask({ runtime: { _ADDRESS: '10.0.0.1\nlisten 81;', _PORT: 80, external_address: '10.0.0.2', external_tcp_port: 70000 } });
    const h = await harness({ autoPublish: false });
    expect(routeIds(h.snapshot())).toEqual([good!.id]);
    const sources = h.emits[0]!.rejections.map((r) => r.source).sort();
    expect(sources).toEqual([`task "x; } server { listen 80"`, `task ${bad.id} (default http endpoint)`, `task ${bad.id} (default tcp endpoint)`].sort());
    expect(h.provider.status().rejections).toHaveLength(3);
  });
});

describe('outages keep the last good view', () => {
  test('API answering 503: no empty view, degraded since the first failure, backoff, recovery within one poll', async () => {
    const [a, b] = running(2);
    const h = await harness({ autoPublish: false });
    expect(routeIds(h.snapshot())).toHaveLength(2);
    await fake.down('503');
    const downAt = Date.now();
    await waitFor(() => h.provider.status().state === 'degraded', 2000, 'degraded');
    const since = h.provider.status().degradedSince!;
    expect(since).toBeGreaterThanOrEqual(downAt - 1);
    fake.updateTask(a!.id, { status: 'stopped' });
    const c = running(1)[0]!;
    fake.resetCalls();
    await new Promise((r) => setTimeout(r, 1500));
    // ~15 polls at the normal rhythm; the backoff (100..400 ms with jitter) makes it at most ~8
    const attempts = fake.count('tasks.get_all');
    expect(attempts).toBeGreaterThanOrEqual(3);
    expect(attempts).toBeLessThanOrEqual(9);
    expect(h.emits).toHaveLength(1);
    expect(h.provider.status()).toMatchObject({ state: 'degraded', degradedSince: since, lastError: expect.stringMatching(/answered 503 without an API envelope/) });
    await fake.up();
    await h.provider.pollNow();
    expect(routeIds(h.snapshot()).sort()).toEqual([b!.id, c.id].sort());
    expect(h.provider.status()).toMatchObject({ state: 'ok', degradedSince: null, lastError: null });
    // the backoff reset: polls are back at the normal rhythm
    fake.resetCalls();
    await new Promise((r) => setTimeout(r, 550));
    expect(fake.count('tasks.get_all')).toBeGreaterThanOrEqual(3);
  });

  test.each([
    ['refused connections', async () => fake.down('refuse'), async () => fake.up(), /unreachable \(tasks.get_all\): ECONNREFUSED/],
    [
      'a slow server',
      async () => {
        fake.delayMs = 1500;
      },
      async () => {
        fake.delayMs = 0;
      },
      /unreachable \(tasks.get_all\): timed out/,
    ],
    [
      'rotated credentials (401)',
      async () => {
        fake.users[0]!.secretKey = 'rotated';
        fake.revokeTokens();
      },
      async () => {
        fake.users[0]!.secretKey = 'admin-secret';
      },
      /auth.login failed: 401\/22 Unauthorized \(invalid credentials\)/,
    ],
  ])('%s: last view kept, degraded with the reason, converges after the fix', async (_what, breakIt, fixIt, reason) => {
    const [a] = running(1);
    const h = await harness({ autoPublish: false });
    await breakIt();
    await waitFor(() => reason.test(h.provider.status().lastError ?? ''), 5000, 'the failure to be seen');
    expect(h.emits).toHaveLength(1);
    expect(routeIds(h.snapshot())).toEqual([a!.id]);
    const b = running(1)[0]!;
    await fixIt();
    await waitFor(() => routeIds(h.snapshot()).length === 2, 5000, 'the new task after recovery');
    expect(routeIds(h.snapshot()).sort()).toEqual([a!.id, b.id].sort());
    expect(h.provider.status().state).toBe('ok');
    expect(h.log.lines.some((l) => l.level === 'warn' && l.msg === 'ClearML poll failed; keeping the last good routes')).toBe(true);
  });

  test('bad credentials from the start: pending for the router (nothing emitted), degraded in status()', async () => {
    fake.users[0]!.secretKey = 'other';
    running(2);
    const h = await harness();
    await waitFor(() => fake.count('auth.login') >= 2, 3000, 'a retry');
    expect(h.emits).toEqual([]);
    expect(h.provider.status()).toMatchObject({ state: 'degraded', lastSuccess: null, lastError: 'ClearML auth.login failed: 401/22 Unauthorized (invalid credentials)' });
  });
});

describe.each([
  ['tasks.edit_runtime', true],
  ['the tasks.edit fallback', false],
])('write-back through %s', (_via, editRuntime) => {
  beforeEach(() => {
    fake.editRuntimeEnabled = editRuntime;
  });

  /** A port as the write path stores it: a string with edit_runtime, a JSON number with tasks.edit. */
  const portValue = (n: number) => (editRuntime ? String(n) : n);

  test('HTTP default and named endpoints and TCP are written exactly as the SDK wait loop reads them', async () => {
    const t = fake.addTask({ runtime: SDK21 });
    await harness();
    await waitFor(() => sdkWait(fake.task(t.id).runtime, 'tcp')?.endpoint === 'gw.example.com:30001', 5000, 'the TCP write-back');
    await waitFor(() => sdkWait(fake.task(t.id).runtime, 'http', 'api'), 5000, 'the named HTTP write-back');
    const rt = fake.task(t.id).runtime;
    expect(sdkWait(rt, 'http')).toEqual({ endpoint: `${ROUTER_URL}/service/${t.id}/`, browser_endpoint: `${ROUTER_URL}/service/${t.id}/`, port: 8000, protocol: 'http', name: null });
    expect(sdkWait(rt, 'http', 'api')).toEqual({ endpoint: `${ROUTER_URL}/service/${t.id}-api/`, browser_endpoint: `${ROUTER_URL}/service/${t.id}-api/`, port: 8001, protocol: 'http', name: 'api' });
    expect(sdkWait(rt, 'tcp')).toEqual({ endpoint: 'gw.example.com:30001', browser_endpoint: null, port: portValue(30001), protocol: 'tcp', name: null });
    expect(rt).toEqual({
      ...SDK21,
      endpoint: `${ROUTER_URL}/service/${t.id}/`,
      browser_endpoint: `${ROUTER_URL}/service/${t.id}/`,
      endpoint__api: `${ROUTER_URL}/service/${t.id}-api/`,
      browser_endpoint__api: `${ROUTER_URL}/service/${t.id}-api/`,
      external_address: 'gw.example.com',
      external_tcp_port: portValue(30001),
      _appgw_upstream: '10.0.3.17:22',
    });
    if (editRuntime) {
      expect(fake.count('tasks.edit_runtime')).toBeGreaterThanOrEqual(1);
      expect(fake.count('tasks.edit')).toBe(0);
    } else {
      // asked once, answered like an unknown endpoint, then never again
      expect(fake.count('tasks.edit_runtime')).toBe(1);
      expect(fake.count('tasks.edit')).toBeGreaterThanOrEqual(1);
    }
  });

  test('clearml-session TCP: upstream_task_port filled in, the task address kept by us, still routed there after a restart', async () => {
    const t = fake.addTask({ runtime: { external_address: '10.0.3.17', external_tcp_port: '10022', _SERVICE: 'EXTERNAL_TCP' } });
    const h = await harness();
    await waitFor(() => sdkWait(fake.task(t.id).runtime, 'tcp')?.endpoint === 'gw.example.com:30001', 5000, 'the TCP write-back');
    expect(fake.task(t.id).runtime).toEqual({
      _SERVICE: 'EXTERNAL_TCP',
      external_address: 'gw.example.com',
      external_tcp_port: portValue(30001),
      upstream_task_port: portValue(10022),
      _appgw_upstream: '10.0.3.17:10022',
    });
    await h.provider.pollNow();
    await h.provider.pollNow();
    expect(h.snapshot()!.tcp.map((r) => r.backend)).toEqual([{ host: '10.0.3.17', port: 10022 }]);
    await h.stop();
    const again = await harness({ autoPublish: false });
    expect(again.snapshot()!.tcp.map((r) => r.backend)).toEqual([{ host: '10.0.3.17', port: 10022 }]);
    expect(again.provider.status().rejections).toEqual([]);
  });

  test('an SDK write landing between our poll and our write is kept', async () => {
    const t = fake.addTask({ runtime: { _ADDRESS: '10.0.3.17', _PORT: 8000 } });
    fake.interleaveAfter('tasks.get_all', () => fake.mergeRuntime(t.id, { _SERVICE__new: 'EXTERNAL', _ADDRESS__new: '10.0.3.17', _PORT__new: 9000 }));
    await harness();
    await waitFor(() => sdkWait(fake.task(t.id).runtime, 'http', 'new'), 5000, 'the new endpoint to be routed and written back');
    expect(fake.task(t.id).runtime).toMatchObject({ _PORT: 8000, _PORT__new: 9000, endpoint: `${ROUTER_URL}/service/${t.id}/`, endpoint__new: `${ROUTER_URL}/service/${t.id}-new/` });
  });

  test("an SDK read-modify-write that straddles ours drops our keys; they are written again and the SDK's stay", async () => {
    const initial = { _ADDRESS: '10.0.3.17', _PORT: 8000 };
    const t = fake.addTask({ runtime: initial });
    // the SDK read the runtime before our write and writes its whole map right after it
    fake.interleaveAfter(editRuntime ? 'tasks.edit_runtime' : 'tasks.edit', () => fake.updateTask(t.id, { runtime: { ...initial, _ADDRESS__late: '10.0.3.17', _PORT__late: 9100 } }));
    const h = await harness();
    await waitFor(() => sdkWait(fake.task(t.id).runtime, 'http', 'late') && sdkWait(fake.task(t.id).runtime, 'http'), 5000, 'both endpoints written back');
    expect(fake.task(t.id).runtime).toMatchObject({ _PORT: 8000, _PORT__late: 9100, endpoint: `${ROUTER_URL}/service/${t.id}/` });
    const wroteDefault = h.log.lines.filter((l) => l.msg === 'endpoints written back to the task' && (l.fields.keys as string[]).includes('endpoint'));
    expect(wroteDefault.length).toBe(2);
  });

  test('nothing is written when nothing changed, also after a restart', async () => {
    const t = fake.addTask({ runtime: SDK21 });
    const h = await harness();
    await waitFor(() => sdkWait(fake.task(t.id).runtime, 'tcp')?.endpoint === 'gw.example.com:30001' && sdkWait(fake.task(t.id).runtime, 'http', 'api'), 5000, 'the write-back');
    const writes = () => fake.count('tasks.edit') + fake.count('tasks.edit_runtime') + fake.count('tasks.get_by_id');
    fake.resetCalls();
    for (let i = 0; i < 3; i++) {
      h.publish();
      await h.provider.pollNow();
    }
    expect(fake.count('tasks.get_all')).toBeGreaterThanOrEqual(3);
    expect(writes()).toBe(0);
    await h.stop();
    const again = await harness();
    await again.provider.pollNow();
    again.publish();
    await again.provider.pollNow();
    expect(writes()).toBe(0);
    expect(again.snapshot()!.tcp.map((r) => r.backend)).toEqual([{ host: '10.0.3.17', port: 22 }]);
  });

  test('a write that fails is logged and retried next round; the loop goes on', async () => {
    const t = fake.addTask({ runtime: { _ADDRESS: '10.0.3.17', _PORT: 8000 } });
    fake.failNext(editRuntime ? 'tasks.edit_runtime' : 'tasks.edit', 500, 110, 'update failed', 2);
    const h = await harness();
    await waitFor(() => sdkWait(fake.task(t.id).runtime, 'http'), 5000, 'the write-back after the failures');
    expect(h.log.lines.filter((l) => l.msg === 'writing endpoints back to the task failed; retrying next round').length).toBeGreaterThanOrEqual(1);
    expect(h.provider.status().state).toBe('ok');
  });
});

test('the tasks.edit fallback re-reads the task, keeps every key it does not own and never touches _ADDRESS/_PORT', async () => {
  fake.editRuntimeEnabled = false;
  const t = fake.addTask({ runtime: { ...SDK21, custom: { nested: [1, 2] } } });
  await harness();
  await waitFor(() => sdkWait(fake.task(t.id).runtime, 'http'), 5000, 'the write-back');
  const edits = fake.calls.filter((c) => c.endpoint === 'tasks.edit');
  const reads = fake.calls.filter((c) => c.endpoint === 'tasks.get_by_id');
  expect(reads.length).toBe(edits.length);
  for (const e of edits) {
    expect(e.body).toMatchObject({ task: t.id, force: true });
    expect(e.body.runtime).toMatchObject({ _ADDRESS: '10.0.3.17', _PORT: 8000, _ADDRESS__api: '10.0.3.17', _PORT__api: 8001, custom: { nested: [1, 2] }, _exec_agent_hostname: 'worker-1' });
  }
  expect(fake.count('tasks.edit_runtime')).toBe(1);
});

test('queuePattern: * and ? wildcards, everything else literal', () => {
  expect(queuePattern('gpu-*').test('gpu-a100')).toBe(true);
  expect(queuePattern('gpu-*').test('xgpu-a100')).toBe(false);
  expect(queuePattern('dev_?').test('dev_1')).toBe(true);
  expect(queuePattern('dev_?').test('dev_10')).toBe(false);
  expect(queuePattern('a.b').test('axb')).toBe(false);
});

test('the provider never throws out of its loop when the router callback throws', async () => {
  running(1);
  const p = new ClearmlProvider(config(fake), memoryLogger(), { client: new ClearmlClient({ host: fake.url, accessKey: 'admin-key', secretKey: 'admin-secret' }) });
  let calls = 0;
  await p.start(() => {
    calls++;
    throw new Error('router bug');
  });
  running(1);
  await p.pollNow();
  await p.stop();
  expect(calls).toBe(2);
  expect(p.status().state).toBe('ok');
});
