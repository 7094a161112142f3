import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../router/config';
import { memoryLogger } from '../../router/log';
import type { Snapshot, TcpRoute } from '../../router/model/types';
import type { Publication } from '../../router/providers/provider';
import type { RouterStatus } from '../../router/router';
import { openStore, type Store } from '../../router/store/store';
import { PortPool } from '../../router/tcp/port-pool';
import { startTestGateway, type TestGateway } from '../support/gateway-harness';
import { ManualProvider } from '../support/manual-provider';
import { freePort, waitFor } from '../support/net';

// ---- TCP test servers and clients ----------------------------------------------------------

/** A TCP server on 127.0.0.1 that echoes every byte; with `banner`, it first sends `<banner>\n`. */
interface TcpServer {
  port: number;
  /** Connections accepted so far. */
  accepted: number;
  close(): Promise<void>;
}

function startTcpEcho(banner?: string): Promise<TcpServer> {
  const sockets = new Set<net.Socket>();
  const s: TcpServer = { port: 0, accepted: 0, close: async () => undefined };
  const server = net.createServer((sock) => {
    s.accepted += 1;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    if (banner) sock.write(`${banner}\n`);
    sock.pipe(sock);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      s.port = (server.address() as net.AddressInfo).port;
      s.close = () =>
        new Promise((r) => {
          for (const k of sockets) k.destroy();
          server.close(() => r());
        });
      resolve(s);
    });
  });
}

/** A client connection that buffers what it receives. */
class Conn {
  private chunks: Buffer[] = [];
  private size = 0;
  closed = false;
  error: Error | null = null;
  private wake: (() => void) | null = null;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.size += d.length;
      this.wake?.();
    });
    sock.on('error', (e) => {
      this.error = e;
      this.wake?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  static open(port: number, timeoutMs = 3000): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      const t = setTimeout(() => sock.destroy(new Error(`connect to ${port} timed out`)), timeoutMs);
      sock.once('connect', () => {
        clearTimeout(t);
        resolve(new Conn(sock));
      });
      sock.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  write(b: Buffer | string): void {
    this.sock.write(b);
  }

  /** Resolves with exactly `n` bytes, or rejects when the connection closes first or time runs out. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.size < n) {
      if (this.closed || this.error) throw new Error(`connection ended after ${this.size} of ${n} bytes${this.error ? `: ${this.error.message}` : ''}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out with ${this.size} of ${n} bytes`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = null;
    }
    const all = Buffer.concat(this.chunks);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.size = all.length - n;
    return all.subarray(0, n);
  }

  /** Reads one `\n`-terminated line. */
  async line(timeoutMs = 3000): Promise<string> {
    let out = '';
    for (;;) {
      const c = (await this.read(1, timeoutMs)).toString('latin1');
      if (c === '\n') return out;
      out += c;
    }
  }

  /** Resolves once the peer closed the connection; `received` is what arrived before. */
  async ended(timeoutMs = 3000): Promise<{ received: number }> {
    await waitFor(() => this.closed, timeoutMs, 'the connection to close');
    return { received: this.size };
  }

  close(): void {
    this.sock.destroy();
  }
}

/** The banner of the server behind `port` (closes the connection). */
async function hello(port: number): Promise<string> {
  const c = await Conn.open(port);
  try {
    return await c.line();
  } finally {
    c.close();
  }
}

/** True when a round trip through `port` to an echo server works. */
async function echoes(port: number): Promise<boolean> {
  const c = await Conn.open(port);
  try {
    const probe = randomBytes(16);
    c.write(probe);
    return (await c.read(16, 2000)).equals(probe);
  } finally {
    c.close();
  }
}

/** True when nothing listens on `port` (connection refused). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * `n` contiguous ports that accept a listener now, below the kernel's ephemeral range
 * (32768–60999 here): ports from freePort() (bind to 0) — the other test files' backends and
 * gateways, running in parallel — and outgoing connections' local ports never land in it, so
 * nothing else takes a route's port between this check and nginx's bind.
 */
async function freeRange(n: number): Promise<[number, number]> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const start = 20000 + Math.floor(Math.random() * (12000 - n));
    let ok = true;
    for (let p = start; ok && p < start + n; p++) ok = await canListen(p);
    if (ok) return [start, start + n - 1];
  }
  throw new Error(`no ${n} contiguous free ports found`);
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function findBin(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/bin', '/usr/sbin'])) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return null;
}

function run(bin: string, args: string[], input?: Buffer): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(bin, args, { timeout: 15_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? 1 : 0, stdout: String(stdout), stderr: String(stderr) });
    });
    if (input) child.stdin!.end(input);
    else child.stdin!.end();
  });
}

