import { UserError } from '../errors';
import type { Backend, HealthCheck } from '../model/types';
import {
  type Checked,
  checkBackend,
  checkBool,
  checkGroup,
  checkHealthIntervalMs,
  checkHealthPath,
  checkList,
  checkPath,
  checkPrincipal,
  checkRouteName,
  checkSubdomain,
  checkTaskId,
  HEALTH_CHECK,
  show,
} from '../model/validate';
import { type Db, type Migration, openDb } from './sqlite';

/**
 * The typed store over the SQLite adapter: users, groups, memberships, tokens (rows only; the
 * token logic is in tokens.ts), task shares and policies, static routes, TCP port allocations and
 * the audit log. All SQL of the project lives in router/store/. Every input is validated here;
 * every admin mutation writes an audit row in the same transaction; every change to what the
 * edge authorizes with bumps a monotonic version so the router knows when to push.
 */

/** Who makes a change: the audit actor (`cli`, or the admin principal of an API call). */
export interface Actor {
  /** Shown in the audit log: `cli`, or a principal. */
  name: string;
  /** The user or service account acting, when there is one (none for the CLI). */
  principal?: string | null;
  /** Client address of an API call; null for the CLI. */
  client?: string | null;
}

/** The actor of `appgw` CLI commands: whoever can read DATA_DIR is trusted as an operator. */
export const CLI_ACTOR: Actor = { name: 'cli', principal: null, client: null };

/** A person, or a service account for programs. */
export type UserKind = 'user' | 'service';
/** Who may reach a task besides its shares: only its owner, or anyone of the same company (tenant). */
export type SharePolicy = 'owner' | 'company';

/** A user or service account with its groups. */
export interface User {
  id: string;
  name: string;
  kind: UserKind;
  admin: boolean;
  /** Epoch ms. */
  createdAt: number;
  createdBy: string;
  /** Group names, sorted. */
  groups: string[];
}

/** A group with its members. */
export interface Group {
  name: string;
  description: string;
  createdAt: number;
  createdBy: string;
  /** User ids, sorted. */
  members: string[];
}

/** One share of an ephemeral task with a user or a group (exactly one of the two is set). */
export interface Share {
  taskId: string;
  user: string | null;
  group: string | null;
  createdAt: number;
  createdBy: string;
}

/** Whom a task is shared with: one user or one group. */
export type ShareSubject = { user: string; group?: undefined } | { group: string; user?: undefined };

/** A token as stored. Holds the secret's hash: never put a TokenRow in output; use tokens.ts views. */
export interface TokenRow {
  id: string;
  secretSha256: string;
  label: string;
  principal: string;
  createdBy: string;
  createdAt: number;
  expiresAt: number;
  routes: string[];
  lastUsedAt: number | null;
  revokedAt: number | null;
  rotatedFrom: string | null;
  /** Set on the admin token made at start: from ADMIN_TOKEN (`env`) or generated on first start. */
  bootstrap: 'env' | 'generated' | null;
}

/** A static route as stored (validated; `path` normalised to /x/). */
export interface StoredRoute {
  name: string;
  path: string | null;
  subdomain: string | null;
  allowedGroups: string[];
  backends: Backend[];
  enabled: boolean;
  description: string;
  stripPrefix: boolean;
  /** Active health check of the backends, or null. */
  healthCheck: HealthCheck | null;
  createdAt: number;
  updatedAt: number;
}

/** What an admin gives to create or replace a static route; exactly one of path and subdomain. */
export interface RouteInput {
  name: string;
  path?: string | null;
  subdomain?: string | null;
  allowedGroups?: unknown[];
  backends?: unknown[];
  enabled?: boolean;
  description?: string;
  stripPrefix?: boolean;
  /** `{ path, intervalMs }` (validated here), or null/absent for none. */
  healthCheck?: { path: unknown; intervalMs: unknown } | null;
}

/** A TCP port given to a route; `releasedAt` null while live. */
export interface PortAllocation {
  routeId: string;
  port: number;
  allocatedAt: number;
  releasedAt: number | null;
}

/** One audit row; `ts` in epoch ms. */
export interface AuditEntry {
  id: number;
  ts: number;
  actor: string;
  action: string;
  target: string;
  detail: Record<string, unknown>;
  client: string | null;
}

/** Per user, what the edge needs to authorize a cookie identity: admin flag and groups. */
export interface EdgeUser {
  a: boolean;
  g: string[];
}

/** Per shared task: its policy and who it is shared with. */
export interface EdgeShare {
  p: SharePolicy;
  u: string[];
  g: string[];
}

