import { cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Config } from './config';
import type { Logger } from './log';
import type { Provider } from './providers/provider';
import { Applier } from './proxy/applier';
import type { ProxyControl } from './proxy/control';
import { servedGeneration } from './proxy/edge-client';
import { LocalNginx } from './proxy/local-nginx';
import { probeNginx } from './proxy/nginx-probe';
import { loadTemplates, type RenderInput } from './render/render';
import { Router, type PortAllocator, type TokenSource } from './router';
import { startRouterSocket, type ApiHandler, type SessionValidator } from './api/router-socket';

/** The shipped Lua modules. */
export const SHIPPED_LUA = resolve(__dirname, '..', 'lua');

/** A running gateway: the router and, in local mode, the nginx it supervises. */
export interface Gateway {
  router: Router;
  nginx: LocalNginx | null;
  control: ProxyControl;
  /** Stops the router; with `stopProxy` also the local nginx. */
  stop(stopProxy?: boolean): Promise<void>;
}

export interface GatewayOptions {
  providers: Provider[];
  tokens: TokenSource;
  ports?: PortAllocator;
  /** Wraps the proxy control (tests force `nginx -t` failures through this seam). */
  wrapControl?: (c: ProxyControl) => ProxyControl;
  settleMs?: number;
  /** Validates ClearML web sessions for the edge (absent: ClearML cookies are refused). */
  sessions?: SessionValidator;
  /** The admin API behind /_gateway/api/. */
  api?: ApiHandler;
}

function paths(config: Config): { logDir: string; tmpDir: string } {
  return { logDir: join(config.dataDir, 'logs'), tmpDir: join(config.nginxDir, 'tmp') };
}

/**
 * Pure. The configuration-derived part of every render (paths, listener, modules, limits); the
 * routes and the generation are added per render. Used by serve, `appgw render` and `appgw check`.
 */
export function renderBaseFor(config: Config, loadModules: string[], isRoot = typeof process.getuid === 'function' && process.getuid() === 0): Omit<RenderInput, 'generation' | 'static' | 'tcp'> {
  const { logDir, tmpDir } = paths(config);
  const container = config.proxyMode === 'docker';
  return {
    listenAddress: config.listenAddress,
    listenPort: config.serverPort,
    routerDomain: config.routerDomain,
    luaDir: config.luaDir,
    runDir: config.runDir,
    tmpDir,
    errorLog: container ? '/dev/stderr' : join(logDir, 'error.log'),
    errorLogLevel: 'warn',
    accessLog: container ? '/dev/stdout' : join(logDir, 'access.log'),
    loadModules,
    workerUser: config.proxyWorkerUser ?? (config.proxyMode === 'local' && isRoot ? 'root' : null),
    workerProcesses: config.proxyWorkerProcesses,
    workerShutdownTimeoutS: config.workerShutdownTimeoutS,
    maxBodySize: config.maxBodySize,
    readTimeoutS: config.readTimeoutS,
    streamRevocation: config.streamRevocation,
    dataDictSize: '64m',
  };
}

/** Copies the shipped Lua into LUA_DIR (staged and renamed, so the proxy never sees half a copy). */
export function installLua(luaDir: string): void {
  if (resolve(luaDir) === SHIPPED_LUA) return;
  mkdirSync(luaDir, { recursive: true, mode: 0o755 });
  const staged = join(luaDir, `.appgw.${process.pid}.tmp`);
  rmSync(staged, { recursive: true, force: true });
  cpSync(join(SHIPPED_LUA, 'appgw'), staged, { recursive: true });
  const old = join(luaDir, `.appgw.${process.pid}.old`);
  if (existsSync(join(luaDir, 'appgw'))) renameSync(join(luaDir, 'appgw'), old);
  renameSync(staged, join(luaDir, 'appgw'));
  rmSync(old, { recursive: true, force: true });
  for (const n of readdirSync(luaDir)) if (n.startsWith('.appgw.')) rmSync(join(luaDir, n), { recursive: true, force: true });
}

/** The gateway's control of a proxy it cannot signal (PROXY_MODE=external): it reloads itself. */
class ExternalProxy implements ProxyControl {
  constructor(private readonly local: LocalNginx | null) {}
  async test(conf: string) {
    return this.local ? this.local.test(conf) : { ok: true, output: 'nginx -t skipped: no local nginx binary' };
  }
  async reload(): Promise<void> {}
  async running(): Promise<boolean> {
    return true;
  }
}

/**
 * Builds and starts a gateway from the configuration: prepares the directories, installs Lua,
 * renders and applies the first generation, starts the local nginx (local mode), then the
 * providers.
 */
export async function startGateway(config: Config, log: Logger, opts: GatewayOptions): Promise<Gateway> {
  const { logDir, tmpDir } = paths(config);
  for (const d of [config.dataDir, config.nginxDir, logDir, tmpDir]) mkdirSync(d, { recursive: true, mode: 0o755 });
  // the run dir holds the push socket and the router socket: private to the router and the proxy
  mkdirSync(config.runDir, { recursive: true, mode: config.proxyMode === 'local' ? 0o700 : 0o755 });
  installLua(config.luaDir);
  // docker mode: the proxy is OpenResty (Lua and stream built in); the router has no nginx of its own
  const flavor = config.proxyMode === 'docker' ? { loadModules: [] as string[] } : await probeNginx(config.nginxBin);
  const local = config.proxyMode === 'docker' ? null : new LocalNginx(config.nginxBin, config.nginxDir, join(config.nginxDir, 'current', 'nginx.conf'), join(config.runDir, 'nginx.pid'), log);
  let control: ProxyControl;
  if (config.proxyMode === 'local') control = local!;
  else if (config.proxyMode === 'external') control = new ExternalProxy(local);
  else {
    // loaded only in docker mode, so other modes never load dockerode
    const { DockerProxy } = require('./proxy/docker-proxy') as typeof import('./proxy/docker-proxy');
    control = new DockerProxy(config.dockerSocket, config.proxyContainer, log);
  }
  if (opts.wrapControl) control = opts.wrapControl(control);
  const healthHost = config.listenAddress === '0.0.0.0' ? '127.0.0.1' : config.listenAddress;
  const applier = new Applier(
    { nginxDir: config.nginxDir, keep: config.keepGenerations, served: () => servedGeneration(healthHost, config.serverPort) },
    control,
    log,
  );
  const renderBase = renderBaseFor(config, flavor.loadModules);
  const router = new Router({
    config,
    log,
    templates: loadTemplates(),
    applier,
    providers: opts.providers,
    tokens: opts.tokens,
    ports: opts.ports,
    renderBase,
    pushSocket: join(config.runDir, 'push.sock'),
    settleMs: opts.settleMs,
  });
  const socket = await startRouterSocket(join(config.runDir, 'router.sock'), log, { sessions: opts.sessions, api: opts.api });
  await router.start(async () => {
    if (config.proxyMode === 'local') await local!.start();
  });
  return {
    router,
    nginx: config.proxyMode === 'local' ? local : null,
    control,
    async stop(stopProxy = false) {
      await router.stop();
      await new Promise((r) => socket.close(() => r(undefined)));
      if (stopProxy && config.proxyMode === 'local') await local!.stop();
    },
  };
}
