import { UserError } from './errors';

/**
 * The router's configuration, read from the environment (and an optional env file).
 * Every variable is declared once in VARIABLES; runtime.env.example documents the same list and a
 * test fails when the two drift apart.
 */

export type ProxyMode = 'local' | 'docker' | 'external';

export interface Config {
  routerName: string;
  routerUrl: string;
  routerDomain: string | null;
  listenAddress: string;
  serverPort: number;
  proxyMode: ProxyMode;
  dataDir: string;
  nginxBin: string;
  /** Where generations of rendered config are written (shared volume in docker mode). */
  nginxDir: string;
  /** Where the Lua modules are copied for the proxy (shared volume in docker mode). */
  luaDir: string;
  /** Pid file and unix sockets of the proxy. */
  runDir: string;
  proxyContainer: string;
  proxyWorkerUser: string | null;
  proxyWorkerProcesses: string;
  routesFile: string | null;
  reloadMinIntervalMs: number;
  pushIntervalMs: number;
  workerShutdownTimeoutS: number;
  maxBodySize: string;
  readTimeoutS: number;
  adminToken: string | null;
  keepGenerations: number;
  clearml: {
    apiHost: string | null;
    accessKey: string | null;
    secretKey: string | null;
    pollIntervalMs: number;
    listenQueues: string[];
    /** Strip `/service/<id>` before proxying to ClearML task endpoints. */
    stripPrefix: boolean;
  };
  authCookieName: string;
  authSecure: boolean;
  /** End a token's open streams at the next chunk after it is revoked (the edge's body filter). */
  streamRevocation: boolean;
  tokenMaxDays: number;
  tcp: {
    routerAddress: string | null;
    portStart: number | null;
    portEnd: number | null;
    allowCidrs: string[];
  };
  dockerProvider: boolean;
  dockerSocket: string;
  loggerLevel: string;
}

type Env = Record<string, string | undefined>;

interface VarSpec {
  name: string;
  aliases?: string[];
  expects: string;
}

/** Every variable the router reads (runtime.env.example documents each, grouped by topic). */
export const VARIABLES: VarSpec[] = [
  { name: 'ROUTER_NAME', expects: 'a name of 1-63 characters [a-z0-9-]' },
  { name: 'ROUTER_URL', expects: 'an absolute http(s) URL such as http://gateway.example.com:8080' },
  { name: 'ROUTER_DOMAIN', expects: 'a DNS domain such as apps.example.com' },
  { name: 'ROUTER__WEBSERVER__SERVER_PORT', aliases: ['SERVER_PORT'], expects: 'a TCP port 1-65535' },
  { name: 'LISTEN_ADDRESS', expects: 'an IPv4 address such as 0.0.0.0 or 127.0.0.1' },
  { name: 'PROXY_MODE', expects: 'one of local, docker, external' },
  { name: 'DATA_DIR', expects: 'a directory path' },
  { name: 'NGINX_BIN', expects: 'a path to the nginx or openresty binary' },
  { name: 'NGINX_CONF_DIR', expects: 'a directory path' },
  { name: 'LUA_DIR', expects: 'a directory path' },
  { name: 'RUN_DIR', expects: 'a directory path' },
  { name: 'PROXY_CONTAINER_NAME', expects: 'a Docker container name' },
  { name: 'PROXY_WORKER_USER', expects: 'a system user name for the nginx workers' },
  { name: 'PROXY_WORKER_PROCESSES', expects: 'a number of workers or "auto"' },
  { name: 'ROUTES_FILE', expects: 'a path to a YAML or JSON routes file' },
  { name: 'RELOAD_MIN_INTERVAL', expects: 'a duration such as 500ms, 2s or 1m' },
  { name: 'PUSH_INTERVAL', expects: 'a duration such as 5s' },
  { name: 'WORKER_SHUTDOWN_TIMEOUT', expects: 'a duration such as 300s' },
  { name: 'PROXY_MAX_BODY_SIZE', expects: 'an nginx size such as 100m or 512k' },
  { name: 'PROXY_READ_TIMEOUT', expects: 'a duration such as 3600s' },
  { name: 'ADMIN_TOKEN', expects: 'a gateway token (appgw_<id>_<secret>) as printed by appgw' },
  { name: 'KEEP_GENERATIONS', expects: 'a whole number from 2 to 100' },
  { name: 'CLEARML_API_HOST', expects: 'an absolute http(s) URL of the ClearML API server' },
  { name: 'CLEARML_API_ACCESS_KEY', expects: 'a ClearML access key' },
  { name: 'CLEARML_API_SECRET_KEY', expects: 'a ClearML secret key' },
  { name: 'CLEARML_POLL_INTERVAL', expects: 'a duration such as 5s' },
  { name: 'CLEARML_STRIP_PREFIX', expects: 'true or false' },
  { name: 'LISTEN_QUEUE_NAME', expects: 'queue names (wildcards allowed), separated by commas or spaces' },
  { name: 'AUTH_COOKIE_NAME', aliases: ['ROUTER__HTTP__AUTHORIZATION__COOKIE__NAME'], expects: 'a cookie name' },
  { name: 'AUTH_SECURE_ENABLED', aliases: ['ROUTER__HTTP__AUTHORIZATION__COOKIE__SECURE'], expects: 'true or false' },
  { name: 'STREAM_REVOCATION', expects: 'true or false' },
  { name: 'TOKEN_MAX_DAYS', expects: 'a whole number of days from 1 to 3650' },
  { name: 'TCP_ROUTER_ADDRESS', aliases: ['ROUTER__STREAM__EXTERNAL_URL', 'STREAM_ROUTER_ADDRESS'], expects: 'a host name or IP address' },
  { name: 'TCP_PORT_START', aliases: ['ROUTER__STREAM__PORT_RANGE__START', 'STREAM_PORT_START'], expects: 'a TCP port 1-65535' },
  { name: 'TCP_PORT_END', aliases: ['ROUTER__STREAM__PORT_RANGE__END', 'STREAM_PORT_END'], expects: 'a TCP port 1-65535, not below TCP_PORT_START' },
  { name: 'TCP_ALLOW_CIDRS', expects: 'CIDRs such as 10.0.0.0/8, separated by commas or spaces' },
  { name: 'DOCKER_PROVIDER', expects: 'true or false' },
  { name: 'DOCKER_SOCKET', expects: 'a path to the Docker socket' },
  { name: 'LOGGER_LEVEL', expects: 'one of error, warn, info, debug (any case)' },
];

