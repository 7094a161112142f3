import type { EdgeShare, EdgeToken, EdgeUser } from './model/push-payload';
import type { EdgeDenial, TokenSource } from './router';
import type { Store } from './store/store';
import { edgeTokenTable, markUsed } from './store/tokens';

/**
 * The live token table from the store. `version()` is read from SQLite on every call, so
 * changes made by another process (`appgw token revoke`) are seen by the router's watch loop.
 */
export class StoreTokens implements TokenSource {
  constructor(private readonly store: Store) {}
  version(): number {
    return this.store.version();
  }
  table(nowMs: number): Record<string, EdgeToken> {
    return edgeTokenTable(this.store, nowMs);
  }
  users(): Record<string, EdgeUser> {
    return this.store.edgeUserTable();
  }
  shares(): Record<string, EdgeShare> {
    return this.store.edgeShareTable();
  }
  recordLastUsed(seen: Record<string, number>): void {
    this.store.tx(() => {
      for (const [id, ts] of Object.entries(seen)) if (/^[a-z0-9]{1,32}$/.test(id) && Number.isFinite(ts)) markUsed(this.store, id, ts * 1000);
    });
  }
  recordDenials(entries: EdgeDenial[]): void {
    this.store.tx(() => {
      for (const d of entries) {
        this.store.audit({ name: 'edge', principal: d.user ?? null, client: d.client ?? null }, `edge.${d.status}`, d.route ?? '-', {
          reason: d.reason, token: d.token ?? null, path: d.path ?? null, at: Math.round(d.ts * 1000),
        });
      }
    });
  }
}
