import { LineCounter, isMap, isScalar, isSeq, parseDocument, visit } from 'yaml';
import type { Backend, EphemeralRoute, Rejection, Snapshot, StaticBinding, StaticRoute, TcpRoute } from '../model/types';
import {
  type Checked,
  checkBackend,
  checkBool,
  checkCidr,
  checkEndpointName,
  checkGroup,
  checkHealthCheck,
  checkHost,
  checkPath,
  checkPort,
  checkPrincipal,
  checkRouteName,
  checkSubdomain,
  checkTaskId,
  formatBackend,
  pathKey,
  routeId,
  show,
  printable,
} from '../model/validate';

/**
 * The routes file of the file provider (`ROUTES_FILE`): static routes defined by an admin and
 * tasks that ask to be exposed, in YAML or JSON. This module only parses and validates text;
 * reading and watching the file is the job of file-provider.ts.
 */

/** Bounds on what one routes file may hold; beyond them entries are rejected. */
export const ROUTES_FILE_LIMITS = {
  /** Entries kept from each of `routes:` and `tasks:`. */
  entries: 10_000,
  endpointsPerTask: 64,
  /** Larger files are refused as a whole. */
  fileBytes: 32 * 1024 * 1024,
} as const;

/** Why a routes file could not be used at all; `line` is 1-based, null when not tied to a line. */
export interface RoutesFileError {
  file: string;
  line: number | null;
  reason: string;
}

/** The outcome of parsing a routes file: a complete snapshot plus the rejected entries, or an error. */
export type RoutesFileResult =
  | { ok: true; snapshot: Snapshot; rejections: Rejection[] }
  | { ok: false; error: RoutesFileError };

/** Pure. `file:line: reason`, the one line shown to the operator for a routes file that cannot be used. */
export function formatRoutesFileError(e: RoutesFileError): string {
  return `${e.file}${e.line === null ? '' : `:${e.line}`}: ${e.reason}`;
}

const TOP_KEYS = ['routes', 'tasks'];
const ROUTE_KEYS = ['name', 'path', 'subdomain', 'backends', 'allowed_groups', 'strip_prefix', 'enabled', 'health_check'];
const TASK_KEYS = ['id', 'owner', 'company', 'endpoints'];
const ENDPOINT_KEYS = ['name', 'port', 'address', 'protocol', 'strip_prefix', 'route', 'allow_cidrs'];

type Entry = Record<string, unknown>;

/**
 * Pure. Parses the text of a routes file named `fileName` (JSON when it ends in `.json`, YAML
 * otherwise). An empty file, `{}` or a file of only comments is an authoritative empty snapshot.
 * Each bad entry becomes a Rejection and is skipped while the rest is kept; only a file that is
 * not a YAML/JSON mapping of `routes:` and `tasks:` lists is an error. Never throws.
 */
export function parseRoutesFile(text: string, fileName: string, provider = 'file'): RoutesFileResult {
  const fail = (reason: string, line: number | null = null): RoutesFileResult => ({ ok: false, error: { file: fileName, line, reason } });
  if (Buffer.byteLength(text, 'utf8') > ROUTES_FILE_LIMITS.fileBytes) {
    return fail(`the file is larger than ${ROUTES_FILE_LIMITS.fileBytes} bytes`);
  }
  const json = /\.json$/i.test(fileName);
  const lines = new LineCounter();
  const lineOf = (node: unknown): number | null => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return range ? lines.linePos(range[0]).line : null;
  };
  let top: Entry;
  const keyLine = new Map<string, number | null>();
  try {
    const doc = parseDocument(text, { schema: json ? 'json' : 'core', lineCounter: lines, uniqueKeys: true });
    const first = doc.errors[0];
    if (first) return fail(yamlReason(first.message), first.linePos?.[0]?.line ?? null);
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
      return { ok: true, snapshot: empty(), rejections: [] };
    }
    if (!isMap(doc.contents)) {
      const got = isSeq(doc.contents) ? 'a list' : isScalar(doc.contents) ? show(doc.contents.value) : 'something else';
      return fail(`the top level must be a mapping with routes: and tasks:, got ${got}`, lineOf(doc.contents));
    }
    let badKey: unknown;
    visit(doc, {
      Pair(_, pair) {
        const k = pair.key;
        if (isScalar(k) && (typeof k.value === 'string' || typeof k.value === 'number')) return undefined;
        badKey = k;
        return visit.BREAK;
      },
    });
    if (badKey !== undefined) return fail('keys must be plain strings', lineOf(badKey));
    for (const item of doc.contents.items) {
      const key = String((item.key as { value?: unknown }).value);
      if (!TOP_KEYS.includes(key)) return fail(`unknown top-level key ${show(key)}; expected routes and tasks`, lineOf(item.key));
      keyLine.set(key, lineOf(item.key));
    }
    top = doc.toJS({ maxAliasCount: 100 }) as Entry;
  } catch (e) {
    // toJS refuses alias bombs and similar resource attacks by throwing.
    return fail(yamlReason(e instanceof Error ? e.message : String(e)));
  }
  for (const key of TOP_KEYS) {
    const v = top[key];
    if (v !== undefined && v !== null && !Array.isArray(v)) return fail(`${key} must be a list, got ${show(v)}`, keyLine.get(key) ?? null);
  }

  const out = new Builder(fileName, provider);
  out.routes(asList(top.routes));
  out.tasks(asList(top.tasks));
  return { ok: true, snapshot: out.snapshot, rejections: out.rejections };
}

