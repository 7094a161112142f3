import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRouteViews } from '../../router/api/admin-api';
import { memoryLogger } from '../../router/log';
import type { ProviderState, Rejection, StaticRoute } from '../../router/model/types';
import { StoreProvider, buildStoreSnapshot } from '../../router/providers/store-provider';
import type { RouterStatus } from '../../router/router';
import { openStore, type Store, type StoredRoute } from '../../router/store/store';
import { waitFor } from '../support/net';

const ACTOR = { name: 'test', principal: null, client: null };

function stored(name: string, extra: Partial<StoredRoute> = {}): StoredRoute {
  return { name, path: `/${name}/`, subdomain: null, allowedGroups: [], backends: [], enabled: true, description: '', stripPrefix: true, healthCheck: null, createdAt: 0, updatedAt: 0, ...extra };
}

function status(routes: Array<Partial<RouterStatus['routes'][number]> & { id: string }>, rejections: Rejection[] = []): RouterStatus {
  return {
    router: 'r',
    generation: 'g000001',
    lastApply: null,
    lastFailure: null,
    reloads: 0,
    pushes: 0,
    dataVersion: 1,
    providers: [],
    routes: routes.map((r) => ({ kind: 'static', url: `http://gw/${r.id}/`, backends: [], status: 'Routing', provider: 'store', ...r })),
    rejections,
  };
}

describe('buildStoreSnapshot', () => {
  test('maps store rows to static routes of the store provider', () => {
    const { snapshot, rejections } = buildStoreSnapshot([
      stored('llm', { backends: [{ host: '10.0.0.1', port: 8000 }], allowedGroups: ['b', 'a'], stripPrefix: false }),
      stored('chat', { path: null, subdomain: 'chat', enabled: false }),
    ]);
    expect(rejections).toEqual([]);
    expect(snapshot).toEqual({
      ephemeral: [],
      bindings: [],
      tcp: [],
      static: [
        { name: 'llm', path: '/llm/', subdomain: null, backends: [{ host: '10.0.0.1', port: 8000 }], allowedGroups: ['a', 'b'], stripPrefix: false, enabled: true, healthCheck: null, provider: 'store' },
        { name: 'chat', path: null, subdomain: 'chat', backends: [], allowedGroups: [], stripPrefix: true, enabled: false, healthCheck: null, provider: 'store' },
      ],
    });
  });

  test.each([
    ['a hostile path', stored('x', { path: '/x/ ; } server {' })],
    ['a reserved path', stored('x', { path: '/_gateway/' })],
    ['a hostile subdomain', stored('x', { path: null, subdomain: 'a b' })],
    ['both path and subdomain', stored('x', { subdomain: 'x' })],
    ['a bad backend', stored('x', { backends: [{ host: 'a;b', port: 1 }] })],
    ['a bad group', stored('x', { allowedGroups: ['Bad Group'] })],
    ['a bad name', stored('X;')],
  ])('rejects a row with %s and keeps the others', (_case, bad) => {
    const { snapshot, rejections } = buildStoreSnapshot([bad, stored('ok')]);
    expect(snapshot.static.map((r) => r.name)).toEqual(['ok']);
    expect(rejections).toEqual([expect.objectContaining({ provider: 'store', source: expect.stringMatching(/^store route /) })]);
  });
});

