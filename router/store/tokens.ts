import type { EdgeToken } from '../model/push-payload';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseDuration } from '../config';
import { UserError } from '../errors';
import { type Checked, checkList, checkPrincipal, checkRouteName, show } from '../model/validate';
import { type Actor, type Store, type TokenRow, checkText, must } from './store';

/**
 * Gateway tokens: `appgw_<id>_<secret>`. The id is public (12 lowercase base32 characters when
 * generated); the secret is 32 random bytes in base64url and only its SHA-256 (hex) is stored —
 * secrets are high-entropy, so a plain hash is right, and the proxy's Lua computes the same
 * digest of the secret part to compare. The plaintext is returned once, at creation.
 */

export const TOKEN_PREFIX = 'appgw';
/**
 * What a token looks like. Wider than what createToken generates (12-char id, 43-char secret) so
 * that an operator-chosen ADMIN_TOKEN of the form config.ts accepts parses too; the Lua side
 * (lua/appgw/auth.lua) accepts the same shape.
 */
export const TOKEN_PATTERN = /^appgw_([a-z0-9]{8,32})_([A-Za-z0-9_-]{20,128})$/;
const TOKEN_ID_PATTERN = /^[a-z0-9]{8,32}$/;
const MAX_TOKEN_LENGTH = 256;
const ID_LENGTH = 12;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const DAY_MS = 86_400_000;
/** Expiry of bootstrap admin tokens: they live until ADMIN_TOKEN changes or an admin revokes them. */
export const FAR_FUTURE_MS = Date.UTC(9999, 11, 31, 23, 59, 59);
/** Compared against when the id is unknown, so that a miss costs what a hit costs. */
const DUMMY_DIGEST = Buffer.alloc(32);

/** The two parts of a token. */
export interface ParsedToken {
  id: string;
  secret: string;
}

/** active: usable; expired: past expires_at; revoked: revoked_at set. */
export type TokenState = 'active' | 'expired' | 'revoked';

/** A token as shown to people and APIs: never the secret, never its hash. */
export interface TokenView {
  id: string;
  label: string;
  grantsAs: string;
  createdBy: string;
  /** Epoch ms. */
  createdAt: number;
  expiresAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
  rotatedFrom: string | null;
  /** Static route names the token is limited to; empty = unscoped. */
  routes: string[];
  state: TokenState;
  bootstrap: 'env' | 'generated' | null;
}

/** What createToken needs. */
export interface CreateTokenInput {
  /** 1-100 printable characters. */
  label: string;
  /** Lifetime in ms (see parseExpiresIn) or an absolute expiry in epoch ms; exactly one is required. */
  expiresInMs?: number;
  expiresAt?: number;
  /** The user or service account the token grants access as; defaults to the acting principal. */
  as?: string | null;
  /** Static route names; empty or absent = unscoped. */
  routes?: string[];
}

/** A new token: its plaintext and its view. */
export interface CreatedToken {
  /** The plaintext token: show it once, never store or log it. */
  token: string;
  record: TokenView;
}

/** Who a verified token speaks for. */
export interface TokenIdentity {
  id: string;
  principal: string;
  admin: boolean;
  groups: string[];
  routes: string[];
  expiresAt: number;
}

/** What the proxy needs per token id: secret digest, user, admin flag, groups, route scope, expiry (epoch s). */
export type { EdgeToken } from '../model/push-payload';

/**
 * Pure. Splits a token into id and secret, strictly. The reason never quotes the input (it may be
 * somebody's secret).
 */
export function parseToken(text: unknown): Checked<ParsedToken> {
  if (typeof text !== 'string') return { ok: false, reason: 'a token must be a string' };
  if (text.length > MAX_TOKEN_LENGTH) return { ok: false, reason: `a token is at most ${MAX_TOKEN_LENGTH} characters` };
  if (!text.startsWith(`${TOKEN_PREFIX}_`)) return { ok: false, reason: `a gateway token starts with ${TOKEN_PREFIX}_` };
  const m = TOKEN_PATTERN.exec(text);
  if (!m) return { ok: false, reason: `a gateway token looks like ${TOKEN_PREFIX}_<id>_<secret>` };
  return { ok: true, value: { id: m[1]!, secret: m[2]! } };
}

