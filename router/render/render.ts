import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Handlebars from 'handlebars';
import type { Backend, StaticRoute } from '../model/types';
import { PATTERNS } from '../model/validate';

/**
 * Rendering of the proxy's configuration. Templates hold no logic beyond #if/#each; every value
 * reaching them is validated here again (defence in depth) and final.
 */

/** The rendered files of one generation, by path relative to the generation folder. */
export type Bundle = Map<string, string>;

/** A TCP route with its allocated port. */
export interface RenderedTcp {
  id: string;
  port: number;
  backend: Backend;
  allow: string[];
}

/** Everything the renderer needs; paths are absolute and already checked. */
export interface RenderInput {
  generation: string;
  listenAddress: string;
  listenPort: number;
  routerDomain: string | null;
  luaDir: string;
  runDir: string;
  tmpDir: string;
  errorLog: string;
  errorLogLevel: 'error' | 'warn' | 'notice' | 'info';
  accessLog: string;
  loadModules: string[];
  workerUser: string | null;
  workerProcesses: string;
  workerShutdownTimeoutS: number;
  maxBodySize: string;
  readTimeoutS: number;
  /** Render the body filter that ends a token's streams when it is revoked (STREAM_REVOCATION). */
  streamRevocation: boolean;
  dataDictSize: string;
  static: StaticRoute[];
  tcp: RenderedTcp[];
}

export interface Templates {
  main: HandlebarsTemplateDelegate;
  serverCommon: HandlebarsTemplateDelegate;
  gatewayLocations: HandlebarsTemplateDelegate;
  pathRoute: HandlebarsTemplateDelegate;
  subdomainRoute: HandlebarsTemplateDelegate;
  tcpRoute: HandlebarsTemplateDelegate;
}

/** Reads and compiles the templates in `dir` (noEscape, strict). */
export function loadTemplates(dir = join(__dirname, '..', '..', 'templates')): Templates {
  const hb = Handlebars.create();
  const c = (f: string) => hb.compile(readFileSync(join(dir, f), 'utf8'), { noEscape: true, strict: true });
  return {
    main: c('nginx.conf.hbs'),
    serverCommon: c('server-common.conf.hbs'),
    gatewayLocations: c('gateway-locations.conf.hbs'),
    pathRoute: c('path-route.conf.hbs'),
    subdomainRoute: c('subdomain-route.conf.hbs'),
    tcpRoute: c('tcp-route.conf.hbs'),
  };
}

/** Thrown when a value that reached the renderer is not a safe identifier: a bug upstream. */
export class RenderError extends Error {}

const SAFE = {
  path: /^\/([A-Za-z0-9._~-]+\/){1,4}$/,
  absPath: /^\/[A-Za-z0-9._\/-]{1,400}$/,
  ipv4: /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/,
  ipv6: /^[0-9a-f:.]{2,45}$/,
  size: /^\d{1,6}[kKmMgG]?$/,
  generation: /^g\d{6,}$/,
  user: /^[a-z_][a-z0-9_-]{0,31}$/,
  workers: /^(auto|[1-9]\d{0,2})$/,
  logTarget: /^(\/[A-Za-z0-9._\/-]{1,400}|stderr)$/,
};

function must(ok: boolean, what: string, value: unknown): void {
  if (!ok) throw new RenderError(`refusing to render ${what} ${JSON.stringify(value)}`);
}

function upstream(b: Backend): string {
  if (SAFE.ipv4.test(b.host)) return `${b.host}:${b.port}`;
  if (b.host.includes(':') && SAFE.ipv6.test(b.host)) return `[${b.host}]:${b.port}`;
  must(PATTERNS.dnsName.test(b.host), 'backend host', b.host);
  return `${b.host}:${b.port}`;
}

function port(p: number, what: string): number {
  must(Number.isInteger(p) && p >= 1 && p <= 65535, what, p);
  return p;
}

/**
 * Pure. Renders a generation: nginx.conf, the shared server snippets, one file per static route
 * and per TCP port. Sorted, so the same input gives the same bytes. Throws RenderError if a value
 * is not a safe identifier (validation upstream should have stopped it).
 */
