import { isIP } from 'node:net';
import { parseDuration } from '../config';
import type { Backend, HealthCheck } from './types';

/**
 * Strict validators for every value that comes from a task, a label, a file or an API call.
 * Each returns `{ ok: true, value }` with the normalised value, or `{ ok: false, reason }` with a
 * reason a person can act on. Pure: no I/O.
 */
export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

const ok = <T>(value: T): Checked<T> => ({ ok: true, value });
const no = <T>(reason: string): Checked<T> => ({ ok: false, reason });

/** Pure. Escapes control, format (bidi, zero-width), separator and surrogate characters as \uXXXX. */
export function printable(s: string): string {
  return s.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Shows an untrusted value in a message: quoted, invisible and control characters escaped, cut to 40 chars. */
export function show(value: unknown): string {
  let s: string;
  try {
    s = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  const cut = s.length > 40 ? s.slice(0, 40) + '…' : s;
  return printable(JSON.stringify(cut));
}

export const PATTERNS = {
  /** ClearML task ids are 32 hex; other providers use [a-z0-9] ids of up to 40 chars. */
  taskId: /^[a-z0-9]{1,40}$/,
  endpointName: /^[a-z0-9]([a-z0-9_]{0,30}[a-z0-9])?$/,
  routeName: /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
  subdomain: /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
  pathSegment: /^[A-Za-z0-9._~-]{1,64}$/,
  dnsName: /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/,
  principal: /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$/,
  group: /^[a-z0-9][a-z0-9_.-]{0,63}$/,
  cidr4: /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/([0-9]|[12]\d|3[0-2])$/,
} as const;

function stringOf(v: unknown, what: string, max = 256): Checked<string> {
  if (typeof v !== 'string') return no(`${what} must be a string, got ${show(v)}`);
  if (v.length > max) return no(`${what} is longer than ${max} characters`);
  return ok(v);
}

/** A task id: [a-z0-9]{1,40} (ClearML ids are 32 lowercase hex). */
export function checkTaskId(v: unknown): Checked<string> {
  const s = stringOf(v, 'task id', 40);
  if (!s.ok) return s;
  return PATTERNS.taskId.test(s.value) ? s : no(`task id ${show(v)} must match [a-z0-9]{1,40}`);
}

/** An endpoint name: '' (default) or [a-z0-9_]{1,32}, not starting or ending with '_'. */
export function checkEndpointName(v: unknown): Checked<string> {
  if (v === undefined || v === null || v === '') return ok('');
  const s = stringOf(v, 'endpoint name', 32);
  if (!s.ok) return s;
  return PATTERNS.endpointName.test(s.value) ? s : no(`endpoint name ${show(v)} must match [a-z0-9_]{1,32}`);
}

/** A static route name: [a-z0-9-]{1,63}, starting and ending with a letter or digit. */
export function checkRouteName(v: unknown): Checked<string> {
  const s = stringOf(v, 'route name', 63);
  if (!s.ok) return s;
  return PATTERNS.routeName.test(s.value) ? s : no(`route name ${show(v)} must match [a-z0-9-]{1,63}`);
}

/** A subdomain label: [a-z0-9-]{1,63}. */
export function checkSubdomain(v: unknown): Checked<string> {
  const s = stringOf(v, 'subdomain', 63);
  if (!s.ok) return s;
  return PATTERNS.subdomain.test(s.value) ? s : no(`subdomain ${show(v)} must be one DNS label [a-z0-9-]{1,63}`);
}

const RESERVED_PATHS = new Set(['service', '_gateway', '_internal']);

/**
 * A static path prefix: `/seg/` or `/seg/seg/`, segments [A-Za-z0-9._~-], no `.` or `..`
 * segments, not under /service/ or /_gateway/. Normalised to leading and trailing slash.
 */
export function checkPath(v: unknown): Checked<string> {
  const s = stringOf(v, 'path', 200);
  if (!s.ok) return s;
  const segs = s.value.split('/').filter((x, i, a) => !(x === '' && (i === 0 || i === a.length - 1)));
  if (!s.value.startsWith('/') || segs.length === 0 || segs.length > 4) return no(`path ${show(v)} must look like /name/ (1 to 4 segments)`);
  for (const seg of segs) {
    if (!PATTERNS.pathSegment.test(seg) || seg === '.' || seg === '..') return no(`path ${show(v)} has a bad segment; segments use [A-Za-z0-9._~-]`);
  }
  if (RESERVED_PATHS.has(segs[0]!)) return no(`path ${show(v)} is reserved for the gateway`);
  return ok(`/${segs.join('/')}/`);
}

/** A TCP port 1-65535, given as a JSON number or a decimal string. */
export function checkPort(v: unknown): Checked<number> {
  let n: number;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'string' && /^\d{1,5}$/.test(v.trim())) n = Number(v.trim());
  else return no(`port ${show(v)} must be a whole number 1-65535`);
  if (!Number.isInteger(n) || n < 1 || n > 65535) return no(`port ${show(v)} must be a whole number 1-65535`);
  return ok(n);
}

/** A backend host: an IPv4 or IPv6 literal, or a DNS name. Lower-cased. */
export function checkHost(v: unknown): Checked<string> {
  const s = stringOf(v, 'address', 253);
  if (!s.ok) return s;
  const h = s.value.trim().toLowerCase();
  const bare = h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
  if (isIP(bare) === 4) return ok(bare);
  if (isIP(bare) === 6 && !bare.includes('%')) return ok(bare);
  if (/^\d+(\.\d+)*$/.test(bare)) return no(`address ${show(v)} is not a valid IP address`);
  if (PATTERNS.dnsName.test(bare)) return ok(bare);
  return no(`address ${show(v)} must be an IP address or a DNS name`);
}

/**
 * Pure. What two static paths are compared by: the edge finds path routes through an nginx map,
 * whose strings match ignoring case, so `/LLM/` and `/llm/` are the same route's path.
 */
export function pathKey(path: string): string {
  return path.toLowerCase();
}

/** Pure. A backend as `host:port`, with brackets around an IPv6 literal; readable back with checkBackend. */
export function formatBackend(b: Backend): string {
  return b.host.includes(':') ? `[${b.host}]:${b.port}` : `${b.host}:${b.port}`;
}

/** A backend as `host:port`, `[v6]:port`, or `{address|host, port}`. */
export function checkBackend(v: unknown): Checked<Backend> {
  if (typeof v === 'string') {
    const m = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(v.trim());
    if (!m) return no(`backend ${show(v)} must be host:port`);
    return checkBackend({ host: m[1], port: m[2] });
  }
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const host = checkHost(o.host ?? o.address);
    if (!host.ok) return host;
    const port = checkPort(o.port);
    if (!port.ok) return port;
    return ok({ host: host.value, port: port.value });
  }
  return no(`backend ${show(v)} must be "host:port"`);
}

