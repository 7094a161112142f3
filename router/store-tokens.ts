import type { EdgeToken } from './model/push-payload';
import type { TokenSource } from './router';
import type { Store } from './store/store';
import { edgeTokenTable } from './store/tokens';

/**
 * The live token table from the store. `version()` is read from SQLite on every call, so
 * changes made by another process (`appgw token revoke`) are seen by the router's watch loop.
 */
export class StoreTokens implements TokenSource {
  constructor(private readonly store: Store) {}
  version(): number {
    return this.store.version();
  }
  table(nowS: number): Record<string, EdgeToken> {
    return edgeTokenTable(this.store, nowS * 1000) as Record<string, EdgeToken>;
  }
}
