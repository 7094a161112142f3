import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { UserError, errorMessage } from '../errors';

/**
 * The SQLite adapter: the only file that imports better-sqlite3. It opens `<DATA_DIR>/appgw.db`
 * (WAL, busy timeout, foreign keys), applies versioned migrations, and turns a corrupt or
 * unreadable file into a UserError instead of ever recreating it.
 */

/** Values SQLite binds: named parameters (`@name`) or positional ones (`?`). */
export type SqlParams = Record<string, unknown> | unknown[];

/** The narrow database handle the store uses; no driver type leaks past this file. */
export interface Db {
  /** Absolute path of the database file. */
  readonly file: string;
  run(sql: string, params?: SqlParams): { changes: number };
  get<T>(sql: string, params?: SqlParams): T | undefined;
  all<T>(sql: string, params?: SqlParams): T[];
  /** Runs `fn` in one IMMEDIATE transaction (nested calls become savepoints); rolls back on throw. */
  tx<T>(fn: () => T): T;
  close(): void;
}

/** One schema step. Versions start at 1 and are applied in increasing order, each in its own transaction. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The database file name inside DATA_DIR. */
export const DB_FILE_NAME = 'appgw.db';
const BUSY_TIMEOUT_MS = 5000;
/** SQLite result codes that mean the file itself is not a usable database. */
const UNREADABLE_CODES = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_CANTOPEN', 'SQLITE_IOERR', 'SQLITE_READONLY', 'SQLITE_PERM', 'SQLITE_AUTH']);

function unreadable(file: string, why: string): UserError {
  return new UserError(
    'STORE_UNREADABLE',
    `the store ${file} cannot be used (${why}); it was left untouched. Restore it from a backup, or move it aside ` +
      `to start with an empty store (tokens, users, groups and static routes in it would be lost)`,
  );
}

function sqliteCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : null;
}

/** Maps driver errors that mean "this file is broken" to STORE_UNREADABLE; everything else passes through. */
function translate(file: string, err: unknown): unknown {
  const code = sqliteCode(err);
  if (code && [...UNREADABLE_CODES].some((c) => code === c || code.startsWith(`${c}_`))) {
    return unreadable(file, errorMessage(err));
  }
  return err;
}

function checkMigrations(migrations: Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration ${m.name} has version ${m.version}, expected ${i + 1}`);
  });
}

/**
 * Opens (creating when missing) the database in `dataDir` and applies pending migrations.
 * Creates `dataDir` (mode 0700) when missing. Throws a UserError STORE_UNREADABLE naming the
 * file when it is not a readable SQLite database or was written by a newer schema.
 */
export function openDb(dataDir: string, migrations: Migration[], fileName = DB_FILE_NAME): Db {
  checkMigrations(migrations);
  const file = path.resolve(dataDir, fileName);
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  } catch (err) {
    throw unreadable(file, `cannot create its directory: ${errorMessage(err)}`);
  }
  let existed = false;
  try {
    const st = fs.statSync(file);
    existed = true;
    if (!st.isFile()) throw unreadable(file, 'not a regular file');
    fs.accessSync(file, fs.constants.R_OK | fs.constants.W_OK);
  } catch (err) {
    if (err instanceof UserError) throw err;
    if (sqliteCode(err) !== 'ENOENT') throw unreadable(file, errorMessage(err));
  }

  let raw: Database.Database;
  try {
    raw = new Database(file, { fileMustExist: existed });
  } catch (err) {
    throw unreadable(file, errorMessage(err));
  }
  try {
    if (!existed) fs.chmodSync(file, 0o600);
    raw.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // Reading the schema forces SQLite to parse the header and page 1: garbage fails here.
    raw.prepare('SELECT count(*) FROM sqlite_master').get();
    const mode = raw.pragma('journal_mode = WAL', { simple: true });
    if (String(mode).toLowerCase() !== 'wal') throw unreadable(file, `cannot switch to WAL journal mode (got ${String(mode)})`);
    raw.pragma('synchronous = NORMAL');
    raw.pragma('foreign_keys = ON');
    migrate(raw, file, migrations);
  } catch (err) {
    raw.close();
    const t = translate(file, err);
    if (t instanceof UserError) throw t;
    throw unreadable(file, errorMessage(err));
  }
  return wrap(raw, file);
}

function migrate(raw: Database.Database, file: string, migrations: Migration[]): void {
  raw.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL
  )`);
  const applied = raw.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all() as Array<{ version: number; name: string }>;
  const latest = applied.length ? applied[applied.length - 1]!.version : 0;
  if (latest > migrations.length) {
    throw unreadable(file, `it has schema version ${latest} but this appgw knows versions up to ${migrations.length}; run a newer appgw`);
  }
  for (const a of applied) {
    const known = migrations[a.version - 1];
    if (!known || known.name !== a.name) throw unreadable(file, `its migration ${a.version} is "${a.name}", not one this appgw knows`);
  }
  const record = raw.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  const done = raw.prepare('SELECT 1 FROM schema_migrations WHERE version = ?');
  for (const m of migrations.slice(latest)) {
    try {
      raw.transaction(() => {
        // Another process (the router and a CLI command starting together) may have applied it meanwhile.
        if (done.get(m.version)) return;
        raw.exec(m.sql);
        record.run(m.version, m.name, Date.now());
      }).immediate();
    } catch (err) {
      throw unreadable(file, `migration ${m.version} "${m.name}" failed: ${errorMessage(err)}; the schema was left at version ${m.version - 1}`);
    }
  }
}

function wrap(raw: Database.Database, file: string): Db {
  const cache = new Map<string, Database.Statement>();
  const stmt = (sql: string): Database.Statement => {
    let s = cache.get(sql);
    if (!s) {
      s = raw.prepare(sql);
      cache.set(sql, s);
    }
    return s;
  };
  const guard = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw translate(file, err);
    }
  };
  const bind = (params: SqlParams | undefined): unknown[] => (params === undefined ? [] : Array.isArray(params) ? params : [params]);
  return {
    file,
    run: (sql, params) => guard(() => ({ changes: stmt(sql).run(...bind(params)).changes })),
    get: <T>(sql: string, params?: SqlParams) => guard(() => stmt(sql).get(...bind(params)) as T | undefined),
    all: <T>(sql: string, params?: SqlParams) => guard(() => stmt(sql).all(...bind(params)) as T[]),
    tx: <T>(fn: () => T) => guard(() => raw.transaction(fn).immediate()),
    close: () => {
      if (raw.open) raw.close();
    },
  };
}
