import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import type { ApplyResult } from '../router/proxy/applier';
import type { EphemeralRoute, Snapshot, StaticRoute } from '../router/model/types';
import { MemoryTokens, startTestGateway, type TestGateway } from '../test/support/gateway-harness';
import { ManualProvider } from '../test/support/manual-provider';
import { freePort } from '../test/support/net';
import {
  childPids,
  cpuSeconds,
  fetchBody,
  fetchStatus,
  median,
  NginxProc,
  percentile,
  perfAvailable,
  runWrk,
  sleep,
  Tracker,
  type WrkResult,
  runBenchmark,
  benchNginxConf,
  plainHttpSettings,
  floorConf,
  liveShape,
  appgwVarMaps,
  perfUnderLoad,
  sharedSettings,
  hupAndWait,
  errorLogHead,
  badLogLines,
} from './lib';

/**
 * The benchmark of issue 2 (run by bench/run.sh, never by jest):
 *  1. edge throughput and latency: the gateway (`/service/<id>/`: route lookup, token check,
 *     balancer) against a plain nginx proxying to the same backend, under wrk; with section
 *     "floor", in the same alternation, two nginx with the gateway's shape (bench/lib.ts
 *     floorConf): Lua hooks that do nothing, and hooks that do only the per-request work no
 *     implementation of the design can skip;
 *  2. push → serve: from ManualProvider.set() to the first 200 on a new ephemeral route;
 *  3. reload with 1,000 static path routes: apply time after one route changes;
 *  4. (section "profile") where the gateway's time goes: ablations of the rendered config and a
 *     copy of the Lua in the benchmark's temp dir, and a perf profile of the worker.
 * Everything runs on 127.0.0.1; every process it starts it stops; its temp dir is removed.
 */

const env = process.env;
const { seconds: SECONDS, runs: RUNS, conns: CONNS, warmupS: WARMUP_S, loadCpu: LOAD_CPU } = sharedSettings(env);
const PUSH_TRIES = Number(env.BENCH_PUSH_TRIES ?? 50);
const RELOAD_TRIES = Number(env.BENCH_RELOAD_TRIES ?? 7);
const STATIC_ROUTES = Number(env.BENCH_STATIC_ROUTES ?? 1000);
const PROFILE_SECONDS = Number(env.BENCH_PROFILE_SECONDS ?? 3);
const BACKGROUND_TASKS = 200;
const BACKGROUND_TOKENS = 200;
/** Which parts run: any of throughput, floor, push, reload, profile (comma separated); default all. */
const SECTIONS = new Set((env.BENCH_SECTIONS ?? 'throughput,floor,push,reload,profile').split(',').map((x) => x.trim()));
const DEADLINE_MS = Number(env.BENCH_DEADLINE_S ?? 360) * 1000;
const BACKEND_BODY = 'ok from the benchmark backend\n';

const track = new Tracker();
const root = mkdtempSync(join(env.BENCH_DIR ?? tmpdir(), 'appgw-bench-'));
/** A tmpfs dir for the second reload run (to separate the file system's cost), or null. */
const shmRoot = env.BENCH_SHM_DIR ? mkdtempSync(join(env.BENCH_SHM_DIR, 'appgw-bench-')) : null;
const gateways: TestGateway[] = [];
const nginxes: NginxProc[] = [];

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function hex32(): string {
  return randomBytes(16).toString('hex');
}

function task(id: string, port: number): EphemeralRoute {
  return { id, taskId: id, endpoint: '', owner: 'alice', company: null, backend: { host: '127.0.0.1', port }, stripPrefix: true, provider: 'manual' };
}

function staticRoute(name: string, path: string, port: number): StaticRoute {
  return { name, path, subdomain: null, backends: [{ host: '127.0.0.1', port }], allowedGroups: [], stripPrefix: true, enabled: true, provider: 'manual', healthCheck: null };
}

function snap(p: Partial<Snapshot>): Snapshot {
  return { ephemeral: [], static: [], bindings: [], tcp: [], ...p };
}

// ---------------------------------------------------------------------------------------------
// the backend and the plain nginx

function backendConf(dir: string, port: number): string {
  return benchNginxConf(
    dir,
    `    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:${port} backlog=4096;
        location = /_stub_status { stub_status; }
        location / { default_type text/plain; return 200 "${BACKEND_BODY.trim()}\\n"; }
    }`,
  );
}

/** Plain nginx; `proxySettings` (the ablation): the gateway's proxy lines (liveShape) instead of its own. */
function plainConf(dir: string, port: number, backendPort: number, opts: { accessLog: boolean; proxySettings?: string[] }): string {
  const proxy = opts.proxySettings ?? ['proxy_http_version 1.1;', 'proxy_set_header Connection "";'];
  return benchNginxConf(
    dir,
    `${plainHttpSettings(dir, opts.accessLog)}
${appgwVarMaps(proxy)}
    upstream backend {
        server 127.0.0.1:${backendPort};
        keepalive 512;
        keepalive_timeout 60s;
        keepalive_requests 10000;
    }
    server {
        listen 127.0.0.1:${port} backlog=4096;
        location / {
            proxy_pass http://backend;
${proxy.map((l) => `            ${l}`).join('\n')}
        }
    }`,
  );
}

async function startNginx(name: string, conf: (dir: string, port: number) => string, ready: (port: number) => Promise<boolean>): Promise<{ proc: NginxProc; port: number; dir: string }> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  writeFileSync(join(dir, 'nginx.conf'), conf(dir, port));
  const proc = new NginxProc(name, dir, join(dir, 'nginx.conf'), track);
  nginxes.push(proc);
  await proc.start(() => ready(port));
  return { proc, port, dir };
}

async function backendAccepts(port: number): Promise<number> {
  const m = /^\s*(\d+)\s+\d+\s+\d+\s*$/m.exec(await fetchBody(`http://127.0.0.1:${port}/_stub_status`));
  return m ? Number(m[1]) : NaN;
}

// ---------------------------------------------------------------------------------------------
// measuring