/**
 * Escapes control, format (bidi overrides, zero-width) and separator characters, so that a reason
 * echoing a hostile value stays one honest line in logs, status and the UI.
 */

/** The first line of a yaml message, without its position (reported separately) and bounded. */
function yamlReason(message: string): string {
  const line = message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  return printable(line.length > 200 ? `${line.slice(0, 200)}…` : line);
}

/** A tenant id, held to the same pattern as user ids. */
function checkCompany(v: unknown): Checked<string> {
  const c = checkPrincipal(v);
  return c.ok ? c : { ok: false, reason: `company ${show(v)} must match [A-Za-z0-9][A-Za-z0-9_.@-]{0,127}` };
}

function empty(): Snapshot {
  return { ephemeral: [], static: [], bindings: [], tcp: [] };
}

function asList(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

class Reject extends Error {}

/** Returns the value of a check, or throws the reason so that the entry is rejected. */
function need<T>(c: Checked<T>, field?: string): T {
  if (!c.ok) throw new Reject(field ? `${field}: ${c.reason}` : c.reason);
  return c.value;
}

function asEntry(v: unknown, what: string): Entry {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) {
    throw new Reject(`${what} must be a mapping, got ${show(v)}`);
  }
  return v as Entry;
}

function onlyKeys(e: Entry, allowed: string[]): void {
  const unknown = Object.keys(e).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw new Reject(`unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => show(k)).join(', ')}; expected ${allowed.join(', ')}`);
  }
}

function list<T>(v: unknown, field: string, each: (x: unknown) => Checked<T>, max: number): T[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new Reject(`${field} must be a list, got ${show(v)}`);
  if (v.length > max) throw new Reject(`${field} has ${v.length} entries; at most ${max} are allowed`);
  return v.map((x, i) => need(each(x), `${field}[${i}]`));
}

/** Accumulates the snapshot, the rejections and what earlier entries already claimed. */
class Builder {
  readonly snapshot = empty();
  readonly rejections: Rejection[] = [];
  private readonly names = new Map<string, string>();
  private readonly paths = new Map<string, string>();
  private readonly subdomains = new Map<string, string>();
  private readonly taskIds = new Map<string, string>();
  private readonly httpIds = new Map<string, string>();
  private readonly tcpIds = new Map<string, string>();

  constructor(
    private readonly file: string,
    private readonly provider: string,
  ) {}

  private reject(where: string, reason: string): void {
    this.rejections.push({ provider: this.provider, source: `${this.file}: ${printable(where)}`, reason: printable(reason) });
  }

