import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, type Config } from '../../router/config';
import { startGateway, type Gateway, type GatewayOptions } from '../../router/gateway';
import { memoryLogger } from '../../router/log';
import type { EdgeToken } from '../../router/model/push-payload';
import type { TokenSource } from '../../router/router';
import { freePort, waitFor } from './net';

/** A token table held in memory, for edge tests that do not need the store. */
export class MemoryTokens implements TokenSource {
  private v = 1;
  readonly tokens: Record<string, EdgeToken> = {};
  version(): number {
    return this.v;
  }
  table(): Record<string, EdgeToken> {
    return { ...this.tokens };
  }
  /** Adds a token and returns its plaintext. */
  add(rec: Partial<EdgeToken> & { u: string }): string {
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    this.tokens[id] = { h: createHash('sha256').update(secret).digest('hex'), a: false, g: [], r: [], e: Math.floor(Date.now() / 1000) + 3600, ...rec };
    this.v += 1;
    return `appgw_${id}_${secret}`;
  }
  /** Removes (revokes) the token with this plaintext or id. */
  remove(tokenOrId: string): void {
    const id = /^appgw_([a-z0-9]+)_/.exec(tokenOrId)?.[1] ?? tokenOrId;
    delete this.tokens[id];
    this.v += 1;
  }
}

export interface TestGateway {
  gw: Gateway;
  config: Config;
  url: string;
  port: number;
  dir: string;
  adminToken: string;
  tokens: MemoryTokens;
  log: ReturnType<typeof memoryLogger>;
  errorLog(): string;
  workerPids(): number[];
  stop(): Promise<void>;
}

/** Pids of the worker processes of an nginx master (from /proc). */
export function childPids(master: number): number[] {
  const out: number[] = [];
  for (const t of readFileSync(`/proc/${master}/task/${master}/children`, 'utf8').trim().split(/\s+/)) if (t) out.push(Number(t));
  return out.sort((a, b) => a - b);
}

/**
 * Starts a real gateway (router in-process, local Debian nginx with the rendered config and the
 * project's Lua) on a free port in a temp dir. Stop it with `stop()`. With `dir`, it runs in that
 * DATA_DIR instead (a restarted router adopts the nginx still running there); with
 * `env.ROUTER__WEBSERVER__SERVER_PORT`, on that port.
 */
export async function startTestGateway(opts: Partial<GatewayOptions> & { env?: Record<string, string>; dir?: string } = {}): Promise<TestGateway> {
  const { dir: given, ...gatewayOpts } = opts;
  const dir = given ?? mkdtempSync(join(tmpdir(), 'appgw-'));
  const port = opts.env?.ROUTER__WEBSERVER__SERVER_PORT ? Number(opts.env.ROUTER__WEBSERVER__SERVER_PORT) : await freePort();
  const env = {
    DATA_DIR: dir,
    LISTEN_ADDRESS: '127.0.0.1',
    ROUTER__WEBSERVER__SERVER_PORT: String(port),
    ROUTER_URL: `http://127.0.0.1:${port}`,
    PROXY_WORKER_PROCESSES: '2',
    RELOAD_MIN_INTERVAL: '300ms',
    PUSH_INTERVAL: '1s',
    WORKER_SHUTDOWN_TIMEOUT: '10s',
    ...opts.env,
  };
  const config = parseConfig(env, dir);
  const log = memoryLogger();
  const tokens = opts.tokens instanceof MemoryTokens ? opts.tokens : new MemoryTokens();
  const adminToken = tokens.add({ u: 'admin', a: true });
  const gw = await startGateway(config, log, { providers: [], tokens, settleMs: 100, ...gatewayOpts });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/_gateway/health`)).status === 200, 10000, 'edge health');
  const errorLogPath = join(dir, 'logs', 'error.log');
  return {
    gw,
    config,
    url,
    port,
    dir,
    adminToken,
    tokens,
    log,
    errorLog: () => (existsSync(errorLogPath) ? readFileSync(errorLogPath, 'utf8') : ''),
    workerPids: () => childPids(gw.nginx!.pid()!),
    async stop() {
      await gw.stop(true);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