interface Measured extends WrkResult {
  /** CPU µs the proxy's workers spent per request. */
  proxyCpuUs: number;
  /** CPU µs the backend's worker spent per request. */
  backendCpuUs: number;
  /** CPU share of this (router) process during the run, 0..1. */
  routerCpu: number;
  /** New TCP connections the backend accepted during the run (keep-alive check). */
  backendConnections: number;
}

interface Target {
  name: string;
  url: string;
  workers: () => number[];
}

let backend: { proc: NginxProc; port: number };

async function measure(t: Target, seconds: number, headers: Record<string, string>): Promise<Measured> {
  const workers = t.workers();
  const bworkers = childPids(backend.proc.pid);
  const cpu0 = cpuSeconds(workers);
  const b0 = cpuSeconds(bworkers);
  const acc0 = await backendAccepts(backend.port);
  const r0 = process.cpuUsage();
  const w0 = performance.now();
  const r = await runWrk({ url: t.url, seconds, connections: CONNS, threads: 1, headers, cpu: LOAD_CPU }, track);
  const wall = (performance.now() - w0) / 1000;
  const ru = process.cpuUsage(r0);
  const cpu = cpuSeconds(workers) - cpu0;
  const bcpu = cpuSeconds(bworkers) - b0;
  const acc = (await backendAccepts(backend.port)) - acc0 - 1; // the stub_status request itself
  if (r.non2xx > 0 || r.socketErrors > 0) log(`WARNING ${t.name}: ${r.non2xx} non-2xx responses, ${r.socketErrors} socket errors`);
  return {
    ...r,
    proxyCpuUs: (cpu / r.requests) * 1e6,
    backendCpuUs: (bcpu / r.requests) * 1e6,
    routerCpu: (ru.user + ru.system) / 1e6 / wall,
    backendConnections: acc,
  };
}

interface Summary {
  rps: number;
  p50: number;
  p99: number;
  proxyCpuUs: number;
  backendCpuUs: number;
  runs: Measured[];
}

function summarize(runs: Measured[]): Summary {
  return {
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    proxyCpuUs: median(runs.map((r) => r.proxyCpuUs)),
    backendCpuUs: median(runs.map((r) => r.backendCpuUs)),
    runs,
  };
}

function fmtRun(name: string, r: Measured): string {
  return `${name.padEnd(28)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  proxy ${r.proxyCpuUs.toFixed(1)} µs/req  backend ${r.backendCpuUs.toFixed(1)} µs/req  backend conns +${r.backendConnections}  router cpu ${(r.routerCpu * 100).toFixed(1)}%`;
}

// ---------------------------------------------------------------------------------------------
// 1. throughput

async function throughput(plain: Target, gw: Target, headers: Record<string, string>, extra: Target[] = []) {
  const targets = [plain, gw, ...extra];
  log(`throughput: ${RUNS} × ${SECONDS} s per target, wrk -t1 -c${CONNS} --latency, alternating (warm-up ${WARMUP_S} s each)`);
  for (const t of targets) await measure(t, WARMUP_S, headers);
  const runs = new Map<Target, Measured[]>(targets.map((t) => [t, []]));
  for (let i = 0; i < RUNS; i++) {
    for (const t of i % 2 === 0 ? targets : [...targets].reverse()) {
      const r = await measure(t, SECONDS, headers);
      runs.get(t)!.push(r);
      log(fmtRun(`${t.name} #${i + 1}`, r));
    }
  }
  const p = summarize(runs.get(plain)!);
  const g = summarize(runs.get(gw)!);
  const others = extra.map((t) => {
    const x = summarize(runs.get(t)!);
    return { name: t.name, ...x, ratio: x.rps / p.rps };
  });
  // what the ratio would be if the proxy alone used the servers' core (the backend shares it here)
  return { plain: p, gateway: g, ratio: g.rps / p.rps, cpuRatio: p.proxyCpuUs / g.proxyCpuUs, floors: others };
}

// ---------------------------------------------------------------------------------------------
// 2. push → first request served

/** What the poller process reports for one job. */
interface PollResult {
  doneAt: number;
  polls: number;
  status: number;
  statuses: Record<string, number>;
}

/** The polling client (bench/poller.ts) in a process of its own, on the load generator's core. */
class Poller {
  private readonly child: ChildProcess;
  private readonly waiting: Array<(r: PollResult) => void> = [];
  constructor() {
    const args = ['--import', 'tsx', join(__dirname, 'poller.ts')];
    const [cmd, argv] = LOAD_CPU === null ? [process.execPath, args] : ['taskset', ['-c', LOAD_CPU, process.execPath, ...args]];
    this.child = spawn(cmd, argv as string[], { stdio: ['pipe', 'pipe', 'inherit'] });
    track.add(this.child.pid!, 'poller');
    createInterface({ input: this.child.stdout! }).on('line', (l) => this.waiting.shift()?.(JSON.parse(l) as PollResult));
  }
  /** Polls `url` (fresh connections, `gapMs` apart) until a 200 or `timeoutMs`. */
  poll(url: string, headers: Record<string, string>, gapMs: number, timeoutMs: number): Promise<PollResult> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin!.write(`${JSON.stringify({ url, headers, gapMs, timeoutMs })}\n`);
    });
  }
  async stop(): Promise<void> {
    this.child.stdin!.end();
    await new Promise((r) => (this.child.exitCode !== null ? r(null) : this.child.once('exit', r)));
    track.remove(this.child.pid!);
  }
}

/** Wall-clock milliseconds with sub-millisecond resolution (comparable across processes). */
function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