/** Each variable's spec, by its name and by each of its aliases. */
const SPEC_BY_NAME = new Map(VARIABLES.flatMap((v) => [v.name, ...(v.aliases ?? [])].map((n) => [n, v] as const)));

function bad(name: string, value: string | undefined): never {
  const spec = SPEC_BY_NAME.get(name);
  const shown = value === undefined ? 'is missing' : `is ${JSON.stringify(value.length > 80 ? value.slice(0, 80) + '…' : value)}`;
  throw new UserError('CONFIG_INVALID', `${name} ${shown}; expected ${spec ? spec.expects : 'a valid value'}`);
}

/** Pure. The value of a variable or of its first set alias, trimmed; undefined when unset or empty. */
function read(env: Env, name: string): { value: string | undefined; from: string } {
  const spec = SPEC_BY_NAME.get(name);
  for (const n of [name, ...(spec?.aliases ?? [])]) {
    const v = env[n];
    if (v !== undefined && v.trim() !== '') return { value: v.trim(), from: n };
  }
  return { value: undefined, from: name };
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;

/** Pure. Parses "500ms", "2s", "5m", "1h", "1d" or a bare number of seconds into milliseconds. */
export function parseDuration(text: string): number | null {
  const m = DURATION.exec(text.trim());
  if (!m) return null;
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit]!;
  const ms = Math.round(n * mult);
  return Number.isFinite(ms) ? ms : null;
}

function str(env: Env, name: string, dflt: string): string {
  return read(env, name).value ?? dflt;
}

function optStr(env: Env, name: string, pattern?: RegExp): string | null {
  const { value, from } = read(env, name);
  if (value === undefined) return null;
  if (pattern && !pattern.test(value)) bad(from === name ? name : from, value);
  return value;
}

function int(env: Env, name: string, dflt: number | null, min: number, max: number): number | null {
  const { value, from } = read(env, name);
  if (value === undefined) return dflt;
  if (!/^\d+$/.test(value)) bad(from, value);
  const n = Number(value);
  if (n < min || n > max) bad(from, value);
  return n;
}

function duration(env: Env, name: string, dfltMs: number, minMs = 0): number {
  const { value, from } = read(env, name);
  if (value === undefined) return dfltMs;
  const ms = parseDuration(value);
  if (ms === null || ms < minMs) bad(from, value);
  return ms;
}

function bool(env: Env, name: string, dflt: boolean): boolean {
  const { value, from } = read(env, name);
  if (value === undefined) return dflt;
  const v = value.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  return bad(from, value);
}

