import type { Backend, DesiredState } from './types';

/** A route as the proxy's Lua reads it from the shared dict (short keys: it is read per request). */
export interface EdgeRoute {
  /** Name shown in errors and stats: route id or static route name. */
  n: string;
  /** Kind: ephemeral or static. */
  k: 'e' | 's';
  /** Backends as [ip, port]. */
  b: Array<[string, number]>;
  /** Strip the prefix before proxying. */
  s: boolean;
  /** The path prefix, without trailing slash: `/service/<id>` of a task route (the edge strips it or not, by `s`, and redirects the bare form); a static path route that strips it. */
  p?: string;
  /** Owner (ephemeral). */
  o?: string;
  /** Tenant (ephemeral). */
  c?: string;
  /** Task id (ephemeral). */
  t?: string;
  /** Allowed groups (static). */
  g?: string[];
  /** Users and groups the task is shared with, and its policy (ephemeral). */
  su?: string[];
  sg?: string[];
  pol?: 'owner' | 'company';
}

/** A user as the proxy reads it (for identities from ClearML sessions): admin flag and groups. */
export interface EdgeUser {
  a: boolean;
  g: string[];
}

/** Sharing of one task: policy, users, groups. */
export interface EdgeShare {
  p: 'owner' | 'company';
  u: string[];
  g: string[];
}

/** Gateway settings the Lua reads (cookie names, Secure flag). */
export interface EdgeSettings {
  clearml_cookie: string;
  secure: boolean;
  /** Idle read timeout of tunnelled (WebSocket) connections, seconds. */
  read_timeout_s: number;
}

/** A token as the proxy reads it: sha256 hex of the secret and who it grants access as. */
export interface EdgeToken {
  h: string;
  u: string;
  a: boolean;
  g: string[];
  r: string[];
  e: number;
}

/** The data snapshot pushed to the proxy (without version and epoch, added by the pusher). */
export interface PushData {
  routes: Record<string, EdgeRoute>;
  tokens: Record<string, EdgeToken>;
  users: Record<string, EdgeUser>;
  settings: EdgeSettings;
}

/** Identity data pushed alongside the routes. */
export interface IdentityData {
  tokens: Record<string, EdgeToken>;
  users: Record<string, EdgeUser>;
  shares: Record<string, EdgeShare>;
}

/**
 * Pure. Builds the pushed data from the desired state, the resolved backend addresses, the
 * live identity tables and the edge settings. Backends whose host could not be resolved to an IP
 * are left out, and so are static routes' backends for which `healthy` (the active health checks)
 * says no; a static route left with none is pushed with an empty list (the edge answers 503).
 */
export function buildPushData(
  desired: DesiredState,
  resolve: (b: Backend) => string | null,
  identity: IdentityData,
  settings: EdgeSettings,
  healthy: (route: string, b: Backend) => boolean = () => true,
): PushData {
  const routes: Record<string, EdgeRoute> = {};
  const addrs = (bs: Backend[]) =>
    bs.flatMap((b): Array<[string, number]> => {
      const ip = resolve(b);
      return ip ? [[ip, b.port]] : [];
    });
  for (const r of desired.ephemeral) {
    const rec: EdgeRoute = { n: r.id, k: 'e', b: addrs([r.backend]), s: r.stripPrefix, t: r.taskId, p: `/service/${r.id}` };
    if (r.owner) rec.o = r.owner;
    if (r.company) rec.c = r.company;
    const share = identity.shares[r.taskId];
    if (share) {
      if (share.u.length) rec.su = share.u;
      if (share.g.length) rec.sg = share.g;
      if (share.p !== 'owner') rec.pol = share.p;
    }
    routes[`e:${r.id}`] = rec;
  }
  for (const r of desired.static) {
    if (!r.enabled) continue;
    const rec: EdgeRoute = { n: r.name, k: 's', b: addrs(r.backends.filter((b) => healthy(r.name, b))), s: r.stripPrefix && r.path !== null, g: r.allowedGroups };
    if (rec.s && r.path) rec.p = r.path.replace(/\/$/, '');
    routes[`s:${r.name}`] = rec;
  }
  return { routes, tokens: identity.tokens, users: identity.users, settings };
}
