import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseConfig, parseEnvFile, type Config } from './config';
import { UserError } from './errors';
import { startGateway, type Gateway } from './gateway';
import { createLogger, type Logger } from './log';
import type { Provider } from './providers/provider';
import { FileProvider } from './providers/file-provider';
import { ensureAdminToken } from './store/bootstrap';
import { openStore, CLI_ACTOR, type Store } from './store/store';
import { createToken } from './store/tokens';
import { StoreTokens } from './store-tokens';
import { PortPool } from './tcp/port-pool';
import { createAdminApi } from './api/admin-api';
import type { SessionValidator } from './api/router-socket';
import { StoreProvider } from './providers/store-provider';

/** Reads the environment: an optional env file, with variables already set in the environment winning. */
export function loadEnv(envFile: string | undefined, processEnv: NodeJS.ProcessEnv): Record<string, string | undefined> {
  if (!envFile) return { ...processEnv };
  let text: string;
  try {
    text = readFileSync(envFile, 'utf8');
  } catch (e) {
    throw new UserError('ENV_FILE_UNREADABLE', `cannot read --env-file ${envFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return { ...parseEnvFile(text, envFile), ...processEnv };
}

/** Loads and validates the configuration; a UserError names the bad variable. */
export function loadConfig(envFile: string | undefined, overrides: Record<string, string> = {}): Config {
  return parseConfig({ ...loadEnv(envFile, process.env), ...overrides }, process.cwd());
}

/** The providers the configuration asks for. */
export async function buildProviders(config: Config, log: Logger): Promise<Provider[]> {
  const providers: Provider[] = [];
  if (config.routesFile) {
    providers.push(new FileProvider(config.routesFile, log.child({ provider: 'file' })));
  }
  if (config.clearml.apiHost) {
    // loaded only when configured, so a gateway without ClearML never loads axios
    const { ClearmlProvider } = require('./providers/clearml/clearml-provider') as typeof import('./providers/clearml/clearml-provider');
    providers.push(new ClearmlProvider(config, log.child({ provider: 'clearml' })));
  }
  if (config.dockerProvider) {
    // loaded only when enabled, so a gateway without the docker provider never loads dockerode for it
    const { DockerProvider } = require('./providers/docker-provider') as typeof import('./providers/docker-provider');
    providers.push(new DockerProvider(config.dockerSocket, log.child({ provider: 'docker' })));
  }
  return providers;
}

/**
 * Validates ClearML web sessions through the ClearML API (users.get_current_user with the
 * cookie's token), or undefined when ClearML is not configured (ClearML cookies are then refused).
 */
export function clearmlSessions(config: Config): SessionValidator | undefined {
  if (!config.clearml.apiHost) return undefined;
  const { createClearmlClient } = require('./providers/clearml/api-client') as typeof import('./providers/clearml/api-client');
  const client = createClearmlClient(config, { timeoutMs: 5000 });
  return async (cookie) => {
    const u = await client.sessionUser(cookie);
    return u ? { user: u.id, company: u.company, role: u.role, name: u.name } : null;
  };
}

/** A small echo backend for the quick start: answers what it received, as JSON. */
export function startDemoBackend(port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ hello: 'from the demo backend', method: req.method, path: req.url, forwarded_user: req.headers['x-forwarded-user'] ?? null, forwarded_prefix: req.headers['x-forwarded-prefix'] ?? null, body: Buffer.concat(chunks).toString('utf8') }, null, 2) + '\n');
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e) => reject(new UserError('CONFIG_INVALID', `the demo backend cannot listen on 127.0.0.1:${port}: ${(e as NodeJS.ErrnoException).code}`)));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

export interface ServeOptions {
  envFile?: string;
  demo?: boolean;
  out?: (line: string) => void;
}

/** `appgw serve`: runs the router (and a local nginx in local mode) until SIGINT/SIGTERM. */
export async function serve(opts: ServeOptions): Promise<number> {
  const out = opts.out ?? ((l: string) => void process.stdout.write(`${l}\n`));
  const overrides: Record<string, string> = {};
  if (opts.demo && !process.env.ROUTES_FILE) overrides.ROUTES_FILE = `${__dirname}/../examples/routes.yaml`;
  const config = loadConfig(opts.envFile, overrides);
  const log = createLogger(config.loggerLevel, { component: 'router', router: config.routerName });
  const store: Store = openStore({ dataDir: config.dataDir, tokenMaxDays: config.tokenMaxDays });
  let shown: string | null = null;
  ensureAdminToken(store, config, (t) => {
    shown = t;
    out(`Admin token (shown once, stored only as a hash): ${t}`);
  }, log);
  let demo: http.Server | null = null;
  if (opts.demo) {
    demo = await startDemoBackend(18081);
    if (!shown) {
      const t = createToken(store, { label: 'quickstart', expiresInMs: 24 * 3600_000, as: 'admin' }, CLI_ACTOR);
      shown = t.token;
      out(`Quick-start token (valid 24 h, shown once): ${t.token}`);
    }
  }
  const providers = await buildProviders(config, log);
  providers.push(new StoreProvider(store, log.child({ provider: 'store' })));
  let gw: Gateway | null = null;
  try {
    gw = await startGateway(config, log, {
      providers,
      tokens: new StoreTokens(store),
      ports: new PortPool(store, config, { log: log.child({ component: 'tcp-pool' }) }),
      api: createAdminApi({ store, status: () => gw?.router.status() ?? null, routesFile: config.routesFile }),
      sessions: clearmlSessions(config),
    });
  } catch (e) {
    demo?.close();
    store.close();
    throw e;
  }
  out(`Gateway listening on ${config.routerUrl} (health: ${config.routerUrl}/_gateway/health)`);
  if (opts.demo) {
    out('Try it:');
    out(`  curl -H 'X-Gateway-Token: ${shown ?? '<your token>'}' ${config.routerUrl}/demo/`);
    out(`  curl -H 'X-Gateway-Token: ${shown ?? '<your token>'}' ${config.routerUrl}/service/0123456789abcdef0123456789abcdef/`);
  }
  out('Stop with Ctrl-C.');
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  out('Stopping…');
  await gw!.stop(true);
  demo?.close();
  store.close();
  return 0;
}
