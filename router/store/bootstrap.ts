import type { Config } from '../config';
import { UserError } from '../errors';
import type { Logger } from '../log';
import type { Actor, Store } from './store';
import { FAR_FUTURE_MS, generateToken, hashSecret, parseToken, tokenState } from './tokens';

/**
 * The first admin credential. With ADMIN_TOKEN set, that exact token is the (only) bootstrap
 * token; without it, one is generated on the very first start and shown once.
 */

/** The user the bootstrap token grants access as (created, admin=true, when missing). */
export const ADMIN_PRINCIPAL = 'admin';
/** The label of the bootstrap token. */
export const ADMIN_TOKEN_LABEL = 'ADMIN_TOKEN';
const BOOTSTRAP_ACTOR: Actor = { name: 'router', principal: null, client: null };

/** What ensureAdminToken did; `notices` never hold a secret. */
export type BootstrapResult =
  /** ADMIN_TOKEN is set; `changed` when the store had to be updated (created, reinstated, re-keyed). */
  | { kind: 'env'; id: string; changed: boolean; notices: string[] }
  /** First start without ADMIN_TOKEN: a token was generated and handed to print() once. */
  | { kind: 'generated'; id: string; notices: string[] }
  /** Later start without ADMIN_TOKEN: nothing printed. */
  | { kind: 'exists'; notices: string[] };

const HOW_TO_GET_ONE = `to get a new one: appgw token create --as ${ADMIN_PRINCIPAL} --label NAME --expires-in 30d`;

/**
 * Makes sure an admin can get in. Ensures the `admin` user (admin=true) exists, then:
 * - ADMIN_TOKEN set: a token with exactly that id and secret exists for `admin` (label
 *   ADMIN_TOKEN, far-future expiry, reinstated if it was revoked), and every other bootstrap
 *   token is revoked;
 * - ADMIN_TOKEN unset: a token that came from an earlier ADMIN_TOKEN is revoked; on the first
 *   start (no bootstrap token ever, no token granting as an admin) a token is generated, only
 *   its hash stored, and print(token) called exactly once after the commit.
 * Notices (never containing a secret) are returned and logged at info when a logger is given.
 */
export function ensureAdminToken(store: Store, config: Pick<Config, 'adminToken'>, print: (token: string) => void, log?: Logger): BootstrapResult {
  let made: string | null = null;
  const result = config.adminToken !== null ? fromEnv(store, config.adminToken) : generatedOnce(store, (t) => (made = t));
  // Printed only once the transaction committed: a token that was never stored is never shown.
  if (made !== null) print(made);
  for (const n of result.notices) log?.info(n, { component: 'bootstrap' });
  return result;
}

function ensureAdminUser(store: Store): void {
  const u = store.getUser(ADMIN_PRINCIPAL);
  if (!u) store.addUser({ id: ADMIN_PRINCIPAL, name: 'Administrator', kind: 'user', admin: true }, BOOTSTRAP_ACTOR);
  else if (!u.admin) store.setAdmin(ADMIN_PRINCIPAL, true, BOOTSTRAP_ACTOR);
}