async function pushToServe(g: TestGateway, provider: ManualProvider, base: EphemeralRoute[], port: number, headers: Record<string, string>) {
  log(`push → serve: ${PUSH_TRIES} new ephemeral routes, ${base.length} routes and ${Object.keys(g.tokens.tokens).length} tokens in the table`);
  const ms: number[] = [];
  const pushed: number[] = [];
  const polls: number[] = [];
  const sock = join(g.config.runDir, 'push.sock');
  const poller = new Poller();
  try {
    await poller.poll(`${g.url}/_gateway/health`, {}, 0, 5000); // the poller is up
    for (let i = 0; i < PUSH_TRIES; i++) {
      const id = hex32();
      const url = `${g.url}/service/${id}/`;
      const t0 = epochMs();
      const done = poller.poll(url, headers, 1, 5000);
      provider.set(snap({ ephemeral: [...base, task(id, port)] }));
      const r = await done;
      if (r.status !== 200) throw new Error(`push → serve: ${url} not served within 5 s (last status ${r.status})`);
      const odd = Object.keys(r.statuses).filter((k) => k !== '404');
      if (odd.length) throw new Error(`push → serve: unexpected statuses ${JSON.stringify(r.statuses)} on ${url}`);
      ms.push(r.doneAt - t0);
      polls.push(r.polls);
      // when the proxy stored the snapshot (push.lua's meta:pushed_at: ngx.now(), ms resolution)
      const st = JSON.parse((await fetchBody('http://localhost/_internal/state', {}, sock)) || '{}') as { pushed_at?: number };
      if (typeof st.pushed_at === 'number') pushed.push(st.pushed_at * 1000 - t0);
      await sleep(20);
    }
  } finally {
    await poller.stop();
  }
  provider.set(snap({ ephemeral: base }));
  const r1 = (x: number) => Math.round(x * 10) / 10;
  return {
    tries: PUSH_TRIES,
    routes: base.length + 1,
    tokens: Object.keys(g.tokens.tokens).length,
    medianMs: median(ms),
    p90Ms: percentile(ms, 90),
    p99Ms: percentile(ms, 99),
    maxMs: Math.max(...ms),
    minMs: Math.min(...ms),
    medianPolls: median(polls),
    setToStoredMedianMs: pushed.length ? median(pushed) : NaN,
    setToStoredP99Ms: pushed.length ? percentile(pushed, 99) : NaN,
    samplesMs: ms.map(r1),
    storedMs: pushed.map(r1),
  };
}

// ---------------------------------------------------------------------------------------------
// 3. reload with many static routes

function dirSize(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      const s = dirSize(p);
      bytes += s.bytes;
      files += s.files;
    } else {
      bytes += statSync(p).size;
      files += 1;
    }
  }
  return { bytes, files };
}

function timeNginxT(prefix: string, conf: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) =>
    execFile('nginx', ['-t', '-q', '-e', 'stderr', '-p', prefix, '-c', conf], { timeout: 30_000 }, (err, _o, e) => (err ? reject(new Error(e)) : resolve(performance.now() - t0))),
  );
}

/**
 * `nginx -t`, and HUP → new worker serving, on `n` bare proxied locations, with and without the
 * Lua module loaded (no Lua directive used): the module's per-location cost when config is parsed.
 */
async function bareLocations(n: number, lua: boolean): Promise<{ testMs: number; hupMs: number }> {
  const name = `bare-${n}-${lua ? 'lua' : 'plain'}`;
  const mods = lua ? 'load_module /usr/lib/nginx/modules/ndk_http_module.so;\nload_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n' : '';
  const locs = Array.from({ length: n }, (_, i) => `        location /r${i}/ { proxy_pass http://be; }`).join('\n');
  const conf = (dir: string, port: number) =>
    `${mods}worker_processes 1;\nuser root;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\nevents {}\nhttp {\n    access_log off;\n    client_body_temp_path ${dir}/b; proxy_temp_path ${dir}/p; fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;\n    upstream be { server 127.0.0.1:${backend.port}; keepalive 8; }\n    server {\n        listen 127.0.0.1:${port};\n        location = /ready { return 200; }\n${locs}\n    }\n}\n`;
  const ready = (port: number) => async () => (await fetchStatus(`http://127.0.0.1:${port}/ready`)) === 200;
  const n1 = await startNginx(name, conf, (port) => ready(port)());
  const testMs: number[] = [];
  const hupMs: number[] = [];
  for (let i = 0; i < 3; i++) {
    testMs.push(await timeNginxT(n1.dir, join(n1.dir, 'nginx.conf')));
    const t = performance.now();
    await n1.proc.reload(ready(n1.port));
    hupMs.push(performance.now() - t);
  }
  await n1.proc.stop();
  nginxes.splice(nginxes.indexOf(n1.proc), 1);
  return { testMs: median(testMs), hupMs: median(hupMs) };
}

/** Timestamps of one apply's stages, taken through the gateway's control seam. */
interface Stages {
  testStart: number;
  testEnd: number;
  reloadCall: number;
}

