import type http from 'node:http';
import net from 'node:net';
import { readFile, stat } from 'node:fs/promises';
import { isUserError } from '../errors';
import type { Backend, HealthCheck, Rejection, StaticRoute } from '../model/types';
import { checkBool, checkHealthCheck, formatBackend, formatInterval, pathKey, show } from '../model/validate';
import { parseRoutesFile } from '../providers/routes-file';
import { STORE_PROVIDER } from '../providers/store-provider';
import type { RouterStatus } from '../router';
import type { Actor, AuditEntry, Group, RouteInput, Share, ShareSubject, Store, StoredRoute, User } from '../store/store';
import { type TokenView, createToken, listTokens, parseExpiresIn, revokeToken, rotateToken } from '../store/tokens';
import type { ApiHandler } from './router-socket';

/**
 * The admin API under `/_gateway/api/`. The edge has already authenticated the caller as an admin
 * (lua/appgw/access.lua, kind "admin") and names them in X-Forwarded-User; every mutation is
 * audited with that admin as the actor and X-Real-IP as the client. JSON in, JSON out; errors are
 * `{ error: code, message }` with 400 (bad input), 404 (no such thing), 405, 409 (conflict or
 * read-only). Secrets appear in exactly two answers: token create and token rotate.
 */

/** What the admin API needs. */
export interface AdminApiDeps {
  store: Store;
  /** The router's status; null while the router is still starting. */
  status: () => RouterStatus | null;
  /** ROUTES_FILE: its routes are shown (read-only) and named in the refusal to change them. */
  routesFile?: string | null;
  /** Whether a backend accepts connections (Pending vs Routing); null disables probing. Default: a TCP connect, 500 ms. */
  probe?: ((b: Backend) => Promise<boolean>) | null;
}

/** An API answer. */
export interface ApiResult {
  status: number;
  body: unknown;
}

type Params = Record<string, string>;
interface Ctx {
  params: Params;
  query: URLSearchParams;
  body: () => Record<string, unknown>;
  by: Actor;
}
type Handler = (ctx: Ctx) => ApiResult | Promise<ApiResult>;
interface Endpoint {
  method: string;
  pattern: string[];
  handler: Handler;
}

/** An API error with its HTTP status and a stable lowercase code. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const PREFIX = '/_gateway/api/';
const ok = (body: unknown, status = 200): ApiResult => ({ status, body });
const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** Pure. The HTTP status of a user error code. */
export function httpStatusOf(code: string): number {
  if (code === 'NOT_FOUND') return 404;
  if (code === 'CONFLICT') return 409;
  return 400;
}

// ---- views (pure) -------------------------------------------------------------------------------

/** Pure. A token as the API shows it: never the secret, never its hash. */
export function viewTokenApi(t: TokenView) {
  return {
    id: t.id,
    label: t.label,
    state: t.state,
    grants_as: t.grantsAs,
    routes: t.routes,
    created_by: t.createdBy,
    created_at: iso(t.createdAt),
    expires_at: iso(t.expiresAt),
    last_used_at: iso(t.lastUsedAt),
    revoked_at: iso(t.revokedAt),
    rotated_from: t.rotatedFrom,
    bootstrap: t.bootstrap,
  };
}

/** Pure. A user as the API shows it. */
export function viewUser(u: User) {
  return { id: u.id, name: u.name, kind: u.kind, admin: u.admin, groups: u.groups, created_at: iso(u.createdAt), created_by: u.createdBy };
}

/** Pure. A group as the API shows it. */
export function viewGroup(g: Group) {
  return { name: g.name, description: g.description, members: g.members, created_at: iso(g.createdAt), created_by: g.createdBy };
}

/** Pure. A share as the API shows it. */
export function viewShare(s: Share) {
  return { task: s.taskId, user: s.user, group: s.group, created_at: iso(s.createdAt), created_by: s.createdBy };
}

/** Pure. An audit row as the API shows it. */
export function viewAudit(a: AuditEntry) {
  return { id: a.id, ts: iso(a.ts), actor: a.actor, action: a.action, target: a.target, client: a.client, detail: a.detail };
}

/** Route status as the API and `appgw route list` show it. */
export type RouteStatusText = 'Not in use' | 'Pending' | 'Routing' | 'Disabled' | 'Rejected' | 'Unknown';

