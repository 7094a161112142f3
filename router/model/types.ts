/**
 * The gateway's model: what providers discover and what the router renders and pushes.
 * Every string in these types has passed validation (router/model/validate.ts) before it is
 * stored here; providers build them only through the validators.
 */

/** A backend address. `host` is an IP literal or a validated DNS name (resolved before pushing). */
export interface Backend {
  host: string;
  port: number;
}

/** Route of a workload that asked to be exposed: `/service/<id>/`, resolved in Lua from pushed data. */
export interface EphemeralRoute {
  /** `<task_id>` for the default endpoint, `<task_id>-<name>` for a named one. */
  id: string;
  taskId: string;
  /** Endpoint name, '' for the default endpoint. */
  endpoint: string;
  owner: string | null;
  /** Tenant (ClearML company id), when known. */
  company: string | null;
  backend: Backend;
  /** Strip `/service/<id>` before proxying (default true). */
  stripPrefix: boolean;
  /** Provider that produced it, e.g. `file`, `clearml`, `docker`. */
  provider: string;
}

/**
 * An active health check of a static route's backends: the router sends `GET <path>` to each
 * backend every `intervalMs`; 2 failures in a row take it out of the pushed backends, 1 success
 * puts it back (router/health/health-checker.ts).
 */
export interface HealthCheck {
  /** Validated: `/…` of [A-Za-z0-9._~/-], optional `?query`. */
  path: string;
  /** 1000..3600000. */
  intervalMs: number;
}

/** A route an admin defined: a path prefix `/<path>/` or a subdomain `<sub>.<ROUTER_DOMAIN>`. */
export interface StaticRoute {
  /** [a-z0-9-]{1,63}; unique across providers. */
  name: string;
  /** Path prefix with leading and trailing slash, e.g. `/llm/`; null for subdomain routes. */
  path: string | null;
  subdomain: string | null;
  backends: Backend[];
  allowedGroups: string[];
  stripPrefix: boolean;
  enabled: boolean;
  /**
   * Active health check of its backends; null (or absent) for none: only the edge's passive
   * cool-down. Every provider sets it; it is optional only so that older fixtures still compile.
   */
  healthCheck?: HealthCheck | null;
  provider: string;
}

/** A task endpoint that asked to become a backend of a static route (by the route's name). */
export interface StaticBinding {
  route: string;
  taskId: string;
  endpoint: string;
  backend: Backend;
  provider: string;
}

/** A raw TCP endpoint of a task; it gets a port from the TCP pool. */
export interface TcpRoute {
  /** `<task_id>` or `<task_id>-<name>`, stable for the life of the endpoint. */
  id: string;
  taskId: string;
  endpoint: string;
  owner: string | null;
  backend: Backend;
  allowCidrs: string[] | null;
  provider: string;
}

/** A complete view from one provider. Providers always send whole snapshots, never deltas. */
export interface Snapshot {
  ephemeral: EphemeralRoute[];
  static: StaticRoute[];
  bindings: StaticBinding[];
  tcp: TcpRoute[];
}

/** What a provider knows: nothing yet, or an authoritative snapshot (possibly empty). */
export type ProviderState =
  | { kind: 'pending' }
  | { kind: 'ready'; snapshot: Snapshot; at: number; degradedSince: number | null; error: string | null };

/** A problem found in provider input: reported, the entry skipped, the rest kept. */
export interface Rejection {
  provider: string;
  /** Where: a file and entry, a task id, a container name. */
  source: string;
  reason: string;
}

/** The merged desired state, sorted so that rendering is deterministic. */
export interface DesiredState {
  ephemeral: EphemeralRoute[];
  static: StaticRoute[];
  tcp: TcpRoute[];
  rejections: Rejection[];
}

/** Pure. An empty snapshot. */
export function emptySnapshot(): Snapshot {
  return { ephemeral: [], static: [], bindings: [], tcp: [] };
}
