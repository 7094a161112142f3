import { deltaBody, diffData, encodeData, fullBody } from '../../router/proxy/push-delta';
import type { PushData } from '../../router/model/push-payload';

const data = (tokens: string[], extra: Partial<PushData> = {}): PushData => ({
  routes: { 'e:abc': { n: 'abc', k: 'e', b: [['127.0.0.1', 8000]], s: true, o: 'alice' } },
  tokens: Object.fromEntries(tokens.map((id) => [id, { u: id, h: 'f'.repeat(64), a: false, g: [], r: [], e: 2000000000 }])),
  users: {},
  settings: { clearml_cookie: 'session', secure: false, read_timeout_s: 3600 },
  ...extra,
});

describe('push deltas', () => {
  test('a revocation among 12,000 tokens is one deleted key, a few dozen bytes', () => {
    const ids = Array.from({ length: 12000 }, (_, i) => `t${i}`);
    const before = encodeData(data(ids));
    const after = encodeData(data(ids.filter((id) => id !== 't42')));
    const d = diffData(before, after)!;
    expect(d).toEqual({ set: {}, del: ['t:t42'], settings: null });
    const body = deltaBody('ep', 8, 7, d);
    expect(JSON.parse(body)).toEqual({ delta: true, epoch: 'ep', version: 8, base: 7, set: {}, del: ['t:t42'] });
    expect(body.length).toBeLessThan(100);
    expect(fullBody('ep', 8, data(ids)).length).toBeGreaterThan(1_000_000);
  });

  test('changed and new records are set as their JSON; settings only when they change; nothing changed is null', () => {
    const before = encodeData(data(['a', 'b']));
    const next = data(['a', 'c'], { settings: { clearml_cookie: 'sess', secure: true, read_timeout_s: 60 } });
    next.routes['e:abc']!.b = [['127.0.0.2', 8000]];
    const d = diffData(before, encodeData(next))!;
    expect(Object.keys(d.set).sort()).toEqual(['r:e:abc', 't:c']);
    expect(JSON.parse(d.set['r:e:abc']!)).toMatchObject({ b: [['127.0.0.2', 8000]] });
    expect(d.del).toEqual(['t:b']);
    expect(JSON.parse(d.settings!)).toEqual({ clearml_cookie: 'sess', secure: true, read_timeout_s: 60 });
    expect(JSON.parse(deltaBody('ep', 2, 1, d)).settings).toEqual({ clearml_cookie: 'sess', secure: true, read_timeout_s: 60 });
    expect(diffData(encodeData(next), encodeData(structuredClone(next)))).toBeNull();
  });

  test('a full body carries epoch, version and every table', () => {
    const b = JSON.parse(fullBody('ep', 3, data(['a'])));
    expect(b).toMatchObject({ epoch: 'ep', version: 3, routes: { 'e:abc': { n: 'abc' } }, tokens: { a: { u: 'a' } }, users: {} });
  });
});
