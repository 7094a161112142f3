import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';

/**
 * Helpers of the benchmarks (bench/core-bench.ts, bench/auth-bench.ts): wrk runs and their parsing,
 * nginx processes they start and stop themselves, CPU accounting from /proc, perf, the floor
 * targets, small statistics.
 * Benchmark code only; nothing in router/ or test/ imports it.
 */

/** What one wrk run measured. Latencies in milliseconds. */
export interface WrkResult {
  rps: number;
  requests: number;
  p50: number;
  p75: number;
  p90: number;
  p99: number;
  non2xx: number;
  socketErrors: number;
  seconds: number;
}

/** Pure. Milliseconds from a wrk duration such as `812.00us`, `1.23ms` or `1.01s`. */
export function wrkMs(s: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s.trim());
  if (!m) throw new Error(`cannot read wrk duration ${JSON.stringify(s)}`);
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60_000;
}

/** Pure. Reads wrk's `--latency` report; throws when a figure is missing. */
export function parseWrk(out: string): WrkResult {
  const num = (re: RegExp, what: string): string => {
    const m = re.exec(out);
    if (!m) throw new Error(`wrk output has no ${what}:\n${out}`);
    return m[1]!;
  };
  const pct = (p: number) => wrkMs(num(new RegExp(`^\\s*${p}%\\s+(\\S+)`, 'm'), `${p}% latency`));
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: Number(num(/Requests\/sec:\s+([\d.]+)/, 'Requests/sec')),
    requests: Number(num(/(\d+) requests in/, 'request count')),
    seconds: wrkMs(num(/requests in ([\d.]+(?:us|ms|s|m)),/, 'duration')) / 1000,
    p50: pct(50),
    p75: pct(75),
    p90: pct(90),
    p99: pct(99),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    socketErrors: sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
  };
}

/**
 * Runs wrk (pinned to `cpu` when given) and resolves with its parsed report. With `script`, wrk
 * runs that Lua script (`-s`), and `scriptArgs` follow the URL after `--` (bench/wrk-tokens.lua).
 */
