import type { Backend, EphemeralRoute, Rejection, StaticBinding, TcpRoute } from '../../model/types';
import { type Checked, checkBackend, checkEndpointName, checkHost, checkPort, checkPrincipal, checkRouteName, checkTaskId, routeId, show } from '../../model/validate';

/**
 * How a ClearML task asks to be exposed (clearml-protocol.md §1.3–1.10): runtime keys written by
 * the SDK, clearml-session or older Gradio bindings, and the keys this router writes back.
 * This module only parses; the provider does the I/O.
 */

/** Runtime key names, per clearml-protocol.md §1.3, §1.4 and §1.10, plus the private key we own. */
export const RUNTIME_KEYS = {
  service: '_SERVICE',
  httpPort: '_PORT',
  httpAddress: '_ADDRESS',
  tcpPort: 'external_tcp_port',
  tcpAddress: 'external_address',
  upstreamTaskPort: 'upstream_task_port',
  mode: '_ROUTER_ENDPOINT_MODE',
  modeParam: '_ROUTER_ENDPOINT_MODE_PARAM',
  endpoint: 'endpoint',
  browserEndpoint: 'browser_endpoint',
  /** Ours: the task's own `host:port` of a TCP endpoint, kept because we overwrite `external_*`. */
  upstream: '_appgw_upstream',
} as const;

/** The system tag that asks the router to look at a task. */
export const EXTERNAL_SERVICE_TAG = 'external_service';

/** Bound on the endpoints one task may declare; the rest are rejected. */
export const MAX_ENDPOINTS_PER_TASK = 64;

/** Pure. `base` for the default endpoint, `base__name` for a named one (SDK `_compose_runtime_key`). */
export function runtimeKey(base: string, endpoint: string): string {
  return endpoint === '' ? base : `${base}__${endpoint}`;
}


/** What this router wrote into a TCP endpoint's `external_address`/`external_tcp_port`, and the upstream it replaced. */
export interface TcpWriteBack {
  address: string;
  port: number;
  upstream: Backend;
}

/** What parseTask needs besides the task to tell the task's own TCP address from our write-back. */
export interface ParseContext {
  provider: string;
  /** The gateway's public TCP host (TCP_ROUTER_ADDRESS) and port pool; null when not configured. */
  tcpGateway: { address: string | null; portStart: number | null; portEnd: number | null };
  /** Our write-backs still in memory, by route id (`<task>` or `<task>-<name>`). */
  tcpWritten?: ReadonlyMap<string, TcpWriteBack>;
  /** Strip `/service/<id>` before proxying (CLEARML_STRIP_PREFIX); default true. */
  stripPrefix?: boolean;
}

/** What one task (or many) contributes: routes plus the problems found. */
export interface ParsedTasks {
  ephemeral: EphemeralRoute[];
  bindings: StaticBinding[];
  tcp: TcpRoute[];
  rejections: Rejection[];
}

type Runtime = Record<string, unknown>;

/** Pure. True for a JSON object (not null, not an array). */
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Endpoint names by protocol, from the port keys (never from `_SERVICE`, which both protocols
 * share): null for the default endpoint, the raw key suffix otherwise (still to be checked).
 */
function endpointKeys(runtime: Runtime, portKey: string): Array<string | null> {
  const names: Array<string | null> = [];
  for (const key of Object.keys(runtime)) {
    if (key === portKey) names.push(null);
    else if (key.startsWith(`${portKey}__`)) names.push(key.slice(portKey.length + 2));
  }
  return names.sort((a, b) => (a === b ? 0 : a === null ? -1 : b === null ? 1 : a < b ? -1 : 1));
}

class Reject extends Error {}

function need<T>(c: Checked<T>, what?: string): T {
  if (!c.ok) throw new Reject(what ? `${what}: ${c.reason}` : c.reason);
  return c.value;
}

