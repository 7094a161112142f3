import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { EdgeShare } from '../router/model/push-payload';
import type { EphemeralRoute, Snapshot, StaticRoute } from '../router/model/types';
import { MemoryTokens, startTestGateway, type TestGateway } from '../test/support/gateway-harness';
import { ManualProvider } from '../test/support/manual-provider';
import { freePort } from '../test/support/net';
import { childPids, cpuSeconds, fetchBody, fetchStatus, median, NginxProc, perfAvailable, runWrk, sleep, Tracker, hupAndWait, errorLogHead, badLogLines, runBenchmark, benchNginxConf, plainHttpSettings, floorConf, liveShape, perfUnderLoad, type GatewayShape, sharedSettings, type PerfView, type WrkResult
} from './lib';

/**
 * The benchmarks of issues 3 and 5 (run by `bash bench/run.sh auth|static`, never by jest):
 *  auth   (issue 3): the full authenticated path of an ephemeral route (token check,
 *          authorization by a group share, balancer) against plain nginx and against
 *          configurable-http-proxy (JupyterHub's proxy, installed into the temp dir at bench
 *          time), with one token and with 10,000 distinct tokens rotating per request;
 *  static (issue 5): a static route with 4 backends (affinity by token id) and 10,000 rotating
 *          tokens against plain nginx with a round-robin keepalive upstream over the same 4
 *          backends; then how 10,000 sessions spread over the backends and how many move when a
 *          backend is removed (and added back) by a push.
 * Everything runs on 127.0.0.1; every process it starts it stops by pid; its temp dir is removed.
 */

const env = process.env;
const { seconds: SECONDS, runs: RUNS, conns: CONNS, warmupS: WARMUP_S, loadCpu: LOAD_CPU } = sharedSettings(env);
const LIGHT_SECONDS = Number(env.BENCH_LIGHT_SECONDS ?? 5);
const TOKENS = Number(env.BENCH_TOKENS ?? 10_000);
/** > 0: also a gateway target rotating TOKENS + this many tokens (past the per-worker memo). */
const EXTRA_TOKENS = Number(env.BENCH_EXTRA_TOKENS ?? 0);
const SESSIONS = Number(env.BENCH_SESSIONS ?? 10_000);
const BACKGROUND_TASKS = 200;
const CHP_PACKAGE = env.BENCH_CHP_PACKAGE ?? 'configurable-http-proxy';
/** BENCH_FLOOR=0 leaves out the floor targets (bench/lib.ts floorConf). */
const FLOOR = (env.BENCH_FLOOR ?? '1') !== '0';
const SECTIONS = new Set((env.BENCH_AUTH_SECTIONS ?? 'auth,static').split(',').map((x) => x.trim()).filter(Boolean));
const DEADLINE_MS = Number(env.BENCH_DEADLINE_S ?? 360 * SECTIONS.size) * 1000; // as bench/run.sh
const WRK_SCRIPT = join(__dirname, 'wrk-tokens.lua');
const GROUP = 'bench-team';
const BACKENDS = ['b1', 'b2', 'b3', 'b4'];
const body = (name: string) => `ok from benchmark backend ${name}\n`;

const track = new Tracker();
const root = mkdtempSync(join(env.BENCH_DIR ?? tmpdir(), 'appgw-authbench-'));
const gateways: TestGateway[] = [];
const nginxes: NginxProc[] = [];
let chp: Chp | null = null;

function log(msg: string): void {
  process.stderr.write(`[auth-bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function hex32(): string {
  return randomBytes(16).toString('hex');
}

function snap(p: Partial<Snapshot>): Snapshot {
  return { ephemeral: [], static: [], bindings: [], tcp: [], ...p };
}

function task(id: string, port: number): EphemeralRoute {
  return { id, taskId: id, endpoint: '', owner: 'alice', company: null, backend: { host: '127.0.0.1', port }, stripPrefix: true, provider: 'manual' };
}

function staticRoute(name: string, ports: number[]): StaticRoute {
  return { name, path: `/${name}/`, subdomain: null, backends: ports.map((port) => ({ host: '127.0.0.1', port })), allowedGroups: [GROUP], stripPrefix: true, enabled: true, provider: 'manual', healthCheck: null };
}

/** The in-memory token table of the harness, plus the shares the router pushes with it. */
class BenchTokens extends MemoryTokens {
  readonly shareTable: Record<string, EdgeShare> = {};
  shares(): Record<string, EdgeShare> {
    return { ...this.shareTable };
  }
}

// ---------------------------------------------------------------------------------------------
// the backend (one nginx, one worker, four ports that each answer with their own name) and plain

function backendConf(dir: string, ports: number[]): string {
  const servers = ports
    .map(
      (port, i) => `    server {
        listen 127.0.0.1:${port} backlog=4096;
        location = /_stub_status { stub_status; }
        location / { default_type text/plain; return 200 "${body(BACKENDS[i]!).trim()}\\n"; }
    }`,
    )
    .join('\n');
  return benchNginxConf(
    dir,
    `    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
${servers}`,
  );
}

/** Plain nginx as in issue 2 (bench/core-bench.ts): one server to b1, one round-robin over the four. */
function plainConf(dir: string, portOne: number, portFour: number, backends: number[]): string {
  const upstream = (name: string, ports: number[]) => `    upstream ${name} {
${ports.map((p) => `        server 127.0.0.1:${p};`).join('\n')}
        keepalive 512;
        keepalive_timeout 60s;
        keepalive_requests 10000;
    }`;
  const server = (port: number, up: string) => `    server {
        listen 127.0.0.1:${port} backlog=4096;
        location / {
            proxy_pass http://${up};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }`;
  return benchNginxConf(
    dir,
    `${plainHttpSettings(dir, true)}
${upstream('one', [backends[0]!])}
${upstream('four', backends)}
${server(portOne, 'one')}
${server(portFour, 'four')}`,
  );
}

async function startNginx(name: string, conf: (dir: string) => string, ready: () => Promise<boolean>): Promise<{ proc: NginxProc; dir: string }> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'nginx.conf'), conf(dir));
  const proc = new NginxProc(name, dir, join(dir, 'nginx.conf'), track);
  nginxes.push(proc);
  await proc.start(ready);
  return { proc, dir };
}