// ---- gateways with a TCP pool ---------------------------------------------------------------

const TASK_A = 'a0000000000000000000000000000001';
const TASK_B = 'b0000000000000000000000000000002';
const TASK_C = 'c0000000000000000000000000000003';
const TASK_D = 'd0000000000000000000000000000004';
const ROUTER_ADDRESS = 'tcp.gateway.test';

function tcp(id: string, backendPort: number, allowCidrs: string[] | null = null): TcpRoute {
  return { id, taskId: id.split('-')[0]!, endpoint: id.split('-')[1] ?? '', owner: 'alice', backend: { host: '127.0.0.1', port: backendPort }, allowCidrs, provider: 'manual' };
}

function snap(tcpRoutes: TcpRoute[]): Snapshot {
  return { ephemeral: [], static: [], bindings: [], tcp: tcpRoutes };
}

interface TcpGateway {
  g: TestGateway;
  store: Store;
  provider: ManualProvider;
  poolLog: ReturnType<typeof memoryLogger>;
  range: [number, number];
  env: Record<string, string>;
  route(id: string): RouterStatus['routes'][number] | undefined;
  /** Waits until `id` is routed and its port answers (`check`, default: an echo round trip); returns the port. */
  routed(id: string, check?: (port: number) => Promise<boolean>): Promise<number>;
}

/**
 * True when no apply is half done: the generation the proxy was switched to is the one the last
 * finished apply reports (an apply swaps, reloads, then confirms; a gateway must not be stopped
 * in between).
 */
function applied(g: TestGateway): boolean {
  const s = g.gw.router.status();
  return s.lastApply?.ok === true && s.lastApply.generation === s.generation;
}

/** A test gateway whose router allocates TCP ports from a PortPool over its own store. */
async function startTcpGateway(opts: { range: [number, number]; holdMs?: number; env?: Record<string, string>; dir?: string; provider?: ManualProvider }): Promise<TcpGateway> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'appgw-tcp-'));
  const env: Record<string, string> = {
    ROUTER__WEBSERVER__SERVER_PORT: String(await freePort()),
    TCP_PORT_START: String(opts.range[0]),
    TCP_PORT_END: String(opts.range[1]),
    TCP_ROUTER_ADDRESS: ROUTER_ADDRESS,
    ...opts.env,
  };
  const config = parseConfig({ DATA_DIR: dir, ...env }, dir);
  const store = openStore({ dataDir: dir });
  const poolLog = memoryLogger();
  const provider = opts.provider ?? new ManualProvider();
  const g = await startTestGateway({ providers: [provider], ports: new PortPool(store, config, { holdMs: opts.holdMs ?? 300, log: poolLog }), env, dir });
  const route = (id: string) => g.gw.router.status().routes.find((r) => r.kind === 'tcp' && r.id === id);
  return {
    g,
    store,
    provider,
    poolLog,
    range: opts.range,
    env,
    route,
    async routed(id, check = echoes) {
      return waitFor<number | null>(
        async () => {
          const r = route(id);
          if (r?.status !== 'Routing') return null;
          const port = Number(r.url.split(':')[1]);
          return (await check(port)) && applied(g) ? port : null;
        },
        8000,
        `tcp route ${id} routed`,
      ) as Promise<number>;
    },
  };
}

async function stopTcpGateway(t: TcpGateway | undefined): Promise<void> {
  if (!t) return;
  await t.g.gw.stop(true);
  t.store.close();
  rmSync(t.g.dir, { recursive: true, force: true });
}

const ERRORS = /^.*\[(error|crit|alert|emerg)\].*$/gm;

// ---- the tests -------------------------------------------------------------------------------