/** The gateway's error log, read from its first 4 MB (it can grow large): size, [error]+ lines, most frequent lines. */
function errorLines(g: TestGateway): { bytes: number; bad: string[]; top: Array<[string, number]> } {
  const { bytes, text } = errorLogHead(g.dir);
  const lines = text.split('\n').filter(Boolean);
  const counts = new Map<string, number>();
  for (const l of lines) {
    const k = l.replace(/^\S+ \S+ /, '').replace(/\d+#\d+: (\*\d+ )?/, '').slice(0, 160);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return { bytes, bad: badLogLines(text), top: [...counts].sort((a, b) => b[1] - a[1]).slice(0, 3) };
}

/** Resolves once every apply that reached `nginx -t` has reported (at most 30 s). */
async function waitQuiet(stages: Map<string, Stages>, applies: Array<{ r: ApplyResult }>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const done = new Set(applies.map((a) => a.r.generation));
    if ([...stages.keys()].every((gen) => done.has(gen))) return;
    await sleep(20);
  }
}

async function reloadBench(backendPort: number, fs: string, baseDir: string) {
  log(`reload: a gateway with ${STATIC_ROUTES} static path routes, its files on ${fs} (${baseDir})`);
  const names = Array.from({ length: STATIC_ROUTES }, (_, i) => `r${String(i).padStart(4, '0')}`);
  const mid = names[Math.floor(names.length / 2)]!;
  const routes = (changed: string | null) => names.map((n) => staticRoute(n, n === mid && changed ? `/${n}-${changed}/` : `/${n}/`, backendPort));
  const provider = new ManualProvider();
  provider.snapshot = snap({ static: routes(null) });
  // by generation: the router may run an apply while another is in flight (see README)
  const stages = new Map<string, Stages>();
  let lastTested = '';
  const applies: Array<{ r: ApplyResult; at: number }> = [];
  const t0 = performance.now();
  const savedTmp = env.TMPDIR;
  env.TMPDIR = baseDir; // startTestGateway makes its dir in os.tmpdir()
  let g: TestGateway;
  try {
    g = await startTestGateway({
      providers: [provider],
      settleMs: 0,
      // no periodic heal: a reconcile during an apply starts a second, overlapping apply (see README)
      env: { PROXY_WORKER_PROCESSES: '1', RELOAD_MIN_INTERVAL: '0ms', PUSH_INTERVAL: '1h' },
      wrapControl: (c) => ({
        test: async (conf) => {
          const gen = /(g\d{6,})\/nginx\.conf$/.exec(conf)?.[1] ?? conf;
          const st: Stages = { testStart: performance.now(), testEnd: 0, reloadCall: 0 };
          stages.set(gen, st);
          lastTested = gen;
          const r = await c.test(conf);
          st.testEnd = performance.now();
          return r;
        },
        reload: async () => {
          const st = stages.get(lastTested);
          if (st) st.reloadCall = performance.now();
          await c.reload();
        },
        running: () => c.running(),
      }),
    });
  } finally {
    env.TMPDIR = savedTmp;
  }
  gateways.push(g);
  g.gw.router.onApply = (r) => void applies.push({ r, at: performance.now() });
  const master = g.gw.nginx!.pid()!;
  track.add(master, 'gateway nginx (reload bench)');
  const headers = { 'X-Gateway-Token': g.adminToken };
  const last = names[names.length - 1]!;
  for (let ok = false; !ok; ) {
    ok = (await fetchStatus(`${g.url}/${last}/`, headers)) === 200;
    if (performance.now() - t0 > 60_000) throw new Error(`the ${STATIC_ROUTES}-route gateway did not serve its routes within 60 s`);
    if (!ok) await sleep(20);
  }
  const startMs = performance.now() - t0;
  const live = realpathSync(join(g.config.nginxDir, 'current'));
  const size = dirSize(live);
  const nginxConf = readFileSync(join(live, 'nginx.conf'));
  const nginxT: number[] = [];
  for (let i = 0; i < 3; i++) nginxT.push(await timeNginxT(g.config.nginxDir, join(live, 'nginx.conf')));
  log(`reload: ${size.files} rendered files, ${size.bytes} bytes; nginx -t ${median(nginxT).toFixed(0)} ms`);
  await sleep(200);
  stages.clear(); // the start-up applies are not measured
  applies.length = 0;

  const tries: Array<{ applyMs: number; writeMs: number; testMs: number; reloadConfirmMs: number; toAppliedMs: number; toServedMs: number }> = [];
  const poller = new Poller();
  await poller.poll(`${g.url}/_gateway/health`, {}, 0, 5000);
  for (let i = 0; i < RELOAD_TRIES; i++) {
    const version = `v${i + 1}`;
    const t = performance.now();
    // the first apply that started after this change
    const applied = (async () => {
      for (;;) {
        const hit = applies.find((a) => a.at - a.r.ms >= t - 1);
        if (hit) return hit;
        if (performance.now() - t > 30_000) throw new Error('reload: no apply within 30 s');
        await sleep(2);
      }
    })();
    const url = `${g.url}/${mid}-${version}/`;
    const t0 = epochMs();
    const served = poller.poll(url, headers, 5, 20_000);
    provider.set(snap({ static: routes(version) }));
    const { r: res, at: appliedAt } = await applied;
    if (!res.ok) throw new Error(`reload failed at ${res.stage}: ${res.error}`);
    const sv = await served;
    if (sv.status !== 200) throw new Error(`reload: ${url} not served within 20 s (last status ${sv.status})`);
    const servedAt = t + (sv.doneAt - t0);
    const applyStart = appliedAt - res.ms;
    const st = stages.get(res.generation)!;
    const row = {
      applyMs: res.ms,
      writeMs: st.testStart - applyStart,
      testMs: st.testEnd - st.testStart,
      reloadConfirmMs: appliedAt - st.reloadCall,
      toAppliedMs: appliedAt - t,
      toServedMs: servedAt - t,
    };
    tries.push(row);
    log(
      `reload #${i + 1} (${fs}): ApplyResult.ms ${res.ms} = write ${row.writeMs.toFixed(0)} + nginx -t ${row.testMs.toFixed(0)} + HUP→confirmed ${row.reloadConfirmMs.toFixed(0)} (+ swap); set → applied ${row.toAppliedMs.toFixed(0)} ms; set → first 200 on the changed route ${row.toServedMs.toFixed(0)} ms`,
    );
    // let any apply still in flight finish (a router stopped mid-apply writes into a removed dir)
    await waitQuiet(stages, applies);
    await sleep(300);
  }
  await poller.stop();
  const overlapping = applies.length - RELOAD_TRIES;
  const errors = errorLines(g).bad;
  await g.stop();
  gateways.splice(gateways.indexOf(g), 1);
  track.remove(master);
  const med = (k: keyof (typeof tries)[number]) => median(tries.map((x) => x[k]));
  const a = tries.map((x) => x.applyMs);
  return {
    fs,
    routes: STATIC_ROUTES,
    tries: RELOAD_TRIES,
    firstServeMs: startMs,
    renderedFiles: size.files,
    renderedBytes: size.bytes,
    nginxConfBytes: nginxConf.length,
    nginxTestMs: median(nginxT),
    applyMedianMs: median(a),
    applyMaxMs: Math.max(...a),
    writeMedianMs: med('writeMs'),
    testMedianMs: med('testMs'),
    reloadConfirmMedianMs: med('reloadConfirmMs'),
    toServedMedianMs: med('toServedMs'),
    toServedMaxMs: Math.max(...tries.map((x) => x.toServedMs)),
    errorLogLines: errors.length,
    /** Applies beyond one per change (an apply started while another was in flight). */
    extraApplies: overlapping,
    perTry: tries,
  };
}

// ---------------------------------------------------------------------------------------------
// 4. profile: ablations and perf

/** Swaps text in a file of the benchmark gateway's temp dir; throws when `from` is not there. */
function patch(file: string, from: string | RegExp, to: string): void {
  const s = readFileSync(file, 'utf8');
  const n = s.replace(from, to);
  if (n === s) throw new Error(`profile: cannot patch ${file}: ${String(from)} not found (did the template or Lua change?)`);
  writeFileSync(file, n);
}

/** What the profile section found: ablation variants and, when perf works, the worker's profile. */
interface Profile {
  variants: Record<string, Summary>;
  /** ns per call of hot-path pieces, timed in a loop in the gateway worker. */
  micro?: Record<string, number | string>;
  microError?: string;
  perfDso?: string[];
  perfSym?: string[];
  perfError?: string;
}

/**
 * A location added to the benchmark gateway's temp copy: times pieces of the per-request Lua in a
 * loop (ns per call, with the JIT on, as in production) for the token in X-Gateway-Token and the
 * route key in ?route=. A piece whose function is missing reports its error instead.
 */
const MICRO_LOCATION = `location = /_bench/micro {
    content_by_lua_block {
        local cjson = require "cjson.safe"
        local out = {}
        local N = 200000
        local tok = ngx.var.http_x_gateway_token
        local key = ngx.unescape_uri(ngx.var.arg_route or "")
        local data = ngx.shared.appgw_data
        local stats = ngx.shared.appgw_stats
        local function time(name, f)
            local ok, err = pcall(f)
            if not ok then out[name] = "error: " .. tostring(err); return end
            ngx.update_time()
            local t0 = ngx.now()
            for _ = 1, N do f() end
            ngx.update_time()
            out[name] = math.floor((ngx.now() - t0) * 1e9 / N + 0.5)
        end
        local auth = require "appgw.auth"
        local state = require "appgw.state"
        local sha256 = require "appgw.sha256"
        local _, secret = auth.parse(tok)
        local raw = data:get("r:" .. key)
        if not raw or not secret then
            ngx.status = 400
            ngx.say(cjson.encode({ error = "no route " .. key .. " or no token" }))
            return
        end
        local v = ngx.var
        local ffi = require "ffi"
        local okc, SHA = pcall(function() return ffi.C.SHA256 end)
        if not okc then SHA = ffi.load("crypto").SHA256 end
        local buf = ffi.new("unsigned char[32]")
        local hex = require "appgw.hex"
        local digest = ffi.string(SHA(secret, #secret, buf), 32)
        time("SHA256 via FFI (digest only)", function() return SHA(secret, #secret, buf) end)
        time("ffi.string + appgw.hex (32 bytes)", function() return hex(ffi.string(buf, 32)) end)
        time("sha256.hex(secret)", function() return sha256.hex(secret) end)
        time("auth.parse(token)", function() return auth.parse(tok) end)
        time("auth.check_token(token)", function() return auth.check_token(tok) end)
        time("auth.identify(ctx) via header", function() return auth.identify({}) end)
        time("state.route(key), cached", function() return state.route(key) end)
        time("cjson.decode(route record)", function() return cjson.decode(raw) end)
        time("3 x shdict:incr (stats.lua)", function() stats:incr("micro:a", 1, 0); stats:incr("micro:b", 1, 0); stats:incr("micro:c", 0.5, 0) end)
        time("shdict:get(meta:version)", function() return data:get("meta:version") end)
        time("ngx.var read (header)", function() return v.http_x_gateway_token end)
        time("5 x ngx.var write", function() v.appgw_user = "admin"; v.appgw_groups = ""; v.appgw_log_route = key; v.appgw_log_token = "x"; v.appgw_prefix = "/service/x" end)
        local route = state.route(key)
        time("pick.first(route.b, key)", function() return require("appgw.pick").first(route.b, "t:x") end)
        time("auth.strip(ctx) (last: clears the token header)", function() return auth.strip({}) end)
        ngx.header["Content-Type"] = "application/json"
        ngx.say(cjson.encode(out))
    }
}`;

async function profile(g: TestGateway, plain: { proc: NginxProc; port: number; dir: string }, gwTarget: Target, plainTarget: Target, headers: Record<string, string>, gwRouteKey: string): Promise<Profile> {
  const results: Record<string, Measured[]> = {};
  const out: Profile = { variants: {} };
  const run = async (name: string, t: Target) => {
    await measure(t, 1, headers);
    const r = await measure(t, PROFILE_SECONDS, headers);
    (results[name] ??= []).push(r);
    log(fmtRun(name, r));
  };

  // the router stops; its nginx keeps serving the pushed data while we edit the temp copy
  await g.gw.router.stop();
  const master = g.gw.nginx!.pid()!;
  const live = realpathSync(join(g.config.nginxDir, 'current'));
  const files = {
    main: join(live, 'nginx.conf'),
    common: join(live, 'server-common.conf'),
    access: join(g.config.luaDir, 'appgw', 'access.lua'),
    locations: join(live, 'gateway-locations.conf'),
  };
  const original = Object.fromEntries(Object.entries(files).map(([k, f]) => [k, readFileSync(f, 'utf8')])) as Record<keyof typeof files, string>;
  const restore = () => {
    for (const [k, f] of Object.entries(files)) writeFileSync(f, original[k as keyof typeof files]);
  };
  const gwReady = async () => (await fetchStatus(gwTarget.url, headers)) === 200;
  const reloadGw = () => hupAndWait(master, gwReady);
  const plainReady = async () => (await fetchStatus(plainTarget.url)) === 200;
  const plainVariant = async (opts: { accessLog: boolean; proxySettings?: string[] }) => {
    writeFileSync(join(plain.dir, 'nginx.conf'), plainConf(plain.dir, plain.port, backend.port, opts));
    await plain.proc.reload(plainReady);
  };
  // the gateway's variants, each its list of edits of the temp copy; from "gw, no access log" down
  // they are cumulative
  type Edit = [file: string, from: string | RegExp, to: string];
  const noLog: Edit = [files.main, /access_log \S+ appgw_json[^;]*;/, 'access_log off;'];
  // the body filter that ends a token's streams when it is revoked runs on every response
  const noBodyFilter: Edit = [files.common, /body_filter_by_lua_block \{[^\n]*\}\n/, ''];
  // access phase reduced to: hand the balancer its one backend (no route lookup, no auth)
  const luaFloor: Edit = [files.access, /\nreturn _M\s*$/, `\nlocal _floor = { { "127.0.0.1", ${backend.port} } }\nfunction _M.run()\n  if ngx.var.appgw_kind == "" then return end\n  ngx.ctx.appgw_backends = _floor\n  ngx.ctx.appgw_first = 1\n  ngx.req.set_uri("/", false)\nend\nreturn _M\n`];
  const gatewayVariants: Array<{ name: string; edits: Edit[] }> = [
    { name: 'gateway (as above)', edits: [] },
    // LuaJIT's compiler off: if this costs about the same, the hot path already runs in the
    // interpreter (trace aborts on NYI functions)
    { name: 'gateway, JIT off', edits: [[files.main, /init_by_lua_block \{/, 'init_by_lua_block { jit.off()']] },
    { name: 'gw, no access log', edits: [noLog] },
    { name: 'gw, no log, no body filter', edits: [noLog, noBodyFilter] },
    { name: 'gw, Lua floor (no auth)', edits: [noLog, noBodyFilter, luaFloor] },
    // every Lua hook removed and the upstream pointed at the backend: checks that the rest of the
    // gateway's config costs what plain + its settings does
    {
      name: 'gw config without any Lua',
      edits: [
        noLog,
        noBodyFilter,
        [files.main, /server 0\.0\.0\.1:1;\s*balancer_by_lua_block \{[^\n]*\}/, `server 127.0.0.1:${backend.port};`],
        [files.common, /access_by_lua_block \{[^\n]*\}\n/, ''],
      ],
    },
  ];
  const variants: Array<{ name: string; target: Target; apply: () => Promise<void> }> = [
    { name: 'plain (as above)', target: plainTarget, apply: () => plainVariant({ accessLog: true }) },
    { name: 'plain, no access log', target: plainTarget, apply: () => plainVariant({ accessLog: false }) },
    { name: 'plain, no log, gw proxy settings', target: plainTarget, apply: () => plainVariant({ accessLog: false, proxySettings: liveShape(g.config.nginxDir).proxySettings }) },
    ...gatewayVariants.map(({ name, edits }) => ({
      name,
      target: gwTarget,
      apply: async () => {
        restore();
        for (const [file, from, to] of edits) patch(file, from, to);
        await reloadGw();
      },
    })),
  ];
  const rounds = Number(env.BENCH_PROFILE_ROUNDS ?? 3);
  log(`profile: ${variants.length} variants × ${rounds} rounds × ${PROFILE_SECONDS} s (edits only the benchmark gateway's temp copy)`);
  const skipped = new Set<string>();
  for (let round = 0; round < rounds; round++) {
    for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
      if (skipped.has(v.name)) continue;
      try {
        await v.apply();
      } catch (e) {
        // the Lua or the templates changed under us: report, restore, go on with the others
        log(`profile: skipping "${v.name}": ${(e as Error).message}`);
        skipped.add(v.name);
        restore();
        await reloadGw();
        continue;
      }
      await run(v.name, v.target);
    }
  }
  await plainVariant({ accessLog: true });
  for (const [k, rs] of Object.entries(results)) out.variants[k] = summarize(rs);

  // the hot path's pieces timed in a loop inside the worker: immune to the noise of shared cores
  restore();
  try {
    patch(files.locations, /\nlocation \/ \{/, `\n${MICRO_LOCATION}\nlocation / {`);
    await reloadGw();
    const body = await fetchBody(`${g.url}/_bench/micro?route=${encodeURIComponent(gwRouteKey)}`, headers);
    out.micro = JSON.parse(body) as Record<string, number | string>;
    log(`micro: ${body}`);
  } catch (e) {
    out.microError = (e as Error).message;
    log(`micro: ${out.microError}`);
  }
  restore();
  await reloadGw();

  if ((env.BENCH_PERF ?? '1') !== '0' && (await perfAvailable())) {
    const worker = childPids(master)[0]!;
    log(`perf: sampling the gateway worker ${worker} for 4 s under load`);
    const v = await perfUnderLoad(worker, join(root, 'perf.data'), { url: gwTarget.url, connections: CONNS, threads: 1, headers, cpu: LOAD_CPU }, track, 25);
    out.perfDso = v.dso;
    out.perfSym = v.sym;
    if (v.error) out.perfError = v.error;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

type ReloadFigures = Awaited<ReturnType<typeof reloadBench>>;

/** Everything one run measured (also written as JSON with --json). */
interface Result {
  date: string;
  settings: { seconds: number; runs: number; connections: number; threads: number; loadCpu: string | null; serverCpu: string | null; workers: number };
  throughput: Awaited<ReturnType<typeof throughput>> | null;
  pushToServe: Awaited<ReturnType<typeof pushToServe>> | null;
  reload: ReloadFigures | null;
  reloadTmpfs: ReloadFigures | null;
  nginxT: { locations: number; plain: { testMs: number; hupMs: number }; lua: { testMs: number; hupMs: number }; luaOneLocation: { testMs: number; hupMs: number } } | null;
  load: { before: string; after: string };
  profile: Profile | null;
  gatewayErrorLogLines: string[];
  totalSeconds: number;
}

async function cleanup(): Promise<void> {
  for (const g of gateways.splice(0)) {
    const pid = g.gw.nginx?.pid() ?? null;
    await g.stop().catch(() => undefined);
    if (pid !== null) track.remove(pid);
  }
  for (const n of nginxes.splice(0)) await n.stop().catch(() => undefined);
  await track.killAll();
  rmSync(root, { recursive: true, force: true });
  if (shmRoot) rmSync(shmRoot, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const started = performance.now();
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').trim();
  log(`load average before: ${loadBefore}`);
  log(`temp dir ${root}; wrk on CPU ${LOAD_CPU ?? '(not pinned)'}; servers on CPUs ${process.env.BENCH_SERVER_CPU ?? '(not pinned)'}`);

  backend = await startNginx('backend', backendConf, async (port) => (await fetchStatus(`http://127.0.0.1:${port}/`)) === 200);
  const plain = await startNginx('plain', (dir, port) => plainConf(dir, port, backend.port, { accessLog: true }), async (port) => (await fetchStatus(`http://127.0.0.1:${port}/`)) === 200);

  const provider = new ManualProvider();
  const tokens = new MemoryTokens();
  for (let i = 0; i < BACKGROUND_TOKENS; i++) tokens.add({ u: `user${i}` });
  const BENCH = hex32();
  const base = [task(BENCH, backend.port), ...Array.from({ length: BACKGROUND_TASKS }, () => task(hex32(), backend.port))];
  provider.snapshot = snap({ ephemeral: base });
  // BENCH_STREAM_REVOCATION=false measures the gateway without its stream-revocation body filter
  const g = await startTestGateway({ providers: [provider], tokens, env: { PROXY_WORKER_PROCESSES: '1', PUSH_INTERVAL: '5s', STREAM_REVOCATION: env.BENCH_STREAM_REVOCATION ?? 'true' } });
  log(`gateway with STREAM_REVOCATION=${env.BENCH_STREAM_REVOCATION ?? 'true'}`);
  gateways.push(g);
  track.add(g.gw.nginx!.pid()!, 'gateway nginx');
  const headers = { 'X-Gateway-Token': g.adminToken };
  const gwUrl = `${g.url}/service/${BENCH}/`;
  for (let i = 0; (await fetchStatus(gwUrl, headers)) !== 200; i++) {
    if (i > 500) throw new Error(`the gateway does not serve ${gwUrl}`);
    await sleep(10);
  }
  const plainUrl = `http://127.0.0.1:${plain.port}/`;
  for (const [name, url] of [['plain', plainUrl], ['gateway', gwUrl]] as const) {
    const body = await fetchBody(url, headers);
    if (body !== BACKEND_BODY) throw new Error(`${name} does not answer with the backend's body: ${JSON.stringify(body.slice(0, 200))}`);
  }
  const plainTarget: Target = { name: 'plain nginx', url: plainUrl, workers: () => childPids(plain.proc.pid) };
  const gwTarget: Target = { name: 'gateway', url: gwUrl, workers: () => g.workerPids() };

  // the floor: nginx with the gateway's shape and Lua that does nothing, or only what it cannot skip
  const extra: Target[] = [];
  if (SECTIONS.has('floor') && SECTIONS.has('throughput')) {
    const shape = liveShape(g.config.nginxDir);
    for (const [name, ops] of [['floor-empty', false], ['floor-ops', true]] as const) {
      const f = await startNginx(name, (dir, port) => floorConf(dir, port, [backend.port], shape, { ops, kind: 'task' }), async (port) => (await fetchStatus(`http://127.0.0.1:${port}/`, headers)) === 200);
      extra.push({ name: ops ? 'floor: gateway shape + unskippable per-request work' : 'floor: gateway shape, empty Lua hooks', url: `http://127.0.0.1:${f.port}/`, workers: () => childPids(f.proc.pid) });
    }
  }
  const tp = SECTIONS.has('throughput') ? await throughput(plainTarget, gwTarget, headers, extra) : null;
  let push: Awaited<ReturnType<typeof pushToServe>> | null = null;
  if (SECTIONS.has('push')) {
    push = await pushToServe(g, provider, base, backend.port, headers);
    log(`push → serve: median ${push.medianMs.toFixed(1)} ms, p99 ${push.p99Ms.toFixed(1)} ms`);
  }
  let reload: ReloadFigures | null = null;
  let reloadTmpfs: ReloadFigures | null = null;
  let nginxT: Result['nginxT'] = null;
  if (SECTIONS.has('reload')) {
    reload = await reloadBench(backend.port, 'disk', root);
    log(`reload (disk): ApplyResult.ms median ${reload.applyMedianMs} ms, max ${reload.applyMaxMs} ms`);
    if (shmRoot) {
      const x = await reloadBench(backend.port, 'tmpfs', shmRoot);
      log(`reload (tmpfs): ApplyResult.ms median ${x.applyMedianMs} ms, max ${x.applyMaxMs} ms`);
      reloadTmpfs = x;
    }
    nginxT = {
      locations: STATIC_ROUTES,
      plain: await bareLocations(STATIC_ROUTES, false),
      lua: await bareLocations(STATIC_ROUTES, true),
      luaOneLocation: await bareLocations(1, true),
    };
    log(`${STATIC_ROUTES} bare proxy locations: nginx -t ${nginxT.plain.testMs.toFixed(0)} ms, HUP → only new workers ${nginxT.plain.hupMs.toFixed(0)} ms; with the Lua module loaded: ${nginxT.lua.testMs.toFixed(0)} / ${nginxT.lua.hupMs.toFixed(0)} ms`);
  }
  const prof = SECTIONS.has('profile') ? await profile(g, plain, gwTarget, plainTarget, headers, `e:${BENCH}`) : null;
  const gwLog = errorLines(g);
  const gwErrors = gwLog.bad;
  if (gwLog.bytes > 0) log(`gateway error log: ${gwLog.bytes} bytes; most frequent lines: ${JSON.stringify(gwLog.top)}`);

  const result: Result = {
    date: new Date().toISOString(),
    settings: { seconds: SECONDS, runs: RUNS, connections: CONNS, threads: 1, loadCpu: LOAD_CPU, serverCpu: env.BENCH_SERVER_CPU ?? null, workers: 1 },
    throughput: tp,
    pushToServe: push,
    reload,
    reloadTmpfs,
    nginxT,
    load: { before: loadBefore, after: readFileSync('/proc/loadavg', 'utf8').trim() },
    profile: prof,
    gatewayErrorLogLines: gwErrors.slice(0, 5),
    totalSeconds: 0,
  };
  result.totalSeconds = Math.round((performance.now() - started) / 1000);
  if (env.BENCH_OUT) writeFileSync(env.BENCH_OUT, JSON.stringify(result, null, 2));
  report(result);
}

/** Prints the figures (markdown tables, as in bench/README.md). */
function report(r: Result): void {
  const f = (x: number, d = 2) => x.toFixed(d);
  const lines = ['', `== appgw benchmark, ${r.date} (${r.totalSeconds} s) ==`, `load average before/after: ${r.load.before} / ${r.load.after}`];
  const t = r.throughput;
  if (t) {
    lines.push(
      `wrk -t1 -c${r.settings.connections} -d${r.settings.seconds}s --latency, ${r.settings.runs} alternating runs each, medians; wrk on CPU ${r.settings.loadCpu ?? '-'}, servers on CPU ${r.settings.serverCpu ?? '-'}, 1 nginx worker each`,
      '',
      '| target | req/s | p50 ms | p99 ms | proxy CPU µs/req | backend conns opened per run |',
      '|---|---:|---:|---:|---:|---:|',
      `| plain nginx | ${f(t.plain.rps, 0)} | ${f(t.plain.p50)} | ${f(t.plain.p99)} | ${f(t.plain.proxyCpuUs, 1)} | ${t.plain.runs.map((x) => x.backendConnections).join(', ')} |`,
      `| gateway /service/<id>/ | ${f(t.gateway.rps, 0)} | ${f(t.gateway.p50)} | ${f(t.gateway.p99)} | ${f(t.gateway.proxyCpuUs, 1)} | ${t.gateway.runs.map((x) => x.backendConnections).join(', ')} |`,
      ...t.floors.map((x) => `| ${x.name} (${f(x.ratio, 3)} of plain) | ${f(x.rps, 0)} | ${f(x.p50)} | ${f(x.p99)} | ${f(x.proxyCpuUs, 1)} | ${x.runs.map((y) => y.backendConnections).join(', ')} |`),
      '',
      `ratio gateway/plain req/s: ${f(t.ratio, 3)} (target ≥ 0.90: ${t.ratio >= 0.9 ? 'met' : 'MISSED'}); proxy CPU per request plain/gateway: ${f(t.cpuRatio, 3)} (the req/s ratio a proxy with a core of its own would reach)`,
    );
  }
  const p = r.pushToServe;
  if (p) {
    lines.push(
      `push → first 200 on a new /service/<id>/ (${p.tries} tries, ${p.routes} routes, ${p.tokens} tokens): median ${f(p.medianMs, 1)} ms, p90 ${f(p.p90Ms, 1)} ms, p99 ${f(p.p99Ms, 1)} ms, max ${f(p.maxMs, 1)} ms (target ≤ 50 ms: ${p.p99Ms <= 50 ? 'met' : 'MISSED'}); set → data stored in the proxy: median ${f(p.setToStoredMedianMs, 1)} ms, p99 ${f(p.setToStoredP99Ms, 1)} ms`,
    );
  }
  for (const x of [r.reload, r.reloadTmpfs]) {
    if (!x) continue;
    lines.push(
      `reload with ${x.routes} static routes, files on ${x.fs} (${x.tries} tries): ApplyResult.ms median ${f(x.applyMedianMs, 0)} ms, max ${f(x.applyMaxMs, 0)} ms (target ≤ 200 ms: ${x.applyMaxMs <= 200 ? 'met' : 'MISSED'}); set → first 200 on the changed route median ${f(x.toServedMedianMs, 0)} ms, max ${f(x.toServedMaxMs, 0)} ms`,
      `  ${x.extraApplies > 0 ? `(${x.extraApplies} extra overlapping applies) ` : ''}medians: write ${f(x.writeMedianMs, 0)} ms + nginx -t ${f(x.testMedianMs, 0)} ms + HUP → confirmed ${f(x.reloadConfirmMedianMs, 0)} ms; rendered ${x.renderedFiles} files, ${x.renderedBytes} bytes (nginx.conf ${x.nginxConfBytes} bytes); first serve after start ${f(x.firstServeMs, 0)} ms`,
    );
  }
  if (r.nginxT) {
    lines.push(
      `${r.nginxT.locations} bare proxy locations (no Lua directive): nginx -t ${f(r.nginxT.plain.testMs, 0)} ms, HUP → only new workers left ${f(r.nginxT.plain.hupMs, 0)} ms; the same with the Lua module loaded: ${f(r.nginxT.lua.testMs, 0)} ms / ${f(r.nginxT.lua.hupMs, 0)} ms (1 location with Lua: ${f(r.nginxT.luaOneLocation.testMs, 0)} / ${f(r.nginxT.luaOneLocation.hupMs, 0)} ms)`,
    );
  }
  lines.push(`gateway error log [error]+ lines: ${r.gatewayErrorLogLines.length}`);
  if (r.profile) {
    lines.push('', 'profile (medians over rounds; the servers share one core, so compare CPU µs/req):', '| variant | req/s | p50 ms | p99 ms | proxy CPU µs/req | min–max over rounds |', '|---|---:|---:|---:|---:|---:|');
    for (const [k, s] of Object.entries(r.profile.variants)) {
      const cpu = s.runs.map((x) => x.proxyCpuUs);
      lines.push(`| ${k} | ${f(s.rps, 0)} | ${f(s.p50)} | ${f(s.p99)} | ${f(s.proxyCpuUs, 1)} | ${f(Math.min(...cpu), 1)}–${f(Math.max(...cpu), 1)} |`);
    }
    if (r.profile.micro) {
      lines.push('', 'hot-path pieces timed in the gateway worker (ns per call):', '| piece | ns |', '|---|---:|');
      for (const [k, v] of Object.entries(r.profile.micro)) lines.push(`| ${k} | ${v} |`);
    }
    if (r.profile.microError) lines.push(`micro: ${r.profile.microError}`);
    if (r.profile.perfDso) lines.push('', 'perf, gateway worker by DSO:', ...r.profile.perfDso.map((l) => `  ${l}`));
    if (r.profile.perfSym) lines.push('', 'perf, top symbols:', ...r.profile.perfSym.map((l) => `  ${l}`));
    if (r.profile.perfError) lines.push(`perf: ${r.profile.perfError}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

runBenchmark(main, cleanup, DEADLINE_MS, log);