/** How to open the store. */
export interface StoreOptions {
  dataDir: string;
  /** Upper bound of a token's lifetime (TOKEN_MAX_DAYS); default 90. */
  tokenMaxDays?: number;
  /** Epoch ms; injectable for tests. */
  clock?: () => number;
}

/** The store's schema, in order. Append new migrations; never edit a released one. */
export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'identity-routes-ports-audit',
    sql: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
      INSERT INTO meta (key, value) VALUES ('identity_version', 0), ('routes_version', 0);

      CREATE TABLE users (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('user', 'service')),
        admin INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL
      );
      CREATE TABLE groups (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL
      );
      CREATE TABLE memberships (
        group_name TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (group_name, user_id)
      );
      CREATE INDEX memberships_user ON memberships(user_id);

      CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        secret_sha256 TEXT NOT NULL CHECK (length(secret_sha256) = 64),
        label TEXT NOT NULL,
        principal TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        routes TEXT NOT NULL DEFAULT '[]',
        last_used_at INTEGER,
        revoked_at INTEGER,
        rotated_from TEXT,
        bootstrap TEXT CHECK (bootstrap IN ('env', 'generated'))
      );
      CREATE INDEX tokens_principal ON tokens(principal);

      CREATE TABLE shares (
        task_id TEXT NOT NULL,
        user_id TEXT,
        group_name TEXT REFERENCES groups(name) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        CHECK ((user_id IS NULL) <> (group_name IS NULL))
      );
      CREATE UNIQUE INDEX shares_subject ON shares(task_id, coalesce(user_id, ''), coalesce(group_name, ''));
      CREATE TABLE task_policies (
        task_id TEXT PRIMARY KEY,
        policy TEXT NOT NULL CHECK (policy IN ('owner', 'company')),
        updated_at INTEGER NOT NULL,
        updated_by TEXT NOT NULL
      );

      CREATE TABLE static_routes (
        name TEXT PRIMARY KEY,
        path TEXT UNIQUE,
        subdomain TEXT UNIQUE,
        allowed_groups TEXT NOT NULL DEFAULT '[]',
        backends TEXT NOT NULL DEFAULT '[]',
        enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
        description TEXT NOT NULL DEFAULT '',
        strip_prefix INTEGER NOT NULL DEFAULT 1 CHECK (strip_prefix IN (0, 1)),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK ((path IS NULL) <> (subdomain IS NULL))
      );

      CREATE TABLE tcp_ports (
        id INTEGER PRIMARY KEY,
        route_id TEXT NOT NULL,
        port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
        allocated_at INTEGER NOT NULL,
        released_at INTEGER
      );
      CREATE UNIQUE INDEX tcp_ports_live_port ON tcp_ports(port) WHERE released_at IS NULL;
      CREATE UNIQUE INDEX tcp_ports_live_route ON tcp_ports(route_id) WHERE released_at IS NULL;
      CREATE INDEX tcp_ports_route ON tcp_ports(route_id);

      CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}',
        client TEXT
      );
      CREATE INDEX audit_ts ON audit(ts);
    `,
  },
  {
    version: 2,
    name: 'static-route-health-check',
    // both null (no health check) or both set; validated by the store before every write
    sql: `
      ALTER TABLE static_routes ADD COLUMN health_path TEXT;
      ALTER TABLE static_routes ADD COLUMN health_interval_ms INTEGER;
    `,
  },
];

/** Pure. Throws a UserError INVALID_INPUT with the validator's reason, or returns the value. */
export function must<T>(c: Checked<T>): T {
  if (!c.ok) throw new UserError('INVALID_INPUT', c.reason);
  return c.value;
}

/** Pure. A single line of printable text (no control or format characters), 1..max characters (0.. when optional). */
export function checkText(v: unknown, what: string, max: number, optional = false): Checked<string> {
  if (typeof v !== 'string') return { ok: false, reason: `${what} must be text, got ${show(v)}` };
  const len = [...v].length;
  if (len === 0 || v.trim() === '') {
    return optional && len === 0 ? { ok: true, value: '' } : { ok: false, reason: `${what} must not be empty` };
  }
  if (len > max) return { ok: false, reason: `${what} is longer than ${max} characters` };
  if (/\p{C}/u.test(v)) return { ok: false, reason: `${what} ${show(v)} has control or invisible characters` };
  return { ok: true, value: v };
}

/** Pure. A health check in the store's form `{ path, intervalMs }`, or null for none. */
export function checkStoredHealthCheck(v: unknown): Checked<HealthCheck | null> {
  if (v === undefined || v === null) return { ok: true, value: null };
  if (typeof v !== 'object' || Array.isArray(v)) return { ok: false, reason: `health check ${show(v)} must be { path, intervalMs }` };
  const o = v as Record<string, unknown>;
  const path = checkHealthPath(o.path);
  if (!path.ok) return path;
  const interval = checkHealthIntervalMs(o.intervalMs);
  if (!interval.ok) return interval;
  return { ok: true, value: { path: path.value, intervalMs: interval.value } };
}

/** Pure. An ephemeral or TCP route id: `<task>` or `<task>-<endpoint>`. */
export function checkRouteId(v: unknown): Checked<string> {
  if (typeof v === 'string' && /^[a-z0-9]{1,40}(-[a-z0-9]([a-z0-9_]{0,30}[a-z0-9])?)?$/.test(v)) return { ok: true, value: v };
  return { ok: false, reason: `route id ${show(v)} must be <task id> or <task id>-<endpoint name>` };
}

const notFound = (what: string, name: string) => new UserError('NOT_FOUND', `${what} ${show(name)} does not exist`);

interface UserSql {
  id: string;
  name: string;
  kind: UserKind;
  admin: number;
  created_at: number;
  created_by: string;
}
interface TokenSql {
  id: string;
  secret_sha256: string;
  label: string;
  principal: string;
  created_by: string;
  created_at: number;
  expires_at: number;
  routes: string;
  last_used_at: number | null;
  revoked_at: number | null;
  rotated_from: string | null;
  bootstrap: 'env' | 'generated' | null;
}
interface RouteSql {
  name: string;
  path: string | null;
  subdomain: string | null;
  allowed_groups: string;
  backends: string;
  enabled: number;
  description: string;
  strip_prefix: number;
  health_path: string | null;
  health_interval_ms: number | null;
  created_at: number;
  updated_at: number;
}
interface PortSql {
  route_id: string;
  port: number;
  allocated_at: number;
  released_at: number | null;
}

const tokenFromSql = (r: TokenSql): TokenRow => ({
  id: r.id,
  secretSha256: r.secret_sha256,
  label: r.label,
  principal: r.principal,
  createdBy: r.created_by,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  routes: JSON.parse(r.routes) as string[],
  lastUsedAt: r.last_used_at,
  revokedAt: r.revoked_at,
  rotatedFrom: r.rotated_from,
  bootstrap: r.bootstrap,
});

const routeFromSql = (r: RouteSql): StoredRoute => ({
  name: r.name,
  path: r.path,
  subdomain: r.subdomain,
  allowedGroups: JSON.parse(r.allowed_groups) as string[],
  backends: JSON.parse(r.backends) as Backend[],
  enabled: r.enabled === 1,
  description: r.description,
  stripPrefix: r.strip_prefix === 1,
  healthCheck: r.health_path === null ? null : { path: r.health_path, intervalMs: r.health_interval_ms ?? HEALTH_CHECK.defaultIntervalMs },
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const portFromSql = (r: PortSql): PortAllocation => ({ routeId: r.route_id, port: r.port, allocatedAt: r.allocated_at, releasedAt: r.released_at });

/** Opens the store in `opts.dataDir` (see openDb for what can be thrown). */
export function openStore(opts: StoreOptions): Store {
  return new Store(openDb(opts.dataDir, MIGRATIONS), opts);
}

/** The store. Not safe to share across processes except through SQLite itself (WAL, busy timeout). */
export class Store {
  readonly file: string;
  readonly tokenMaxDays: number;
  private readonly clock: () => number;

  constructor(
    private readonly db: Db,
    opts: Omit<StoreOptions, 'dataDir'>,
  ) {
    this.file = db.file;
    this.tokenMaxDays = opts.tokenMaxDays ?? 90;
    this.clock = opts.clock ?? Date.now;
  }

  /** The store's clock, epoch ms. */
  now(): number {
    return this.clock();
  }

  /** Closes the database (checkpoints the WAL). */
  close(): void {
    this.db.close();
  }

  /** Runs `fn` atomically: every store call inside commits together or not at all. */
  tx<T>(fn: () => T): T {
    return this.db.tx(fn);
  }

  /** Monotonic counter bumped by every change to tokens, users, groups, memberships or shares. */
  version(): number {
    return this.db.get<{ value: number }>(`SELECT value FROM meta WHERE key = 'identity_version'`)!.value;
  }

  /** Monotonic counter bumped by every change to the static routes table. */
  routesVersion(): number {
    return this.db.get<{ value: number }>(`SELECT value FROM meta WHERE key = 'routes_version'`)!.value;
  }

  private bump(key: 'identity_version' | 'routes_version'): void {
    this.db.run('UPDATE meta SET value = value + 1 WHERE key = ?', [key]);
  }

  // ---- audit ---------------------------------------------------------------------------------

  /** Appends an audit row. `detail` must never hold a secret, a hash or a cookie. */
  audit(by: Actor, action: string, target: string, detail: Record<string, unknown> = {}): void {
    this.db.run('INSERT INTO audit (ts, actor, action, target, detail, client) VALUES (?, ?, ?, ?, ?, ?)', [
      this.now(),
      by.name,
      action,
      target,
      JSON.stringify(detail),
      by.client ?? null,
    ]);
  }

  /** The newest audit rows first, at most `limit` (default 50). */
  listAudit(opts: { limit?: number } = {}): AuditEntry[] {
    const limit = Math.max(1, Math.min(opts.limit ?? 50, 100_000));
    return this.db
      .all<{ id: number; ts: number; actor: string; action: string; target: string; detail: string; client: string | null }>(
        'SELECT id, ts, actor, action, target, detail, client FROM audit ORDER BY id DESC LIMIT ?',
        [limit],
      )
      .map((r) => ({ ...r, detail: JSON.parse(r.detail) as Record<string, unknown> }));
  }

  // ---- users ---------------------------------------------------------------------------------

  /** Adds a user or service account; CONFLICT when the id is taken. */
  addUser(input: { id: string; name?: string; kind?: UserKind; admin?: boolean }, by: Actor): User {
    const id = must(checkPrincipal(input.id));
    const name = input.name === undefined ? id : must(checkText(input.name, 'user name', 100));
    const kind = input.kind ?? 'user';
    if (kind !== 'user' && kind !== 'service') throw new UserError('INVALID_INPUT', `user kind ${show(kind)} must be user or service`);
    const admin = must(checkBool(input.admin, 'admin', false));
    return this.tx(() => {
      if (this.getUser(id)) throw new UserError('CONFLICT', `user ${show(id)} already exists`);
      this.db.run('INSERT INTO users (id, name, kind, admin, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)', [
        id,
        name,
        kind,
        admin ? 1 : 0,
        this.now(),
        by.name,
      ]);
      this.bump('identity_version');
      this.audit(by, 'user.add', id, { name, kind, admin });
      return this.getUser(id)!;
    });
  }

  /** Sets or clears the admin flag; refuses to clear the last admin. */
  setAdmin(id: string, admin: boolean, by: Actor): User {
    must(checkPrincipal(id));
    return this.tx(() => {
      const u = this.getUser(id);
      if (!u) throw notFound('user', id);
      if (u.admin === admin) return u;
      if (!admin) this.refuseLastAdmin(u.id);
      this.db.run('UPDATE users SET admin = ? WHERE id = ?', [admin ? 1 : 0, u.id]);
      this.bump('identity_version');
      this.audit(by, 'user.set-admin', u.id, { admin });
      return this.getUser(u.id)!;
    });
  }

  /** A user by id, or null. */
  getUser(id: string): User | null {
    const r = this.db.get<UserSql>('SELECT * FROM users WHERE id = ?', [id]);
    return r ? this.userFromSql(r) : null;
  }

  /** All users and service accounts, sorted by id. */
  listUsers(): User[] {
    return this.db.all<UserSql>('SELECT * FROM users ORDER BY id').map((r) => this.userFromSql(r));
  }

  /**
   * Removes a user: drops their memberships and shares and revokes every token granting access
   * as them. Refuses to remove the last admin.
   */
  removeUser(id: string, by: Actor): void {
    must(checkPrincipal(id));
    this.tx(() => {
      const u = this.getUser(id);
      if (!u) throw notFound('user', id);
      if (u.admin) this.refuseLastAdmin(u.id);
      const now = this.now();
      const revoked = this.db.run('UPDATE tokens SET revoked_at = ? WHERE principal = ? AND revoked_at IS NULL', [now, u.id]).changes;
      this.db.run('DELETE FROM shares WHERE user_id = ?', [u.id]);
      this.db.run('DELETE FROM users WHERE id = ?', [u.id]);
      this.bump('identity_version');
      this.audit(by, 'user.remove', u.id, { revokedTokens: revoked });
    });
  }

  private refuseLastAdmin(id: string): void {
    const others = this.db.get<{ n: number }>('SELECT count(*) AS n FROM users WHERE admin = 1 AND id <> ?', [id])!.n;
    if (others === 0) throw new UserError('CONFLICT', `user ${show(id)} is the last admin; make another user admin first`);
  }

  private userFromSql(r: UserSql): User {
    return {
      id: r.id,
      name: r.name,
      kind: r.kind,
      admin: r.admin === 1,
      createdAt: r.created_at,
      createdBy: r.created_by,
      groups: this.groupsOf(r.id),
    };
  }

  // ---- groups --------------------------------------------------------------------------------

  /** Creates a group; CONFLICT when the name is taken. */
  createGroup(input: { name: string; description?: string }, by: Actor): Group {
    const name = must(checkGroup(input.name));
    const description = must(checkText(input.description ?? '', 'description', 200, true));
    return this.tx(() => {
      if (this.getGroup(name)) throw new UserError('CONFLICT', `group ${show(name)} already exists`);
      this.db.run('INSERT INTO groups (name, description, created_at, created_by) VALUES (?, ?, ?, ?)', [name, description, this.now(), by.name]);
      this.bump('identity_version');
      this.audit(by, 'group.create', name, { description });
      return this.getGroup(name)!;
    });
  }

  /** Deletes a group with its memberships and shares. */
  deleteGroup(name: string, by: Actor): void {
    must(checkGroup(name));
    this.tx(() => {
      const g = this.getGroup(name);
      if (!g) throw notFound('group', name);
      this.db.run('DELETE FROM groups WHERE name = ?', [g.name]);
      this.bump('identity_version');
      this.audit(by, 'group.delete', g.name, { members: g.members });
    });
  }

  /** A group by name, or null. */
  getGroup(name: string): Group | null {
    const r = this.db.get<{ name: string; description: string; created_at: number; created_by: string }>('SELECT * FROM groups WHERE name = ?', [name]);
    if (!r) return null;
    return { name: r.name, description: r.description, createdAt: r.created_at, createdBy: r.created_by, members: this.membersOf(r.name) };
  }

  /** All groups with their members, sorted by name. */
  listGroups(): Group[] {
    return this.db
      .all<{ name: string }>('SELECT name FROM groups ORDER BY name')
      .map((r) => this.getGroup(r.name)!);
  }

  /** Adds an existing user to an existing group. */
  addMember(group: string, user: string, by: Actor): void {
    const g = must(checkGroup(group));
    const u = must(checkPrincipal(user));
    this.tx(() => {
      if (!this.getGroup(g)) throw notFound('group', g);
      if (!this.db.get('SELECT 1 FROM users WHERE id = ?', [u])) throw notFound('user', u);
      if (this.db.get('SELECT 1 FROM memberships WHERE group_name = ? AND user_id = ?', [g, u])) {
        throw new UserError('CONFLICT', `user ${show(u)} is already a member of group ${show(g)}`);
      }
      this.db.run('INSERT INTO memberships (group_name, user_id, added_at) VALUES (?, ?, ?)', [g, u, this.now()]);
      this.bump('identity_version');
      this.audit(by, 'group.add-member', g, { user: u });
    });
  }

  /** Removes a user from a group; NOT_FOUND when they were not a member. */
  removeMember(group: string, user: string, by: Actor): void {
    must(checkGroup(group));
    must(checkPrincipal(user));
    this.tx(() => {
      if (!this.getGroup(group)) throw notFound('group', group);
      if (this.db.run('DELETE FROM memberships WHERE group_name = ? AND user_id = ?', [group, user]).changes === 0) {
        throw new UserError('NOT_FOUND', `user ${show(user)} is not a member of group ${show(group)}`);
      }
      this.bump('identity_version');
      this.audit(by, 'group.remove-member', group, { user });
    });
  }

  /** Group names of a user, sorted (empty for an unknown user). */
  groupsOf(user: string): string[] {
    return this.db.all<{ group_name: string }>('SELECT group_name FROM memberships WHERE user_id = ? ORDER BY group_name', [user]).map((r) => r.group_name);
  }

  private membersOf(group: string): string[] {
    return this.db.all<{ user_id: string }>('SELECT user_id FROM memberships WHERE group_name = ? ORDER BY user_id', [group]).map((r) => r.user_id);
  }

  // ---- shares --------------------------------------------------------------------------------

  /**
   * Shares an ephemeral task with a user or a group. The group must exist; the user need not be
   * in the store (task owners and viewers are often ClearML user ids known only to ClearML).
   */
  addShare(taskId: string, subject: ShareSubject, by: Actor): Share {
    const task = must(checkTaskId(taskId));
    const s = this.checkSubject(subject);
    return this.tx(() => {
      if (s.group !== null && !this.getGroup(s.group)) throw notFound('group', s.group);
      if (this.findShare(task, s)) throw new UserError('CONFLICT', `task ${task} is already shared with ${describe(s)}`);
      this.db.run('INSERT INTO shares (task_id, user_id, group_name, created_at, created_by) VALUES (?, ?, ?, ?, ?)', [task, s.user, s.group, this.now(), by.name]);
      this.bump('identity_version');
      this.audit(by, 'share.add', task, s.user !== null ? { user: s.user } : { group: s.group });
      return this.findShare(task, s)!;
    });
  }

  /** Removes one share; NOT_FOUND when there was none. */
  removeShare(taskId: string, subject: ShareSubject, by: Actor): void {
    const task = must(checkTaskId(taskId));
    const s = this.checkSubject(subject);
    this.tx(() => {
      const n = this.db.run('DELETE FROM shares WHERE task_id = ? AND user_id IS ? AND group_name IS ?', [task, s.user, s.group]).changes;
      if (n === 0) throw new UserError('NOT_FOUND', `task ${task} is not shared with ${describe(s)}`);
      this.bump('identity_version');
      this.audit(by, 'share.remove', task, s.user !== null ? { user: s.user } : { group: s.group });
    });
  }

  /** Shares, of one task or of all, sorted by task then subject. */
  listShares(taskId?: string): Share[] {
    const rows =
      taskId === undefined
        ? this.db.all<ShareSql>('SELECT * FROM shares ORDER BY task_id, user_id, group_name')
        : this.db.all<ShareSql>('SELECT * FROM shares WHERE task_id = ? ORDER BY user_id, group_name', [must(checkTaskId(taskId))]);
    return rows.map(shareFromSql);
  }

  /** Sets who may reach a task besides its shares: only its owner, or anyone of the same company. */
  setSharePolicy(taskId: string, policy: SharePolicy, by: Actor): void {
    const task = must(checkTaskId(taskId));
    if (policy !== 'owner' && policy !== 'company') throw new UserError('INVALID_INPUT', `policy ${show(policy)} must be owner or company`);
    this.tx(() => {
      this.db.run(
        `INSERT INTO task_policies (task_id, policy, updated_at, updated_by) VALUES (?, ?, ?, ?)
         ON CONFLICT (task_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
        [task, policy, this.now(), by.name],
      );
      this.bump('identity_version');
      this.audit(by, 'share.policy', task, { policy });
    });
  }

  /** The policy of a task; `owner` when none was set. */
  getSharePolicy(taskId: string): SharePolicy {
    return this.db.get<{ policy: SharePolicy }>('SELECT policy FROM task_policies WHERE task_id = ?', [taskId])?.policy ?? 'owner';
  }

  private checkSubject(subject: ShareSubject): { user: string | null; group: string | null } {
    const hasUser = subject.user !== undefined && subject.user !== null;
    const hasGroup = subject.group !== undefined && subject.group !== null;
    if (hasUser === hasGroup) throw new UserError('INVALID_INPUT', 'a share names exactly one user or one group');
    return hasUser ? { user: must(checkPrincipal(subject.user)), group: null } : { user: null, group: must(checkGroup(subject.group)) };
  }

  private findShare(task: string, s: { user: string | null; group: string | null }): Share | null {
    const r = this.db.get<ShareSql>('SELECT * FROM shares WHERE task_id = ? AND user_id IS ? AND group_name IS ?', [task, s.user, s.group]);
    return r ? shareFromSql(r) : null;
  }

  // ---- edge tables ---------------------------------------------------------------------------

  /** Every user with their admin flag and groups, keyed by user id (for cookie identities at the edge). */
  edgeUserTable(): Record<string, EdgeUser> {
    const out: Record<string, EdgeUser> = {};
    for (const u of this.db.all<{ id: string; admin: number }>('SELECT id, admin FROM users ORDER BY id')) out[u.id] = { a: u.admin === 1, g: [] };
    for (const m of this.db.all<{ user_id: string; group_name: string }>('SELECT user_id, group_name FROM memberships ORDER BY user_id, group_name')) {
      out[m.user_id]?.g.push(m.group_name);
    }
    return out;
  }

  /** Every task with shares or a policy, keyed by task id. */
  edgeShareTable(): Record<string, EdgeShare> {
    const out: Record<string, EdgeShare> = {};
    const entry = (t: string) => (out[t] ??= { p: 'owner', u: [], g: [] });
    for (const p of this.db.all<{ task_id: string; policy: SharePolicy }>('SELECT task_id, policy FROM task_policies ORDER BY task_id')) entry(p.task_id).p = p.policy;
    for (const s of this.listShares()) {
      if (s.user !== null) entry(s.taskId).u.push(s.user);
      else entry(s.taskId).g.push(s.group!);
    }
    return out;
  }

  // ---- token rows (logic in tokens.ts) -------------------------------------------------------

  /** Inserts a token row; CONFLICT when the id is taken. Bumps the version. */
  insertToken(row: TokenRow): void {
    if (this.tokenRow(row.id)) throw new UserError('CONFLICT', `token id ${row.id} is already taken`);
    this.db.run(
      `INSERT INTO tokens (id, secret_sha256, label, principal, created_by, created_at, expires_at, routes, last_used_at, revoked_at, rotated_from, bootstrap)
       VALUES (@id, @secretSha256, @label, @principal, @createdBy, @createdAt, @expiresAt, @routes, @lastUsedAt, @revokedAt, @rotatedFrom, @bootstrap)`,
      { ...row, routes: JSON.stringify(row.routes) },
    );
    this.bump('identity_version');
  }

  /** A token row by id, or null. */
  tokenRow(id: string): TokenRow | null {
    const r = this.db.get<TokenSql>('SELECT * FROM tokens WHERE id = ?', [id]);
    return r ? tokenFromSql(r) : null;
  }

  /** All token rows, oldest first. */
  tokenRows(): TokenRow[] {
    return this.db.all<TokenSql>('SELECT * FROM tokens ORDER BY created_at, id').map(tokenFromSql);
  }

  /** Changes fields of a token row and bumps the version. */
  updateToken(id: string, patch: Partial<Pick<TokenRow, 'secretSha256' | 'label' | 'principal' | 'expiresAt' | 'revokedAt' | 'bootstrap'>>): void {
    const cols: Record<string, string> = {
      secretSha256: 'secret_sha256',
      label: 'label',
      principal: 'principal',
      expiresAt: 'expires_at',
      revokedAt: 'revoked_at',
      bootstrap: 'bootstrap',
    };
    const keys = Object.keys(patch).filter((k) => k in cols && (patch as Record<string, unknown>)[k] !== undefined);
    if (keys.length === 0) return;
    const set = keys.map((k) => `${cols[k]} = @${k}`).join(', ');
    if (this.db.run(`UPDATE tokens SET ${set} WHERE id = @id`, { ...patch, id }).changes === 0) throw notFound('token', id);
    this.bump('identity_version');
  }

  /** Records a use: last_used_at only moves forward. Does not bump the version (it is not pushed). */
  touchToken(id: string, ts: number): void {
    this.db.run('UPDATE tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)', [ts, id, ts]);
  }

  // ---- static routes -------------------------------------------------------------------------

  /** Creates or replaces a static route (validated); keeps created_at; bumps routesVersion. */
  putRoute(input: RouteInput, by: Actor): StoredRoute {
    const name = must(checkRouteName(input.name));
    const hasPath = input.path !== undefined && input.path !== null;
    const hasSub = input.subdomain !== undefined && input.subdomain !== null;
    if (hasPath === hasSub) throw new UserError('INVALID_INPUT', `route ${name} needs exactly one of path and subdomain`);
    const path = hasPath ? must(checkPath(input.path)) : null;
    const subdomain = hasSub ? must(checkSubdomain(input.subdomain)) : null;
    const groups = [...new Set(must(checkList(input.allowedGroups, 'allowed groups', checkGroup)))].sort();
    const backends = must(checkList(input.backends, 'backends', checkBackend));
    const enabled = must(checkBool(input.enabled, 'enabled', true));
    const stripPrefix = must(checkBool(input.stripPrefix, 'strip_prefix', true));
    const description = must(checkText(input.description ?? '', 'description', 200, true));
    const healthCheck = must(checkStoredHealthCheck(input.healthCheck));
    return this.tx(() => {
      // paths compare ignoring case: the edge's path map matches them that way (see merge.ts)
      const clash = this.db.get<{ name: string; path: string | null }>(
        'SELECT name, path FROM static_routes WHERE name <> ? AND (lower(path) IS lower(?) AND path IS NOT NULL OR subdomain IS ? AND subdomain IS NOT NULL)',
        [name, path, subdomain],
      );
      if (clash) throw new UserError('CONFLICT', `route ${show(clash.name)} already uses ${path !== null ? `path ${clash.path ?? path} (paths are compared ignoring case)` : `subdomain ${subdomain}`}`);
      const now = this.now();
      const existed = this.getRoute(name) !== null;
      this.db.run(
        `INSERT INTO static_routes (name, path, subdomain, allowed_groups, backends, enabled, description, strip_prefix, health_path, health_interval_ms, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET path = excluded.path, subdomain = excluded.subdomain, allowed_groups = excluded.allowed_groups,
           backends = excluded.backends, enabled = excluded.enabled, description = excluded.description,
           strip_prefix = excluded.strip_prefix, health_path = excluded.health_path, health_interval_ms = excluded.health_interval_ms,
           updated_at = excluded.updated_at`,
        [name, path, subdomain, JSON.stringify(groups), JSON.stringify(backends), enabled ? 1 : 0, description, stripPrefix ? 1 : 0, healthCheck?.path ?? null, healthCheck?.intervalMs ?? null, now, now],
      );
      this.bump('routes_version');
      this.audit(by, existed ? 'route.update' : 'route.create', name, { path, subdomain, allowedGroups: groups, backends, enabled, stripPrefix, healthCheck });
      return this.getRoute(name)!;
    });
  }

  /** A static route by name, or null. */
  getRoute(name: string): StoredRoute | null {
    const r = this.db.get<RouteSql>('SELECT * FROM static_routes WHERE name = ?', [name]);
    return r ? routeFromSql(r) : null;
  }

  /** All static routes, sorted by name. */
  listRoutes(): StoredRoute[] {
    return this.db.all<RouteSql>('SELECT * FROM static_routes ORDER BY name').map(routeFromSql);
  }

  /** Removes a static route; bumps routesVersion. */
  removeRoute(name: string, by: Actor): void {
    must(checkRouteName(name));
    this.tx(() => {
      if (this.db.run('DELETE FROM static_routes WHERE name = ?', [name]).changes === 0) throw notFound('route', name);
      this.bump('routes_version');
      this.audit(by, 'route.remove', name);
    });
  }

  // ---- TCP ports -----------------------------------------------------------------------------

  /**
   * The live port of a TCP route, allocating one from [start, end] when it has none: the port it
   * had last if free, else the lowest free one. A live port outside the range is released and
   * replaced. Throws TCP_POOL_EXHAUSTED when every port is taken.
   */
  allocatePort(routeId: string, range: { start: number; end: number }): PortAllocation {
    const id = must(checkRouteId(routeId));
    if (!Number.isInteger(range.start) || !Number.isInteger(range.end) || range.start < 1 || range.end > 65535 || range.end < range.start) {
      throw new UserError('INVALID_INPUT', `TCP port range ${range.start}-${range.end} is not a valid range`);
    }
    return this.tx(() => {
      const now = this.now();
      const live = this.livePort(id);
      if (live && live.port >= range.start && live.port <= range.end) return live;
      if (live) this.db.run('UPDATE tcp_ports SET released_at = ? WHERE route_id = ? AND released_at IS NULL', [now, id]);
      const taken = new Set(
        this.db.all<{ port: number }>('SELECT port FROM tcp_ports WHERE released_at IS NULL AND port BETWEEN ? AND ?', [range.start, range.end]).map((r) => r.port),
      );
      const last = this.db.get<{ port: number }>('SELECT port FROM tcp_ports WHERE route_id = ? ORDER BY id DESC LIMIT 1', [id]);
      let port: number | null = null;
      if (last && last.port >= range.start && last.port <= range.end && !taken.has(last.port)) port = last.port;
      for (let p = range.start; port === null && p <= range.end; p++) if (!taken.has(p)) port = p;
      if (port === null) throw new UserError('TCP_POOL_EXHAUSTED', `all ${range.end - range.start + 1} ports of TCP_PORT_START..TCP_PORT_END (${range.start}-${range.end}) are taken`);
      this.db.run('INSERT INTO tcp_ports (route_id, port, allocated_at) VALUES (?, ?, ?)', [id, port, now]);
      return this.livePort(id)!;
    });
  }

  /** Releases the live port of a route; returns it, or null when it had none. */
  releasePort(routeId: string): PortAllocation | null {
    must(checkRouteId(routeId));
    return this.tx(() => {
      const live = this.livePort(routeId);
      if (!live) return null;
      const now = this.now();
      this.db.run('UPDATE tcp_ports SET released_at = ? WHERE route_id = ? AND released_at IS NULL', [now, routeId]);
      return { ...live, releasedAt: now };
    });
  }

  /** Port allocations sorted by port: the live ones, or the whole history with `{ all: true }`. */
  listPorts(opts: { all?: boolean } = {}): PortAllocation[] {
    const where = opts.all ? '' : 'WHERE released_at IS NULL';
    return this.db.all<PortSql>(`SELECT route_id, port, allocated_at, released_at FROM tcp_ports ${where} ORDER BY port, id`).map(portFromSql);
  }

  private livePort(routeId: string): PortAllocation | null {
    const r = this.db.get<PortSql>('SELECT route_id, port, allocated_at, released_at FROM tcp_ports WHERE route_id = ? AND released_at IS NULL', [routeId]);
    return r ? portFromSql(r) : null;
  }
}

interface ShareSql {
  task_id: string;
  user_id: string | null;
  group_name: string | null;
  created_at: number;
  created_by: string;
}

const shareFromSql = (r: ShareSql): Share => ({ taskId: r.task_id, user: r.user_id, group: r.group_name, createdAt: r.created_at, createdBy: r.created_by });

const describe = (s: { user: string | null; group: string | null }) => (s.user !== null ? `user ${show(s.user)}` : `group ${show(s.group)}`);