describe('buildRouteViews', () => {
  const file: StaticRoute = { name: 'filed', path: '/filed/', subdomain: null, backends: [{ host: '10.0.0.9', port: 80 }], allowedGroups: ['ops'], stripPrefix: true, enabled: true, provider: 'file' };

  test.each<[string, StoredRoute, RouterStatus, Set<string> | null, string]>([
    ['no backends: Not in use', stored('a'), status([{ id: 'a', status: 'Not in use' }]), new Set(), 'Not in use'],
    ['a reachable backend: Routing', stored('a'), status([{ id: 'a', backends: ['10.0.0.1:80'] }]), new Set(['10.0.0.1:80']), 'Routing'],
    ['no reachable backend: Pending', stored('a'), status([{ id: 'a', backends: ['10.0.0.1:80'] }]), new Set(), 'Pending'],
    ['reachability unknown: Routing', stored('a'), status([{ id: 'a', backends: ['10.0.0.1:80'] }]), null, 'Routing'],
    ['disabled', stored('a', { enabled: false }), status([{ id: 'a', status: 'Disabled', backends: ['10.0.0.1:80'] }]), null, 'Disabled'],
    ['not taken in yet, with backends: Pending', stored('a', { backends: [{ host: '10.0.0.1', port: 80 }] }), status([]), null, 'Pending'],
    ['not taken in yet, no backends: Not in use', stored('a'), status([]), null, 'Not in use'],
  ])('store route, %s', (_case, row, st, reachable, want) => {
    const [v] = buildRouteViews({ stored: [row], fileRoutes: null, status: st, reachable, routesFile: null });
    expect(v).toMatchObject({ name: 'a', source: 'store', read_only: false, status: want });
  });

  test('a store route the merge refused is Rejected with the reason', () => {
    const st = status([], [{ provider: 'store', source: 'static route "a"', reason: 'path /a/ is already used by route "filed" (paths are compared ignoring case)' }]);
    const [v] = buildRouteViews({ stored: [stored('a')], fileRoutes: null, status: st, reachable: null, routesFile: null });
    expect(v).toMatchObject({ status: 'Rejected', problem: 'path /a/ is already used by route "filed" (paths are compared ignoring case)' });
  });

  test('file routes are read-only, named after the file, with their definition and live state', () => {
    const st = status([{ id: 'filed', provider: 'file', backends: ['10.0.0.9:80'] }]);
    const views = buildRouteViews({ stored: [stored('zeta')], fileRoutes: [file], status: st, reachable: new Set(['10.0.0.9:80']), routesFile: '/etc/appgw/routes.yaml' });
    expect(views.map((v) => v.name)).toEqual(['filed', 'zeta']);
    expect(views[0]).toMatchObject({
      source: 'file',
      read_only: true,
      defined_in: '/etc/appgw/routes.yaml',
      path: '/filed/',
      allowed_groups: ['ops'],
      backends: ['10.0.0.9:80'],
      live_backends: ['10.0.0.9:80'],
      status: 'Routing',
      url: 'http://gw/filed/',
    });
  });

  test('without a router status every status is Unknown', () => {
    const views = buildRouteViews({ stored: [stored('a')], fileRoutes: [file], status: null, reachable: null, routesFile: null });
    expect(views.map((v) => [v.name, v.status, v.problem])).toEqual([
      ['a', 'Unknown', null],
      ['filed', 'Unknown', null],
    ]);
  });
});

describe('StoreProvider', () => {
  let dir: string;
  let store: Store;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'appgw-sp-'));
    store = openStore({ dataDir: dir });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('emits an authoritative (possibly empty) snapshot at start, and again when another connection changes a route', async () => {
    const seen: Array<{ state: ProviderState; rejections: Rejection[] }> = [];
    const p = new StoreProvider(store, memoryLogger(), { pollMs: 10 });
    expect(p.status().state).toBe('pending');
    await p.start((state, rejections) => seen.push({ state, rejections }));
    expect(seen).toHaveLength(1);
    expect(seen[0]!.state).toMatchObject({ kind: 'ready', snapshot: { static: [] } });
    expect(p.status()).toMatchObject({ name: 'store', state: 'ok' });

    const other = openStore({ dataDir: dir });
    other.putRoute({ name: 'llm', path: '/llm/', backends: ['127.0.0.1:9000'] }, ACTOR);
    other.close();
    await waitFor(() => seen.length === 2, 2000, 'second snapshot');
    const last = seen[1]!.state;
    if (last.kind !== 'ready') throw new Error('not ready');
    expect(last.snapshot.static).toEqual([expect.objectContaining({ name: 'llm', backends: [{ host: '127.0.0.1', port: 9000 }], provider: 'store' })]);
    // nothing changed: no further emit
    await new Promise((r) => setTimeout(r, 60));
    expect(seen).toHaveLength(2);
    await p.stop();
    store.putRoute({ name: 'late', path: '/late/' }, ACTOR);
    await new Promise((r) => setTimeout(r, 60));
    expect(seen).toHaveLength(2);
  });

  test('an unreadable store keeps the last good view: degraded, no emit, one warning; never throws', async () => {
    const seen: ProviderState[] = [];
    const log = memoryLogger();
    const p = new StoreProvider(store, log, { pollMs: 10 });
    store.putRoute({ name: 'llm', path: '/llm/' }, ACTOR);
    await p.start((state) => seen.push(state));
    store.close();
    await waitFor(() => p.status().state === 'degraded', 2000, 'degraded');
    await new Promise((r) => setTimeout(r, 60));
    expect(seen).toHaveLength(1);
    expect(p.status().lastError).toMatch(/cannot read static routes from the store/);
    expect(log.lines.filter((l) => l.level === 'warn')).toHaveLength(1);
    await p.stop();
    store = openStore({ dataDir: dir });
  });
});