/** A floor target (bench/lib.ts floorConf): the gateway's shape doing only its unskippable work. */
async function startFloor(name: string, backends: number[], shape: GatewayShape, kind: 'task' | 'static'): Promise<{ url: string; pids: () => number[] }> {
  const port = await freePort();
  const { proc } = await startNginx(name, (dir) => floorConf(dir, port, backends, shape, { ops: true, kind }), async () => (await fetchStatus(`http://127.0.0.1:${port}/`)) === 200);
  return { url: `http://127.0.0.1:${port}/`, pids: () => childPids(proc.pid) };
}

// ---------------------------------------------------------------------------------------------
// configurable-http-proxy, installed into the temp dir

class Chp {
  child: ChildProcess | null = null;
  version = '';
  port = 0;
  apiPort = 0;
  private readonly authToken = hex32();
  private err = '';
  constructor(private readonly dir: string) {}

  /** `npm install --prefix <temp dir> configurable-http-proxy` (never into the project). */
  async install(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const c = execFile('npm', ['install', '--prefix', this.dir, '--no-audit', '--no-fund', '--no-save', '--loglevel=error', CHP_PACKAGE], { timeout: 120_000, cwd: this.dir }, (err, _o, e) => {
        if (c.pid) track.remove(c.pid);
        if (err) reject(new Error(`npm install ${CHP_PACKAGE}: ${e || err.message}`));
        else resolve();
      });
      if (c.pid) track.add(c.pid, 'npm install');
    });
    const pkg = JSON.parse(readFileSync(join(this.dir, 'node_modules', 'configurable-http-proxy', 'package.json'), 'utf8')) as { version: string };
    this.version = pkg.version;
    log(`configurable-http-proxy ${this.version} installed into ${this.dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }

  /** Starts it on 127.0.0.1 (this process's CPUs: the server core) and adds `route` → `target`. */
  async start(route: string, target: string): Promise<void> {
    this.port = await freePort();
    this.apiPort = await freePort();
    const bin = join(this.dir, 'node_modules', 'configurable-http-proxy', 'bin', 'configurable-http-proxy');
    const args = [bin, '--ip', '127.0.0.1', '--port', String(this.port), '--api-ip', '127.0.0.1', '--api-port', String(this.apiPort), '--log-level', 'warn', '--pid-file', join(this.dir, 'chp.pid')];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...env, CONFIGPROXY_AUTH_TOKEN: this.authToken } });
    this.child = child;
    track.add(child.pid!, 'configurable-http-proxy');
    child.stderr!.on('data', (d: Buffer) => (this.err = (this.err + d.toString()).slice(-4000)));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`configurable-http-proxy exited at start: ${this.err.trim()}`);
      const st = await this.api('POST', `/api/routes${route}`, JSON.stringify({ target })).catch(() => 0);
      if (st === 201) break;
      if (Date.now() > deadline) throw new Error(`configurable-http-proxy did not accept the route within 20 s (${st}): ${this.err.trim()}`);
      await sleep(100);
    }
  }

  private api(method: string, path: string, data: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const r = http.request({ host: '127.0.0.1', port: this.apiPort, path, method, agent: false, headers: { Authorization: `token ${this.authToken}`, 'Content-Type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      r.setTimeout(3000, () => r.destroy(new Error('timeout')));
      r.on('error', reject);
      r.end(data);
    });
  }

  cpus(): string {
    const pid = this.child?.pid;
    if (!pid) return '?';
    return /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '?';
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || !c.pid) return;
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    await new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)));
    clearTimeout(t);
    track.remove(c.pid);
  }
}

// ---------------------------------------------------------------------------------------------
// measuring

interface Measured extends WrkResult {
  /** CPU µs the proxy's process(es) spent per request. */
  proxyCpuUs: number;
  /** CPU µs the backend's worker spent per request. */
  backendCpuUs: number;
  /** CPU share of this process (the router) during the run, 0..1. */
  routerCpu: number;
  /** New TCP connections the backend accepted during the run (keep-alive check). */
  backendConnections: number;
  /** Slowest answer of the gateway's push socket (/_internal/state, polled 4×/s) during the run, ms. */
  probeMaxMs: number;
  /** CPU seconds the gateway's workers used during the run (whatever the target). */
  gatewayCpuS: number;
}

interface Target {
  key: string;
  name: string;
  url: string;
  /** Token file for bench/wrk-tokens.lua. */
  tokens: string;
  pids: () => number[];
}

let backend: { proc: NginxProc; ports: number[] };

async function backendAccepts(): Promise<number> {
  const m = /^\s*(\d+)\s+\d+\s+\d+\s*$/m.exec(await fetchBody(`http://127.0.0.1:${backend.ports[0]}/_stub_status`));
  return m ? Number(m[1]) : NaN;
}

/** What wrk is loading right now (for the data-version watcher's log lines). */
let running = '';
/** The gateway's worker pids (set once it runs): their CPU is recorded in every run, also of other targets. */
let gatewayWorkers: () => number[] = () => [];
/** Slowest answer of the proxy's push socket (/_internal/state) seen by the watcher during the current run, ms. */
let probeMaxMs = 0;

async function measure(t: Target, seconds: number, connections: number): Promise<Measured> {
  running = `${t.name} (-c${connections})`;
  probeMaxMs = 0;
  const pids = t.pids();
  const bworkers = childPids(backend.proc.pid);
  const cpu0 = cpuSeconds(pids);
  const gwCpu0 = cpuSeconds(gatewayWorkers());
  const b0 = cpuSeconds(bworkers);
  const acc0 = await backendAccepts();
  const r0 = process.cpuUsage();
  const w0 = performance.now();
  const r = await runWrk({ url: t.url, seconds, connections, threads: 1, headers: {}, cpu: LOAD_CPU, script: WRK_SCRIPT, scriptArgs: [t.tokens] }, track);
  const wall = (performance.now() - w0) / 1000;
  const ru = process.cpuUsage(r0);
  const cpu = cpuSeconds(pids) - cpu0;
  const gwCpu = cpuSeconds(gatewayWorkers()) - gwCpu0;
  const bcpu = cpuSeconds(bworkers) - b0;
  const acc = (await backendAccepts()) - acc0 - 1; // the stub_status request itself
  running = '';
  const probe = probeMaxMs;
  if (r.non2xx > 0 || r.socketErrors > 0) log(`WARNING ${t.name}: ${r.non2xx} non-2xx responses, ${r.socketErrors} socket errors`);
  return {
    ...r,
    proxyCpuUs: (cpu / r.requests) * 1e6,
    backendCpuUs: (bcpu / r.requests) * 1e6,
    routerCpu: (ru.user + ru.system) / 1e6 / wall,
    backendConnections: acc,
    probeMaxMs: probe,
    gatewayCpuS: gwCpu,
  };
}