/** A static route as the API shows it. */
export interface RouteView {
  name: string;
  source: 'store' | 'file';
  read_only: boolean;
  /** The routes file that defines it (file routes). */
  defined_in?: string;
  path: string | null;
  subdomain: string | null;
  url: string | null;
  allowed_groups: string[];
  enabled: boolean;
  description: string;
  strip_prefix: boolean;
  /** Backends as configured (file routes: as the file gives them). */
  backends: string[];
  /**
   * Backends the edge routes to now (configured plus task bindings, less those the active health
   * check took out), as the router last merged them.
   */
  live_backends: string[];
  /** The active health check as defined (`interval` such as `10s`), or null. */
  health_check: { path: string; interval: string } | null;
  /** The last health state of each checked backend, as the router last wrote it; null without a health check or router status. */
  backend_health: Array<{ backend: string; state: 'unknown' | 'up' | 'down'; reason: string | null; since: string | null; checked_at: string | null }> | null;
  /**
   * Not in use: no backend; Pending: backends known, none reachable yet (or the router has not
   * taken the change in yet); Routing; Disabled; Rejected (see problem); Unknown: no router status.
   */
  status: RouteStatusText;
  /** Why the route is not live as defined (a clash with another route, a failed validation). */
  problem: string | null;
  created_at: string | null;
  updated_at: string | null;
}

/** What buildRouteViews combines. */
export interface RouteViewInput {
  stored: StoredRoute[];
  /** Static routes parsed from the routes file, or null when it is not configured or unreadable. */
  fileRoutes: StaticRoute[] | null;
  status: RouterStatus | null;
  /** `host:port` of backends that accepted a connection; null when nothing was probed (reachability unknown). */
  reachable: Set<string> | null;
  routesFile: string | null;
}

type LiveRoute = RouterStatus['routes'][number];

function problemOf(rejections: Rejection[], provider: string, name: string): string | null {
  const r = rejections.find((x) => x.provider === provider && (x.source === `static route "${name}"` || x.source === `store route "${name}"`));
  return r ? r.reason : null;
}

/** Pure. A health check as the views show it. */
export function viewHealthCheck(h: HealthCheck | null | undefined): RouteView['health_check'] {
  return h ? { path: h.path, interval: formatInterval(h.intervalMs) } : null;
}

function backendHealth(live: LiveRoute | undefined): RouteView['backend_health'] {
  return live?.health ? live.health.backends.map((b) => ({ backend: b.backend, state: b.state, reason: b.reason, since: b.since, checked_at: b.checked_at })) : null;
}

/**
 * The status of a route the router has taken in, and its problem: Pending with a reason when every
 * backend fails the active health check (the edge answers 503), Pending when none of its live
 * backends accepts connections (`reachable`, when probed).
 */
function liveState(enabled: boolean, live: LiveRoute, reachable: Set<string> | null): { status: RouteStatusText; problem: string | null } {
  if (!enabled) return { status: 'Disabled', problem: null };
  if (live.backends.length === 0) {
    const allDown = live.health?.backends.some((b) => b.state === 'down') ?? false;
    return allDown ? { status: 'Pending', problem: 'every backend fails its health check; the route answers 503 until one passes' } : { status: 'Not in use', problem: null };
  }
  if (reachable !== null && !live.backends.some((b) => reachable.has(b))) return { status: 'Pending', problem: null };
  return { status: 'Routing', problem: null };
}

/**
 * Pure. Store routes and file routes with their live state: a store route not yet taken in by the
 * router is Pending (or Not in use without backends); one the merge refused is Rejected with the
 * reason; without a router status every status is Unknown. Sorted by name, store before file on
 * a (refused) name clash.
 */
