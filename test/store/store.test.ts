import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../../router/errors';
import { type Actor, CLI_ACTOR, type Store, openStore } from '../../router/store/store';
import { thrown } from '../support/errors';

const T0 = Date.UTC(2030, 0, 1);
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function fixture(): { store: Store; dir: string; clock: { now: number } } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appgw-store-'));
  dirs.push(dir);
  const clock = { now: T0 };
  return { store: openStore({ dataDir: dir, clock: () => clock.now }), dir, clock };
}

const API: Actor = { name: 'root', principal: 'root', client: '10.1.2.3' };

describe('users and groups', () => {
  it('adds, lists and removes users and service accounts', () => {
    const { store } = fixture();
    store.addUser({ id: 'root', admin: true }, CLI_ACTOR);
    store.addUser({ id: 'alice', name: 'Alice A.' }, CLI_ACTOR);
    store.addUser({ id: 'ci-bot', kind: 'service' }, API);
    expect(store.listUsers().map((u) => [u.id, u.name, u.kind, u.admin, u.createdBy])).toEqual([
      ['alice', 'Alice A.', 'user', false, 'cli'],
      ['ci-bot', 'ci-bot', 'service', false, 'root'],
      ['root', 'root', 'user', true, 'cli'],
    ]);
    store.removeUser('alice', CLI_ACTOR);
    expect(store.getUser('alice')).toBeNull();
  });

  it('refuses a duplicate user or group', () => {
    const { store } = fixture();
    store.addUser({ id: 'alice' }, CLI_ACTOR);
    store.createGroup({ name: 'g' }, CLI_ACTOR);
    expect(thrown(() => store.addUser({ id: 'alice', kind: 'service' }, CLI_ACTOR)).code).toBe('CONFLICT');
    expect(thrown(() => store.createGroup({ name: 'g' }, CLI_ACTOR)).code).toBe('CONFLICT');
  });

  it.each(['', 'a b', '-alice', 'x'.repeat(129), 'alice;rm', 'ålice', "o'brien", 'a\nb'])('refuses the user id %j', (id) => {
    const { store } = fixture();
    expect(thrown(() => store.addUser({ id }, CLI_ACTOR)).code).toBe('INVALID_INPUT');
  });

  it.each(['', 'ML', 'a b', '-x', 'x'.repeat(65), 'grp/1'])('refuses the group name %j', (name) => {
    const { store } = fixture();
    expect(thrown(() => store.createGroup({ name }, CLI_ACTOR)).code).toBe('INVALID_INPUT');
  });

  it('refuses to remove or demote the last admin', () => {
    const { store } = fixture();
    store.addUser({ id: 'root', admin: true }, CLI_ACTOR);
    expect(thrown(() => store.removeUser('root', CLI_ACTOR))).toMatchObject({ code: 'CONFLICT', message: expect.stringContaining('last admin') });
    expect(thrown(() => store.setAdmin('root', false, CLI_ACTOR)).code).toBe('CONFLICT');
    store.addUser({ id: 'root2', admin: true }, CLI_ACTOR);
    store.removeUser('root', CLI_ACTOR);
    expect(store.listUsers().map((u) => u.id)).toEqual(['root2']);
  });

  it('manages groups and memberships; deleting cascades', () => {
    const { store } = fixture();
    store.addUser({ id: 'alice' }, CLI_ACTOR);
    store.addUser({ id: 'bob' }, CLI_ACTOR);
    store.createGroup({ name: 'ml-team', description: 'ML people' }, CLI_ACTOR);
    store.createGroup({ name: 'ops' }, CLI_ACTOR);
    store.addMember('ml-team', 'bob', CLI_ACTOR);
    store.addMember('ml-team', 'alice', CLI_ACTOR);
    store.addMember('ops', 'alice', CLI_ACTOR);
    expect(store.getGroup('ml-team')).toMatchObject({ description: 'ML people', members: ['alice', 'bob'] });
    expect(store.getUser('alice')!.groups).toEqual(['ml-team', 'ops']);
    expect(thrown(() => store.addMember('ml-team', 'alice', CLI_ACTOR)).code).toBe('CONFLICT');
    expect(thrown(() => store.addMember('ml-team', 'carol', CLI_ACTOR)).code).toBe('NOT_FOUND');
    expect(thrown(() => store.addMember('nope', 'alice', CLI_ACTOR)).code).toBe('NOT_FOUND');
    store.removeMember('ml-team', 'bob', CLI_ACTOR);
    expect(thrown(() => store.removeMember('ml-team', 'bob', CLI_ACTOR)).code).toBe('NOT_FOUND');
    store.removeUser('alice', CLI_ACTOR);
    expect(store.getGroup('ops')!.members).toEqual([]);
    store.deleteGroup('ml-team', CLI_ACTOR);
    expect(store.listGroups().map((g) => g.name)).toEqual(['ops']);
    expect(thrown(() => store.deleteGroup('ml-team', CLI_ACTOR)).code).toBe('NOT_FOUND');
  });
});