describe('TCP routes through real nginx', () => {
  let t: TcpGateway;
  let echo: TcpServer;

  beforeAll(async () => {
    echo = await startTcpEcho();
    t = await startTcpGateway({ range: await freeRange(6) });
  });

  afterAll(async () => {
    await stopTcpGateway(t);
    await echo?.close();
  });

  afterEach(() => {
    expect(t.g.errorLog().match(ERRORS) ?? []).toEqual([]);
  });

  test('an echo server behind a task endpoint is reachable through its allocated port, byte for byte, incl. 10 MB; the address is published and the access log counts the bytes', async () => {
    t.provider.set(snap([tcp(TASK_A, echo.port)]));
    const port = await t.routed(TASK_A);
    expect(port).toBeGreaterThanOrEqual(t.range[0]);
    expect(port).toBeLessThanOrEqual(t.range[1]);
    expect(t.route(TASK_A)).toMatchObject({ url: `${ROUTER_ADDRESS}:${port}`, backends: [`127.0.0.1:${echo.port}`], status: 'Routing' });
    expect(t.provider.publications).toEqual<Publication[]>([{ protocol: 'tcp', taskId: TASK_A, endpoint: '', address: ROUTER_ADDRESS, port, upstreamPort: echo.port }]);

    const c = await Conn.open(port);
    // every byte value, then 10 MB of random bytes
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    c.write(all);
    expect((await c.read(256)).equals(all)).toBe(true);
    const big = randomBytes(10 * 1024 * 1024);
    const started = Date.now();
    c.write(big);
    const back = await c.read(big.length, 30_000);
    const ms = Date.now() - started;
    expect(back.length).toBe(big.length);
    expect(sha256(back)).toBe(sha256(big));
    expect(ms).toBeLessThan(30_000);
    c.close();

    // the stream access log records the bytes of the session, per port
    const logFile = join(t.g.dir, 'logs', 'access.log');
    const line = await waitFor<{ sent: number; received: number; upstream: string } | undefined>(
      () =>
        readFileSync(logFile, 'utf8')
          .split('\n')
          .filter((l) => l.includes(`"port":${port},`))
          .map((l) => JSON.parse(l) as { sent: number; received: number; upstream: string })
          .find((e) => e.received >= big.length + 256),
      5000,
      'the access log line of the 10 MB session',
    );
    expect(line!.sent).toBe(big.length + 256);
    expect(line!.upstream).toBe(`127.0.0.1:${echo.port}`);
  });

  test('a long-lived TCP session stays open and working while another TCP route is added and removed (two reloads)', async () => {
    t.provider.set(snap([tcp(TASK_A, echo.port)]));
    const port = await t.routed(TASK_A);
    const session = await Conn.open(port);
    session.write('hello\n');
    expect(await session.line()).toBe('hello');
    const acceptedBefore = echo.accepted;
    let sent = 0;
    let stop = false;
    const errors: string[] = [];
    const pinger = (async () => {
      while (!stop) {
        const msg = Buffer.from(`ping ${sent}\n`);
        session.write(msg);
        try {
          const got = await session.read(msg.length, 3000);
          if (!got.equals(msg)) errors.push(`ping ${sent}: got ${JSON.stringify(got.toString())}`);
        } catch (e) {
          errors.push(`ping ${sent}: ${(e as Error).message}`);
          return;
        }
        sent += 1;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();

    const reloads = t.g.gw.router.stats.reloads;
    const other = await startTcpEcho();
    try {
      t.provider.set(snap([tcp(TASK_A, echo.port), tcp(`${TASK_B}-db`, other.port)]));
      const otherPort = await t.routed(`${TASK_B}-db`);
      expect(otherPort).not.toBe(port);
      await waitFor(() => t.g.gw.router.stats.reloads > reloads, 5000, 'the reload that adds the route');
      expect(sent).toBeGreaterThan(0);

      t.provider.set(snap([tcp(TASK_A, echo.port)]));
      await waitFor(async () => (await refused(otherPort)) && applied(t.g), 8000, 'the removed route to stop listening');
      expect(t.g.gw.router.stats.reloads).toBeGreaterThanOrEqual(reloads + 2);
      // keep talking a little after the last reload
      const pingsAtRemove = sent;
      await waitFor(() => sent > pingsAtRemove + 20, 5000, 'more pings after the reloads');
      stop = true;
      await pinger;
      expect(errors).toEqual([]);
      expect(session.closed).toBe(false);
      expect(echo.accepted).toBe(acceptedBefore);
    } finally {
      stop = true;
      session.close();
      await other.close();
    }
  });

  test('a real protocol: redis-server reached by redis-cli through the gateway port, with redis AUTH as the access control', async () => {
    const redisServer = findBin('redis-server');
    const redisCli = findBin('redis-cli');
    if (!redisServer || !redisCli) throw new Error('redis-server and redis-cli are needed: run APPGW_TEST_DEPS=1 bash scripts/ensure-deps.sh');
    const redisPort = await freePort();
    const password = randomBytes(12).toString('hex');
    const redis: ChildProcess = spawn(redisServer, ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--requirepass', password, '--dir', t.g.dir], { stdio: 'ignore' });
    try {
      await waitFor(() => canListen(redisPort).then((free) => !free), 5000, 'redis-server to listen');
      t.provider.set(snap([tcp(`${TASK_C}-redis`, redisPort)]));
      const port = await t.routed(`${TASK_C}-redis`, async (p) => (await run(redisCli, ['-h', '127.0.0.1', '-p', String(p), 'PING'])).stdout.includes('NOAUTH'));
      const cli = (...args: string[]) => run(redisCli, ['-h', '127.0.0.1', '-p', String(port), '--no-auth-warning', '-a', password, ...args]);

      expect((await run(redisCli, ['-h', '127.0.0.1', '-p', String(port), 'GET', 'k'])).stdout).toMatch(/NOAUTH/);
      expect((await cli('PING')).stdout.trim()).toBe('PONG');
      expect((await cli('SET', 'greeting', 'hello through the gateway')).stdout.trim()).toBe('OK');
      expect((await cli('GET', 'greeting')).stdout.trim()).toBe('hello through the gateway');
      const value = randomBytes(512 * 1024).toString('hex'); // 1 MB value
      expect((await run(redisCli, ['-h', '127.0.0.1', '-p', String(port), '--no-auth-warning', '-a', password, '-x', 'SET', 'big'], Buffer.from(value))).stdout.trim()).toBe('OK');
      expect((await cli('STRLEN', 'big')).stdout.trim()).toBe(String(value.length));
      expect(sha256(Buffer.from((await cli('GET', 'big')).stdout.trim()))).toBe(sha256(Buffer.from(value)));
    } finally {
      redis.kill('SIGTERM');
    }
  });
});

describe('TCP allowlists', () => {
  let t: TcpGateway;
  let echo: TcpServer;

  beforeAll(async () => {
    echo = await startTcpEcho();
    // the global default excludes 127.0.0.1
    t = await startTcpGateway({ range: await freeRange(3), env: { TCP_ALLOW_CIDRS: '10.0.0.0/8' } });
  });

  afterAll(async () => {
    await stopTcpGateway(t);
    await echo?.close();
  });

  afterEach(() => {
    // a refused connection is logged by nginx's access module at [error]; nothing else may be
    const errors = (t.g.errorLog().match(ERRORS) ?? []).filter((l) => !/access forbidden by rule while initializing session, client: 127\.0\.0\.1/.test(l));
    expect(errors).toEqual([]);
  });

  /** Connects and sends a probe: refused means closed with nothing from the backend, which never saw a connection. */
  async function isRefused(port: number): Promise<boolean> {
    const before = echo.accepted;
    const c = await Conn.open(port);
    c.write('let me in\n');
    const { received } = await c.ended();
    return received === 0 && echo.accepted === before;
  }

  test('an allowlist that excludes 127.0.0.1 refuses the connection (global TCP_ALLOW_CIDRS and per route); one that includes it admits', async () => {
    t.provider.set(snap([tcp(TASK_A, echo.port), tcp(TASK_B, echo.port, ['192.168.0.0/16', '127.0.0.1/32']), tcp(TASK_C, echo.port, ['172.16.0.0/12'])]));
    const admitted = await t.routed(TASK_B);
    const byDefault = Number(t.route(TASK_A)!.url.split(':')[1]);
    const excluded = Number(t.route(TASK_C)!.url.split(':')[1]);
    expect(await isRefused(byDefault)).toBe(true);
    expect(await isRefused(excluded)).toBe(true);
    expect(await echoes(admitted)).toBe(true);
    expect(t.g.errorLog()).toMatch(/access forbidden by rule while initializing session, client: 127\.0\.0\.1/);
    // the stream access log shows the refusal per port
    const accessLog = join(t.g.dir, 'logs', 'access.log');
    await waitFor(() => new RegExp(`"port":${excluded},"route":"[a-z0-9-]*","status":403,"sent":0,"received":0`).test(readFileSync(accessLog, 'utf8')), 3000, 'the refusal in the access log');

    // the admin opens route C to loopback: same port, now admitted
    t.provider.set(snap([tcp(TASK_A, echo.port), tcp(TASK_B, echo.port, ['192.168.0.0/16', '127.0.0.1/32']), tcp(TASK_C, echo.port, ['127.0.0.0/8'])]));
    expect(await t.routed(TASK_C)).toBe(excluded);
    expect(await isRefused(byDefault)).toBe(true);
  });
});

describe('TCP port pool through real nginx', () => {
  let named: TcpServer[] = [];

  afterAll(async () => {
    await Promise.all(named.map((s) => s.close()));
  });

  test('a pool of 3 ports with 4 endpoints: three routed, the fourth unroutable with the reason in status, routed as soon as one endpoint goes (after the hold)', async () => {
    named = await Promise.all(['a', 'b', 'c', 'd'].map((n) => startTcpEcho(n)));
    const [a, b, c, d] = named as [TcpServer, TcpServer, TcpServer, TcpServer];
    const t = await startTcpGateway({ range: await freeRange(3), holdMs: 400 });
    try {
      t.provider.set(snap([tcp(TASK_D, d.port), tcp(TASK_C, c.port), tcp(TASK_B, b.port), tcp(TASK_A, a.port)]));
      const banner = (name: string) => async (port: number) => (await hello(port)) === name;
      const pa = await t.routed(TASK_A, banner('a'));
      const pb = await t.routed(TASK_B, banner('b'));
      const pc = await t.routed(TASK_C, banner('c'));
      expect([pa, pb, pc]).toEqual([t.range[0], t.range[0] + 1, t.range[0] + 2]);
      const reason = `the TCP port pool is exhausted: all 3 ports of TCP_PORT_START..TCP_PORT_END (${t.range[0]}-${t.range[1]}) are taken; the route gets a port as soon as one frees up`;
      expect(t.route(TASK_D)).toMatchObject({ url: '', status: `Unroutable: ${reason}` });
      // what `appgw routes` reads, and what goes back to the provider
      await waitFor(() => JSON.parse(readFileSync(join(t.g.dir, 'status.json'), 'utf8')).routes.some((r: { id: string; status: string }) => r.id === TASK_D && r.status === `Unroutable: ${reason}`), 3000, 'status.json');
      expect(t.provider.publications).toContainEqual({ protocol: 'tcp', taskId: TASK_D, endpoint: '', unroutable: reason });
      expect(t.poolLog.lines).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'tcp route is unroutable', fields: expect.objectContaining({ route: TASK_D, reason }) }));

      // B goes: after the hold, D gets B's port; A and C keep theirs and keep working
      const goneAt = Date.now();
      t.provider.set(snap([tcp(TASK_D, d.port), tcp(TASK_C, c.port), tcp(TASK_A, a.port)]));
      const pd = await t.routed(TASK_D, banner('d'));
      expect(Date.now() - goneAt).toBeGreaterThanOrEqual(400);
      expect(pd).toBe(pb);
      expect(await hello(pa)).toBe('a');
      expect(await hello(pc)).toBe('c');
      expect(t.g.errorLog().match(ERRORS) ?? []).toEqual([]);
    } finally {
      await stopTcpGateway(t);
    }
  });

  test('the router restarts on the same DATA_DIR (nginx keeps running): every TCP endpoint keeps its port, an open session survives', async () => {
    const [a, b, c] = named as [TcpServer, TcpServer, TcpServer];
    const routes = [tcp(TASK_A, a.port), tcp(`${TASK_B}-ssh`, b.port), tcp(`${TASK_C}-db`, c.port)];
    const first = await startTcpGateway({ range: await freeRange(4) });
    let second: TcpGateway | undefined;
    try {
      first.provider.set(snap(routes));
      const banner = (name: string) => async (port: number) => (await hello(port)) === name;
      const before = { a: await first.routed(TASK_A, banner('a')), b: await first.routed(`${TASK_B}-ssh`, banner('b')), c: await first.routed(`${TASK_C}-db`, banner('c')) };
      const session = await Conn.open(before.a);
      expect(await session.line()).toBe('a');
      const nginxPid = first.g.gw.nginx!.pid();

      // the router stops (as in a crash or an upgrade); the proxy keeps serving
      await first.g.gw.stop(false);
      first.store.close();
      expect(first.g.gw.nginx!.pid()).toBe(nginxPid);

      const provider = new ManualProvider();
      provider.snapshot = snap([...routes].reverse());
      second = await startTcpGateway({ range: first.range, dir: first.g.dir, env: first.env, provider });
      expect(second.g.gw.nginx!.pid()).toBe(nginxPid);
      const after = { a: await second.routed(TASK_A, banner('a')), b: await second.routed(`${TASK_B}-ssh`, banner('b')), c: await second.routed(`${TASK_C}-db`, banner('c')) };
      expect(after).toEqual(before);
      expect(second.store.listPorts().map((p) => [p.routeId, p.port])).toEqual([
        [TASK_A, before.a],
        [`${TASK_B}-ssh`, before.b],
        [`${TASK_C}-db`, before.c],
      ]);
      session.write('still here\n');
      expect(await session.line()).toBe('still here');
      session.close();
      expect(second.g.errorLog().match(ERRORS) ?? []).toEqual([]);
    } finally {
      if (second) await stopTcpGateway(second);
      else await stopTcpGateway(first);
    }
  });
});