/** Pure. SHA-256 of a token secret, lowercase hex (what the store and the proxy compare). */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** A fresh random token (uses the system CSPRNG). */
export function generateToken(): { id: string; secret: string; token: string } {
  const bytes = randomBytes(ID_LENGTH);
  let id = '';
  for (const b of bytes) id += BASE32[b & 31];
  const secret = randomBytes(32).toString('base64url');
  return { id, secret, token: `${TOKEN_PREFIX}_${id}_${secret}` };
}

/** Pure. Parses a lifetime such as `30d`, `12h`, `90m` or `3600s` into ms (a unit is required). */
export function parseExpiresIn(text: string): Checked<number> {
  const t = typeof text === 'string' ? text.trim() : '';
  const ms = /^\d{1,7}[smhd]$/.test(t) ? parseDuration(t) : null;
  if (ms === null || ms <= 0) return { ok: false, reason: `lifetime ${show(text)} must look like 30d, 12h or 90m` };
  return { ok: true, value: ms };
}

/** Pure. The state of a token at `now`. */
export function tokenState(row: Pick<TokenRow, 'revokedAt' | 'expiresAt'>, now: number): TokenState {
  if (row.revokedAt !== null && row.revokedAt <= now) return 'revoked';
  if (row.expiresAt <= now) return 'expired';
  return 'active';
}

/** Pure. The output view of a token row (drops the hash). */
export function viewToken(row: TokenRow, now: number): TokenView {
  return {
    id: row.id,
    label: row.label,
    grantsAs: row.principal,
    createdBy: row.createdBy,
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    lastUsedAt: row.lastUsedAt,
    revokedAt: row.revokedAt,
    rotatedFrom: row.rotatedFrom,
    routes: [...row.routes],
    state: tokenState(row, now),
    bootstrap: row.bootstrap,
  };
}

function days(ms: number): string {
  const d = ms / DAY_MS;
  return `${Number.isInteger(d) ? d : d.toFixed(1)} days`;
}

/** Pure. The checked absolute expiry of a new token, bounded by TOKEN_MAX_DAYS. */
function checkExpiry(input: CreateTokenInput, now: number, maxDays: number): number {
  const hasIn = input.expiresInMs !== undefined;
  const hasAt = input.expiresAt !== undefined;
  if (hasIn === hasAt) throw new UserError('TOKEN_INVALID', 'a token needs an expiry: give a lifetime such as --expires-in 30d');
  const at = hasIn ? now + input.expiresInMs! : input.expiresAt!;
  if (!Number.isFinite(at) || at <= now) throw new UserError('TOKEN_INVALID', 'a token expiry must be in the future');
  const max = maxDays * DAY_MS;
  if (at - now > max) {
    throw new UserError(
      'TOKEN_INVALID',
      `a lifetime of ${days(at - now)} is beyond TOKEN_MAX_DAYS (${maxDays} days); choose --expires-in ${maxDays}d or less, or raise TOKEN_MAX_DAYS`,
    );
  }
  return Math.floor(at);
}

function principalMustExist(store: Store, principal: string): void {
  if (!store.getUser(principal)) {
    throw new UserError('NOT_FOUND', `user ${show(principal)} does not exist; add it first with: appgw user add ${principal}`);
  }
}

/** Inserts a fresh token row built by `make`, retrying on the (unlikely) id collision. Call inside a transaction. */
function insertFresh(store: Store, make: (id: string, digest: string) => TokenRow): { token: string; row: TokenRow } {
  for (let attempt = 0; ; attempt++) {
    const t = generateToken();
    if (store.tokenRow(t.id)) {
      if (attempt < 5) continue;
      throw new Error('could not find a free token id');
    }
    const row = make(t.id, hashSecret(t.secret));
    store.insertToken(row);
    return { token: t.token, row };
  }
}

