import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI_ACTOR, type Store, openStore } from '../../router/store/store';
import {
  FAR_FUTURE_MS,
  createToken,
  edgeTokenTable,
  generateToken,
  hashSecret,
  listTokens,
  markUsed,
  parseExpiresIn,
  parseToken,
  revokeToken,
  rotateToken,
  verifyToken,
} from '../../router/store/tokens';
import { thrown } from '../support/errors';

const T0 = Date.UTC(2030, 0, 1);
const HOUR = 3_600_000;
const DAY = 86_400_000;

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function fixture(tokenMaxDays = 90): { store: Store; dir: string; clock: { now: number } } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appgw-tokens-'));
  dirs.push(dir);
  const clock = { now: T0 };
  const store = openStore({ dataDir: dir, tokenMaxDays, clock: () => clock.now });
  store.addUser({ id: 'alice' }, CLI_ACTOR);
  store.addUser({ id: 'ci-bot', kind: 'service' }, CLI_ACTOR);
  store.addUser({ id: 'root', admin: true }, CLI_ACTOR);
  store.createGroup({ name: 'ml-team' }, CLI_ACTOR);
  store.addMember('ml-team', 'alice', CLI_ACTOR);
  return { store, dir, clock };
}

function parts(token: string): { id: string; secret: string } {
  const p = parseToken(token);
  if (!p.ok) throw new Error(p.reason);
  return p.value;
}
const secretOf = (token: string) => parts(token).secret;