describe('shares and policies', () => {
  const task = '0123456789abcdef0123456789abcdef';

  it('shares a task with users and groups and builds the edge share table', () => {
    const { store } = fixture();
    store.createGroup({ name: 'ml-team' }, CLI_ACTOR);
    store.addShare(task, { user: 'd0c5e1f2a3b4c5d6e7f8a9b0c1d2e3f4' }, CLI_ACTOR);
    store.addShare(task, { group: 'ml-team' }, CLI_ACTOR);
    store.setSharePolicy('feedbeef', 'company', API);
    expect(thrown(() => store.addShare(task, { group: 'ml-team' }, CLI_ACTOR)).code).toBe('CONFLICT');
    expect(thrown(() => store.addShare(task, { group: 'nope' }, CLI_ACTOR)).code).toBe('NOT_FOUND');
    expect(store.listShares(task).map((s) => [s.user, s.group])).toEqual([
      [null, 'ml-team'],
      ['d0c5e1f2a3b4c5d6e7f8a9b0c1d2e3f4', null],
    ]);
    expect(store.getSharePolicy(task)).toBe('owner');
    expect(store.getSharePolicy('feedbeef')).toBe('company');
    expect(store.edgeShareTable()).toEqual({
      [task]: { p: 'owner', u: ['d0c5e1f2a3b4c5d6e7f8a9b0c1d2e3f4'], g: ['ml-team'] },
      feedbeef: { p: 'company', u: [], g: [] },
    });
    store.removeShare(task, { user: 'd0c5e1f2a3b4c5d6e7f8a9b0c1d2e3f4' }, CLI_ACTOR);
    store.deleteGroup('ml-team', CLI_ACTOR);
    expect(store.listShares()).toEqual([]);
    expect(thrown(() => store.removeShare(task, { group: 'ml-team' }, CLI_ACTOR)).code).toBe('NOT_FOUND');
  });

  it.each<[string, () => [string, unknown, unknown?]]>([
    ['a bad task id', () => ['../etc', { user: 'alice' }]],
    ['a task id with upper case', () => ['ABC', { user: 'alice' }]],
    ['both user and group', () => [task, { user: 'alice', group: 'g' }]],
    ['neither user nor group', () => [task, {}]],
    ['a bad user', () => [task, { user: 'x y' }]],
  ])('refuses %s', (_n, args) => {
    const { store } = fixture();
    const [t, subject] = args();
    expect(thrown(() => store.addShare(t, subject as never, CLI_ACTOR)).code).toBe('INVALID_INPUT');
  });

  it('refuses an unknown policy', () => {
    const { store } = fixture();
    expect(thrown(() => store.setSharePolicy(task, 'everyone' as never, CLI_ACTOR)).code).toBe('INVALID_INPUT');
  });
});

describe('version', () => {
  it('is bumped by every change to users, groups, memberships, shares and tokens, and survives reopening', () => {
    const { store, dir } = fixture();
    const seen = [store.version()];
    const step = (fn: () => void) => {
      fn();
      const v = store.version();
      expect(v).toBeGreaterThan(seen[seen.length - 1]!);
      seen.push(v);
    };
    step(() => store.addUser({ id: 'root', admin: true }, CLI_ACTOR));
    step(() => store.addUser({ id: 'alice' }, CLI_ACTOR));
    step(() => store.createGroup({ name: 'g' }, CLI_ACTOR));
    step(() => store.addMember('g', 'alice', CLI_ACTOR));
    step(() => store.removeMember('g', 'alice', CLI_ACTOR));
    step(() => store.addShare('abc', { group: 'g' }, CLI_ACTOR));
    step(() => store.setSharePolicy('abc', 'company', CLI_ACTOR));
    step(() => store.removeShare('abc', { group: 'g' }, CLI_ACTOR));
    step(() => store.deleteGroup('g', CLI_ACTOR));
    step(() => store.removeUser('alice', CLI_ACTOR));
    const before = store.version();
    expect(() => store.addUser({ id: 'root' }, CLI_ACTOR)).toThrow(UserError);
    expect(store.version()).toBe(before);
    store.close();
    expect(openStore({ dataDir: dir }).version()).toBe(before);
  });

  it('is not bumped by route changes; routesVersion is', () => {
    const { store } = fixture();
    const v = store.version();
    const r = store.routesVersion();
    store.putRoute({ name: 'llm', path: '/llm/' }, CLI_ACTOR);
    expect(store.version()).toBe(v);
    expect(store.routesVersion()).toBe(r + 1);
  });
});