/** A user or service-account id (ClearML user ids are 32 hex). */
export function checkPrincipal(v: unknown): Checked<string> {
  const s = stringOf(v, 'user', 128);
  if (!s.ok) return s;
  return PATTERNS.principal.test(s.value) ? s : no(`user ${show(v)} must match [A-Za-z0-9][A-Za-z0-9_.@-]{0,127}`);
}

/** A group name: [a-z0-9][a-z0-9_.-]{0,63}. */
export function checkGroup(v: unknown): Checked<string> {
  const s = stringOf(v, 'group', 64);
  if (!s.ok) return s;
  return PATTERNS.group.test(s.value) ? s : no(`group ${show(v)} must match [a-z0-9][a-z0-9_.-]{0,63}`);
}

/** An IPv4 CIDR such as 10.0.0.0/8. */
export function checkCidr(v: unknown): Checked<string> {
  const s = stringOf(v, 'CIDR', 18);
  if (!s.ok) return s;
  return PATTERNS.cidr4.test(s.value) ? s : no(`CIDR ${show(v)} must look like 10.0.0.0/8`);
}

/** A list of values checked one by one; the first failure wins. */
export function checkList<T>(v: unknown, what: string, each: (x: unknown) => Checked<T>, max = 256): Checked<T[]> {
  if (v === undefined || v === null) return ok([]);
  if (!Array.isArray(v)) return no(`${what} must be a list`);
  if (v.length > max) return no(`${what} has more than ${max} entries`);
  const out: T[] = [];
  for (const x of v) {
    const c = each(x);
    if (!c.ok) return c;
    out.push(c.value);
  }
  return ok(out);
}