describe('parseToken', () => {
  const good = generateToken().token;

  it('accepts a generated token and splits id and secret', () => {
    const t = generateToken();
    expect(t.id).toMatch(/^[a-z2-7]{12}$/);
    expect(t.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(parseToken(t.token)).toEqual({ ok: true, value: { id: t.id, secret: t.secret } });
  });

  it('keeps underscores and dashes of the secret in the secret', () => {
    const tok = 'appgw_abcdefgh2345_' + '_-'.repeat(12);
    expect(parseToken(tok)).toEqual({ ok: true, value: { id: 'abcdefgh2345', secret: '_-'.repeat(12) } });
  });

  const malformed: Array<[string, unknown]> = [
    ['empty string', ''],
    ['not a string', 12345],
    ['null', null],
    ['an object', { token: good }],
    ['prefix only', 'appgw_'],
    ['wrong prefix', good.replace(/^appgw_/, 'appgx_')],
    ['upper-case prefix', good.replace(/^appgw_/, 'APPGW_')],
    ['Bearer prefix kept', `Bearer ${good}`],
    ['leading space', ` ${good}`],
    ['trailing newline', `${good}\n`],
    ['truncated secret', good.slice(0, 6 + 12 + 1 + 10)],
    ['missing secret', good.slice(0, 6 + 12 + 1)],
    ['missing id', `appgw__${'a'.repeat(43)}`],
    ['id too short', `appgw_abc_${'a'.repeat(43)}`],
    ['id too long', `appgw_${'a'.repeat(33)}_${'a'.repeat(43)}`],
    ['upper-case id', `appgw_ABCDEFGHIJKL_${'a'.repeat(43)}`],
    ['base64 padding in secret', `${good}=`],
    ['plus sign in secret', `appgw_abcdefghijkl_${'a'.repeat(40)}+/A`],
    ['a space inside', good.slice(0, 25) + ' ' + good.slice(26)],
    ['unicode in secret', `appgw_abcdefghijkl_${'a'.repeat(40)}é`],
    ['unicode look-alike prefix', good.replace('a', 'а')],
    ['zero-width character', good.slice(0, 20) + '\u200b' + good.slice(20)],
    ['NUL byte', good.slice(0, 20) + '\0' + good.slice(20)],
    ['10 kB value', 'appgw_abcdefghijkl_' + 'A'.repeat(10_240)],
    ['10 kB of garbage', '\u0000\u00ff'.repeat(5_120)],
    ['two tokens joined by a comma (repeated header)', `${good}, ${good}`],
  ];

  it.each(malformed)('rejects %s', (_name, value) => {
    const r = parseToken(value);
    expect(r.ok).toBe(false);
    if (!r.ok && typeof value === 'string' && value.length > 30) expect(r.reason).not.toContain(value.slice(19, 40));
  });
});

describe('parseExpiresIn', () => {
  it.each([
    ['30d', 30 * DAY],
    ['12h', 12 * HOUR],
    ['90m', 90 * 60_000],
    ['3600s', HOUR],
  ])('%s', (text, ms) => expect(parseExpiresIn(text)).toEqual({ ok: true, value: ms }));

  it.each(['', '30', '0d', '-1d', '1.5d', '1w', 'forever', '30 d', '99999999d'])('rejects %j', (text) => expect(parseExpiresIn(text).ok).toBe(false));
});

describe('createToken / verifyToken', () => {
  it('creates a token that verifies as its principal with groups and scope', () => {
    const { store } = fixture();
    const c = createToken(store, { label: 'laptop', expiresInMs: 30 * DAY, as: 'alice', routes: ['llm', 'embed', 'llm'] }, CLI_ACTOR);
    expect(c.token).toMatch(/^appgw_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$/);
    expect(c.record).toMatchObject({ label: 'laptop', grantsAs: 'alice', createdBy: 'cli', expiresAt: T0 + 30 * DAY, routes: ['embed', 'llm'], state: 'active' });
    expect(verifyToken(store, c.token, T0 + 1000)).toEqual({
      ok: true,
      value: { id: c.record.id, principal: 'alice', admin: false, groups: ['ml-team'], routes: ['embed', 'llm'], expiresAt: T0 + 30 * DAY },
    });
  });

  it('right id, wrong secret: bad_token; unknown id: unknown_token; garbage: malformed_token', () => {
    const { store } = fixture();
    const c = createToken(store, { label: 'x', expiresInMs: DAY, as: 'alice' }, CLI_ACTOR);
    const other = generateToken();
    expect(verifyToken(store, `appgw_${c.record.id}_${other.secret}`, T0)).toEqual({ ok: false, reason: 'bad_token' });
    expect(verifyToken(store, c.token.slice(0, -1) + (c.token.endsWith('A') ? 'B' : 'A'), T0)).toEqual({ ok: false, reason: 'bad_token' });
    expect(verifyToken(store, other.token, T0)).toEqual({ ok: false, reason: 'unknown_token' });
    expect(verifyToken(store, 'hello', T0)).toEqual({ ok: false, reason: 'malformed_token' });
  });

  it('expires at expires_at', () => {
    const { store } = fixture();
    const c = createToken(store, { label: 'x', expiresInMs: HOUR, as: 'alice' }, CLI_ACTOR);
    expect(verifyToken(store, c.token, T0 + HOUR - 1).ok).toBe(true);
    expect(verifyToken(store, c.token, T0 + HOUR)).toEqual({ ok: false, reason: 'expired_token' });
    expect(listTokens(store, T0 + HOUR)[0]!.state).toBe('expired');
  });

  it('defaults the principal to the acting principal, and requires one from the CLI', () => {
    const { store } = fixture();
    const c = createToken(store, { label: 'mine', expiresInMs: DAY }, { name: 'root', principal: 'root', client: '10.0.0.9' });
    expect(c.record.grantsAs).toBe('root');
    expect(c.record.createdBy).toBe('root');
    expect(thrown(() => createToken(store, { label: 'x', expiresInMs: DAY }, CLI_ACTOR)).message).toContain('--as');
  });

  it.each<[string, Parameters<typeof createToken>[1], string, RegExp]>([
    ['a missing label', { label: '', expiresInMs: DAY, as: 'alice' }, 'INVALID_INPUT', /label must not be empty/],
    ['a blank label', { label: '   ', expiresInMs: DAY, as: 'alice' }, 'INVALID_INPUT', /label must not be empty/],
    ['a label of 101 characters', { label: 'x'.repeat(101), expiresInMs: DAY, as: 'alice' }, 'INVALID_INPUT', /longer than 100/],
    ['a label with a newline', { label: 'a\nb', expiresInMs: DAY, as: 'alice' }, 'INVALID_INPUT', /control/],
    ['a label with an escape sequence', { label: 'a\u001b[31mb', expiresInMs: DAY, as: 'alice' }, 'INVALID_INPUT', /control/],
    ['no expiry', { label: 'x', as: 'alice' }, 'TOKEN_INVALID', /needs an expiry/],
    ['an expiry in the past', { label: 'x', expiresAt: T0 - 1, as: 'alice' }, 'TOKEN_INVALID', /future/],
    ['a lifetime beyond TOKEN_MAX_DAYS', { label: 'x', expiresInMs: 91 * DAY, as: 'alice' }, 'TOKEN_INVALID', /91 days is beyond TOKEN_MAX_DAYS \(90 days\)/],
    ['an unknown principal', { label: 'x', expiresInMs: DAY, as: 'mallory' }, 'NOT_FOUND', /mallory.*appgw user add/],
    ['a bad principal', { label: 'x', expiresInMs: DAY, as: 'a b' }, 'INVALID_INPUT', /user/],
    ['a bad route name', { label: 'x', expiresInMs: DAY, as: 'alice', routes: ['LLM!'] }, 'INVALID_INPUT', /route name/],
  ])('refuses %s', (_name, input, code, message) => {
    const { store } = fixture();
    const e = thrown(() => createToken(store, input, CLI_ACTOR));
    expect(e.code).toBe(code);
    expect(e.message).toMatch(message);
    expect(listTokens(store)).toHaveLength(0);
  });

  it('accepts exactly TOKEN_MAX_DAYS and a unicode label', () => {
    const { store } = fixture(7);
    expect(createToken(store, { label: 'Ünïcödé ラベル', expiresInMs: 7 * DAY, as: 'alice' }, CLI_ACTOR).record.expiresAt).toBe(T0 + 7 * DAY);
    expect(thrown(() => createToken(store, { label: 'x', expiresInMs: 7 * DAY + 1000, as: 'alice' }, CLI_ACTOR)).message).toContain('TOKEN_MAX_DAYS (7 days)');
  });
});

describe('revoke, rotate, markUsed', () => {
  it('revokes: verification fails at once, revoking again changes nothing', () => {
    const { store } = fixture();
    const c = createToken(store, { label: 'x', expiresInMs: DAY, as: 'alice' }, CLI_ACTOR);
    const v0 = store.version();
    expect(revokeToken(store, c.record.id, CLI_ACTOR)).toMatchObject({ changed: true, record: { state: 'revoked', revokedAt: T0 } });
    expect(store.version()).toBeGreaterThan(v0);
    expect(verifyToken(store, c.token, T0)).toEqual({ ok: false, reason: 'revoked_token' });
    expect(revokeToken(store, c.record.id, CLI_ACTOR).changed).toBe(false);
    expect(thrown(() => revokeToken(store, 'zzzzzzzzzzzz', CLI_ACTOR)).code).toBe('NOT_FOUND');
    expect(thrown(() => revokeToken(store, "x' OR 1=1 --", CLI_ACTOR)).code).toBe('INVALID_INPUT');
  });

  it('rotates without grace: the old token is revoked now, the new one has the same label, scope, principal and lifetime', () => {
    const { store, clock } = fixture();
    const c = createToken(store, { label: 'ci', expiresInMs: 10 * DAY, as: 'ci-bot', routes: ['llm'] }, CLI_ACTOR);
    clock.now = T0 + DAY;
    const r = rotateToken(store, c.record.id, CLI_ACTOR);
    expect(r.token).not.toBe(c.token);
    expect(r.record).toMatchObject({ label: 'ci', grantsAs: 'ci-bot', routes: ['llm'], rotatedFrom: c.record.id, expiresAt: T0 + 11 * DAY, state: 'active' });
    expect(r.old.state).toBe('revoked');
    expect(verifyToken(store, c.token, clock.now)).toEqual({ ok: false, reason: 'revoked_token' });
    expect(verifyToken(store, r.token, clock.now).ok).toBe(true);
  });

  it('rotates with grace: the old token works until now + grace, then expires', () => {
    const { store } = fixture();
    const c = createToken(store, { label: 'ci', expiresInMs: 10 * DAY, as: 'ci-bot' }, CLI_ACTOR);
    const r = rotateToken(store, c.record.id, CLI_ACTOR, 600);
    expect(r.old).toMatchObject({ state: 'active', expiresAt: T0 + 600_000, revokedAt: null });
    expect(verifyToken(store, c.token, T0 + 599_000).ok).toBe(true);
    expect(verifyToken(store, c.token, T0 + 600_000)).toEqual({ ok: false, reason: 'expired_token' });
    expect(verifyToken(store, r.token, T0 + 600_000).ok).toBe(true);
  });

  it('a grace never extends the old token beyond its own expiry', () => {
    const { store } = fixture();
    const c = createToken(store, { label: 'ci', expiresInMs: HOUR, as: 'ci-bot' }, CLI_ACTOR);
    expect(rotateToken(store, c.record.id, CLI_ACTOR, 7 * 86_400).old.expiresAt).toBe(T0 + HOUR);
  });

  it('refuses to rotate a revoked or expired token', () => {
    const { store, clock } = fixture();
    const a = createToken(store, { label: 'a', expiresInMs: HOUR, as: 'alice' }, CLI_ACTOR);
    const b = createToken(store, { label: 'b', expiresInMs: HOUR, as: 'alice' }, CLI_ACTOR);
    revokeToken(store, a.record.id, CLI_ACTOR);
    expect(thrown(() => rotateToken(store, a.record.id, CLI_ACTOR)).message).toContain('is revoked');
    clock.now = T0 + 2 * HOUR;
    expect(thrown(() => rotateToken(store, b.record.id, CLI_ACTOR)).message).toContain('is expired');
  });

  it('markUsed records the last use and only moves forward', () => {
    const { store } = fixture();
    const c = createToken(store, { label: 'x', expiresInMs: DAY, as: 'alice' }, CLI_ACTOR);
    const v = store.version();
    markUsed(store, c.record.id, T0 + 5000);
    markUsed(store, c.record.id, T0 + 1000);
    expect(listTokens(store)[0]!.lastUsedAt).toBe(T0 + 5000);
    expect(store.version()).toBe(v);
  });

  it('removing a user revokes the tokens granting access as them', () => {
    const { store } = fixture();
    const c = createToken(store, { label: 'x', expiresInMs: DAY, as: 'alice' }, CLI_ACTOR);
    store.removeUser('alice', CLI_ACTOR);
    expect(verifyToken(store, c.token, T0)).toEqual({ ok: false, reason: 'revoked_token' });
  });
});

describe('edgeTokenTable', () => {
  it('holds live tokens only, with digest, user, admin flag, groups, scope and expiry in seconds', () => {
    const { store, clock } = fixture();
    const live = createToken(store, { label: 'live', expiresInMs: 2 * HOUR, as: 'alice', routes: ['llm'] }, CLI_ACTOR);
    const admin = createToken(store, { label: 'admin', expiresInMs: 2 * HOUR, as: 'root' }, CLI_ACTOR);
    const revoked = createToken(store, { label: 'revoked', expiresInMs: 2 * HOUR, as: 'alice' }, CLI_ACTOR);
    const expired = createToken(store, { label: 'expired', expiresInMs: HOUR, as: 'alice' }, CLI_ACTOR);
    revokeToken(store, revoked.record.id, CLI_ACTOR);
    clock.now = T0 + HOUR;
    const table = edgeTokenTable(store, clock.now);
    expect(Object.keys(table).sort()).toEqual([live.record.id, admin.record.id].sort());
    expect(table[live.record.id]).toEqual({
      h: hashSecret(secretOf(live.token)),
      u: 'alice',
      a: false,
      g: ['ml-team'],
      r: ['llm'],
      e: Math.floor((T0 + 2 * HOUR) / 1000),
    });
    expect(table[admin.record.id]).toMatchObject({ u: 'root', a: true, g: [], r: [] });
    expect(table[expired.record.id]).toBeUndefined();
  });
});

describe('the plaintext secret is never stored or shown', () => {
  it('appears nowhere in the database file, its WAL or shm, listTokens or the audit log', () => {
    const { store, dir } = fixture();
    const tokens: string[] = [];
    for (let i = 0; i < 5; i++) tokens.push(createToken(store, { label: `t${i}`, expiresInMs: DAY, as: 'alice', routes: ['llm'] }, CLI_ACTOR).token);
    const rotated = rotateToken(store, parts(tokens[0]!).id, CLI_ACTOR, 60);
    tokens.push(rotated.token);

    const raw = () =>
      fs
        .readdirSync(dir)
        .filter((f) => f.startsWith('appgw.db'))
        .map((f) => fs.readFileSync(path.join(dir, f)));
    const search = (needle: string) => raw().some((buf) => buf.includes(Buffer.from(needle, 'utf8')));

    // While open: the rows sit in the WAL. Prove we are reading the right bytes: the digests are there.
    expect(fs.readdirSync(dir)).toEqual(expect.arrayContaining(['appgw.db', 'appgw.db-wal']));
    for (const t of tokens) {
      expect(search(hashSecret(secretOf(t)))).toBe(true);
      expect(search(secretOf(t))).toBe(false);
      expect(search(t)).toBe(false);
    }
    const views = JSON.stringify(listTokens(store));
    const audit = JSON.stringify(store.listAudit({ limit: 1000 }));
    for (const t of tokens) {
      for (const text of [views, audit]) {
        expect(text).not.toContain(secretOf(t));
        expect(text).not.toContain(hashSecret(secretOf(t)));
      }
    }
    // After a checkpoint (close), the main file holds everything; still no secret.
    store.close();
    for (const t of tokens) {
      expect(search(hashSecret(secretOf(t)))).toBe(true);
      expect(search(secretOf(t))).toBe(false);
    }
  });

  it('bootstrap tokens far in the future are still bounded to a finite expiry', () => {
    expect(FAR_FUTURE_MS).toBe(Date.UTC(9999, 11, 31, 23, 59, 59));
  });
});