describe('two processes on one store', () => {
  it('see each other\'s changes (WAL) and share the version counter', () => {
    const { store, dir } = fixture();
    const other = openStore({ dataDir: dir });
    const v = other.version();
    store.addUser({ id: 'alice' }, CLI_ACTOR);
    expect(other.getUser('alice')).not.toBeNull();
    expect(other.version()).toBe(v + 1);
    other.createGroup({ name: 'g' }, CLI_ACTOR);
    expect(store.version()).toBe(v + 2);
    other.close();
  });
});

describe('static routes', () => {
  it('stores, replaces (keeping created_at) and removes routes', () => {
    const { store, clock } = fixture();
    const r = store.putRoute(
      { name: 'llm', path: '/llm', backends: ['127.0.0.1:8001', { host: 'GPU-1.local', port: 8002 }], allowedGroups: ['ml-team', 'ml-team', 'admins'], description: 'vLLM pool' },
      CLI_ACTOR,
    );
    expect(r).toEqual({
      name: 'llm',
      path: '/llm/',
      subdomain: null,
      allowedGroups: ['admins', 'ml-team'],
      backends: [
        { host: '127.0.0.1', port: 8001 },
        { host: 'gpu-1.local', port: 8002 },
      ],
      enabled: true,
      description: 'vLLM pool',
      stripPrefix: true,
      healthCheck: null,
      createdAt: T0,
      updatedAt: T0,
    });
    clock.now = T0 + 1000;
    expect(store.putRoute({ name: 'llm', subdomain: 'llm', enabled: false, stripPrefix: false }, CLI_ACTOR)).toMatchObject({
      path: null,
      subdomain: 'llm',
      backends: [],
      enabled: false,
      stripPrefix: false,
      createdAt: T0,
      updatedAt: T0 + 1000,
    });
    store.putRoute({ name: 'embed', path: '/embed/' }, CLI_ACTOR);
    expect(store.listRoutes().map((x) => x.name)).toEqual(['embed', 'llm']);
    store.removeRoute('llm', CLI_ACTOR);
    expect(store.getRoute('llm')).toBeNull();
    expect(thrown(() => store.removeRoute('llm', CLI_ACTOR)).code).toBe('NOT_FOUND');
    expect(store.listAudit().map((a) => a.action)).toEqual(['route.remove', 'route.create', 'route.update', 'route.create']);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['both path and subdomain', { name: 'a', path: '/a/', subdomain: 'a' }, 'INVALID_INPUT'],
    ['neither path nor subdomain', { name: 'a' }, 'INVALID_INPUT'],
    ['a reserved path', { name: 'a', path: '/service/' }, 'INVALID_INPUT'],
    ['a traversal path', { name: 'a', path: '/../x/' }, 'INVALID_INPUT'],
    ['an injection in the name', { name: 'x; } server {', path: '/x/' }, 'INVALID_INPUT'],
    ['a bad backend', { name: 'a', path: '/a/', backends: ['127.0.0.1'] }, 'INVALID_INPUT'],
    ['a bad group', { name: 'a', path: '/a/', allowedGroups: ['Bad Group'] }, 'INVALID_INPUT'],
    ['a description with control characters', { name: 'a', path: '/a/', description: 'x\u0007' }, 'INVALID_INPUT'],
  ])('refuses %s', (_n, input, code) => {
    const { store } = fixture();
    expect(thrown(() => store.putRoute(input as never, CLI_ACTOR)).code).toBe(code);
  });

  it('refuses a path or subdomain another route uses', () => {
    const { store } = fixture();
    store.putRoute({ name: 'a', path: '/x/' }, CLI_ACTOR);
    store.putRoute({ name: 'b', subdomain: 'x' }, CLI_ACTOR);
    expect(thrown(() => store.putRoute({ name: 'c', path: '/x/' }, CLI_ACTOR))).toMatchObject({ code: 'CONFLICT', message: expect.stringContaining('"a"') });
    expect(thrown(() => store.putRoute({ name: 'c', subdomain: 'x' }, CLI_ACTOR)).code).toBe('CONFLICT');
    // the edge matches paths ignoring case, so /X/ is taken too
    expect(thrown(() => store.putRoute({ name: 'c', path: '/X/' }, CLI_ACTOR))).toMatchObject({
      code: 'CONFLICT',
      message: 'route "a" already uses path /x/ (paths are compared ignoring case)',
    });
    expect(store.putRoute({ name: 'c', path: '/X/y/' }, CLI_ACTOR).path).toBe('/X/y/');
    expect(store.putRoute({ name: 'a', path: '/x/', enabled: false }, CLI_ACTOR).enabled).toBe(false);
  });
});

