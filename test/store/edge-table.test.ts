import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI_ACTOR, openStore } from '../../router/store/store';
import { createToken, edgeTokenTable, revokeToken } from '../../router/store/tokens';
import { encodeData } from '../../router/proxy/push-delta';

/**
 * The edge's token table hands out the same record object for an unchanged token, so the router's
 * push encoder (which remembers the JSON of objects it has seen) serialises only what changed.
 */
describe('edgeTokenTable: unchanged tokens keep their record object', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appgw-edge-table-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('same object while unchanged; a new one when the token, its user or its groups change; gone when revoked', () => {
    const store = openStore({ dataDir: dir });
    store.addUser({ id: 'alice' }, CLI_ACTOR);
    store.createGroup({ name: 'ml-team' }, CLI_ACTOR);
    const a = createToken(store, { label: 'a', expiresInMs: 3600_000, as: 'alice' }, CLI_ACTOR).record.id;
    const b = createToken(store, { label: 'b', expiresInMs: 3600_000, as: 'alice' }, CLI_ACTOR).record.id;
    const now = Date.now();
    const t1 = edgeTokenTable(store, now);
    const t2 = edgeTokenTable(store, now);
    expect(t2[a]).toBe(t1[a]);
    expect(t2[b]).toBe(t1[b]);
    // a group membership changes what the edge must know of both tokens
    store.addMember('ml-team', 'alice', CLI_ACTOR);
    const t3 = edgeTokenTable(store, now);
    expect(t3[a]).not.toBe(t2[a]);
    expect(t3[a]!.g).toEqual(['ml-team']);
    revokeToken(store, b, CLI_ACTOR);
    const t4 = edgeTokenTable(store, Date.now() + 1);
    expect(t4[a]).toBe(t3[a]);
    expect(t4[b]).toBeUndefined();
    store.close();
  });

  test('the push encoder serialises a record object once', () => {
    const rec = { h: 'f'.repeat(64), u: 'alice', a: false, g: [], r: [], e: 2_000_000_000 };
    const cache = new WeakMap<object, string>();
    const data = { routes: {}, tokens: { x: rec }, users: {}, settings: { clearml_cookie: 'c', secure: false, read_timeout_s: 1 } };
    expect(encodeData(data, cache).records.get('t:x')).toBe(JSON.stringify(rec));
    // what the encoder remembered is what it uses: the object is not serialised again
    cache.set(rec, '"remembered"');
    expect(encodeData(data, cache).records.get('t:x')).toBe('"remembered"');
    expect(encodeData(data).records.get('t:x')).toBe(JSON.stringify(rec));
  });
});