/** A boolean, with a default when absent. */
export function checkBool(v: unknown, what: string, dflt: boolean): Checked<boolean> {
  if (v === undefined || v === null) return ok(dflt);
  if (typeof v === 'boolean') return ok(v);
  return no(`${what} must be true or false, got ${show(v)}`);
}

/** Bounds and default of a static route's active health check. */
export const HEALTH_CHECK = {
  pathMax: 200,
  minIntervalMs: 1000,
  maxIntervalMs: 3_600_000,
  defaultIntervalMs: 10_000,
  /** A probe never waits longer than this (nor longer than the interval). */
  maxTimeoutMs: 5000,
} as const;

/** `/p/a.th` of [A-Za-z0-9._~/-], then optionally `?` and a query of [A-Za-z0-9._~=&-]. */
const HEALTH_PATH = /^\/[A-Za-z0-9._~/-]*(\?[A-Za-z0-9._~=&-]+)?$/;
const HEALTH_PATH_RULE = 'must start with / and use only [A-Za-z0-9._~/-], optionally followed by ?query of [A-Za-z0-9._~=&-], at most 200 characters, no . or .. segments';

/** The path (and query) a health check requests: `/health`, `/v1/models?x=1`. */
export function checkHealthPath(v: unknown): Checked<string> {
  if (typeof v !== 'string') return no(`health check path must be a string such as /health, got ${show(v)}`);
  if (v.length > HEALTH_CHECK.pathMax || !HEALTH_PATH.test(v)) return no(`health check path ${show(v)} ${HEALTH_PATH_RULE}`);
  const segs = v.split('?')[0]!.split('/');
  if (segs.some((x) => x === '.' || x === '..')) return no(`health check path ${show(v)} ${HEALTH_PATH_RULE}`);
  return ok(v);
}

/** Pure. A duration in ms as the shortest of `1h`, `2m`, `10s`, `1500ms`. */
export function formatInterval(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

const INTERVAL_RULE = 'must be a duration from 1s to 1h such as 10s, 1500ms or 1m';

/** How often a health check runs: a duration (`10s`, `1500ms`, `1m`; a bare number is seconds), 1 s to 1 h; in ms. */
export function checkHealthInterval(v: unknown): Checked<number> {
  const ms = typeof v === 'string' && v.length <= 20 ? parseDuration(v) : typeof v === 'number' && Number.isFinite(v) ? parseDuration(String(v)) : null;
  if (ms === null || ms < HEALTH_CHECK.minIntervalMs || ms > HEALTH_CHECK.maxIntervalMs) return no(`health check interval ${show(v)} ${INTERVAL_RULE}`);
  return ok(ms);
}

/** An interval already in ms (store rows, the model): a whole number 1000..3600000. */
export function checkHealthIntervalMs(v: unknown): Checked<number> {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < HEALTH_CHECK.minIntervalMs || v > HEALTH_CHECK.maxIntervalMs) {
    return no(`health check interval ${show(v)} must be whole milliseconds from 1000 to 3600000`);
  }
  return ok(v);
}

/**
 * A health check as written by an admin (routes file, API): absent or null for none, or
 * `{ path, interval? }` (interval defaults to 10 s). Normalised to `{ path, intervalMs }`.
 */
export function checkHealthCheck(v: unknown): Checked<HealthCheck | null> {
  if (v === undefined || v === null) return ok(null);
  if (typeof v !== 'object' || Array.isArray(v)) return no(`health check must be a mapping such as { path: /health, interval: 10s }, got ${show(v)}`);
  const o = v as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => k !== 'path' && k !== 'interval');
  if (unknown.length > 0) return no(`health check has unknown key ${show(unknown[0])}; expected path and interval`);
  if (o.path === undefined || o.path === null) return no('health check needs a path such as /health');
  const path = checkHealthPath(o.path);
  if (!path.ok) return path;
  const interval = o.interval === undefined || o.interval === null ? ok<number>(HEALTH_CHECK.defaultIntervalMs) : checkHealthInterval(o.interval);
  if (!interval.ok) return interval;
  return ok({ path: path.value, intervalMs: interval.value });
}

/** Pure. The route id of a task endpoint: `<task>` or `<task>-<name>`. */
export function routeId(taskId: string, endpoint: string): string {
  return endpoint === '' ? taskId : `${taskId}-${endpoint}`;
}