export function buildRouteViews(input: RouteViewInput): RouteView[] {
  const statics = new Map<string, LiveRoute>();
  for (const r of input.status?.routes ?? []) if (r.kind === 'static') statics.set(r.id, r);
  const rejections = input.status?.rejections ?? [];
  const out: RouteView[] = [];
  for (const s of input.stored) {
    const backends = s.backends.map(formatBackend);
    const live = statics.get(s.name);
    const mine = live?.provider === STORE_PROVIDER ? live : undefined;
    let status: RouteStatusText;
    let problem = problemOf(rejections, STORE_PROVIDER, s.name);
    if (!input.status) status = 'Unknown';
    else if (mine) {
      const st = liveState(s.enabled, mine, input.reachable);
      status = st.status;
      problem ??= st.problem;
    } else if (problem !== null || live) {
      status = 'Rejected';
      problem ??= `the name is taken by the ${live!.provider} provider's route`;
    } else status = !s.enabled ? 'Disabled' : backends.length === 0 ? 'Not in use' : 'Pending';
    out.push({
      name: s.name,
      source: 'store',
      read_only: false,
      path: s.path,
      subdomain: s.subdomain,
      url: mine?.url ?? null,
      allowed_groups: s.allowedGroups,
      enabled: s.enabled,
      description: s.description,
      strip_prefix: s.stripPrefix,
      backends,
      live_backends: mine?.backends ?? [],
      health_check: viewHealthCheck(s.healthCheck),
      backend_health: backendHealth(mine),
      status,
      problem,
      created_at: iso(s.createdAt),
      updated_at: iso(s.updatedAt),
    });
  }
  const fromFile = new Map((input.fileRoutes ?? []).map((r) => [r.name, r]));
  const fileNames = new Set([...fromFile.keys(), ...[...statics.values()].filter((r) => r.provider === 'file').map((r) => r.id)]);
  for (const name of fileNames) {
    const def = fromFile.get(name);
    const live = statics.get(name);
    const mine = live?.provider === 'file' ? live : undefined;
    const enabled = def?.enabled ?? mine?.status !== 'Disabled';
    const rejected = problemOf(rejections, 'file', name);
    let status: RouteStatusText;
    let problem: string | null = rejected;
    if (!input.status) status = 'Unknown';
    else if (mine) {
      const st = liveState(enabled, mine, input.reachable);
      status = st.status;
      problem ??= st.problem;
    } else if (rejected !== null) status = 'Rejected';
    else {
      status = !enabled ? 'Disabled' : def && def.backends.length === 0 ? 'Not in use' : 'Pending';
      problem = 'the router has not taken this definition in yet';
    }
    out.push({
      name,
      source: 'file',
      read_only: true,
      defined_in: input.routesFile ?? 'ROUTES_FILE',
      path: def?.path ?? null,
      subdomain: def?.subdomain ?? null,
      url: mine?.url ?? null,
      allowed_groups: def?.allowedGroups ?? [],
      enabled,
      description: '',
      strip_prefix: def?.stripPrefix ?? true,
      backends: def ? def.backends.map(formatBackend) : (mine?.backends ?? []),
      live_backends: mine?.backends ?? [],
      health_check: viewHealthCheck(def ? def.healthCheck : mine?.health && { path: mine.health.path, intervalMs: mine.health.interval_ms }),
      backend_health: backendHealth(mine),
      status,
      problem,
      created_at: null,
      updated_at: null,
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.source === 'store' ? -1 : 1));
}

// ---- input helpers (pure) -----------------------------------------------------------------------

function fields(body: Record<string, unknown>, allowed: string[]): void {
  for (const k of Object.keys(body)) {
    if (!allowed.includes(k)) throw new ApiError(400, 'invalid_input', `unknown field ${show(k)}; expected ${allowed.join(', ')}`);
  }
}

function str(body: Record<string, unknown>, key: string, required: true): string;
function str(body: Record<string, unknown>, key: string, required: false): string | undefined;
function str(body: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) {
    if (required) throw new ApiError(400, 'invalid_input', `${key} is required`);
    return undefined;
  }
  if (typeof v !== 'string') throw new ApiError(400, 'invalid_input', `${key} must be a string, got ${show(v)}`);
  return v;
}

function bool(body: Record<string, unknown>, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  const c = checkBool(v, key, false);
  if (!c.ok || v === null) throw new ApiError(400, 'invalid_input', `${key} must be true or false, got ${show(v)}`);
  return c.value;
}

function list(body: Record<string, unknown>, key: string): unknown[] | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new ApiError(400, 'invalid_input', `${key} must be a list, got ${show(v)}`);
  return v;
}

