import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../../router/errors';
import { memoryLogger } from '../../router/log';
import { ADMIN_PRINCIPAL, ADMIN_TOKEN_LABEL, ensureAdminToken } from '../../router/store/bootstrap';
import { CLI_ACTOR, type Store, openStore } from '../../router/store/store';
import { FAR_FUTURE_MS, createToken, edgeTokenTable, generateToken, listTokens, revokeToken, rotateToken, verifyToken } from '../../router/store/tokens';

const T0 = Date.UTC(2030, 0, 1);
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'appgw-bootstrap-'));
  dirs.push(d);
  return d;
}

const open = (dir: string): Store => openStore({ dataDir: dir, clock: () => T0 });

/** Opens the store, runs the bootstrap, closes; returns what print() got and the result. */
function start(dir: string, adminToken: string | null) {
  const printed: string[] = [];
  const log = memoryLogger();
  const store = open(dir);
  try {
    const result = ensureAdminToken(store, { adminToken }, (t) => printed.push(t), log);
    return { printed, result, log };
  } finally {
    store.close();
  }
}

describe('ensureAdminToken without ADMIN_TOKEN', () => {
  it('generates a token on the first start only, prints it exactly once, stores only its hash', () => {
    const dir = tempDir();
    const first = start(dir, null);
    expect(first.printed).toHaveLength(1);
    expect(first.result.kind).toBe('generated');
    const token = first.printed[0]!;
    const second = start(dir, null);
    const third = start(dir, null);
    expect(second.printed).toEqual([]);
    expect(third.printed).toEqual([]);
    expect(second.result).toEqual({ kind: 'exists', notices: [expect.stringContaining('appgw token create --as admin')] });
    expect(second.log.lines.map((l) => l.msg)).toEqual(second.result.notices);

    const store = open(dir);
    const v = verifyToken(store, token, T0);
    expect(v).toEqual({ ok: true, value: expect.objectContaining({ principal: ADMIN_PRINCIPAL, admin: true, routes: [] }) });
    expect(listTokens(store)).toEqual([expect.objectContaining({ label: ADMIN_TOKEN_LABEL, bootstrap: 'generated', expiresAt: FAR_FUTURE_MS, state: 'active' })]);
    expect(store.getUser(ADMIN_PRINCIPAL)).toMatchObject({ admin: true });
    expect(JSON.stringify(store.listAudit({ limit: 100 }))).not.toContain(token.slice(19));
    for (const l of [...first.log.lines, ...second.log.lines]) expect(JSON.stringify(l)).not.toContain(token.slice(19));
    store.close();
    const bytes = fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f)));
    expect(bytes.some((b) => b.includes(Buffer.from(token.slice(19))))).toBe(false);
  });

  it('prints nothing when the store already holds a token granting as an admin', () => {
    const dir = tempDir();
    const store = open(dir);
    store.addUser({ id: 'root', admin: true }, CLI_ACTOR);
    createToken(store, { label: 'mine', expiresInMs: 86_400_000, as: 'root' }, CLI_ACTOR);
    store.close();
    expect(start(dir, null).printed).toEqual([]);
  });

  it('still counts the bootstrap token as made after it was revoked or rotated', () => {
    const dir = tempDir();
    const token = start(dir, null).printed[0]!;
    const store = open(dir);
    const id = listTokens(store)[0]!.id;
    const rotated = rotateToken(store, id, CLI_ACTOR);
    expect(rotated.record).toMatchObject({ bootstrap: 'generated', expiresAt: FAR_FUTURE_MS, label: ADMIN_TOKEN_LABEL });
    revokeToken(store, rotated.record.id, CLI_ACTOR);
    store.close();
    expect(start(dir, null).printed).toEqual([]);
    expect(token).not.toBe(rotated.token);
  });
});

