import { pathKey } from './validate';
import type { DesiredState, EphemeralRoute, ProviderState, Rejection, StaticRoute, TcpRoute } from './types';

/** The latest state and input problems of each provider, by provider name. */
export type ProviderViews = Map<string, { state: ProviderState; rejections: Rejection[] }>;

const PRIORITY = ['file', 'store', 'docker', 'clearml'];

function rank(name: string): number {
  const i = PRIORITY.indexOf(name);
  return i === -1 ? PRIORITY.length : i;
}

const byKey = <T>(key: (x: T) => string) => (a: T, b: T) => {
  const ka = key(a);
  const kb = key(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};

/**
 * Pure. Merges the providers' snapshots into one desired state. Names are unique across
 * providers: on a clash the provider earlier in file, store, docker, clearml order wins and the
 * other entry is reported. Task endpoints bound to a static route become its backends. Output is
 * sorted so rendering is deterministic. Pending providers contribute nothing.
 */
export function merge(views: ProviderViews): DesiredState {
  const rejections: Rejection[] = [];
  const providers = [...views.keys()].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));
  const statics = new Map<string, StaticRoute>();
  const paths = new Map<string, string>();
  const subdomains = new Map<string, string>();
  const ephemeral = new Map<string, EphemeralRoute>();
  const tcp = new Map<string, TcpRoute>();

  for (const p of providers) {
    const view = views.get(p)!;
    rejections.push(...view.rejections);
    if (view.state.kind !== 'ready') continue;
    const snap = view.state.snapshot;
    for (const r of snap.static) {
      const clash = statics.has(r.name)
        ? `static route name "${r.name}" is already defined by ${statics.get(r.name)!.provider}`
        : r.path !== null && paths.has(pathKey(r.path))
          ? `path ${r.path} is already used by route "${paths.get(pathKey(r.path))}" (paths are compared ignoring case)`
          : r.subdomain !== null && subdomains.has(r.subdomain)
            ? `subdomain ${r.subdomain} is already used by route "${subdomains.get(r.subdomain)}"`
            : null;
      if (clash) {
        rejections.push({ provider: p, source: `static route "${r.name}"`, reason: clash });
        continue;
      }
      statics.set(r.name, { ...r, backends: [...r.backends] });
      // the edge's path map matches ignoring case (nginx map strings), so /LLM/ and /llm/ clash
      if (r.path !== null) paths.set(pathKey(r.path), r.name);
      if (r.subdomain !== null) subdomains.set(r.subdomain, r.name);
    }
    for (const r of snap.ephemeral) {
      if (ephemeral.has(r.id)) {
        rejections.push({ provider: p, source: `task route "${r.id}"`, reason: `route id is already defined by ${ephemeral.get(r.id)!.provider}` });
        continue;
      }
      ephemeral.set(r.id, r);
    }
    for (const r of snap.tcp) {
      if (tcp.has(r.id)) {
        rejections.push({ provider: p, source: `tcp route "${r.id}"`, reason: `route id is already defined by ${tcp.get(r.id)!.provider}` });
        continue;
      }
      tcp.set(r.id, r);
    }
  }
  // bindings after all static routes are known, whichever provider defines them
  for (const p of providers) {
    const view = views.get(p)!;
    if (view.state.kind !== 'ready') continue;
    for (const b of view.state.snapshot.bindings) {
      const route = statics.get(b.route);
      if (!route) {
        rejections.push({ provider: p, source: `task ${b.taskId}${b.endpoint ? ` endpoint ${b.endpoint}` : ''}`, reason: `no static route named "${b.route}"` });
        continue;
      }
      if (!route.backends.some((x) => x.host === b.backend.host && x.port === b.backend.port)) route.backends.push(b.backend);
    }
  }
  for (const r of statics.values()) r.backends.sort(byKey((x) => `${x.host}:${String(x.port).padStart(5, '0')}`));
  return {
    static: [...statics.values()].sort(byKey((r) => r.name)),
    ephemeral: [...ephemeral.values()].sort(byKey((r) => r.id)),
    tcp: [...tcp.values()].sort(byKey((r) => r.id)),
    rejections,
  };
}