function subjectOf(src: { user?: unknown; group?: unknown }): ShareSubject {
  const hasUser = src.user !== undefined && src.user !== null && src.user !== '';
  const hasGroup = src.group !== undefined && src.group !== null && src.group !== '';
  if (hasUser === hasGroup) throw new ApiError(400, 'invalid_input', 'give exactly one of user and group');
  const v = hasUser ? src.user : src.group;
  if (typeof v !== 'string') throw new ApiError(400, 'invalid_input', `${hasUser ? 'user' : 'group'} must be a string, got ${show(v)}`);
  return hasUser ? { user: v } : { group: v };
}

/** Pure. A grace period: whole seconds, or a duration such as 10m. */
function graceSeconds(v: unknown): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 90 * 86_400) return v;
  if (typeof v === 'string') {
    const d = parseExpiresIn(v);
    if (d.ok) return Math.round(d.value / 1000);
  }
  throw new ApiError(400, 'invalid_input', `grace ${show(v)} must be whole seconds or a duration such as 10m`);
}

const ROUTE_FIELDS = ['name', 'path', 'subdomain', 'allowed_groups', 'enabled', 'description', 'strip_prefix', 'backends', 'health_check'];

/** Pure. `health_check` of a body: `{path, interval?}` or null (none); absent keeps `base`. */
function healthCheckOf(body: Record<string, unknown>, base: StoredRoute | null): HealthCheck | null {
  if (body.health_check === undefined) return base?.healthCheck ?? null;
  const c = checkHealthCheck(body.health_check);
  if (!c.ok) throw new ApiError(400, 'invalid_input', `health_check: ${c.reason}`);
  return c.value;
}

/** Pure. The store input of a route from an API body (field names in snake_case). */
function routeInput(name: string, body: Record<string, unknown>, base: StoredRoute | null): RouteInput {
  const given = (k: 'path' | 'subdomain') => (body[k] === undefined ? undefined : (body[k] as string | null));
  const path = given('path');
  const subdomain = given('subdomain');
  // giving one of path and subdomain replaces the other
  const where =
    path === undefined && subdomain === undefined
      ? { path: base?.path ?? null, subdomain: base?.subdomain ?? null }
      : { path: path ?? null, subdomain: subdomain ?? null };
  const description = body.description === undefined ? base?.description : str(body, 'description', false) ?? '';
  return {
    name,
    ...where,
    allowedGroups: list(body, 'allowed_groups') ?? base?.allowedGroups ?? [],
    backends: list(body, 'backends') ?? base?.backends ?? [],
    enabled: bool(body, 'enabled') ?? base?.enabled ?? true,
    stripPrefix: bool(body, 'strip_prefix') ?? base?.stripPrefix ?? true,
    description: description ?? '',
    healthCheck: healthCheckOf(body, base),
  };
}

// ---- probing ------------------------------------------------------------------------------------

