import { merge, type ProviderViews } from '../../router/model/merge';
import type { Snapshot, StaticRoute } from '../../router/model/types';

const route = (name: string, path: string, provider: string): StaticRoute => ({
  name, path, subdomain: null, backends: [], allowedGroups: [], stripPrefix: true, enabled: true, provider,
});
const ready = (snapshot: Partial<Snapshot>) => ({
  state: { kind: 'ready' as const, snapshot: { ephemeral: [], static: [], bindings: [], tcp: [], ...snapshot }, at: 0, degradedSince: null, error: null },
  rejections: [],
});

describe('merge: static path routes', () => {
  test('paths that differ only in case clash (the edge matches them ignoring case); the earlier provider wins', () => {
    const views: ProviderViews = new Map([
      ['store', ready({ static: [route('shout', '/LLM/', 'store')] })],
      ['file', ready({ static: [route('llm', '/llm/', 'file'), route('team', '/Team/A/', 'file')] })],
    ]);
    const d = merge(views);
    expect(d.static.map((r) => r.name)).toEqual(['llm', 'team']);
    expect(d.rejections).toEqual([
      { provider: 'store', source: 'static route "shout"', reason: 'path /LLM/ is already used by route "llm" (paths are compared ignoring case)' },
    ]);
  });

  test('paths of different case and depth coexist', () => {
    const d = merge(new Map([['file', ready({ static: [route('a', '/a/', 'file'), route('ab', '/A/b/', 'file')] })]]));
    expect(d.static.map((r) => r.path)).toEqual(['/a/', '/A/b/']);
    expect(d.rejections).toEqual([]);
  });
});