describe('ensureAdminToken with ADMIN_TOKEN', () => {
  const admin = generateToken().token;

  it('stores exactly that token for admin, prints nothing, and is idempotent', () => {
    const dir = tempDir();
    const a = start(dir, admin);
    expect(a.printed).toEqual([]);
    expect(a.result).toMatchObject({ kind: 'env', changed: true });
    const b = start(dir, admin);
    expect(b.result).toMatchObject({ kind: 'env', changed: false, notices: [] });
    const store = open(dir);
    expect(verifyToken(store, admin, T0)).toMatchObject({ ok: true, value: { principal: 'admin', admin: true } });
    expect(listTokens(store)).toEqual([expect.objectContaining({ label: 'ADMIN_TOKEN', bootstrap: 'env', expiresAt: FAR_FUTURE_MS })]);
    expect(Object.keys(edgeTokenTable(store, T0))).toEqual([admin.split('_')[1]]);
    store.close();
  });

  it('revokes a generated bootstrap token and an older ADMIN_TOKEN: it is the only bootstrap token', () => {
    const dir = tempDir();
    const generated = start(dir, null).printed[0]!;
    const older = generateToken().token;
    start(dir, older);
    const r = start(dir, admin);
    expect(r.result.notices.join(' ')).toContain('revoked');
    const store = open(dir);
    expect(verifyToken(store, generated, T0)).toEqual({ ok: false, reason: 'revoked_token' });
    expect(verifyToken(store, older, T0)).toEqual({ ok: false, reason: 'revoked_token' });
    expect(verifyToken(store, admin, T0).ok).toBe(true);
    expect(listTokens(store).filter((t) => t.bootstrap !== null).map((t) => t.id)).toEqual([admin.split('_')[1]]);
    store.close();
  });

  it('reinstates the token after an admin revoked it, and says so', () => {
    const dir = tempDir();
    start(dir, admin);
    const store = open(dir);
    revokeToken(store, admin.split('_')[1]!, CLI_ACTOR);
    expect(() => rotateToken(store, admin.split('_')[1]!, CLI_ACTOR)).toThrow(/revoked/);
    store.close();
    const r = start(dir, admin);
    expect(r.result).toMatchObject({ kind: 'env', changed: true, notices: [expect.stringContaining('reinstated')] });
    const again = open(dir);
    expect(verifyToken(again, admin, T0).ok).toBe(true);
    expect(() => rotateToken(again, admin.split('_')[1]!, CLI_ACTOR)).toThrow(/ADMIN_TOKEN/);
    again.close();
  });

  it('takes a new secret for the same id', () => {
    const dir = tempDir();
    start(dir, admin);
    const id = admin.split('_')[1]!;
    const rekeyed = `appgw_${id}_${generateToken().secret}`;
    expect(start(dir, rekeyed).result).toMatchObject({ changed: true });
    const store = open(dir);
    expect(verifyToken(store, admin, T0)).toEqual({ ok: false, reason: 'bad_token' });
    expect(verifyToken(store, rekeyed, T0).ok).toBe(true);
    store.close();
  });

  it('is revoked once ADMIN_TOKEN is unset, and no new token is generated', () => {
    const dir = tempDir();
    start(dir, admin);
    const r = start(dir, null);
    expect(r.printed).toEqual([]);
    expect(r.result.notices.join(' ')).toMatch(/no longer set.*revoked/);
    const store = open(dir);
    expect(verifyToken(store, admin, T0)).toEqual({ ok: false, reason: 'revoked_token' });
    store.close();
  });

  it('refuses an ADMIN_TOKEN whose id an ordinary token already uses', () => {
    const dir = tempDir();
    const store = open(dir);
    store.addUser({ id: 'alice' }, CLI_ACTOR);
    const t = createToken(store, { label: 'alice', expiresInMs: 3_600_000, as: 'alice' }, CLI_ACTOR);
    store.close();
    const clash = `appgw_${t.record.id}_${generateToken().secret}`;
    expect(() => start(dir, clash)).toThrow(UserError);
    expect(() => start(dir, clash)).toThrow(/another token/);
  });

  it('refuses an ADMIN_TOKEN that is not a gateway token', () => {
    expect(() => start(tempDir(), 'not-a-token')).toThrow(/ADMIN_TOKEN is not a gateway token/);
  });
});