export function render(t: Templates, input: RenderInput): Bundle {
  must(SAFE.generation.test(input.generation), 'generation', input.generation);
  must(SAFE.ipv4.test(input.listenAddress), 'listen address', input.listenAddress);
  port(input.listenPort, 'listen port');
  for (const [k, v] of [['lua dir', input.luaDir], ['run dir', input.runDir], ['tmp dir', input.tmpDir]] as const) {
    must(SAFE.absPath.test(v), k, v);
  }
  must(SAFE.logTarget.test(input.errorLog), 'error log', input.errorLog);
  must(SAFE.logTarget.test(input.accessLog), 'access log', input.accessLog);
  for (const m of input.loadModules) must(SAFE.absPath.test(m), 'module', m);
  if (input.workerUser !== null) must(SAFE.user.test(input.workerUser), 'worker user', input.workerUser);
  must(SAFE.workers.test(input.workerProcesses), 'worker processes', input.workerProcesses);
  must(SAFE.size.test(input.maxBodySize), 'max body size', input.maxBodySize);
  must(SAFE.size.test(input.dataDictSize), 'dict size', input.dataDictSize);
  if (input.routerDomain !== null) must(PATTERNS.dnsName.test(input.routerDomain), 'router domain', input.routerDomain);

  const files: Bundle = new Map();
  const common = {
    listenAddress: input.listenAddress,
    listenPort: input.listenPort,
    readTimeout: Math.floor(input.readTimeoutS),
    streamRevocation: input.streamRevocation,
  };
  files.set(
    'nginx.conf',
    t.main({
      loadModules: input.loadModules,
      workerUser: input.workerUser,
      workerProcesses: input.workerProcesses,
      workerShutdownTimeout: Math.floor(input.workerShutdownTimeoutS),
      runDir: input.runDir,
      errorLog: input.errorLog,
      errorLogLevel: input.errorLogLevel,
      luaDir: input.luaDir,
      dataDictSize: input.dataDictSize,
      accessLog: input.accessLog,
      tmpDir: input.tmpDir,
      maxBodySize: input.maxBodySize,
      listenAddress: input.listenAddress,
      listenPort: input.listenPort,
      routerDomain: input.routerDomain,
      stream: input.tcp.length > 0,
    }),
  );
  files.set('server-common.conf', t.serverCommon(common));
  files.set('gateway-locations.conf', t.gatewayLocations({ ...common, runDir: input.runDir }));
  files.set('generation.conf', `set $appgw_generation "${input.generation}";\n`);

  const statics = [...input.static].filter((r) => r.enabled).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const r of statics) {
    must(PATTERNS.routeName.test(r.name), 'route name', r.name);
    if (r.path !== null) {
      must(SAFE.path.test(r.path), 'route path', r.path);
      files.set(`conf.d/path/${r.name}.conf`, t.pathRoute({ name: r.name, path: r.path }));
    } else if (r.subdomain !== null && input.routerDomain !== null) {
      must(PATTERNS.subdomain.test(r.subdomain), 'subdomain', r.subdomain);
      files.set(
        `conf.d/subdomain/${r.name}.conf`,
        t.subdomainRoute({ ...common, name: r.name, host: `${r.subdomain}.${input.routerDomain}` }),
      );
    }
  }
  const tcps = [...input.tcp].sort((a, b) => a.port - b.port);
  for (const r of tcps) {
    port(r.port, 'tcp port');
    must(/^[a-z0-9_-]{1,80}$/.test(r.id), 'tcp route id', r.id);
    for (const c of r.allow) must(PATTERNS.cidr4.test(c), 'cidr', c);
    files.set(
      `conf.d/stream/${String(r.port).padStart(5, '0')}.conf`,
      t.tcpRoute({ id: r.id, port: r.port, listenAddress: input.listenAddress, upstream: upstream(r.backend), allow: r.allow, timeout: Math.floor(input.readTimeoutS) }),
    );
  }
  return files;
}

/** Pure. True when two bundles render the same configuration (the generation id aside). */
export function sameConfig(a: Bundle | null, b: Bundle): boolean {
  if (!a || a.size !== b.size) return false;
  for (const [k, v] of b) {
    if (k === 'generation.conf') continue;
    if (a.get(k) !== v) return false;
  }
  return true;
}