/** Whether `host:port` accepts a TCP connection within `timeoutMs`. Never rejects. */
export function tcpProbe(b: Backend, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: b.host, port: b.port });
    const done = (v: boolean) => {
      sock.destroy();
      resolve(v);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** Pure. `host:port` or `[v6]:port` (formatBackend's text) back to a backend, or null. */
export function parseBackendText(s: string): Backend | null {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(s);
  return m ? { host: m[1]!, port: Number(m[2]) } : null;
}

// ---- the API ------------------------------------------------------------------------------------

/** Builds the admin API handler (see the module comment and docs/admin-api.md). */
export function createAdminApi(deps: AdminApiDeps): ApiHandler {
  const { store } = deps;
  const routesFile = deps.routesFile ?? null;
  const probe = deps.probe === undefined ? (b: Backend) => tcpProbe(b) : deps.probe;
  const probed = new Map<string, { ok: boolean; at: number }>();
  let fileCache: { key: string; routes: StaticRoute[] | null } | null = null;

  /** The routes file's static routes (cached by mtime and size), or null when absent or unusable. */
  async function fileRoutes(): Promise<StaticRoute[] | null> {
    if (!routesFile) return null;
    try {
      const st = await stat(routesFile);
      const key = `${st.mtimeMs}:${st.size}`;
      if (fileCache?.key === key) return fileCache.routes;
      const parsed = parseRoutesFile(await readFile(routesFile, 'utf8'), routesFile);
      fileCache = { key, routes: parsed.ok ? parsed.snapshot.static : null };
      return fileCache.routes;
    } catch {
      return null;
    }
  }

  async function reachable(status: RouterStatus | null): Promise<Set<string> | null> {
    if (!probe || !status) return null;
    const now = Date.now();
    const all = new Set<string>();
    for (const r of status.routes) if (r.kind === 'static') for (const b of r.backends) all.add(b);
    await Promise.all(
      [...all].map(async (b) => {
        const c = probed.get(b);
        if (c && now - c.at < 2000) return;
        const parsed = parseBackendText(b);
        probed.set(b, { ok: parsed ? await probe(parsed).catch(() => false) : false, at: now });
      }),
    );
    for (const k of probed.keys()) if (!all.has(k)) probed.delete(k);
    return new Set([...all].filter((b) => probed.get(b)?.ok));
  }

  async function routeViews(): Promise<RouteView[]> {
    const status = deps.status();
    const [file, reach] = await Promise.all([fileRoutes(), reachable(status)]);
    return buildRouteViews({ stored: store.listRoutes(), fileRoutes: file, status, reachable: reach, routesFile });
  }

  /** Refuses to change a route the routes file defines (by name), or to take a path or subdomain a file route uses. */
  async function refuseFileRoute(name: string, want: { path?: string | null; subdomain?: string | null } | null): Promise<void> {
    const file = (await fileRoutes()) ?? [];
    const live = (deps.status()?.routes ?? []).filter((r) => r.kind === 'static' && r.provider === 'file').map((r) => r.id);
    if (file.some((r) => r.name === name) || live.includes(name)) {
      throw new ApiError(409, 'read_only', `route ${name} is defined in the routes file ${routesFile ?? '(ROUTES_FILE)'}; edit it there`);
    }
    if (!want) return;
    // paths compare ignoring case, as the edge's path map matches them (see model/merge.ts)
    const clash = file.find((r) => (want.path && r.path !== null && pathKey(r.path) === pathKey(want.path)) || (want.subdomain && r.subdomain === want.subdomain));
    if (clash) {
      throw new ApiError(409, 'conflict', `route ${clash.name} of the routes file ${routesFile} already uses ${want.path ? `path ${clash.path} (paths are compared ignoring case)` : `subdomain ${want.subdomain}`}`);
    }
  }

  async function routeView(name: string): Promise<RouteView> {
    const views = (await routeViews()).filter((v) => v.name === name);
    const v = views.find((x) => x.source === 'store') ?? views[0];
    if (!v) throw new ApiError(404, 'not_found', `route ${show(name)} does not exist`);
    return v;
  }

  const endpoints: Endpoint[] = [];
  const on = (method: string, path: string, handler: Handler) => endpoints.push({ method, pattern: path.split('/').filter(Boolean), handler });

  // ---- status -----------------------------------------------------------------------------------
  on('GET', 'status', () => {
    const s = deps.status();
    if (!s) throw new ApiError(503, 'starting', 'the router is still starting; try again shortly');
    return ok(s);
  });

  // ---- tokens -----------------------------------------------------------------------------------
  on('GET', 'tokens', () => ok({ tokens: listTokens(store).map(viewTokenApi) }));
  on('POST', 'tokens', ({ body, by }) => {
    const b = body();
    fields(b, ['label', 'expires_in', 'as', 'routes']);
    const expires = parseExpiresIn(str(b, 'expires_in', true));
    if (!expires.ok) throw new ApiError(400, 'invalid_input', expires.reason);
    const routes = list(b, 'routes');
    const c = createToken(store, { label: str(b, 'label', true), expiresInMs: expires.value, as: str(b, 'as', false) ?? null, routes: routes as string[] | undefined }, by);
    return ok({ token: c.token, record: viewTokenApi(c.record), notice: 'the token is shown only in this answer; the gateway keeps only a hash of it' }, 201);
  });
  on('DELETE', 'tokens/:id', ({ params, by }) => {
    const r = revokeToken(store, params.id!, by);
    return ok({ record: viewTokenApi(r.record), changed: r.changed });
  });
  on('POST', 'tokens/:id/rotate', ({ params, body, by }) => {
    const b = body();
    fields(b, ['grace']);
    const r = rotateToken(store, params.id!, by, graceSeconds(b.grace));
    return ok({ token: r.token, record: viewTokenApi(r.record), old: viewTokenApi(r.old), notice: 'the new token is shown only in this answer; the gateway keeps only a hash of it' }, 201);
  });

  // ---- users ------------------------------------------------------------------------------------
  on('GET', 'users', () => ok({ users: store.listUsers().map(viewUser) }));
  on('POST', 'users', ({ body, by }) => {
    const b = body();
    fields(b, ['id', 'name', 'kind', 'admin']);
    const kind = str(b, 'kind', false);
    if (kind !== undefined && kind !== 'user' && kind !== 'service') throw new ApiError(400, 'invalid_input', `kind ${show(kind)} must be user or service`);
    const u = store.addUser({ id: str(b, 'id', true), name: str(b, 'name', false), kind, admin: bool(b, 'admin') }, by);
    return ok({ user: viewUser(u) }, 201);
  });
  on('PUT', 'users/:id', ({ params, body, by }) => {
    const b = body();
    fields(b, ['admin']);
    const admin = bool(b, 'admin');
    if (admin === undefined) throw new ApiError(400, 'invalid_input', 'admin is required (true or false)');
    return ok({ user: viewUser(store.setAdmin(params.id!, admin, by)) });
  });
  on('DELETE', 'users/:id', ({ params, by }) => {
    store.removeUser(params.id!, by);
    return ok({ removed: 'user', id: params.id });
  });

  // ---- groups -----------------------------------------------------------------------------------
  on('GET', 'groups', () => ok({ groups: store.listGroups().map(viewGroup) }));
  on('POST', 'groups', ({ body, by }) => {
    const b = body();
    fields(b, ['name', 'description']);
    return ok({ group: viewGroup(store.createGroup({ name: str(b, 'name', true), description: str(b, 'description', false) }, by)) }, 201);
  });
  on('DELETE', 'groups/:name', ({ params, by }) => {
    store.deleteGroup(params.name!, by);
    return ok({ removed: 'group', name: params.name });
  });
  on('POST', 'groups/:name/members/:user', ({ params, by }) => {
    store.addMember(params.name!, params.user!, by);
    return ok({ group: viewGroup(store.getGroup(params.name!)!) }, 201);
  });
  on('DELETE', 'groups/:name/members/:user', ({ params, by }) => {
    store.removeMember(params.name!, params.user!, by);
    return ok({ group: viewGroup(store.getGroup(params.name!)!) });
  });

  // ---- shares -----------------------------------------------------------------------------------
  on('GET', 'shares', ({ query }) => {
    const task = query.get('task') ?? undefined;
    const shares = store.listShares(task);
    const policies: Record<string, string> = {};
    for (const t of new Set([...(task ? [task] : []), ...shares.map((s) => s.taskId)])) policies[t] = store.getSharePolicy(t);
    return ok({ shares: shares.map(viewShare), policies });
  });
  on('POST', 'shares', ({ body, by }) => {
    const b = body();
    fields(b, ['task', 'user', 'group']);
    return ok({ share: viewShare(store.addShare(str(b, 'task', true), subjectOf(b), by)) }, 201);
  });
  on('DELETE', 'shares', ({ body, query, by }) => {
    const b = body();
    fields(b, ['task', 'user', 'group']);
    const src = Object.keys(b).length > 0 ? b : { task: query.get('task') ?? undefined, user: query.get('user') ?? undefined, group: query.get('group') ?? undefined };
    const task = str(src, 'task', true);
    const subject = subjectOf(src);
    store.removeShare(task, subject, by);
    return ok({ removed: 'share', task, ...subject });
  });
  on('PUT', 'shares/:task/policy', ({ params, body, by }) => {
    const b = body();
    fields(b, ['policy']);
    const policy = str(b, 'policy', true);
    if (policy !== 'owner' && policy !== 'company') throw new ApiError(400, 'invalid_input', `policy ${show(policy)} must be owner or company`);
    store.setSharePolicy(params.task!, policy, by);
    return ok({ task: params.task, policy });
  });

  // ---- audit ------------------------------------------------------------------------------------
  on('GET', 'audit', ({ query }) => {
    const raw = query.get('limit') ?? '50';
    if (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > 10_000) throw new ApiError(400, 'invalid_input', `limit ${show(raw)} must be a whole number from 1 to 10000`);
    return ok({ entries: store.listAudit({ limit: Number(raw) }).map(viewAudit) });
  });

  // ---- static routes ----------------------------------------------------------------------------
  on('GET', 'routes', async () => ok({ routes: await routeViews(), routes_file: routesFile }));
  on('GET', 'routes/:name', async ({ params }) => ok({ route: await routeView(params.name!) }));
  on('POST', 'routes', async ({ body, by }) => {
    const b = body();
    fields(b, ROUTE_FIELDS);
    const name = str(b, 'name', true);
    const input = routeInput(name, b, null);
    await refuseFileRoute(name, input);
    store.tx(() => {
      if (store.getRoute(name)) throw new ApiError(409, 'conflict', `route ${name} already exists; change it with PUT ${PREFIX}routes/${name}`);
      store.putRoute(input, by);
    });
    return ok({ route: await routeView(name) }, 201);
  });
  on('PUT', 'routes/:name', async ({ params, body, by }) => {
    const name = params.name!;
    const b = body();
    fields(b, ROUTE_FIELDS);
    if (b.name !== undefined && b.name !== name) throw new ApiError(400, 'invalid_input', `the name cannot be changed (${show(b.name)} ≠ ${show(name)}); create a new route and delete this one`);
    const stored = store.getRoute(name);
    await refuseFileRoute(name, null);
    if (!stored) throw new ApiError(404, 'not_found', `route ${show(name)} does not exist; create it with POST ${PREFIX}routes`);
    const input = routeInput(name, b, stored);
    await refuseFileRoute(name, input);
    store.tx(() => {
      if (!store.getRoute(name)) throw new ApiError(404, 'not_found', `route ${show(name)} does not exist`);
      store.putRoute(input, by);
    });
    return ok({ route: await routeView(name) });
  });
  on('DELETE', 'routes/:name', async ({ params, by }) => {
    const name = params.name!;
    if (!store.getRoute(name)) await refuseFileRoute(name, null);
    store.removeRoute(name, by);
    return ok({ removed: 'route', name });
  });

  return async (req: http.IncomingMessage, rawBody: string, user: string) => {
    try {
      return await dispatch(req, rawBody, user);
    } catch (err) {
      if (err instanceof ApiError) return { status: err.status, body: { error: err.code, message: err.message } };
      if (isUserError(err)) return { status: httpStatusOf(err.code), body: { error: err.code.toLowerCase(), message: err.message } };
      throw err;
    }
  };

  async function dispatch(req: http.IncomingMessage, rawBody: string, user: string): Promise<ApiResult> {
    const url = new URL(req.url ?? '/', 'http://router');
    if (!url.pathname.startsWith(PREFIX)) throw new ApiError(404, 'not_found', `no such endpoint: ${show(url.pathname)}`);
    let segs: string[];
    try {
      segs = url.pathname.slice(PREFIX.length).split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      throw new ApiError(400, 'invalid_input', 'the path is not valid percent-encoding');
    }
    const method = (req.method ?? 'GET').toUpperCase();
    const matches: Array<{ e: Endpoint; params: Params }> = [];
    for (const e of endpoints) {
      if (e.pattern.length !== segs.length) continue;
      const params: Params = {};
      if (e.pattern.every((p, i) => (p.startsWith(':') ? ((params[p.slice(1)] = segs[i]!), true) : p === segs[i]))) matches.push({ e, params });
    }
    if (matches.length === 0) throw new ApiError(404, 'not_found', `no such endpoint: ${method} ${PREFIX}${segs.map(encodeURIComponent).join('/')}`);
    const hit = matches.find((m) => m.e.method === method);
    if (!hit) throw new ApiError(405, 'method_not_allowed', `${method} is not allowed here; use ${[...new Set(matches.map((m) => m.e.method))].join(', ')}`);
    const realIp = String(req.headers['x-real-ip'] ?? '');
    const by: Actor = { name: user, principal: user, client: net.isIP(realIp) ? realIp : null };
    let parsed: Record<string, unknown> | null = null;
    const body = () => {
      if (parsed) return parsed;
      const text = rawBody.trim();
      if (text === '') return (parsed = {});
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        throw new ApiError(400, 'invalid_json', 'the request body is not valid JSON');
      }
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ApiError(400, 'invalid_json', 'the request body must be a JSON object');
      return (parsed = v as Record<string, unknown>);
    };
    return hit.e.handler({ params: hit.params, query: url.searchParams, body, by });
  }
}
