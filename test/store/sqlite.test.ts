import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Migration, DB_FILE_NAME, openDb } from '../../router/store/sqlite';
import { MIGRATIONS, openStore } from '../../router/store/store';
import { thrown } from '../support/errors';

const dirs: string[] = [];
const tempDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'appgw-sqlite-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const m1: Migration = { version: 1, name: 'one', sql: 'CREATE TABLE a (x INTEGER)' };
const m2: Migration = { version: 2, name: 'two', sql: 'CREATE TABLE b (y INTEGER); INSERT INTO a (x) VALUES (1)' };

describe('openDb', () => {
  it('creates a missing DATA_DIR with mode 0700 and the database with mode 0600', () => {
    const dir = path.join(tempDir(), 'nested', 'data');
    const db = openDb(dir, [m1]);
    db.close();
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(dir, DB_FILE_NAME)).mode & 0o777).toBe(0o600);
  });

  it('uses WAL, a busy timeout and foreign keys', () => {
    const db = openDb(tempDir(), [m1]);
    expect(db.get<{ journal_mode: string }>('PRAGMA journal_mode')!.journal_mode).toBe('wal');
    expect(db.get<{ timeout: number }>('PRAGMA busy_timeout')!.timeout).toBeGreaterThanOrEqual(1000);
    expect(db.get<{ foreign_keys: number }>('PRAGMA foreign_keys')!.foreign_keys).toBe(1);
    db.close();
  });

  it('applies migrations in order, records them, and is idempotent on reopen', () => {
    const dir = tempDir();
    openDb(dir, [m1]).close();
    const db = openDb(dir, [m1, m2]);
    expect(db.all('SELECT version, name FROM schema_migrations ORDER BY version')).toEqual([
      { version: 1, name: 'one' },
      { version: 2, name: 'two' },
    ]);
    db.close();
    const again = openDb(dir, [m1, m2]);
    expect(again.get<{ n: number }>('SELECT count(*) AS n FROM a')!.n).toBe(1);
    expect(again.get<{ n: number }>('SELECT count(*) AS n FROM schema_migrations')!.n).toBe(2);
    again.close();
  });

  it('runs each migration in a transaction: a failing one leaves no trace', () => {
    const dir = tempDir();
    const bad: Migration = { version: 2, name: 'bad', sql: 'CREATE TABLE c (z INTEGER); INSERT INTO nope VALUES (1)' };
    const e = thrown(() => openDb(dir, [m1, bad]));
    expect(e.message).toMatch(/migration 2 "bad" failed: .*left at version 1/);
    const db = openDb(dir, [m1]);
    expect(db.get("SELECT name FROM sqlite_master WHERE name = 'c'")).toBeUndefined();
    expect(db.all('SELECT version FROM schema_migrations')).toEqual([{ version: 1 }]);
    db.close();
  });

  it('refuses a database written by a newer schema', () => {
    const dir = tempDir();
    openDb(dir, [m1, m2]).close();
    const e = thrown(() => openDb(dir, [m1]));
    expect(e.code).toBe('STORE_UNREADABLE');
    expect(e.message).toContain('schema version 2');
  });

  it('refuses migrations that are not numbered 1..n', () => {
    expect(() => openDb(tempDir(), [m2])).toThrow(/expected 1/);
  });

  it('rolls back a transaction that throws', () => {
    const db = openDb(tempDir(), [m1]);
    expect(() =>
      db.tx(() => {
        db.run('INSERT INTO a (x) VALUES (?)', [7]);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(db.get<{ n: number }>('SELECT count(*) AS n FROM a')!.n).toBe(0);
    db.close();
  });
});

describe('concurrent opens', () => {
  /** Opens the store in a separate node process (the router and a CLI command starting together). */
  function openInChild(dir: string): Promise<{ code: number | null; err: string }> {
    const root = path.resolve(__dirname, '../..');
    const script = `require(require.resolve('tsx/cjs', { paths: [${JSON.stringify(root)}] }));
      require(${JSON.stringify(path.join(root, 'router/store/store.ts'))}).openStore({ dataDir: process.argv[1] }).close();`;
    return new Promise((resolve) => {
      const child = spawn(process.execPath, ['-e', script, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('exit', (code) => resolve({ code, err }));
    });
  }

  it('several processes opening a fresh store at once apply each migration exactly once', async () => {
    const dir = tempDir();
    const results = await Promise.all(Array.from({ length: 6 }, () => openInChild(dir)));
    expect(results.filter((r) => r.code !== 0).map((r) => r.err)).toEqual([]);
    const db = openDb(dir, MIGRATIONS);
    expect(db.all('SELECT version FROM schema_migrations')).toEqual(MIGRATIONS.map((m) => ({ version: m.version })));
    db.close();
  });
});

describe('a corrupt or unreadable database', () => {
  const cases: Array<[string, (file: string) => void]> = [
    ['garbage bytes', (f) => fs.writeFileSync(f, Buffer.from('this is not a database, just some text\n'.repeat(200)))],
    ['random bytes', (f) => fs.writeFileSync(f, Buffer.from(Array.from({ length: 8192 }, (_, i) => (i * 7919 + 13) % 256)))],
    ['a valid header followed by garbage pages', (f) => {
      const d = path.dirname(f);
      const s = openStore({ dataDir: d });
      s.close();
      const buf = fs.readFileSync(f);
      for (let i = 100; i < buf.length; i++) buf[i] = (i * 31) % 256;
      fs.writeFileSync(f, buf);
    }],
    ['a directory in place of the file', (f) => fs.mkdirSync(f)],
  ];

  it.each(cases)('%s: throws STORE_UNREADABLE naming the file, and leaves it untouched', (_name, damage) => {
    const dir = tempDir();
    const file = path.join(dir, DB_FILE_NAME);
    damage(file);
    const before = fs.statSync(file).isFile() ? fs.readFileSync(file) : null;
    const e = thrown(() => openStore({ dataDir: dir }));
    expect(e.code).toBe('STORE_UNREADABLE');
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/backup|move it aside/);
    expect(e.message).not.toContain('\n');
    if (before) expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.readdirSync(dir)).toEqual([DB_FILE_NAME]);
  });

  const rootUser = typeof process.getuid === 'function' && process.getuid() === 0;
  (rootUser ? it.skip : it)('an unreadable file (permissions): STORE_UNREADABLE (skipped as root, who reads any file)', () => {
    const dir = tempDir();
    openStore({ dataDir: dir }).close();
    const file = path.join(dir, DB_FILE_NAME);
    fs.chmodSync(file, 0o000);
    expect(thrown(() => openStore({ dataDir: dir })).code).toBe('STORE_UNREADABLE');
  });

  it('the store schema is versioned through schema_migrations', () => {
    const dir = tempDir();
    openStore({ dataDir: dir }).close();
    const db = openDb(dir, MIGRATIONS);
    expect(db.all<{ version: number }>('SELECT version FROM schema_migrations').map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
    db.close();
  });
});
