import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { memoryLogger } from '../../router/log';
import type { TcpRoute } from '../../router/model/types';
import { openStore, type Store } from '../../router/store/store';
import { NO_POOL_REASON, PortPool, splitAround, type PortPoolOptions } from '../../router/tcp/port-pool';

const T0 = Date.UTC(2030, 0, 1);
const dirs: string[] = [];
const stores: Store[] = [];
afterAll(() => {
  for (const s of stores) {
    try {
      s.close();
    } catch {
      /* closed by the test */
    }
  }
  dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
});

const A = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
const B = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';
const C = 'cccccccccccccccccccccccccccccccc';
const D = 'dddddddddddddddddddddddddddddddd';

function tcp(id: string, port = 22): TcpRoute {
  return { id, taskId: id.split('-')[0]!, endpoint: id.split('-')[1] ?? '', owner: 'alice', backend: { host: '127.0.0.1', port }, allowCidrs: null, provider: 'manual' };
}

function routes(...ids: string[]): TcpRoute[] {
  return ids.map((id) => tcp(id));
}

interface Fixture {
  dir: string;
  store: Store;
  clock: { now: number };
  pool(range: [number, number] | null, opts?: PortPoolOptions & { serverPort?: number }): PortPool;
  reopen(): Store;
}

function fixture(): Fixture {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appgw-pool-'));
  dirs.push(dir);
  const clock = { now: T0 };
  const open = () => {
    const s = openStore({ dataDir: dir, clock: () => clock.now });
    stores.push(s);
    return s;
  };
  const f: Fixture = {
    dir,
    store: open(),
    clock,
    pool: (range, opts = {}) =>
      new PortPool(f.store, { serverPort: opts.serverPort ?? 8080, tcp: { routerAddress: null, portStart: range?.[0] ?? null, portEnd: range?.[1] ?? null, allowCidrs: [] } }, opts),
    reopen: () => {
      f.store.close();
      f.store = open();
      return f.store;
    },
  };
  return f;
}

const obj = (m: Map<string, unknown>) => Object.fromEntries(m);