interface Summary {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  proxyCpuUs: number;
  backendCpuUs: number;
  errors: number;
  runs: Measured[];
}

function summarize(name: string, runs: Measured[]): Summary {
  return {
    name,
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    proxyCpuUs: median(runs.map((r) => r.proxyCpuUs)),
    backendCpuUs: median(runs.map((r) => r.backendCpuUs)),
    errors: runs.reduce((a, r) => a + r.non2xx + r.socketErrors, 0),
    runs,
  };
}

function fmtRun(name: string, r: Measured): string {
  return `${name.padEnd(34)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(3)} ms  p99 ${r.p99.toFixed(3)} ms  proxy ${r.proxyCpuUs.toFixed(1)} µs/req  backend ${r.backendCpuUs.toFixed(1)} µs/req  backend conns +${r.backendConnections}  router cpu ${(r.routerCpu * 100).toFixed(1)}%  push socket max ${r.probeMaxMs.toFixed(0)} ms  gateway worker ${r.gatewayCpuS.toFixed(2)} s CPU`;
}

/** Warm-up, then `RUNS` rounds over the targets, the order rotating each round; medians. */
async function rounds(label: string, targets: Target[], seconds: number, connections: number, warmup: boolean): Promise<Record<string, Summary>> {
  log(`${label}: ${RUNS} × ${seconds} s per target, wrk -t1 -c${connections} --latency -s wrk-tokens.lua, order rotating${warmup ? ` (warm-up ${WARMUP_S} s each)` : ''}`);
  if (warmup) for (const t of targets) await measure(t, WARMUP_S, connections);
  const runs: Record<string, Measured[]> = Object.fromEntries(targets.map((t) => [t.key, []]));
  for (let i = 0; i < RUNS; i++) {
    const order = targets.map((_, j) => targets[(i + j) % targets.length]!);
    if (i % 2 === 1) order.reverse();
    for (const t of order) {
      const r = await measure(t, seconds, connections);
      runs[t.key]!.push(r);
      log(fmtRun(`${t.name} #${i + 1}`, r));
    }
  }
  return Object.fromEntries(targets.map((t) => [t.key, summarize(t.name, runs[t.key]!)]));
}

function perfUnder(t: Target, worker: number, name: string): Promise<PerfView> {
  log(`perf: sampling the gateway worker ${worker} for 4 s under ${t.name}`);
  return perfUnderLoad(worker, join(root, `perf-${name}.data`), { url: t.url, connections: CONNS, threads: 1, headers: {}, cpu: LOAD_CPU, script: WRK_SCRIPT, scriptArgs: [t.tokens] }, track);
}

const PERF = (env.BENCH_PERF ?? '1') !== '0';

// ---------------------------------------------------------------------------------------------
// sessions over backends

/** GETs `url` once per header set (`concurrency` in flight, keep-alive); the backend name of each answer. */
async function whoServes(url: string, headerSets: Array<Record<string, string>>, concurrency = 8): Promise<string[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const out: string[] = new Array(headerSets.length);
  let next = 0;
  const one = (headers: Record<string, string>) =>
    new Promise<string>((resolve) => {
      const r = http.get(url, { headers, agent }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(res.statusCode === 200 ? (/backend (b\d)/.exec(b)?.[1] ?? `?${b.slice(0, 40)}`) : `status ${res.statusCode}`));
        res.on('error', () => resolve('error'));
      });
      r.setTimeout(5000, () => r.destroy());
      r.on('error', () => resolve('error'));
    });
  const worker = async () => {
    while (next < headerSets.length) {
      const i = next++;
      out[i] = await one(headerSets[i]!);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return out;
}

function countBy(xs: string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const x of xs) c[x] = (c[x] ?? 0) + 1;
  return Object.fromEntries(Object.entries(c).sort());
}

/** Largest deviation from an even split over `n` backends, as a fraction of the even share. */
function maxDeviation(counts: Record<string, number>, n: number, total: number): number {
  const even = total / n;
  return Math.max(...BACKENDS.slice(0, n).map((b) => Math.abs((counts[b] ?? 0) - even) / even));
}

async function dataVersion(g: TestGateway): Promise<number> {
  const st = JSON.parse((await fetchBody('http://localhost/_internal/state', {}, join(g.config.runDir, 'push.sock'))) || '{}') as { version?: number };
  return st.version ?? -1;
}

/** Sets the snapshot and resolves once the proxy holds a newer data version (the push landed). */
async function pushAndWait(g: TestGateway, provider: ManualProvider, s: Snapshot): Promise<number> {
  const before = await dataVersion(g);
  const t0 = performance.now();
  provider.set(s);
  while ((await dataVersion(g)) <= before) {
    if (performance.now() - t0 > 10_000) throw new Error('the push did not reach the proxy within 10 s');
    await sleep(5);
  }
  return performance.now() - t0;
}

// ---------------------------------------------------------------------------------------------
// the token check's Lua cost with 1 and with 10,000 tokens, timed inside the worker

/**
 * A location added to the benchmark gateway's temp copy of its rendered config: times
 * auth.check_token (what the access phase does for X-Gateway-Token) over the tokens of a file, in
 * rotation, with the memo warm, as a real worker would (the presented string is built afresh each
 * call, as ngx.var does); also the worker's Lua heap and a full GC cycle. ?file=&n=&pick=
 */