/**
 * Pure. Parses one task object as returned by `tasks.get_all` with `only_fields` into routes.
 * HTTP endpoints come from `_PORT[__n]` + `_ADDRESS[__n]` (ephemeral, or a binding to a static
 * route when `_ROUTER_ENDPOINT_MODE[__n]` says so); TCP endpoints from `external_tcp_port[__n]` +
 * `external_address[__n]`. Ports may be JSON numbers or strings. A task without port keys yields
 * nothing. Every value passes the model validators; a bad task or endpoint becomes a Rejection and
 * the others are kept. Never throws.
 */
export function parseTask(task: unknown, ctx: ParseContext): ParsedTasks {
  const out: ParsedTasks = { ephemeral: [], bindings: [], tcp: [], rejections: [] };
  const reject = (source: string, reason: string) => out.rejections.push({ provider: ctx.provider, source, reason });
  if (!isObject(task)) {
    reject(`task ${show(task)}`, 'a task must be an object');
    return out;
  }
  const idCheck = checkTaskId(task.id);
  if (!idCheck.ok) {
    reject(`task ${show(task.id)}`, idCheck.reason);
    return out;
  }
  const taskId = idCheck.value;
  const source = `task ${taskId}`;
  const runtime = task.runtime;
  if (runtime === undefined || runtime === null) return out;
  if (!isObject(runtime)) {
    reject(source, `runtime must be an object, got ${show(runtime)}`);
    return out;
  }
  const http = endpointKeys(runtime, RUNTIME_KEYS.httpPort);
  const tcp = endpointKeys(runtime, RUNTIME_KEYS.tcpPort);
  if (http.length + tcp.length === 0) return out;
  if (http.length + tcp.length > MAX_ENDPOINTS_PER_TASK) {
    reject(source, `declares ${http.length + tcp.length} endpoints; at most ${MAX_ENDPOINTS_PER_TASK} are allowed`);
    return out;
  }
  let owner: string | null;
  let company: string | null;
  try {
    owner = task.user === undefined || task.user === null ? null : need(checkPrincipal(task.user), 'owner (task.user)');
    company = task.company === undefined || task.company === null ? null : need(checkPrincipal(task.company), 'tenant (task.company)');
  } catch (e) {
    reject(source, (e as Error).message);
    return out;
  }

  const each = (name: string | null, protocol: 'http' | 'tcp', fn: (endpoint: string) => void) => {
    const portKey = protocol === 'http' ? RUNTIME_KEYS.httpPort : RUNTIME_KEYS.tcpPort;
    const where = name === null ? `${source} (default ${protocol} endpoint)` : `${source} ${protocol} endpoint ${show(name)}`;
    try {
      if (name === null) return fn('');
      const endpoint = name === '' ? { ok: false as const, reason: 'the endpoint name is empty' } : checkEndpointName(name);
      if (!endpoint.ok) throw new Reject(`runtime key ${show(`${portKey}__${name}`)}: ${endpoint.reason} (lowercase letters, digits and _)`);
      fn(endpoint.value);
    } catch (e) {
      if (!(e instanceof Reject)) throw e;
      reject(where, e.message);
    }
  };

  for (const name of http) {
    each(name, 'http', (endpoint) => {
      const port = need(checkPort(runtime[runtimeKey(RUNTIME_KEYS.httpPort, endpoint)]), runtimeKey(RUNTIME_KEYS.httpPort, endpoint));
      const addressKey = runtimeKey(RUNTIME_KEYS.httpAddress, endpoint);
      if (runtime[addressKey] === undefined || runtime[addressKey] === null) throw new Reject(`${addressKey} is missing`);
      const backend: Backend = { host: need(checkHost(runtime[addressKey]), addressKey), port };
      const modeKey = runtimeKey(RUNTIME_KEYS.mode, endpoint);
      const mode = runtime[modeKey];
      if (mode === undefined || mode === null || mode === '') {
        out.ephemeral.push({ id: routeId(taskId, endpoint), taskId, endpoint, owner, company, backend, stripPrefix: ctx.stripPrefix ?? true, provider: ctx.provider });
        return;
      }
      // The SDK only writes "path"; a subdomain static route is bound by its name the same way.
      if (mode !== 'path' && mode !== 'subdomain') throw new Reject(`${modeKey} ${show(mode)} must be "path"`);
      const paramKey = runtimeKey(RUNTIME_KEYS.modeParam, endpoint);
      const route = need(checkRouteName(runtime[paramKey]), paramKey);
      out.bindings.push({ route, taskId, endpoint, backend, provider: ctx.provider });
    });
  }

  for (const name of tcp) {
    each(name, 'tcp', (endpoint) => {
      const id = routeId(taskId, endpoint);
      const backend = tcpUpstream(runtime, endpoint, id, ctx);
      out.tcp.push({ id, taskId, endpoint, owner, backend, allowCidrs: null, provider: ctx.provider });
    });
  }
  return out;
}