function list(value: string | null): string[] {
  return value ? value.split(/[\s,]+/).filter(Boolean) : [];
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$|^localhost$/;
const HOST = /^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$|^\d{1,3}(\.\d{1,3}){3}$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const CIDR = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/([0-9]|[12]\d|3[0-2])$/;
const SIZE = /^\d{1,6}[kKmMgG]?$/;
const SAFE_PATH = /^[^\0\n\r;{}'"`$\\]+$/;
const COOKIE_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
const USER = /^[a-z_][a-z0-9_-]{0,31}$/;
const CONTAINER = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

function url(env: Env, name: string): string | null {
  const { value, from } = read(env, name);
  if (value === undefined) return null;
  try {
    const u = new URL(value);
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password || u.search || u.hash) bad(from, value);
    return value.replace(/\/+$/, '');
  } catch (e) {
    if (e instanceof UserError) throw e;
    return bad(from, value);
  }
}

function path(env: Env, name: string, dflt: string): string {
  const { value, from } = read(env, name);
  const v = value ?? dflt;
  if (!SAFE_PATH.test(v) || v.length > 512) bad(from, v);
  return v;
}

/**
 * Pure. Builds the Config from an environment map; throws a UserError (CONFIG_INVALID) naming the
 * first bad variable and what it expects.
 */
export function parseConfig(env: Env, cwd: string): Config {
  const abs = (p: string) => (p.startsWith('/') ? p : `${cwd.replace(/\/+$/, '')}/${p.replace(/^\.\//, '')}`);
  const routerName = str(env, 'ROUTER_NAME', 'appgw');
  if (!NAME.test(routerName)) bad('ROUTER_NAME', routerName);
  const serverPort = int(env, 'ROUTER__WEBSERVER__SERVER_PORT', 8080, 1, 65535)!;
  const listenAddress = str(env, 'LISTEN_ADDRESS', '0.0.0.0');
  if (!IPV4.test(listenAddress)) bad('LISTEN_ADDRESS', listenAddress);
  const routerUrl = url(env, 'ROUTER_URL') ?? `http://127.0.0.1:${serverPort}`;
  const routerDomain = optStr(env, 'ROUTER_DOMAIN');
  if (routerDomain !== null && !DOMAIN.test(routerDomain.toLowerCase())) bad('ROUTER_DOMAIN', routerDomain);
  const mode = str(env, 'PROXY_MODE', 'local');
  if (mode !== 'local' && mode !== 'docker' && mode !== 'external') bad('PROXY_MODE', mode);
  const dataDir = abs(path(env, 'DATA_DIR', './data'));
  const nginxDir = abs(path(env, 'NGINX_CONF_DIR', `${dataDir}/nginx`));
  const luaDir = abs(path(env, 'LUA_DIR', `${dataDir}/lua`));
  const runDir = abs(path(env, 'RUN_DIR', `${dataDir}/run`));
  const routesFileRaw = read(env, 'ROUTES_FILE').value;
  if (routesFileRaw !== undefined && (!SAFE_PATH.test(routesFileRaw) || routesFileRaw.length > 512)) bad('ROUTES_FILE', routesFileRaw);
  const proxyContainer = str(env, 'PROXY_CONTAINER_NAME', 'task_traffic_webserver');
  if (!CONTAINER.test(proxyContainer)) bad('PROXY_CONTAINER_NAME', proxyContainer);
  const workerUser = optStr(env, 'PROXY_WORKER_USER', USER);
  const workers = str(env, 'PROXY_WORKER_PROCESSES', 'auto');
  if (!/^(auto|[1-9]\d{0,2})$/.test(workers)) bad('PROXY_WORKER_PROCESSES', workers);
  const maxBodySize = str(env, 'PROXY_MAX_BODY_SIZE', '100m');
  if (!SIZE.test(maxBodySize)) bad('PROXY_MAX_BODY_SIZE', maxBodySize);
  const adminToken = optStr(env, 'ADMIN_TOKEN', /^appgw_[a-z0-9]{8,32}_[A-Za-z0-9_-]{20,128}$/);

  const clearmlHost = url(env, 'CLEARML_API_HOST');
  const accessKey = optStr(env, 'CLEARML_API_ACCESS_KEY', /^[A-Za-z0-9_-]{1,256}$/);
  const secretKey = optStr(env, 'CLEARML_API_SECRET_KEY', /^[\x21-\x7e]{1,512}$/);
  if (clearmlHost && !accessKey) bad('CLEARML_API_ACCESS_KEY', undefined);
  if (clearmlHost && !secretKey) bad('CLEARML_API_SECRET_KEY', undefined);
  const queues = list(optStr(env, 'LISTEN_QUEUE_NAME'));
  for (const q of queues) if (!/^[A-Za-z0-9_.*?\-]{1,128}$/.test(q)) bad('LISTEN_QUEUE_NAME', q);

  const cookie = str(env, 'AUTH_COOKIE_NAME', 'clearml_token_basic');
  if (!COOKIE_NAME.test(cookie)) bad(read(env, 'AUTH_COOKIE_NAME').from, cookie);

  const tcpAddress = optStr(env, 'TCP_ROUTER_ADDRESS');
  const tcpHost = tcpAddress?.replace(/^[a-z]+:\/\//, '').replace(/:\d+$/, '').replace(/\/$/, '') ?? null;
  if (tcpHost !== null && !HOST.test(tcpHost)) bad(read(env, 'TCP_ROUTER_ADDRESS').from, tcpAddress ?? undefined);
  const portStart = int(env, 'TCP_PORT_START', null, 1, 65535);
  const portEnd = int(env, 'TCP_PORT_END', null, 1, 65535);
  if ((portStart === null) !== (portEnd === null)) bad(portStart === null ? 'TCP_PORT_START' : 'TCP_PORT_END', undefined);
  if (portStart !== null && portEnd !== null && portEnd < portStart) bad('TCP_PORT_END', String(portEnd));
  const cidrs = list(optStr(env, 'TCP_ALLOW_CIDRS'));
  for (const c of cidrs) if (!CIDR.test(c)) bad('TCP_ALLOW_CIDRS', c);

  const level = str(env, 'LOGGER_LEVEL', 'info').toLowerCase();
  if (!['error', 'warn', 'warning', 'info', 'debug'].includes(level)) bad('LOGGER_LEVEL', level);

  return {
    routerName,
    routerUrl,
    routerDomain: routerDomain?.toLowerCase() ?? null,
    listenAddress,
    serverPort,
    proxyMode: mode,
    dataDir,
    nginxBin: path(env, 'NGINX_BIN', 'nginx'),
    nginxDir,
    luaDir,
    runDir,
    proxyContainer,
    proxyWorkerUser: workerUser,
    proxyWorkerProcesses: workers,
    routesFile: routesFileRaw === undefined ? null : abs(routesFileRaw),
    reloadMinIntervalMs: duration(env, 'RELOAD_MIN_INTERVAL', 1000),
    pushIntervalMs: duration(env, 'PUSH_INTERVAL', 5000, 100),
    workerShutdownTimeoutS: Math.ceil(duration(env, 'WORKER_SHUTDOWN_TIMEOUT', 300_000, 1000) / 1000),
    maxBodySize,
    readTimeoutS: Math.ceil(duration(env, 'PROXY_READ_TIMEOUT', 3_600_000, 1000) / 1000),
    adminToken,
    keepGenerations: int(env, 'KEEP_GENERATIONS', 5, 2, 100)!,
    clearml: {
      apiHost: clearmlHost,
      accessKey,
      secretKey,
      pollIntervalMs: duration(env, 'CLEARML_POLL_INTERVAL', 5000, 100),
      listenQueues: queues,
      stripPrefix: bool(env, 'CLEARML_STRIP_PREFIX', true),
    },
    authCookieName: cookie,
    authSecure: bool(env, 'AUTH_SECURE_ENABLED', false),
    streamRevocation: bool(env, 'STREAM_REVOCATION', true),
    tokenMaxDays: int(env, 'TOKEN_MAX_DAYS', 90, 1, 3650)!,
    tcp: { routerAddress: tcpHost, portStart, portEnd, allowCidrs: cidrs },
    dockerProvider: bool(env, 'DOCKER_PROVIDER', false),
    dockerSocket: path(env, 'DOCKER_SOCKET', '/var/run/docker.sock'),
    loggerLevel: level === 'warning' ? 'warn' : level,
  };
}

/**
 * Pure. Parses runtime.env text (KEY=VALUE lines, # comments, optional quotes, optional
 * `export `). Throws a UserError naming the line that is not of that form.
 */
export function parseEnvFile(text: string, fileName: string): Record<string, string> {
  const out: Record<string, string> = {};
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new UserError('ENV_FILE_UNREADABLE', `${fileName}:${i + 1}: expected KEY=VALUE, got ${JSON.stringify(line.slice(0, 60))}`);
    let value = m[2]!;
    const q = value[0];
    if ((q === '"' || q === "'") && value.endsWith(q) && value.length >= 2) value = value.slice(1, -1);
    else value = value.replace(/\s+#.*$/, '');
    out[m[1]!] = value;
  });
  return out;
}