const MICRO_LOCATION = `location = /_bench/tokens {
    content_by_lua_block {
        local cjson = require "cjson.safe"
        local auth = require "appgw.auth"
        local state = require "appgw.state"
        local a, b = {}, {}
        for line in io.lines(ngx.unescape_uri(ngx.var.arg_file or "")) do
            if line ~= "" then a[#a + 1] = line:sub(1, 20); b[#b + 1] = line:sub(21) end
        end
        local n = #a
        local N = tonumber(ngx.var.arg_n) or 100000
        local out = { tokens = n }
        local function clock() ngx.update_time(); return ngx.now() end
        -- warm: every token verified (memo) and its record decoded (state cache); twice, as a
        -- memo that fills up starts again from empty
        for _ = 1, 2 do
            for i = 1, n do
                if not auth.check_token(a[i] .. b[i]) then out.error = "token " .. i .. " refused"; break end
            end
        end
        collectgarbage()
        out.heap_kb = math.floor(collectgarbage("count"))
        local t0 = clock()
        collectgarbage()
        out.full_gc_ms = math.floor((clock() - t0) * 1e4 + 0.5) / 10
        -- time per call, collector running as in production
        t0 = clock()
        for i = 1, N do local j = (i % n) + 1; auth.check_token(a[j] .. b[j]) end
        out.check_token_ns = math.floor((clock() - t0) * 1e9 / N + 0.5)
        -- the same with ~1 KB of short-lived tables per call, as a request makes (ngx.ctx,
        -- identity, strings): what the collector costs when the live heap is large
        local function garbage()
            local t = {}
            for k = 1, 16 do t[k] = { k, k } end
            return t
        end
        t0 = clock()
        for i = 1, N do local j = (i % n) + 1; auth.check_token(a[j] .. b[j]); garbage() end
        out.with_garbage_ns = math.floor((clock() - t0) * 1e9 / N + 0.5)
        -- the same with the collector's pause doubled (200 -> 400: a cycle when the heap has
        -- grown to 4x, not 2x, the live data)
        local pause = collectgarbage("setpause", 400)
        t0 = clock()
        for i = 1, N do local j = (i % n) + 1; auth.check_token(a[j] .. b[j]); garbage() end
        out.with_garbage_pause400_ns = math.floor((clock() - t0) * 1e9 / N + 0.5)
        collectgarbage("setpause", pause)
        collectgarbage("stop")
        local k0 = collectgarbage("count")
        for i = 1, 10000 do garbage() end
        out.garbage_bytes = math.floor((collectgarbage("count") - k0) * 1024 / 10000 + 0.5)
        k0 = collectgarbage("count")
        for i = 1, 10000 do local j = (i % n) + 1; auth.check_token(a[j] .. b[j]) end
        out.bytes_per_call = math.floor((collectgarbage("count") - k0) * 1024 / 10000 + 0.5)
        collectgarbage("restart")
        -- the static route's backend choice (issue 5): pick.first over its 4 backends for
        -- the affinity key of each token, and the bounded-load in-flight count (+1, -1)
        local route = state.route("s:llm")
        if route and route.b and #route.b > 1 then
            local pick = require "appgw.pick"
            local keys = {}
            for i = 1, n do keys[i] = "t:" .. (auth.parse(a[i] .. b[i]) or i) end
            t0 = clock()
            for i = 1, N do local j = (i % n) + 1; pick.first(route.b, keys[j]) end
            out.pick_first_ns = math.floor((clock() - t0) * 1e9 / N + 0.5)
            local peer = pick.id(route.b, 1)
            t0 = clock()
            for i = 1, N do pick.acquire(peer); pick.release(peer) end
            out.acquire_release_ns = math.floor((clock() - t0) * 1e9 / N + 0.5)
        end
        out.version = state.version()
        ngx.header["Content-Type"] = "application/json"
        ngx.say(cjson.encode(out))
    }
}`;

/** One GET (fresh connection) that may take up to 60 s; the body, or the error. */
function getSlow(url: string): Promise<string> {
  return new Promise((resolve) => {
    const r = http.get(url, { agent: false }, (res) => {
      let b = '';
      res.on('data', (d: Buffer) => (b += d.toString()));
      res.on('end', () => resolve(b));
      res.on('error', (e) => resolve(`error: ${e.message}`));
    });
    r.setTimeout(60_000, () => r.destroy(new Error('no answer within 60 s')));
    r.on('error', (e) => resolve(`error: ${e.message}`));
  });
}

