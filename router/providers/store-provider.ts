import { errorMessage } from '../errors';
import type { Logger } from '../log';
import { checkBackend, checkBool, checkGroup, checkList, checkPath, checkRouteName, checkSubdomain } from '../model/validate';
import type { ProviderState, Rejection, Snapshot, StaticRoute } from '../model/types';
import { emptySnapshot } from '../model/types';
import { checkStoredHealthCheck, type Store, type StoredRoute } from '../store/store';
import { providerStatus, type Provider, type ProviderStatus } from './provider';

/** The provider name of routes an admin made through the API or `appgw route`. */
export const STORE_PROVIDER = 'store';

/** Tuning of the store provider; tests shorten the poll. */
export interface StoreProviderOptions {
  /** How often to read the store's routes version (one indexed SQLite read). */
  pollMs?: number;
  /** Clock for `at`, `degradedSince` and `lastSuccess`. */
  now?: () => number;
}

/**
 * Pure. The snapshot of the store's static routes. Rows are validated again on the way out (the
 * database is a file another process may have written); a row that fails is rejected, the rest kept.
 */
export function buildStoreSnapshot(rows: StoredRoute[], provider = STORE_PROVIDER): { snapshot: Snapshot; rejections: Rejection[] } {
  const snapshot = emptySnapshot();
  const rejections: Rejection[] = [];
  for (const row of rows) {
    const r = checkStoredRoute(row, provider);
    if (r.ok) snapshot.static.push(r.value);
    else rejections.push({ provider, source: `store route ${JSON.stringify(String(row.name).slice(0, 63))}`, reason: r.reason });
  }
  return { snapshot, rejections };
}

function checkStoredRoute(row: StoredRoute, provider: string): { ok: true; value: StaticRoute } | { ok: false; reason: string } {
  const name = checkRouteName(row.name);
  if (!name.ok) return name;
  if ((row.path === null) === (row.subdomain === null)) return { ok: false, reason: 'needs exactly one of path and subdomain' };
  const path = row.path === null ? null : checkPath(row.path);
  if (path && !path.ok) return path;
  const subdomain = row.subdomain === null ? null : checkSubdomain(row.subdomain);
  if (subdomain && !subdomain.ok) return subdomain;
  const groups = checkList(row.allowedGroups, 'allowed groups', checkGroup);
  if (!groups.ok) return groups;
  const backends = checkList(row.backends, 'backends', checkBackend);
  if (!backends.ok) return backends;
  const enabled = checkBool(row.enabled, 'enabled', true);
  if (!enabled.ok) return enabled;
  const strip = checkBool(row.stripPrefix, 'strip_prefix', true);
  if (!strip.ok) return strip;
  const health = checkStoredHealthCheck(row.healthCheck);
  if (!health.ok) return health;
  return {
    ok: true,
    value: {
      name: name.value,
      path: path ? path.value : null,
      subdomain: subdomain ? subdomain.value : null,
      backends: backends.value,
      allowedGroups: [...new Set(groups.value)].sort(),
      stripPrefix: strip.value,
      enabled: enabled.value,
      healthCheck: health.value,
      provider,
    },
  };
}

/**
 * The `store` provider: the static routes admins keep in the store (admin API, `appgw route`).
 * It polls the store's routes version — one cheap read — and emits a complete snapshot whenever it
 * moves, so a route written by the CLI in another process goes live without a restart. A failed
 * read keeps the last good view (status degraded, one warning per distinct problem); never throws.
 */
export class StoreProvider implements Provider {
  readonly name = STORE_PROVIDER;
  private readonly pollMs: number;
  private readonly now: () => number;
  private readonly log: Logger;
  private emit: ((state: ProviderState, rejections: Rejection[]) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private seen: number | null = null;
  private error: string | null = null;
  private degradedSince: number | null = null;
  private lastSuccess: number | null = null;
  private rejections: Rejection[] = [];

  constructor(
    private readonly store: Store,
    log: Logger,
    options: StoreProviderOptions = {},
  ) {
    this.pollMs = options.pollMs ?? 100;
    this.now = options.now ?? Date.now;
    this.log = log.child({ component: 'provider', provider: this.name });
  }

  /** Reads the routes once and emits them, then polls the version. Never throws. */
  async start(emit: (state: ProviderState, rejections: Rejection[]) => void): Promise<void> {
    this.emit = emit;
    this.poll();
    this.timer = setInterval(() => this.poll(), this.pollMs);
    this.timer.unref();
  }

  /** Stops polling; no emit happens after it resolves. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.emit = null;
  }

  /** Pure view of the provider's health. */
  status(): ProviderStatus {
    const { error, degradedSince, lastSuccess, rejections } = this;
    return providerStatus(this.name, { error, ready: lastSuccess !== null, degradedSince, lastSuccess, rejections });
  }

  private poll(): void {
    if (!this.emit) return;
    let version: number;
    let rows: StoredRoute[];
    try {
      version = this.store.routesVersion();
      if (version === this.seen && this.error === null) return;
      // the version is read before the rows: a write in between is seen again at the next poll
      // (no write lock is taken, so the CLI and the API never wait on this loop)
      rows = this.store.listRoutes();
    } catch (err) {
      const reason = `cannot read static routes from the store ${this.store.file}: ${errorMessage(err)}`;
      if (reason !== this.error) this.log.warn('store unreadable; keeping the last good routes', { error: reason });
      this.error = reason;
      this.degradedSince ??= this.now();
      return;
    }
    const { snapshot, rejections } = buildStoreSnapshot(rows);
    const at = this.now();
    if (this.error !== null) this.log.info('store readable again', {});
    if (rejections.length > 0 && JSON.stringify(rejections) !== JSON.stringify(this.rejections)) {
      this.log.warn('store has static routes that fail validation', { count: rejections.length, rejections: rejections.slice(0, 20).map((r) => `${r.source}: ${r.reason}`) });
    }
    this.seen = version;
    this.error = null;
    this.degradedSince = null;
    this.lastSuccess = at;
    this.rejections = rejections;
    this.log.debug('store routes read', { version, static: snapshot.static.length, rejected: rejections.length });
    try {
      this.emit({ kind: 'ready', snapshot, at, degradedSince: null, error: null }, [...rejections]);
    } catch (err) {
      this.log.error('handling the store snapshot failed', { error: errorMessage(err) });
    }
  }
}