/**
 * The task's own address of a TCP endpoint. After our write-back `external_address`/`external_tcp_port`
 * hold the gateway's address and port; then the upstream is what we remember, or what we persisted
 * in `_appgw_upstream[__n]`. A value pointing at the gateway with no known upstream is rejected, so
 * the gateway never routes to itself.
 */
function tcpUpstream(runtime: Runtime, endpoint: string, id: string, ctx: ParseContext): Backend {
  const portKey = runtimeKey(RUNTIME_KEYS.tcpPort, endpoint);
  const addressKey = runtimeKey(RUNTIME_KEYS.tcpAddress, endpoint);
  const upstreamKey = runtimeKey(RUNTIME_KEYS.upstream, endpoint);
  const port = need(checkPort(runtime[portKey]), portKey);
  if (runtime[addressKey] === undefined || runtime[addressKey] === null) throw new Reject(`${addressKey} is missing`);
  const host = need(checkHost(runtime[addressKey]), addressKey);
  const gw = ctx.tcpGateway;
  const gwAddress = gw.address?.toLowerCase() ?? null;
  const inPool = (p: number) => gw.portStart === null || gw.portEnd === null || (p >= gw.portStart && p <= gw.portEnd);
  const isGateway = (b: Backend) => gwAddress !== null && b.host === gwAddress && inPool(b.port);

  const mine = ctx.tcpWritten?.get(id);
  if (mine && mine.address.toLowerCase() === host && mine.port === port) return mine.upstream;
  if (!isGateway({ host, port })) return { host, port };
  const raw = runtime[upstreamKey];
  if (raw === undefined || raw === null) {
    throw new Reject(`${addressKey}:${portKey} (${host}:${port}) is this gateway's own address and the task's address is unknown (no ${upstreamKey}); request the endpoint again`);
  }
  const upstream = need(checkBackend(raw), upstreamKey);
  if (isGateway(upstream)) throw new Reject(`${upstreamKey} ${show(raw)} points at this gateway itself`);
  return upstream;
}

/** Pure. Parses many tasks; a malformed task never hides the others. Routes are sorted by id. */
export function parseTasks(tasks: readonly unknown[], ctx: ParseContext): ParsedTasks {
  const out: ParsedTasks = { ephemeral: [], bindings: [], tcp: [], rejections: [] };
  for (const t of tasks) {
    const p = parseTask(t, ctx);
    out.ephemeral.push(...p.ephemeral);
    out.bindings.push(...p.bindings);
    out.tcp.push(...p.tcp);
    out.rejections.push(...p.rejections);
  }
  const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  out.ephemeral.sort(byId);
  out.tcp.sort(byId);
  out.bindings.sort((a, b) => {
    const ka = `${a.route}\0${a.taskId}\0${a.endpoint}`;
    const kb = `${b.route}\0${b.taskId}\0${b.endpoint}`;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  return out;
}