/** Stops the router (its nginx keeps the pushed data), adds MICRO_LOCATION to the temp copy, HUPs, times. */
async function micro(g: TestGateway, files: Record<string, string>, ready: () => Promise<boolean>): Promise<Record<string, unknown>> {
  await g.gw.router.stop();
  const master = g.gw.nginx!.pid()!;
  const conf = join(realpathSync(join(g.config.nginxDir, 'current')), 'gateway-locations.conf');
  const text = readFileSync(conf, 'utf8');
  if (!/\nlocation \/ \{/.test(text)) throw new Error(`micro: no "location / {" in ${conf} (did the template change?)`);
  writeFileSync(conf, text.replace(/\nlocation \/ \{/, `\n${MICRO_LOCATION}\nlocation / {`));
  const out: Record<string, unknown> = {};
  // a fresh worker per case, so that one case's memo and heap do not carry into the next
  for (const [k, f] of Object.entries(files)) {
    await hupAndWait(master, ready);
    const body = await getSlow(`${g.url}/_bench/tokens?file=${encodeURIComponent(f)}&n=100000`);
    try {
      out[k] = JSON.parse(body);
    } catch {
      out[k] = { error: body.slice(0, 300) };
    }
    log(`micro ${k}: ${body.trim()}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

interface Result {
  date: string;
  settings: Record<string, unknown>;
  load: { before: string; after: string };
  auth: null | {
    heavy: Record<string, Summary>;
    light: Record<string, Summary>;
    chp: { version: string; cpus: string } | { error: string } | null;
    perf: Record<string, PerfView>;
    dataVersions: number[];
  };
  static: null | {
    heavy: Record<string, Summary>;
    perf: Record<string, PerfView>;
    distribution: {
      sessions: number;
      bySession: Record<string, number>;
      bySessionMaxDeviation: number;
      byToken: Record<string, number>;
      byTokenMaxDeviation: number;
      stickyRepeat: number;
      removed: string;
      afterRemoval: Record<string, number>;
      movedOnRemoval: number;
      movedNotOnRemoved: number;
      onRemoved: number;
      movedOnReAdd: number;
      backToOriginal: number;
      pushMs: number[];
      workersUnchanged: boolean;
      reloads: number;
    };
  };
  micro: Record<string, unknown> | null;
  versionChanges?: Array<{ at: string; from: number; to: number; during: string }>;
  routerLog?: string[];
  pushes?: number;
  gatewayErrorLogLines: string[];
  totalSeconds: number;
}

function errorLogBad(g: TestGateway): string[] {
  return badLogLines(errorLogHead(g.dir).text);
}

async function cleanup(): Promise<void> {
  if (chp) await chp.stop().catch(() => undefined);
  for (const g of gateways.splice(0)) {
    const pid = g.gw.nginx?.pid() ?? null;
    await g.stop().catch(() => undefined);
    if (pid !== null) track.remove(pid);
  }
  for (const n of nginxes.splice(0)) await n.stop().catch(() => undefined);
  await track.killAll();
  rmSync(root, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const started = performance.now();
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').trim();
  log(`load average before: ${loadBefore}`);
  log(`sections ${[...SECTIONS].join(',')}; temp dir ${root}; wrk on CPU ${LOAD_CPU ?? '(not pinned)'}; servers on CPUs ${env.BENCH_SERVER_CPU ?? '(not pinned)'}`);
  for (const s of SECTIONS) if (s !== 'auth' && s !== 'static') throw new Error(`unknown section ${s} (auth, static)`);

  // backend: one nginx worker on four ports, each answering with its name
  const ports = await Promise.all(BACKENDS.map(() => freePort()));
  const be = await startNginx('backend', (dir) => backendConf(dir, ports), async () => (await fetchStatus(`http://127.0.0.1:${ports[3]}/`)) === 200);
  backend = { proc: be.proc, ports };
  const plainOne = await freePort();
  const plainFour = await freePort();
  const plain = await startNginx('plain', (dir) => plainConf(dir, plainOne, plainFour, ports), async () => (await fetchStatus(`http://127.0.0.1:${plainFour}/`)) === 200);

  // the token table: TOKENS tokens of distinct users in GROUP, one more of the same kind, one outsider
  const t0 = performance.now();
  const tokens = new BenchTokens();
  const many: string[] = [];
  for (let i = 0; i < TOKENS; i++) many.push(tokens.add({ u: `user${String(i).padStart(5, '0')}`, g: [GROUP] }));
  const extra: string[] = [];
  for (let i = 0; i < EXTRA_TOKENS; i++) extra.push(tokens.add({ u: `xuser${i}`, g: [GROUP] }));
  const solo = tokens.add({ u: 'solo', g: [GROUP] });
  const outsider = tokens.add({ u: 'outsider', g: ['other'] });
  const tokDir = join(root, 'tokens');
  mkdirSync(tokDir);
  const fileMany = join(tokDir, 'many.txt');
  const fileSolo = join(tokDir, 'one.txt');
  const fileExtra = join(tokDir, 'extra.txt');
  writeFileSync(fileMany, many.join('\n') + '\n');
  writeFileSync(fileSolo, solo + '\n');
  if (EXTRA_TOKENS > 0) writeFileSync(fileExtra, [...many, ...extra].join('\n') + '\n');

  // routes: the benchmarked task (owner alice, shared with GROUP) among 200 others, a static route on 4 backends
  const BENCH = hex32();
  tokens.shareTable[BENCH] = { p: 'owner', u: [], g: [GROUP] };
  const base = [task(BENCH, ports[0]!), ...Array.from({ length: BACKGROUND_TASKS }, () => task(hex32(), ports[0]!))];
  const llm = (ps: number[]) => staticRoute('llm', ps);
  const provider = new ManualProvider();
  provider.snapshot = snap({ ephemeral: base, static: [llm(ports)] });
  // PUSH_INTERVAL 1h: no periodic heal. Its probe of the proxy (/_internal/state, 3 s timeout)
  // can time out here while the gateway's worker waits for the CPU that plain nginx and the
  // backend saturate (it runs in a session, and so a scheduler autogroup, of its own); the heal
  // then re-pushes the whole 2.5 MB snapshot, which empties the workers' token memo mid-run
  // (seen in the runs of 2026-11-23; see bench/README.md). Pushes on change are unaffected.
  // BENCH_STREAM_REVOCATION=false measures the gateway without its stream-revocation body filter
  const g = await startTestGateway({ providers: [provider], tokens, env: { PROXY_WORKER_PROCESSES: '1', PUSH_INTERVAL: '1h', STREAM_REVOCATION: env.BENCH_STREAM_REVOCATION ?? 'true' } });
  log(`gateway with STREAM_REVOCATION=${env.BENCH_STREAM_REVOCATION ?? 'true'}`);
  gateways.push(g);
  track.add(g.gw.nginx!.pid()!, 'gateway nginx');
  const tableSize = Object.keys(tokens.tokens).length;
  /** Bytes of the token table alone in each push (the router pushes the whole snapshot every time). */
  const tokenTableBytes = JSON.stringify(tokens.table()).length;
  const gwService = `${g.url}/service/${BENCH}/`;
  const gwStatic = `${g.url}/llm/`;
  for (let i = 0; (await fetchStatus(gwService, { 'X-Gateway-Token': solo })) !== 200; i++) {
    if (i > 1000) throw new Error(`the gateway does not serve ${gwService}`);
    await sleep(10);
  }
  log(`gateway up with ${tableSize} tokens and ${base.length} + 1 routes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // the path is really authenticated and authorized
  const checks: Array<[string, string, Record<string, string>, number]> = [
    ['service, no token', gwService, {}, 401],
    ['service, outsider', gwService, { 'X-Gateway-Token': outsider }, 403],
    ['service, forged secret', gwService, { 'X-Gateway-Token': many[0]!.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')) }, 401],
    ['static, no token', gwStatic, {}, 401],
    ['static, outsider', gwStatic, { 'X-Gateway-Token': outsider }, 403],
    ['service, a rotating token', gwService, { 'X-Gateway-Token': many[TOKENS - 1]! }, 200],
    ['static, a rotating token', gwStatic, { 'X-Gateway-Token': many[0]! }, 200],
  ];
  for (const [what, url, headers, want] of checks) {
    const st = await fetchStatus(url, headers);
    if (st !== want) throw new Error(`sanity check "${what}": ${st}, expected ${want}`);
  }
  for (const [what, url] of [['plain (one upstream)', `http://127.0.0.1:${plainOne}/`], ['gateway service route', gwService]] as const) {
    const b = await fetchBody(url, { 'X-Gateway-Token': solo });
    if (b !== body('b1')) throw new Error(`${what} does not answer with the backend's body: ${JSON.stringify(b.slice(0, 200))}`);
  }

  // a push replaces the data and so empties every worker's token memo and record cache: log when
  // one happens (the router pushes when the data changed, or when its periodic probe of the
  // proxy fails), with what was running then
  let lastVersion = await dataVersion(g);
  const versionChanges: Array<{ at: string; from: number; to: number; during: string }> = [];
  let lastTick = performance.now();
  const watcher = setInterval(() => {
    const p0 = performance.now();
    const loopLag = p0 - lastTick - 250;
    lastTick = p0;
    if (loopLag > 100) log(`this process's event loop was ${loopLag.toFixed(0)} ms late (during ${running || '(between runs)'})`);
    void dataVersion(g).then((v) => {
      const ms = performance.now() - p0;
      probeMaxMs = Math.max(probeMaxMs, ms);

      if (v === lastVersion || v < 0) return;
      const ch = { at: new Date().toISOString().slice(11, 23), from: lastVersion, to: v, during: running || '(between runs)' };
      versionChanges.push(ch);
      log(`data version ${ch.from} → ${ch.to} during ${ch.during}`);
      lastVersion = v;
    });
  }, 250);
  watcher.unref();
  const plainPids = () => childPids(plain.proc.pid);
  const gwPids = () => g.workerPids();
  gatewayWorkers = gwPids;
  const result: Result = {
    date: new Date().toISOString(),
    settings: { seconds: SECONDS, runs: RUNS, connections: CONNS, lightSeconds: LIGHT_SECONDS, tokens: TOKENS, extraTokens: EXTRA_TOKENS, tokenTable: tableSize, tokenTableBytes, sessions: SESSIONS, loadCpu: LOAD_CPU, serverCpu: env.BENCH_SERVER_CPU ?? null, workers: 1 },
    load: { before: loadBefore, after: '' },
    auth: null,
    static: null,
    micro: null,
    gatewayErrorLogLines: [],
    totalSeconds: 0,
  };

  if (SECTIONS.has('auth')) {
    const targets: Target[] = [
      { key: 'plain', name: 'plain nginx', url: `http://127.0.0.1:${plainOne}/`, tokens: fileMany, pids: plainPids },
      { key: 'gw1', name: 'gateway, 1 token', url: gwService, tokens: fileSolo, pids: gwPids },
      { key: 'gwMany', name: `gateway, ${TOKENS} tokens`, url: gwService, tokens: fileMany, pids: gwPids },
    ];
    if (EXTRA_TOKENS > 0) targets.push({ key: 'gwExtra', name: `gateway, ${TOKENS + EXTRA_TOKENS} tokens`, url: gwService, tokens: fileExtra, pids: gwPids });
    if (FLOOR) {
      const fl = await startFloor('floor-task', [ports[0]!], liveShape(g.config.nginxDir), 'task');
      targets.push({ key: 'floor', name: 'floor: task-route shape + unskippable per-request work, no logic', tokens: fileMany, ...fl });
    }
    let chpInfo: NonNullable<Result['auth']>['chp'] = null;
    if ((env.BENCH_CHP ?? '1') !== '0') {
      try {
        chp = new Chp(join(root, 'chp'));
        await chp.install();
        await chp.start(`/service/${BENCH}`, `http://127.0.0.1:${ports[0]}`);
        const b = await fetchBody(`http://127.0.0.1:${chp.port}/service/${BENCH}/`);
        if (b !== body('b1')) throw new Error(`configurable-http-proxy does not answer with the backend's body: ${JSON.stringify(b.slice(0, 200))}`);
        const c = chp;
        targets.push({ key: 'chp', name: `configurable-http-proxy ${c.version}`, url: `http://127.0.0.1:${c.port}/service/${BENCH}/`, tokens: fileMany, pids: () => (c.child?.pid ? [c.child.pid] : []) });
        chpInfo = { version: c.version, cpus: c.cpus() };
        log(`configurable-http-proxy pid ${c.child!.pid} on CPUs ${chpInfo.cpus}`);
      } catch (e) {
        chpInfo = { error: (e as Error).message };
        log(`configurable-http-proxy not measured: ${chpInfo.error}`);
        await chp?.stop();
        chp = null;
      }
    }
    const v0 = await dataVersion(g);
    const heavy = await rounds('auth, throughput', targets, SECONDS, CONNS, true);
    const light = LIGHT_SECONDS > 0 ? await rounds('auth, light load (1 connection)', targets.filter((t) => t.key !== 'chp' && t.key !== 'gwExtra'), LIGHT_SECONDS, 1, false) : {};
    const perf: Record<string, PerfView> = {};
    if (PERF && (await perfAvailable())) for (const t of targets.filter((x) => x.key.startsWith('gw'))) perf[t.key] = await perfUnder(t, g.workerPids()[0]!, t.key);
    const v1 = await dataVersion(g);
    if (v1 !== v0) log(`WARNING: the pushed data changed during the runs (version ${v0} → ${v1}): each push empties the workers' token memo`);
    result.auth = { heavy, light, chp: chpInfo, perf, dataVersions: [v0, v1] };
    if (chp) {
      await chp.stop();
      chp = null;
    }
  }

  if (SECTIONS.has('static')) {
    const targets: Target[] = [
      { key: 'plain', name: 'plain nginx, round robin over 4', url: `http://127.0.0.1:${plainFour}/`, tokens: fileMany, pids: plainPids },
      { key: 'gw', name: `gateway static route, 4 backends, ${TOKENS} tokens`, url: gwStatic, tokens: fileMany, pids: gwPids },
    ];
    if (FLOOR) {
      const fl = await startFloor('floor-static', ports, liveShape(g.config.nginxDir), 'static');
      targets.push({ key: 'floor', name: 'floor: static-route shape (4 backends) + unskippable per-request work, no logic', tokens: fileMany, ...fl });
    }
    const heavy = await rounds('static, throughput', targets, SECONDS, CONNS, true);
    const perf: Record<string, PerfView> = {};
    if (PERF && (await perfAvailable())) perf.gw = await perfUnder(targets[1]!, g.workerPids()[0]!, 'static');

    log(`static: ${SESSIONS} sessions (X-Session-Id) and ${TOKENS} tokens over the 4 backends`);
    const sessions = Array.from({ length: SESSIONS }, (_, i) => ({ 'X-Gateway-Token': solo, 'X-Session-Id': `session-${i}-${hex32().slice(0, 8)}` }));
    const before = await whoServes(gwStatic, sessions);
    const repeat = await whoServes(gwStatic, sessions);
    const stickyRepeat = before.filter((b, i) => b === repeat[i]).length / SESSIONS;
    const byToken = countBy(await whoServes(gwStatic, many.map((t) => ({ 'X-Gateway-Token': t }))));
    const bySession = countBy(before);
    const workers0 = g.workerPids().join(',');
    const reloads0 = g.gw.router.stats.reloads;
    const removed = 'b2';
    const without = snap({ ephemeral: base, static: [llm(ports.filter((_, i) => BACKENDS[i] !== removed))] });
    const withAll = snap({ ephemeral: base, static: [llm(ports)] });
    const pushMs: number[] = [];
    pushMs.push(await pushAndWait(g, provider, without));
    const after = await whoServes(gwStatic, sessions);
    pushMs.push(await pushAndWait(g, provider, withAll));
    const back = await whoServes(gwStatic, sessions);
    // more remove/add pushes, for the time a push takes with this token table (no load)
    for (let i = 0; i < 4; i++) {
      await sleep(100);
      pushMs.push(await pushAndWait(g, provider, i % 2 === 0 ? without : withAll));
    }
    await sleep(100);
    const workersUnchanged = g.workerPids().join(',') === workers0;
    const reloads = g.gw.router.stats.reloads - reloads0;
    const onRemoved = before.filter((b) => b === removed).length;
    const moved = before.filter((b, i) => b !== after[i]).length;
    const movedOther = before.filter((b, i) => b !== removed && b !== after[i]).length;
    const movedBack = after.filter((b, i) => b !== back[i]).length;
    const original = back.filter((b, i) => b === before[i]).length;
    const dist = {
      sessions: SESSIONS,
      bySession,
      bySessionMaxDeviation: maxDeviation(bySession, 4, SESSIONS),
      byToken,
      byTokenMaxDeviation: maxDeviation(byToken, 4, TOKENS),
      stickyRepeat,
      removed,
      afterRemoval: countBy(after),
      movedOnRemoval: moved / SESSIONS,
      movedNotOnRemoved: movedOther,
      onRemoved,
      movedOnReAdd: movedBack / SESSIONS,
      backToOriginal: original / SESSIONS,
      pushMs,
      workersUnchanged,
      reloads,
    };
    log(`static: by session ${JSON.stringify(bySession)}; by token ${JSON.stringify(byToken)}; after removing ${removed} ${JSON.stringify(dist.afterRemoval)}; moved ${moved} (${(dist.movedOnRemoval * 100).toFixed(1)} %), of them not on ${removed}: ${movedOther}; re-added: moved ${movedBack}, back on the original ${original}; workers unchanged ${workersUnchanged}, reloads ${reloads}`);
    result.static = { heavy, perf, distribution: dist };
  }

  result.gatewayErrorLogLines = errorLogBad(g).slice(0, 5);
  clearInterval(watcher);
  result.versionChanges = versionChanges;
  result.routerLog = g.log.lines.filter((l) => l.level === 'warn' || l.level === 'error').slice(0, 20).map((l) => `${l.level}: ${l.msg} ${JSON.stringify(l.fields)}`);
  result.pushes = g.gw.router.stats.pushes;
  // last (it stops the router): the token check in a loop inside a worker, 1 token vs TOKENS
  if ((env.BENCH_MICRO ?? '1') !== '0') {
    const files: Record<string, string> = { '1 token': fileSolo, [`${TOKENS} tokens`]: fileMany };
    if (EXTRA_TOKENS > 0) files[`${TOKENS + EXTRA_TOKENS} tokens`] = fileExtra;
    try {
      result.micro = await micro(g, files, async () => (await fetchStatus(gwService, { 'X-Gateway-Token': solo })) === 200);
    } catch (e) {
      result.micro = { error: (e as Error).message };
      log(`micro: ${(e as Error).message}`);
    }
  }
  result.load.after = readFileSync('/proc/loadavg', 'utf8').trim();
  result.totalSeconds = Math.round((performance.now() - started) / 1000);
  if (env.BENCH_OUT) writeFileSync(env.BENCH_OUT, JSON.stringify(result, null, 2));
  report(result);
}

/** Prints the figures (markdown tables, as in bench/README.md). */
function report(r: Result): void {
  const f = (x: number, d = 2) => x.toFixed(d);
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  const lines = ['', `== appgw auth/static benchmark, ${r.date} (${r.totalSeconds} s) ==`, `load average before/after: ${r.load.before} / ${r.load.after}`];
  const table = (rows: Summary[], base: Summary) => {
    lines.push('| target | req/s | p50 ms | p99 ms | vs plain req/s | added p99 ms | proxy CPU µs/req | backend conns opened per run |', '|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const s of rows)
      lines.push(
        `| ${s.name} | ${f(s.rps, 0)} | ${f(s.p50, 3)} | ${f(s.p99, 3)} | ${s === base ? '' : f(s.rps / base.rps, 3)} | ${s === base ? '' : f(s.p99 - base.p99, 3)} | ${f(s.proxyCpuUs, 1)} | ${s.runs.map((x) => x.backendConnections).join(', ')} |`,
      );
    const errs = rows.filter((s) => s.errors > 0);
    if (errs.length) lines.push(`non-2xx or socket errors: ${errs.map((s) => `${s.name}: ${s.errors}`).join('; ')}`);
  };
  const a = r.auth;
  if (a) {
    lines.push('', `issue 3: wrk -t1 -c${r.settings.connections} -d${r.settings.seconds}s --latency -s bench/wrk-tokens.lua, ${r.settings.runs} rounds, medians; wrk on CPU ${r.settings.loadCpu ?? '-'}, servers on CPU ${r.settings.serverCpu ?? '-'}`);
    const rows = Object.values(a.heavy);
    const p = a.heavy.plain!;
    table(rows, p);
    for (const k of ['gw1', 'gwMany', 'gwExtra']) {
      const s = a.heavy[k];
      if (!s) continue;
      const ratio = s.rps / p.rps;
      const added = s.p99 - p.p99;
      lines.push(`${s.name}: ${f(ratio, 3)} of plain (target ≥ 0.85: ${ratio >= 0.85 ? 'met' : 'MISSED'}), p99 +${f(added, 3)} ms (target ≤ 0.3 ms: ${added <= 0.3 ? 'met' : 'MISSED'}); proxy CPU per request plain/gateway ${f(p.proxyCpuUs / s.proxyCpuUs, 3)}`);
      if (a.heavy.chp) lines.push(`  × configurable-http-proxy: ${f(s.rps / a.heavy.chp.rps, 1)} (target ≥ 6: ${s.rps / a.heavy.chp.rps >= 6 ? 'met' : 'MISSED'}); by CPU per request ${f(a.heavy.chp.proxyCpuUs / s.proxyCpuUs, 1)}`);
    }
    if (a.chp && 'error' in a.chp) lines.push(`configurable-http-proxy: not measured (${a.chp.error})`);
    if (a.chp && 'cpus' in a.chp) lines.push(`configurable-http-proxy ${a.chp.version}, pinned to CPUs ${a.chp.cpus}`);
    if (a.light.plain) {
      lines.push('', `light load: wrk -t1 -c1 -d${r.settings.lightSeconds}s, ${r.settings.runs} rounds, medians`);
      table(Object.values(a.light), a.light.plain);
    }
  }
  const s = r.static;
  if (s) {
    lines.push('', `issue 5: wrk -t1 -c${r.settings.connections} -d${r.settings.seconds}s --latency -s bench/wrk-tokens.lua (${r.settings.tokens} tokens), ${r.settings.runs} rounds, medians`);
    table(Object.values(s.heavy), s.heavy.plain!);
    const ratio = s.heavy.gw!.rps / s.heavy.plain!.rps;
    lines.push(`static route / plain round robin: ${f(ratio, 3)} (target ≥ 0.85: ${ratio >= 0.85 ? 'met' : 'MISSED'}); proxy CPU per request plain/gateway ${f(s.heavy.plain!.proxyCpuUs / s.heavy.gw!.proxyCpuUs, 3)}`);
    const d = s.distribution;
    lines.push(
      '',
      `${d.sessions} sessions (X-Session-Id) over 4 backends: ${JSON.stringify(d.bySession)} (max deviation from even ${pct(d.bySessionMaxDeviation)}); same backend when asked again: ${pct(d.stickyRepeat)}`,
      `${r.settings.tokens} tokens (affinity by token id, as under wrk): ${JSON.stringify(d.byToken)} (max deviation ${pct(d.byTokenMaxDeviation)})`,
      `${d.removed} removed by a push: ${JSON.stringify(d.afterRemoval)}; moved ${pct(d.movedOnRemoval)} of sessions (${d.onRemoved} were on ${d.removed}; moved among the others: ${d.movedNotOnRemoved})`,
      `${d.removed} added back: moved ${pct(d.movedOnReAdd)}; on their original backend again: ${pct(d.backToOriginal)}; ManualProvider.set() → new data version in the proxy (${d.pushMs.length} pushes, ${r.settings.tokenTable} tokens in the table, ${((r.settings.tokenTableBytes as number) / 1e6).toFixed(1)} MB of JSON as a full snapshot; these pushes are deltas; no load): median ${f(median(d.pushMs), 0)} ms, max ${f(Math.max(...d.pushMs), 0)} ms; workers unchanged: ${d.workersUnchanged}; reloads: ${d.reloads}`,
    );
  }
  for (const [sec, views] of [['issue 3', r.auth?.perf], ['issue 5', r.static?.perf]] as const) {
    for (const [k, v] of Object.entries(views ?? {})) {
      const name = (sec === 'issue 3' ? r.auth?.heavy[k]?.name : r.static?.heavy[k]?.name) ?? k;
      lines.push('', `perf, gateway worker under "${name}" (${sec}), by DSO:`, ...v.dso.map((l) => `  ${l}`), 'top symbols:', ...v.sym.map((l) => `  ${l}`));
      if (v.error) lines.push(`perf: ${v.error}`);
    }
  }
  if (r.micro) {
    lines.push('', 'auth.check_token timed in a fresh gateway worker (memo warm, collector running):', '| tokens in rotation | check_token ns | + garbage per call, ns | the same, GC pause 400 | bytes allocated by check_token | Lua heap KB | full GC ms | pick.first, 4 backends, ns | pick.acquire + release ns |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const [k, v] of Object.entries(r.micro)) {
      const m = v as Record<string, number | string>;
      if (typeof m !== 'object' || m === null) lines.push(`micro: ${String(v)}`);
      else lines.push(`| ${k} | ${m.check_token_ns ?? m.error} | ${m.with_garbage_ns ?? ''} (${m.garbage_bytes ?? '?'} B) | ${m.with_garbage_pause400_ns ?? ''} | ${m.bytes_per_call ?? ''} | ${m.heap_kb ?? ''} | ${m.full_gc_ms ?? ''} | ${m.pick_first_ns ?? ''} | ${m.acquire_release_ns ?? ''} |`);
    }
  }
  lines.push('', `pushes by the router: ${r.pushes}; data version changes seen after the start (each one empties the workers' token memo; the static section makes 6 itself): ${(r.versionChanges ?? []).map((c) => `${c.from}→${c.to} at ${c.at} during ${c.during}`).join('; ') || 'none'}`);
  if (r.routerLog?.length) lines.push('router warnings:', ...r.routerLog.map((l) => `  ${l}`));
  lines.push(`gateway error log [error]+ lines: ${r.gatewayErrorLogLines.length}${r.gatewayErrorLogLines.length ? `: ${r.gatewayErrorLogLines.join(' | ')}` : ''}`);
  process.stdout.write(lines.join('\n') + '\n');
}

runBenchmark(main, cleanup, DEADLINE_MS, log);