/**
 * Creates a token and returns its plaintext (once) with its view. Validates the label, expiry
 * (bounded by the store's TOKEN_MAX_DAYS), the principal (must exist; default the actor's) and
 * the route scope. Writes an audit row without the secret.
 */
export function createToken(store: Store, input: CreateTokenInput, by: Actor): CreatedToken {
  const now = store.now();
  const label = must(checkText(input.label, 'token label', 100));
  const expiresAt = checkExpiry(input, now, store.tokenMaxDays);
  const asGiven = input.as ?? by.principal ?? null;
  if (asGiven === null) throw new UserError('USAGE', 'say which user or service account the token grants access as: --as USER');
  const principal = must(checkPrincipal(asGiven));
  const routes = [...new Set(must(checkList(input.routes, 'route scope', checkRouteName, 64)))].sort();
  return store.tx(() => {
    principalMustExist(store, principal);
    const { token, row } = insertFresh(store, (id, digest) => ({
      id,
      secretSha256: digest,
      label,
      principal,
      createdBy: by.name,
      createdAt: now,
      expiresAt,
      routes,
      lastUsedAt: null,
      revokedAt: null,
      rotatedFrom: null,
      bootstrap: null,
    }));
    store.audit(by, 'token.create', row.id, { label, grantsAs: principal, expiresAt, routes });
    return { token, record: viewToken(row, now) };
  });
}

/**
 * Checks a presented token at `now`: strict parse, constant-time digest compare, then revocation,
 * expiry and the principal. Never throws; the reason is one of malformed_token, unknown_token,
 * bad_token, revoked_token, expired_token, unknown_user (the codes the edge uses).
 */
export function verifyToken(store: Store, text: unknown, now: number): Checked<TokenIdentity> {
  const parsed = parseToken(text);
  if (!parsed.ok) return { ok: false, reason: 'malformed_token' };
  const row = store.tokenRow(parsed.value.id);
  const presented = createHash('sha256').update(parsed.value.secret, 'utf8').digest();
  const stored = row ? Buffer.from(row.secretSha256, 'hex') : DUMMY_DIGEST;
  const same = stored.length === presented.length && timingSafeEqual(stored, presented);
  if (!row) return { ok: false, reason: 'unknown_token' };
  if (!same) return { ok: false, reason: 'bad_token' };
  const state = tokenState(row, now);
  if (state === 'revoked') return { ok: false, reason: 'revoked_token' };
  if (state === 'expired') return { ok: false, reason: 'expired_token' };
  const user = store.getUser(row.principal);
  if (!user) return { ok: false, reason: 'unknown_user' };
  return { ok: true, value: { id: row.id, principal: user.id, admin: user.admin, groups: user.groups, routes: [...row.routes], expiresAt: row.expiresAt } };
}

/** Every token as a view (no secret, no hash), oldest first. */
export function listTokens(store: Store, now: number = store.now()): TokenView[] {
  return store.tokenRows().map((r) => viewToken(r, now));
}

function existing(store: Store, id: string): TokenRow {
  if (typeof id !== 'string' || !TOKEN_ID_PATTERN.test(id)) {
    throw new UserError('INVALID_INPUT', `token id ${show(id)} must be the id shown by appgw token list ([a-z0-9]{8,32})`);
  }
  const row = store.tokenRow(id);
  if (!row) throw new UserError('NOT_FOUND', `token ${id} does not exist`);
  return row;
}

/** Revokes a token now. Idempotent: `changed` is false when it was already revoked. */
export function revokeToken(store: Store, id: string, by: Actor): { record: TokenView; changed: boolean } {
  return store.tx(() => {
    const row = existing(store, id);
    const now = store.now();
    if (row.revokedAt !== null && row.revokedAt <= now) return { record: viewToken(row, now), changed: false };
    store.updateToken(row.id, { revokedAt: now });
    store.audit(by, 'token.revoke', row.id, { label: row.label, grantsAs: row.principal });
    return { record: viewToken(store.tokenRow(row.id)!, now), changed: true };
  });
}