function fromEnv(store: Store, adminToken: string): BootstrapResult {
  const parsed = parseToken(adminToken);
  if (!parsed.ok) throw new UserError('CONFIG_INVALID', `ADMIN_TOKEN is not a gateway token (${parsed.reason})`);
  const { id, secret } = parsed.value;
  const digest = hashSecret(secret);
  return store.tx(() => {
    ensureAdminUser(store);
    const notices: string[] = [];
    const now = store.now();
    let changed = false;
    const row = store.tokenRow(id);
    if (row && row.bootstrap === null) {
      throw new UserError('CONFIG_INVALID', `ADMIN_TOKEN has the id ${id}, which another token (label ${JSON.stringify(row.label)}) already uses; choose a different ADMIN_TOKEN`);
    }
    if (!row) {
      store.insertToken({
        id,
        secretSha256: digest,
        label: ADMIN_TOKEN_LABEL,
        principal: ADMIN_PRINCIPAL,
        createdBy: BOOTSTRAP_ACTOR.name,
        createdAt: now,
        expiresAt: FAR_FUTURE_MS,
        routes: [],
        lastUsedAt: null,
        revokedAt: null,
        rotatedFrom: null,
        bootstrap: 'env',
      });
      store.audit(BOOTSTRAP_ACTOR, 'token.bootstrap', id, { source: 'env' });
      changed = true;
    } else {
      const wasLive = tokenState(row, now) === 'active';
      const same =
        row.secretSha256 === digest && row.principal === ADMIN_PRINCIPAL && row.label === ADMIN_TOKEN_LABEL && row.expiresAt === FAR_FUTURE_MS && row.bootstrap === 'env' && row.routes.length === 0;
      if (!wasLive || !same) {
        store.updateToken(id, { secretSha256: digest, principal: ADMIN_PRINCIPAL, label: ADMIN_TOKEN_LABEL, expiresAt: FAR_FUTURE_MS, revokedAt: null, bootstrap: 'env' });
        store.audit(BOOTSTRAP_ACTOR, 'token.bootstrap', id, { source: 'env', reinstated: !wasLive });
        changed = true;
        if (!wasLive) notices.push(`the ADMIN_TOKEN token ${id} was revoked or expired in the store and has been reinstated because ADMIN_TOKEN is set; change or unset ADMIN_TOKEN to retire it`);
      }
    }
    for (const other of store.tokenRows()) {
      if (other.id === id || other.bootstrap === null) continue;
      const live = tokenState(other, now) === 'active';
      store.updateToken(other.id, live ? { revokedAt: now, bootstrap: null } : { bootstrap: null });
      if (live) {
        store.audit(BOOTSTRAP_ACTOR, 'token.revoke', other.id, { reason: 'replaced by ADMIN_TOKEN' });
        notices.push(`the earlier bootstrap admin token ${other.id} was revoked: ADMIN_TOKEN now defines the admin token`);
      }
    }
    return { kind: 'env' as const, id, changed, notices };
  });
}

function generatedOnce(store: Store, hand: (token: string) => void): BootstrapResult {
  return store.tx(() => {
    ensureAdminUser(store);
    const notices: string[] = [];
    const now = store.now();
    const rows = store.tokenRows();
    for (const r of rows) {
      if (r.bootstrap === 'env' && tokenState(r, now) === 'active') {
        store.updateToken(r.id, { revokedAt: now });
        store.audit(BOOTSTRAP_ACTOR, 'token.revoke', r.id, { reason: 'ADMIN_TOKEN is no longer set' });
        notices.push(`ADMIN_TOKEN is no longer set: the token ${r.id} it defined was revoked`);
      }
    }
    const admins = new Set(store.listUsers().filter((u) => u.admin).map((u) => u.id));
    const seen = rows.some((r) => r.bootstrap !== null || admins.has(r.principal));
    if (seen) {
      notices.push(`an admin token already exists (it was shown once when it was made); ${HOW_TO_GET_ONE}`);
      return { kind: 'exists' as const, notices };
    }
    const t = generateToken();
    store.insertToken({
      id: t.id,
      secretSha256: hashSecret(t.secret),
      label: ADMIN_TOKEN_LABEL,
      principal: ADMIN_PRINCIPAL,
      createdBy: BOOTSTRAP_ACTOR.name,
      createdAt: now,
      expiresAt: FAR_FUTURE_MS,
      routes: [],
      lastUsedAt: null,
      revokedAt: null,
      rotatedFrom: null,
      bootstrap: 'generated',
    });
    store.audit(BOOTSTRAP_ACTOR, 'token.bootstrap', t.id, { source: 'generated' });
    notices.push(`generated the admin token ${t.id} on first start; it is shown once and only its hash is kept`);
    hand(t.token);
    return { kind: 'generated' as const, id: t.id, notices };
  });
}