describe('PortPool', () => {
  it('without a pool marks every TCP route unroutable with a reason naming TCP_PORT_START/TCP_PORT_END', () => {
    const { pool } = fixture();
    const r = pool(null).assign(routes(A, B));
    expect(r.ports.size).toBe(0);
    expect(obj(r.unroutable)).toEqual({ [A]: NO_POOL_REASON, [B]: NO_POOL_REASON });
    expect(NO_POOL_REASON).toMatch(/TCP_PORT_START.*TCP_PORT_END/);
  });

  it('gives one port per endpoint in route id order, whatever order the routes come in', () => {
    const { pool } = fixture();
    const r = pool([30000, 30009]).assign(routes(C, `${A}-ssh`, B, A));
    expect(obj(r.ports)).toEqual({ [A]: 30000, [`${A}-ssh`]: 30001, [B]: 30002, [C]: 30003 });
    expect(r.unroutable.size).toBe(0);
  });

  it('gives the same state the same ports: a second assign, and a pool over the reopened store (router restart)', () => {
    const f = fixture();
    const first = f.pool([30000, 30009]).assign(routes(A, B, C));
    expect(obj(f.pool([30000, 30009]).assign(routes(C, B, A)).ports)).toEqual(obj(first.ports));
    f.reopen();
    const again = f.pool([30000, 30009]).assign(routes(B, C, A));
    expect(obj(again.ports)).toEqual(obj(first.ports));
    expect(f.store.listPorts().map((a) => [a.routeId, a.port])).toEqual([
      [A, 30000],
      [B, 30001],
      [C, 30002],
    ]);
  });

  it('holds the port of an endpoint that went away; a restarting task gets it back within the hold', () => {
    const f = fixture();
    const p = f.pool([30000, 30009], { holdMs: 60_000 });
    p.assign(routes(A, B));
    f.clock.now += 1000;
    expect(obj(p.assign(routes(B)).ports)).toEqual({ [B]: 30001 });
    f.clock.now += 59_000 - 1;
    // a new endpoint does not get the held port
    expect(obj(p.assign(routes(B, C)).ports)).toEqual({ [B]: 30001, [C]: 30002 });
    expect(f.store.listPorts().map((a) => a.routeId)).toEqual([A, B, C]);
    expect(obj(p.assign(routes(A, B, C)).ports)).toEqual({ [A]: 30000, [B]: 30001, [C]: 30002 });
  });

  it('releases a port once the hold has passed, and the next new endpoint may take it', () => {
    const f = fixture();
    const log = memoryLogger();
    const p = f.pool([30000, 30009], { holdMs: 60_000, log });
    p.assign(routes(A, B));
    p.assign(routes(B));
    f.clock.now += 60_000;
    p.assign(routes(B));
    expect(f.store.listPorts().map((a) => a.routeId)).toEqual([B]);
    expect(log.lines).toContainEqual(expect.objectContaining({ level: 'info', msg: 'tcp port released', fields: expect.objectContaining({ route: A, port: 30000 }) }));
    expect(obj(p.assign(routes(B, D)).ports)).toEqual({ [B]: 30001, [D]: 30000 });
  });

  it('a hold of 0 releases at once', () => {
    const f = fixture();
    const p = f.pool([30000, 30009], { holdMs: 0 });
    p.assign(routes(A, B));
    p.assign(routes(B));
    expect(f.store.listPorts().map((a) => a.routeId)).toEqual([B]);
  });

  it('an endpoint that comes back after its port was released gets the same port when it is free, before new routes that sort first', () => {
    const f = fixture();
    const p = f.pool([30000, 30002], { holdMs: 0 });
    expect(obj(p.assign(routes(A, C)).ports)).toEqual({ [A]: 30000, [C]: 30001 });
    p.assign(routes(A));
    expect(f.store.listPorts().map((a) => a.routeId)).toEqual([A]);
    // B is new and sorts before C; C had 30001 last and gets it back
    expect(obj(p.assign(routes(A, B, C)).ports)).toEqual({ [A]: 30000, [B]: 30002, [C]: 30001 });
  });

  it('an exhausted pool: only the routes without a port are unroutable, with the reason; a freed port goes to the waiting route at the next assign', () => {
    const f = fixture();
    const log = memoryLogger();
    const p = f.pool([30000, 30002], { holdMs: 5000, log });
    const r = p.assign(routes(D, C, B, A));
    expect(obj(r.ports)).toEqual({ [A]: 30000, [B]: 30001, [C]: 30002 });
    expect([...r.unroutable.keys()]).toEqual([D]);
    expect(r.unroutable.get(D)).toBe(
      'the TCP port pool is exhausted: all 3 ports of TCP_PORT_START..TCP_PORT_END (30000-30002) are taken; the route gets a port as soon as one frees up',
    );
    // logged once, not on every assign
    p.assign(routes(A, B, C, D));
    expect(log.lines.filter((l) => l.msg === 'tcp route is unroutable')).toEqual([
      expect.objectContaining({ level: 'warn', fields: expect.objectContaining({ component: 'tcp-pool', route: D, reason: r.unroutable.get(D) }) }),
    ]);

    // B goes: during the hold its port stays reserved and the reason says so
    const held = p.assign(routes(A, C, D));
    expect(held.unroutable.get(D)).toMatch(/1 of them held for endpoints that went away \(freed 5 s after they went\)/);
    expect(obj(held.ports)).toEqual({ [A]: 30000, [C]: 30002 });
    f.clock.now += 5000;
    const freed = p.assign(routes(A, C, D));
    expect(obj(freed.ports)).toEqual({ [A]: 30000, [C]: 30002, [D]: 30001 });
    expect(freed.unroutable.size).toBe(0);
    expect(log.lines).toContainEqual(expect.objectContaining({ msg: 'tcp route is routable again', fields: expect.objectContaining({ route: D, port: 30001 }) }));
  });

  it('a new route never takes a port from a route that holds one, even when its id sorts first', () => {
    const f = fixture();
    const p = f.pool([30000, 30001]);
    p.assign(routes(B, C));
    const r = p.assign(routes(A, B, C));
    expect(obj(r.ports)).toEqual({ [B]: 30000, [C]: 30001 });
    expect([...r.unroutable.keys()]).toEqual([A]);
  });

  it('never hands out the edge HTTP port', () => {
    const f = fixture();
    const r = f.pool([30000, 30003], { serverPort: 30001 }).assign(routes(A, B, C, D));
    expect(obj(r.ports)).toEqual({ [A]: 30000, [B]: 30002, [C]: 30003 });
    expect(r.unroutable.get(D)).toMatch(/all 3 ports of TCP_PORT_START..TCP_PORT_END \(30000-30003\) are taken/);
    const only = fixture().pool([30001, 30001], { serverPort: 30001 }).assign(routes(A));
    expect(only.unroutable.get(A)).toBe("the TCP port pool TCP_PORT_START..TCP_PORT_END (30001-30001) holds only the edge's HTTP port 30001");
  });

  it('moves a route whose stored port is no longer usable (range changed, or now the edge port) into the pool', () => {
    const f = fixture();
    f.pool([30000, 30009]).assign(routes(A, B));
    const r = f.pool([31000, 31009], { serverPort: 31000 }).assign(routes(A, B));
    expect(obj(r.ports)).toEqual({ [A]: 31001, [B]: 31002 });
    const again = f.pool([30000, 30009], { serverPort: 30000 }).assign(routes(A, B));
    expect(obj(again.ports)).toEqual({ [A]: 30001, [B]: 30002 });
  });

  it('a route id the store refuses is unroutable with the reason; the others keep working', () => {
    const f = fixture();
    const r = f.pool([30000, 30009]).assign([tcp('Bad-ID'), tcp(A)]);
    expect(obj(r.ports)).toEqual({ [A]: 30000 });
    expect(r.unroutable.get('Bad-ID')).toMatch(/^cannot allocate a TCP port: route id "Bad-ID" must be/);
  });

  it('never throws: when the store fails it keeps the last ports and reports the new routes', () => {
    const f = fixture();
    const log = memoryLogger();
    const p = f.pool([30000, 30009], { log });
    p.assign(routes(A, B));
    f.store.close();
    let r!: ReturnType<PortPool['assign']>;
    expect(() => (r = p.assign(routes(A, B, C)))).not.toThrow();
    expect(obj(r.ports)).toEqual({ [A]: 30000, [B]: 30001 });
    expect(r.unroutable.get(C)).toMatch(/^the TCP port store failed: /);
    expect(log.lines.some((l) => l.level === 'error' && l.msg.includes('tcp port pool failed'))).toBe(true);
  });

  it('a duplicate route id gets a single port', () => {
    const f = fixture();
    const r = f.pool([30000, 30009]).assign(routes(A, A));
    expect(obj(r.ports)).toEqual({ [A]: 30000 });
  });
});

describe('splitAround', () => {
  it.each([
    [{ start: 10, end: 20 }, 5, [{ start: 10, end: 20 }]],
    [{ start: 10, end: 20 }, 10, [{ start: 11, end: 20 }]],
    [{ start: 10, end: 20 }, 20, [{ start: 10, end: 19 }]],
    [{ start: 10, end: 20 }, 15, [{ start: 10, end: 14 }, { start: 16, end: 20 }]],
    [{ start: 10, end: 10 }, 10, []],
  ])('%j without %d is %j', (range, skip, spans) => {
    expect(splitAround(range, skip)).toEqual(spans);
  });
});