/**
 * Replaces a live token with a new one of the same label, route scope and principal, and the same
 * lifetime (bounded by TOKEN_MAX_DAYS). The old token is revoked now, or, with a grace period,
 * expires at now + grace (never later than it would have). Refuses revoked and expired tokens
 * and the ADMIN_TOKEN one (change the variable instead).
 */
export function rotateToken(store: Store, id: string, by: Actor, graceSeconds = 0): CreatedToken & { old: TokenView } {
  if (!Number.isInteger(graceSeconds) || graceSeconds < 0) throw new UserError('INVALID_INPUT', `grace ${show(graceSeconds)} must be a whole number of seconds`);
  return store.tx(() => {
    const old = existing(store, id);
    const now = store.now();
    const state = tokenState(old, now);
    if (state !== 'active') throw new UserError('TOKEN_INVALID', `token ${old.id} is ${state}; create a new one with appgw token create`);
    if (old.bootstrap === 'env') throw new UserError('TOKEN_INVALID', `token ${old.id} comes from ADMIN_TOKEN; change ADMIN_TOKEN and restart instead`);
    principalMustExist(store, old.principal);
    const lifetime = Math.min(old.expiresAt - old.createdAt, store.tokenMaxDays * DAY_MS);
    const expiresAt = old.bootstrap === 'generated' ? FAR_FUTURE_MS : now + Math.max(lifetime, 60_000);
    const { token, row } = insertFresh(store, (newId, digest) => ({
      id: newId,
      secretSha256: digest,
      label: old.label,
      principal: old.principal,
      createdBy: by.name,
      createdAt: now,
      expiresAt,
      routes: old.routes,
      lastUsedAt: null,
      revokedAt: null,
      rotatedFrom: old.id,
      bootstrap: old.bootstrap,
    }));
    if (graceSeconds > 0) store.updateToken(old.id, { expiresAt: Math.min(old.expiresAt, now + graceSeconds * 1000), bootstrap: null });
    else store.updateToken(old.id, { revokedAt: now, bootstrap: null });
    store.audit(by, 'token.rotate', old.id, { newId: row.id, label: old.label, grantsAs: old.principal, graceSeconds });
    return { token, record: viewToken(row, now), old: viewToken(store.tokenRow(old.id)!, now) };
  });
}

/** Records that a token was used at `ts` (epoch ms); last use only moves forward. */
export function markUsed(store: Store, id: string, ts: number): void {
  store.touchToken(id, ts);
}

/** Per store: the last record handed out for each token id, with what it was built from. */
const edgeRecords = new WeakMap<Store, Map<string, { from: string; rec: EdgeToken }>>();

/**
 * The token table the proxy needs, keyed by token id: live tokens only (not revoked, not expired,
 * principal present). An unchanged token gets the same record object as the previous call (the
 * router's push encoder then skips it); a changed one a new object.
 */
export function edgeTokenTable(store: Store, now: number): Record<string, EdgeToken> {
  const users = store.edgeUserTable();
  let seen = edgeRecords.get(store);
  if (!seen) edgeRecords.set(store, (seen = new Map()));
  const next = new Map<string, { from: string; rec: EdgeToken }>();
  const out: Record<string, EdgeToken> = {};
  for (const row of store.tokenRows()) {
    if (tokenState(row, now) !== 'active') continue;
    const u = users[row.principal];
    if (!u) continue;
    const e = Math.floor(row.expiresAt / 1000);
    const from = `${row.secretSha256}|${row.principal}|${u.a}|${u.g.join(',')}|${row.routes.join(',')}|${e}`;
    const prev = seen.get(row.id);
    const rec = prev && prev.from === from ? prev.rec : { h: row.secretSha256, u: row.principal, a: u.a, g: [...u.g], r: [...row.routes], e };
    next.set(row.id, { from, rec });
    out[row.id] = rec;
  }
  edgeRecords.set(store, next);
  return out;
}