export function runWrk(
  opts: { url: string; seconds: number; connections: number; threads: number; headers: Record<string, string>; cpu: string | null; script?: string; scriptArgs?: string[] },
  track: Tracker,
): Promise<WrkResult> {
  const args = [`-t${opts.threads}`, `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency', '--timeout', '5s'];
  for (const [k, v] of Object.entries(opts.headers)) args.push('-H', `${k}: ${v}`);
  if (opts.script) args.push('-s', opts.script);
  args.push(opts.url);
  if (opts.script && opts.scriptArgs?.length) args.push('--', ...opts.scriptArgs);
  const [cmd, argv] = opts.cpu === null ? ['wrk', args] : ['taskset', ['-c', opts.cpu, 'wrk', ...args]];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv as string[], { stdio: ['ignore', 'pipe', 'pipe'] });
    track.add(child.pid!, 'wrk');
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), (opts.seconds + 30) * 1000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      track.remove(child.pid!);
      if (code !== 0) return reject(new Error(`wrk exited with ${code}: ${out}`));
      try {
        resolve(parseWrk(out));
      } catch (e) {
        reject(e);
      }
    });
  });
}

/** The processes this benchmark started, so that every exit path can stop exactly those. */
export class Tracker {
  private readonly pids = new Map<number, string>();
  add(pid: number, what: string): void {
    this.pids.set(pid, what);
  }
  remove(pid: number): void {
    this.pids.delete(pid);
  }
  /** TERM (then KILL after `ms`) to every tracked pid that is still alive. */
  async killAll(ms = 3000): Promise<void> {
    for (const pid of this.pids.keys()) if (alive(pid)) signal(pid, 'SIGTERM');
    const deadline = Date.now() + ms;
    while ([...this.pids.keys()].some(alive) && Date.now() < deadline) await sleep(50);
    for (const pid of this.pids.keys()) if (alive(pid)) signal(pid, 'SIGKILL');
    this.pids.clear();
  }
}

/** True when a process with that pid exists (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** An nginx master this benchmark runs in the foreground (`daemon off`) with its own prefix. */
export class NginxProc {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  constructor(
    readonly name: string,
    private readonly prefix: string,
    private readonly conf: string,
    private readonly track: Tracker,
  ) {}

  get pid(): number {
    if (!this.child?.pid) throw new Error(`${this.name} is not running`);
    return this.child.pid;
  }

  /** Checks the config with `nginx -t`, starts the master, waits until `ready` answers. */
  async start(ready: () => Promise<boolean>): Promise<void> {
    execFileSync('nginx', ['-t', '-q', '-e', 'stderr', '-p', this.prefix, '-c', this.conf], { stdio: 'pipe' });
    const child = spawn('nginx', ['-e', 'stderr', '-p', this.prefix, '-c', this.conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    this.track.add(child.pid!, this.name);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    this.exited = new Promise((r) => child.once('exit', () => r()));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`${this.name} exited at start: ${err.trim()}`);
      if (await ready().catch(() => false)) return;
      await sleep(20);
    }
    throw new Error(`${this.name} did not become ready within 10 s: ${err.trim()}`);
  }

  /** Re-reads the config (HUP) and resolves once only new workers serve. */
  async reload(ready: () => Promise<boolean>): Promise<void> {
    await hupAndWait(this.pid, ready);
  }

  /** Fast shutdown (TERM), KILL after 5 s. */
  async stop(): Promise<void> {
    if (!this.child || this.child.exitCode !== null) return;
    const pid = this.child.pid!;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child?.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
    this.track.remove(pid);
  }
}

/** Resolves once the master's workers are all new (none of `before`) and `ready` answers. */
/** HUPs the nginx master `master` and resolves once only new workers are left and `ready()` holds. */
export async function hupAndWait(master: number, ready: () => Promise<boolean>): Promise<void> {
  const before = new Set(childPids(master));
  process.kill(master, 'SIGHUP');
  await waitForNewWorkers(master, before, ready);
}

export async function waitForNewWorkers(master: number, before: Set<number>, ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const now = childPids(master);
    if (now.length > 0 && now.every((p) => !before.has(p)) && (await ready().catch(() => false))) return;
    await sleep(5);
  }
  throw new Error(`the workers of nginx ${master} were not replaced within 15 s`);
}

/** Worker pids of an nginx master (its children, from /proc). */
export function childPids(master: number): number[] {
  const f = `/proc/${master}/task/${master}/children`;
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

const TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** CPU seconds (user + system) used so far by the given processes. */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      /* exited */
    }
  }
  return ticks / TICKS;
}

/** One GET on a fresh connection (no keep-alive); resolves with the status, 0 on a network error. */
export function fetchStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve) => {
    const r = http.get(url, { headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    r.setTimeout(5000, () => r.destroy());
    r.on('error', () => resolve(0));
  });
}

/** One GET on a fresh connection (over `socketPath` when given); resolves with the body ('' on error). */
export function fetchBody(url: string, headers: Record<string, string> = {}, socketPath?: string): Promise<string> {
  return new Promise((resolve) => {
    const r = http.get(url, { headers, agent: false, socketPath }, (res) => {
      let b = '';
      res.on('data', (d: Buffer) => (b += d.toString()));
      res.on('end', () => resolve(b));
      res.on('error', () => resolve(''));
    });
    r.setTimeout(5000, () => r.destroy());
    r.on('error', () => resolve(''));
  });
}

/** The first 4 MB of a gateway's nginx error log and its size (bytes 0 and "" when there is none). */
export function errorLogHead(dir: string): { bytes: number; text: string } {
  const path = join(dir, 'logs', 'error.log');
  if (!existsSync(path)) return { bytes: 0, text: '' };
  const bytes = statSync(path).size;
  const fd = openSync(path, 'r');
  const buf = Buffer.alloc(Math.min(bytes, 4 << 20));
  readSync(fd, buf, 0, buf.length, 0);
  closeSync(fd);
  return { bytes, text: buf.toString('utf8') };
}

/** Pure. The lines of an nginx error log at [error] or worse. */
export function badLogLines(text: string): string[] {
  return text.split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
}

/** Pure. The median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Pure. The p-th percentile (nearest rank) of a non-empty list. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** True when `perf` can be run. */
export function perfAvailable(): Promise<boolean> {
  return new Promise((r) => execFile('perf', ['--version'], (err) => r(!err)));
}

/** `perf record -g` of one process for `seconds` (perf itself pinned to `cpu` when given). */
export function perfRecord(pid: number, seconds: number, out: string, cpu: string | null, track: Tracker): Promise<void> {
  const args = ['record', '-F', '999', '-g', '-p', String(pid), '-o', out, '--', 'sleep', String(seconds)];
  const [cmd, argv] = cpu === null ? ['perf', args] : ['taskset', ['-c', cpu, 'perf', ...args]];
  return new Promise((resolve, reject) => {
    const c = execFile(cmd, argv as string[], { timeout: (seconds + 30) * 1000 }, (err, _o, e) => {
      if (c.pid) track.remove(c.pid);
      if (err) reject(new Error(`perf record: ${e || err.message}`));
      else resolve();
    });
    if (c.pid) track.add(c.pid, 'perf');
  });
}

/** The top `lines` rows (self time, ≥ 0.5 %) of `perf report --sort <sort>`, one string each. */
export function perfReport(file: string, sort: string, lines: number): Promise<string[]> {
  return new Promise((resolve) =>
    execFile('perf', ['report', '-i', file, '--stdio', '--no-children', '--sort', sort, '-g', 'none', '--percent-limit', '0.5'], { maxBuffer: 64 << 20, timeout: 60_000 }, (err, out) => {
      if (err) return resolve([`perf report failed: ${err.message}`]);
      resolve(out.split('\n').filter((l) => /^\s+[\d.]+%/.test(l)).slice(0, lines).map((l) => l.trim().replace(/\s+/g, ' ')));
    }),
  );
}

/**
 * Runs a benchmark's `main` and exits: 0 when it finished, 1 when it failed, 130 on SIGINT or
 * SIGTERM, 2 past `deadlineMs`. Every way out runs `cleanup` (stops by pid what the benchmark
 * started, removes its temp dirs) once.
 */
export function runBenchmark(main: () => Promise<void>, cleanup: () => Promise<void>, deadlineMs: number, log: (msg: string) => void): void {
  let stopping = false;
  const stopAndExit = async (code: number, why?: string): Promise<never> => {
    if (!stopping) {
      stopping = true;
      if (why) log(why);
      await cleanup().catch((e) => log(`cleanup: ${(e as Error).message}`));
    }
    process.exit(code);
  };
  process.on('unhandledRejection', (e) => void stopAndExit(1, `FAILED (unhandled rejection): ${(e as Error)?.stack ?? e}`));
  process.on('uncaughtException', (e) => void stopAndExit(1, `FAILED (uncaught exception): ${e.stack ?? e}`));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void stopAndExit(130, `${sig}: stopping what the benchmark started`));
  setTimeout(() => void stopAndExit(2, `the benchmark ran longer than ${deadlineMs / 1000} s: stopping`), deadlineMs).unref();
  main().then(
    () => stopAndExit(0),
    (e) => stopAndExit(1, `FAILED: ${(e as Error).stack ?? e}`),
  );
}

/**
 * An nginx.conf for a benchmark's own nginx (the backend, plain nginx): one worker, its pid, logs
 * and temp dirs in `dir`, and `http` as the body of the http block.
 */
export function benchNginxConf(dir: string, http: string): string {
  return `worker_processes 1;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
${http}
}
`;
}

/** The http settings and JSON access log of plain nginx: the gateway's own, minus its Lua variables. */
export function plainHttpSettings(dir: string, accessLog: boolean): string {
  return `    server_tokens off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 10000;
    log_format plain_json escape=json '{"time":"$time_iso8601","client":"$remote_addr",'
        '"method":"$request_method","host":"$host","path":"$uri","status":$status,'
        '"bytes":$body_bytes_sent,"duration":$request_time,"upstream":"$upstream_addr"}';
    ${accessLog ? `access_log ${dir}/access.log plain_json buffer=64k flush=1s;` : 'access_log off;'}`;
}

/** The knobs both benchmarks read from the environment (bench/README.md). */
export function sharedSettings(env: NodeJS.ProcessEnv = process.env): { seconds: number; runs: number; conns: number; warmupS: number; loadCpu: string | null } {
  return {
    seconds: Number(env.BENCH_SECONDS ?? 10),
    runs: Number(env.BENCH_RUNS ?? 3),
    conns: Number(env.BENCH_CONNECTIONS ?? 50),
    warmupS: 2,
    // the core for wrk (the servers run on the cores the benchmark process is pinned to); null: no pinning
    loadCpu: env.BENCH_LOAD_CPU && env.BENCH_LOAD_CPU !== '' ? env.BENCH_LOAD_CPU : null,
  };
}

/** What `perf record` saw in a worker while wrk loaded a URL: by DSO, by symbol, or the error. */
export interface PerfView {
  dso: string[];
  sym: string[];
  error?: string;
}

/**
 * Samples `worker` with perf for 4 s while wrk (`load`: runWrk's options, run for 6 s) loads it,
 * starting 1 s into the load; `file` is removed afterwards.
 */
export async function perfUnderLoad(worker: number, file: string, load: Omit<Parameters<typeof runWrk>[0], 'seconds'>, track: Tracker, symbols = 30): Promise<PerfView> {
  const running = runWrk({ ...load, seconds: 6 }, track);
  const out: PerfView = { dso: [], sym: [] };
  await sleep(1000);
  try {
    await perfRecord(worker, 4, file, load.cpu, track);
    out.dso = await perfReport(file, 'dso', 12);
    out.sym = await perfReport(file, 'dso,sym', symbols);
  } catch (e) {
    out.error = (e as Error).message;
  }
  await running;
  rmSync(file, { force: true });
  return out;
}

// ---------------------------------------------------------------------------------------------
// the floor: the gateway's shape with no logic in its Lua hooks

/**
 * The per-request Lua of a floor target. `ops: false`: the hooks do nothing (the balancer only
 * sets the first backend). `ops: true`: only the work that no implementation of the design can
 * skip, with no logic (no route lookup, no token check, no authorization): the handoff from the
 * access phase to the balancer and the body filter through ngx.ctx; reading the URI, the
 * credential header, the cookies (to strip the gateway's) and Upgrade (WebSockets are
 * tunnelled); setting X-Forwarded-User/-Prefix and the access log's route and token; stripping
 * the route prefix; the body filter's one look at the response header (stream revocation). A
 * static route (`kind: 'static'`, issue 5) adds the affinity reads (X-Session-Id, the affinity
 * cookie), a hash of the affinity key to choose the backend, the in-flight count of bounded load
 * (taken in the balancer, given back in the log phase) and the retries over the other backends.
 */
function floorLua(backends: number[], kind: 'task' | 'static'): string {
  return `local balancer = require "ngx.balancer"
local _M = {}
local BACKENDS = { ${backends.map((p) => `{ "127.0.0.1", ${p} }`).join(', ')} }
local N = #BACKENDS
local inflight = {}
for i = 1, N do inflight[i] = 0 end
function _M.access()
  local var = ngx.var
  local ctx = ngx.ctx
  local uri = var.uri
  local token = var.http_x_gateway_token
  ctx.appgw_backends = BACKENDS
  ctx.appgw_token = token and "id"
${
  kind === 'static'
    ? `  local sid, ck = var.http_x_session_id, var.cookie_appgw_affinity
  ctx.appgw_first = ngx.crc32_short(sid or ck or token or "") % N + 1
`
    : `  ctx.appgw_first = 1
`
}  var.appgw_log_route = "e:route"
  var.appgw_log_token = "id"
  ngx.req.set_uri("/", false)
  var.appgw_prefix = #uri > 0 and "/service/x" or ""
  var.appgw_user = "user"
  local cookie, upgrade = var.http_cookie, var.http_upgrade
end
function _M.balancer()
  local ctx = ngx.ctx
  local i = ctx.appgw_first
  local b = ctx.appgw_backends[i]
  balancer.set_current_peer(b[1], b[2])
  if N > 1 then
    balancer.set_more_tries(N - 1)
    inflight[i] = inflight[i] + 1
    ctx.appgw_counted = i
  end
end
function _M.log()
  local i = ngx.ctx.appgw_counted
  if i then inflight[i] = inflight[i] - 1 end
end
function _M.body()
  local ctx = ngx.ctx
  if not ctx.appgw_token then return end
  if ctx.appgw_watch == nil then ctx.appgw_watch = not ngx.header["Content-Length"] end
end
return _M
`;
}

/**
 * An nginx with the gateway's shape (templates/nginx.conf.hbs and server-common.conf.hbs: its
 * modules, access log with the gateway's fields, forwarding headers, an upstream chosen by
 * balancer_by_lua with keep-alive, the access and body-filter hooks, and for a static route the
 * log hook; modules and proxy settings read from the live gateway, see liveShape) whose Lua does nothing or only the work floorLua() lists. Writes floor.lua in `dir`.
 */
export function floorConf(dir: string, port: number, backends: number[], shape: GatewayShape, opts: { ops: boolean; kind: 'task' | 'static' }): string {
  const hook = (phase: string) =>
    opts.ops ? `{ require("floor").${phase}() }` : phase === 'balancer' ? `{ require("ngx.balancer").set_current_peer("127.0.0.1", ${backends[0]}) }` : '{ }';
  writeFileSync(join(dir, 'floor.lua'), floorLua(backends, opts.kind));
  return `${shape.modules.map((m) => `load_module ${m};\n`).join('')}${benchNginxConf(
    dir,
    `${plainHttpSettings(dir, false)}
    lua_package_path "${dir}/?.lua;/usr/share/lua/5.1/?.lua;/usr/local/openresty/lualib/?.lua;;";
${appgwVarMaps(shape.proxySettings, ['appgw_user', 'appgw_log_route', 'appgw_log_token'])}
    log_format appgw_json escape=json '{"time":"$time_iso8601","client":"$remote_addr",'
        '"method":"$request_method","host":"$host","path":"$uri","status":$status,'
        '"bytes":$body_bytes_sent,"duration":$request_time,"upstream":"$upstream_addr",'
        '"route":"$appgw_log_route","user":"$appgw_user","token":"$appgw_log_token"}';
    access_log ${dir}/access.log appgw_json buffer=64k flush=1s;
    upstream appgw_backend {
        server 0.0.0.1:1;
        balancer_by_lua_block ${hook('balancer')}
        keepalive 512;
        keepalive_timeout 60s;
        keepalive_requests 10000;
    }
    server {
        listen 127.0.0.1:${port} backlog=4096;
        access_by_lua_block ${hook('access')}
        body_filter_by_lua_block ${hook('body')}
${shape.proxySettings.map((l) => `        ${l}`).join('\n')}
        location / {
            proxy_pass http://appgw_backend;${opts.kind === 'static' ? `\n            log_by_lua_block ${hook('log')}` : ''}
        }
    }`,
  )}`;
}

/** What the floor and the ablation take from a gateway's live config, so they never drift from it. */
export interface GatewayShape {
  /** The `load_module` paths of its nginx.conf. */
  modules: string[];
  /** The `proxy_*` lines of its server-common.conf: forwarding headers, buffering, timeouts, retries. */
  proxySettings: string[];
}

export function liveShape(nginxDir: string): GatewayShape {
  const live = realpathSync(join(nginxDir, 'current'));
  const modules = [...readFileSync(join(live, 'nginx.conf'), 'utf8').matchAll(/^load_module (\S+);$/gm)].map((m) => m[1]!);
  const proxySettings = readFileSync(join(live, 'server-common.conf'), 'utf8').split('\n').filter((l) => l.startsWith('proxy_'));
  return { modules, proxySettings };
}

/**
 * `map` declarations for the `$appgw_*` variables that `lines` use (and `more`): "" by default,
 * except `$appgw_connection`, which follows Upgrade as in the gateway's nginx.conf.
 */
export function appgwVarMaps(lines: string[], more: string[] = []): string {
  const names = new Set([...lines.join('\n').matchAll(/\$(appgw_\w+)/g)].map((m) => m[1]!).concat(more));
  return [...names].map((n) => (n === 'appgw_connection' ? `    map $http_upgrade $appgw_connection { default upgrade; '' ''; }` : `    map "" $${n} { default ""; }`)).join('\n');
}