  /** Runs `fn`, turning a Reject into a Rejection of `where`. */
  private attempt(where: () => string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof Reject)) throw e;
      this.reject(where(), e.message);
    }
  }

  private capped(items: unknown[], key: string): unknown[] {
    const max = ROUTES_FILE_LIMITS.entries;
    if (items.length <= max) return items;
    this.reject(`${key}[${max}..${items.length - 1}]`, `${key} has ${items.length} entries; only the first ${max} are used`);
    return items.slice(0, max);
  }

  routes(items: unknown[]): void {
    this.capped(items, 'routes').forEach((raw, i) => {
      const name = (raw as Entry | null)?.name;
      const where = () => `routes[${i}]${typeof name === 'string' ? ` (name ${show(name)})` : ''}`;
      this.attempt(where, () => this.route(raw, `routes[${i}]`));
    });
  }

  private route(raw: unknown, at: string): void {
    const e = asEntry(raw, 'a route');
    onlyKeys(e, ROUTE_KEYS);
    if (e.name === undefined) throw new Reject('name is required');
    const name = need(checkRouteName(e.name));
    const hasPath = e.path !== undefined && e.path !== null;
    const hasSub = e.subdomain !== undefined && e.subdomain !== null;
    if (hasPath === hasSub) throw new Reject('a route needs exactly one of path and subdomain');
    const path = hasPath ? need(checkPath(e.path)) : null;
    const subdomain = hasSub ? need(checkSubdomain(e.subdomain)) : null;
    const backends = list(e.backends, 'backends', checkBackend, 256);
    const seen = new Set<string>();
    for (const b of backends) {
      const k = formatBackend(b);
      if (seen.has(k)) throw new Reject(`backend ${k} is listed twice`);
      seen.add(k);
    }
    const groups = [...new Set(list(e.allowed_groups, 'allowed_groups', checkGroup, 256))];
    const stripPrefix = need(checkBool(e.strip_prefix, 'strip_prefix', true));
    const enabled = need(checkBool(e.enabled, 'enabled', true));
    const healthCheck = need(checkHealthCheck(e.health_check), 'health_check');

    this.unclaimed(this.names, name, `route name ${show(name)}`);
    if (path !== null) this.unclaimed(this.paths, pathKey(path), `path ${show(path)}`, ' (paths are compared ignoring case)');
    if (subdomain !== null) this.unclaimed(this.subdomains, subdomain, `subdomain ${show(subdomain)}`);
    this.names.set(name, at);
    if (path !== null) this.paths.set(pathKey(path), at);
    if (subdomain !== null) this.subdomains.set(subdomain, at);
    const route: StaticRoute = { name, path, subdomain, backends, allowedGroups: groups, stripPrefix, enabled, healthCheck, provider: this.provider };
    this.snapshot.static.push(route);
  }

  /** Rejects when an earlier entry already owns `key`: duplicates keep the first. */
  private unclaimed(owners: Map<string, string>, key: string, what: string, note = ''): void {
    const first = owners.get(key);
    if (first !== undefined) throw new Reject(`${what} is already defined by ${first}${note}`);
  }

  /** Checks that nobody owns `key` yet and records `at` as its owner. */
  private claim(owners: Map<string, string>, key: string, at: string, what: string): void {
    this.unclaimed(owners, key, what);
    owners.set(key, at);
  }

  tasks(items: unknown[]): void {
    this.capped(items, 'tasks').forEach((raw, i) => {
      const id = (raw as Entry | null)?.id;
      const where = () => `tasks[${i}]${typeof id === 'string' ? ` (id ${show(id)})` : ''}`;
      this.attempt(where, () => this.task(raw, i));
    });
  }

  private task(raw: unknown, i: number): void {
    const e = asEntry(raw, 'a task');
    onlyKeys(e, TASK_KEYS);
    if (e.id === undefined) throw new Reject('id is required');
    const taskId = need(checkTaskId(e.id));
    if (e.owner === undefined) throw new Reject('owner is required');
    const owner = need(checkPrincipal(e.owner), 'owner');
    const company = e.company === undefined || e.company === null ? null : need(checkCompany(e.company));
    if (!Array.isArray(e.endpoints)) throw new Reject(`endpoints must be a list, got ${show(e.endpoints)}`);
    if (e.endpoints.length === 0) throw new Reject('endpoints must list at least one endpoint');
    if (e.endpoints.length > ROUTES_FILE_LIMITS.endpointsPerTask) {
      throw new Reject(`endpoints has ${e.endpoints.length} entries; at most ${ROUTES_FILE_LIMITS.endpointsPerTask} are allowed`);
    }
    this.claim(this.taskIds, taskId, `tasks[${i}]`, `task id ${show(taskId)}`);
    e.endpoints.forEach((ep, j) => {
      const at = `tasks[${i}].endpoints[${j}]`;
      this.attempt(
        () => at,
        () => this.endpoint(ep, at, taskId, owner, company),
      );
    });
  }

  private endpoint(raw: unknown, at: string, taskId: string, owner: string, company: string | null): void {
    const e = asEntry(raw, 'an endpoint');
    onlyKeys(e, ENDPOINT_KEYS);
    const endpoint = need(checkEndpointName(e.name));
    if (e.port === undefined) throw new Reject('port is required');
    const port = need(checkPort(e.port));
    if (e.address === undefined) throw new Reject('address is required');
    const host = need(checkHost(e.address));
    const backend: Backend = { host, port };
    const protocol = e.protocol ?? 'http';
    if (protocol !== 'http' && protocol !== 'tcp') throw new Reject(`protocol ${show(e.protocol)} must be http or tcp`);
    const id = routeId(taskId, endpoint);

    if (protocol === 'tcp') {
      for (const k of ['strip_prefix', 'route']) if (e[k] !== undefined) throw new Reject(`${k} applies to http endpoints only`);
      const allowCidrs = e.allow_cidrs === undefined || e.allow_cidrs === null ? null : list(e.allow_cidrs, 'allow_cidrs', checkCidr, 256);
      this.claim(this.tcpIds, id, at, `tcp route id ${show(id)}`);
      const route: TcpRoute = { id, taskId, endpoint, owner, backend, allowCidrs, provider: this.provider };
      this.snapshot.tcp.push(route);
      return;
    }

    if (e.allow_cidrs !== undefined) throw new Reject('allow_cidrs applies to tcp endpoints only');
    if (e.route !== undefined && e.route !== null) {
      const routeName = need(checkRouteName(e.route), 'route');
      if (e.strip_prefix !== undefined) throw new Reject(`strip_prefix is set by the static route ${show(routeName)}, not by a bound endpoint`);
      this.claim(this.httpIds, id, at, `route id ${show(id)}`);
      const binding: StaticBinding = { route: routeName, taskId, endpoint, backend, provider: this.provider };
      this.snapshot.bindings.push(binding);
      return;
    }
    const stripPrefix = need(checkBool(e.strip_prefix, 'strip_prefix', true));
    this.claim(this.httpIds, id, at, `route id ${show(id)}`);
    const route: EphemeralRoute = { id, taskId, endpoint, owner, company, backend, stripPrefix, provider: this.provider };
    this.snapshot.ephemeral.push(route);
  }
}