describe('TCP port allocations', () => {
  const range = { start: 10000, end: 10002 };

  it('allocates the lowest free port, keeps it, and persists it across reopen', () => {
    const { store, dir } = fixture();
    expect(store.allocatePort('aaa', range).port).toBe(10000);
    expect(store.allocatePort('bbb-ssh', range).port).toBe(10001);
    expect(store.allocatePort('aaa', range)).toMatchObject({ port: 10000, allocatedAt: T0, releasedAt: null });
    store.close();
    const again = openStore({ dataDir: dir });
    expect(again.listPorts().map((p) => [p.routeId, p.port])).toEqual([
      ['aaa', 10000],
      ['bbb-ssh', 10001],
    ]);
    again.close();
  });

  it('releases ports, reuses a route\'s previous port, and reports exhaustion', () => {
    const { store, clock } = fixture();
    store.allocatePort('aaa', range);
    store.allocatePort('bbb', range);
    store.allocatePort('ccc', range);
    expect(thrown(() => store.allocatePort('ddd', range))).toMatchObject({ code: 'TCP_POOL_EXHAUSTED', message: expect.stringContaining('10000-10002') });
    clock.now = T0 + 5;
    expect(store.releasePort('bbb')).toMatchObject({ port: 10001, releasedAt: T0 + 5 });
    expect(store.releasePort('bbb')).toBeNull();
    expect(store.allocatePort('bbb', range).port).toBe(10001);
    store.releasePort('aaa');
    store.releasePort('ccc');
    expect(store.allocatePort('ccc', range).port).toBe(10002);
    expect(store.listPorts({ all: true })).toHaveLength(5);
  });

  it('moves a port that fell outside a changed range', () => {
    const { store } = fixture();
    store.allocatePort('aaa', { start: 9000, end: 9001 });
    expect(store.allocatePort('aaa', range).port).toBe(10000);
    expect(store.listPorts().map((p) => p.port)).toEqual([10000]);
  });

  it.each(['', 'AAA', 'a/b', 'x'.repeat(41), 'abc-'])('refuses the route id %j', (id) => {
    const { store } = fixture();
    expect(thrown(() => store.allocatePort(id, range)).code).toBe('INVALID_INPUT');
  });
});

describe('audit', () => {
  it('records every mutation with actor, action, target, detail and client, newest first', () => {
    const { store, clock } = fixture();
    store.addUser({ id: 'alice' }, CLI_ACTOR);
    clock.now = T0 + 1;
    store.createGroup({ name: 'g' }, API);
    clock.now = T0 + 2;
    store.addMember('g', 'alice', API);
    expect(store.listAudit()).toEqual([
      { id: 3, ts: T0 + 2, actor: 'root', action: 'group.add-member', target: 'g', detail: { user: 'alice' }, client: '10.1.2.3' },
      { id: 2, ts: T0 + 1, actor: 'root', action: 'group.create', target: 'g', detail: { description: '' }, client: '10.1.2.3' },
      { id: 1, ts: T0, actor: 'cli', action: 'user.add', target: 'alice', detail: { name: 'alice', kind: 'user', admin: false }, client: null },
    ]);
    expect(store.listAudit({ limit: 1 })).toHaveLength(1);
  });

  it('writes nothing when a mutation fails', () => {
    const { store } = fixture();
    expect(() => store.addMember('g', 'alice', CLI_ACTOR)).toThrow(UserError);
    expect(store.listAudit()).toEqual([]);
  });

  it('a transaction commits store calls together or not at all', () => {
    const { store } = fixture();
    expect(() =>
      store.tx(() => {
        store.addUser({ id: 'alice' }, CLI_ACTOR);
        store.addUser({ id: 'alice' }, CLI_ACTOR);
      }),
    ).toThrow(UserError);
    expect(store.listUsers()).toEqual([]);
    expect(store.listAudit()).toEqual([]);
  });
});

describe('edgeUserTable', () => {
  it('maps every user to admin flag and groups', () => {
    const { store } = fixture();
    store.addUser({ id: 'root', admin: true }, CLI_ACTOR);
    store.addUser({ id: 'alice' }, CLI_ACTOR);
    store.createGroup({ name: 'b' }, CLI_ACTOR);
    store.createGroup({ name: 'a' }, CLI_ACTOR);
    store.addMember('b', 'alice', CLI_ACTOR);
    store.addMember('a', 'alice', CLI_ACTOR);
    expect(store.edgeUserTable()).toEqual({ alice: { a: false, g: ['a', 'b'] }, root: { a: true, g: [] } });
  });
});
