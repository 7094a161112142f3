import type { Config } from '../config';
import { isUserError } from '../errors';
import type { Logger } from '../log';
import type { TcpRoute } from '../model/types';
import type { PortAllocator } from '../router';
import type { PortAllocation, Store } from '../store/store';

/** How long a port stays reserved for an endpoint that went away, unless told otherwise. */
export const DEFAULT_HOLD_MS = 60_000;

/** Options of a PortPool. */
export interface PortPoolOptions {
  /** Milliseconds a port stays reserved after its endpoint went away (a restarting task gets it back). */
  holdMs?: number;
  log?: Logger;
  /** Epoch ms; defaults to the store's clock. */
  clock?: () => number;
}

/** A contiguous run of pool ports. */
interface Span {
  start: number;
  end: number;
}

/** Why a route has no port when no pool is configured. */
export const NO_POOL_REASON = 'no TCP port pool is configured: set TCP_PORT_START and TCP_PORT_END (or ROUTER__STREAM__PORT_RANGE__START/END)';

/**
 * The TCP port pool over the store: one port per TCP endpoint from TCP_PORT_START..TCP_PORT_END,
 * persisted, so the same endpoint gets the same port across router restarts. A port whose endpoint
 * went away stays reserved for `holdMs`, then is released. Routes that find the pool exhausted are
 * reported unroutable with the reason (the others keep their ports) and get a port at the first
 * `assign` after one frees up. The edge's HTTP port is never handed out.
 */
export class PortPool implements PortAllocator {
  private readonly spans: Span[];
  private readonly range: Span | null;
  private readonly holdMs: number;
  private readonly log: Logger | null;
  private readonly clock: () => number;
  /** Route id → epoch ms it was first seen missing while still holding a live port. */
  private readonly missingSince = new Map<string, number>();
  /** Route id → the unroutable reason last logged (logged again only when it changes). */
  private readonly reported = new Map<string, string>();
  /** The ports of the last successful assign, kept through a store failure. */
  private lastGood = new Map<string, number>();

  constructor(
    private readonly store: Store,
    private readonly config: Pick<Config, 'serverPort' | 'tcp'>,
    opts: PortPoolOptions = {},
  ) {
    const { portStart, portEnd } = config.tcp;
    this.range = portStart !== null && portEnd !== null ? { start: portStart, end: portEnd } : null;
    this.spans = this.range ? splitAround(this.range, config.serverPort) : [];
    this.holdMs = opts.holdMs ?? DEFAULT_HOLD_MS;
    this.log = opts.log ?? null;
    this.clock = opts.clock ?? (() => store.now());
  }

  /**
   * Gives every TCP route its port: the live one it holds, else (in route id order, routes whose
   * previous port is free first) a new one from the pool. Never throws; a route without a port is
   * in `unroutable` with a reason for status and write-back.
   */
  assign(routes: TcpRoute[]): { ports: Map<string, number>; unroutable: Map<string, string> } {
    const ids = [...new Set(routes.map((r) => r.id))].sort();
    const ports = new Map<string, number>();
    const unroutable = new Map<string, string>();
    try {
      if (!this.range) {
        for (const id of ids) unroutable.set(id, NO_POOL_REASON);
      } else if (this.spans.length === 0) {
        const reason = `the TCP port pool TCP_PORT_START..TCP_PORT_END (${this.range.start}-${this.range.end}) holds only the edge's HTTP port ${this.config.serverPort}`;
        for (const id of ids) unroutable.set(id, reason);
      } else {
        this.allocate(ids, ports, unroutable);
      }
    } catch (e) {
      // the store failed (busy, disk): keep what worked last time, report the rest
      const reason = `the TCP port store failed: ${(e as Error).message}`;
      this.log?.error('tcp port pool failed; keeping the last assignment', { component: 'tcp-pool', error: (e as Error).message });
      ports.clear();
      unroutable.clear();
      for (const id of ids) {
        const p = this.lastGood.get(id);
        if (p !== undefined) ports.set(id, p);
        else unroutable.set(id, reason);
      }
      this.report(ids, ports, unroutable);
      return { ports, unroutable };
    }
    this.lastGood = new Map(ports);
    this.report(ids, ports, unroutable);
    return { ports, unroutable };
  }

  private allocate(ids: string[], ports: Map<string, number>, unroutable: Map<string, string>): void {
    const present = new Set(ids);
    const live = this.releaseGone(this.store.listPorts(), present);
    const liveOf = new Map(live.map((a) => [a.routeId, a.port]));
    const need: string[] = [];
    for (const id of ids) {
      const p = liveOf.get(id);
      if (p !== undefined && this.usable(p)) ports.set(id, p);
      else need.push(id);
    }
    if (need.length === 0) return;

    // routes whose previous port is still free go first, so nobody takes it from them
    const last = lastPorts(this.store.listPorts({ all: true }));
    const taken = new Set(live.map((a) => a.port));
    const returning = need.filter((id) => {
      const p = last.get(id);
      return p !== undefined && this.usable(p) && !taken.has(p);
    });
    const order = [...returning, ...need.filter((id) => !returning.includes(id))];
    for (const id of order) {
      const result = this.allocateOne(id, last.get(id));
      if (typeof result === 'number') {
        ports.set(id, result);
        this.log?.info('tcp port allocated', { component: 'tcp-pool', route: id, port: result });
      } else {
        unroutable.set(id, result);
      }
    }
  }

  /** A port for one route from the first span with room (its previous span first), or the reason. */
  private allocateOne(id: string, previous: number | undefined): number | string {
    const spans = [...this.spans].sort((a, b) => Number(inSpan(b, previous)) - Number(inSpan(a, previous)));
    for (const span of spans) {
      try {
        return this.store.allocatePort(id, span).port;
      } catch (e) {
        if (isUserError(e) && e.code === 'TCP_POOL_EXHAUSTED') continue;
        if (isUserError(e)) return `cannot allocate a TCP port: ${e.message}`;
        throw e;
      }
    }
    return this.exhaustedReason();
  }

  private exhaustedReason(): string {
    const r = this.range!;
    const size = this.spans.reduce((n, s) => n + s.end - s.start + 1, 0);
    const held = this.missingSince.size;
    const heldText = held > 0 ? `, ${held} of them held for endpoints that went away (freed ${Math.round(this.holdMs / 1000)} s after they went)` : '';
    return `the TCP port pool is exhausted: all ${size} ports of TCP_PORT_START..TCP_PORT_END (${r.start}-${r.end}) are taken${heldText}; the route gets a port as soon as one frees up`;
  }

  /** Releases the ports of routes gone for longer than the hold; returns the allocations still live. */
  private releaseGone(live: PortAllocation[], present: Set<string>): PortAllocation[] {
    const now = this.clock();
    const kept: PortAllocation[] = [];
    const liveIds = new Set(live.map((a) => a.routeId));
    for (const id of [...this.missingSince.keys()]) if (present.has(id) || !liveIds.has(id)) this.missingSince.delete(id);
    for (const a of live) {
      if (present.has(a.routeId)) {
        kept.push(a);
        continue;
      }
      const since = this.missingSince.get(a.routeId) ?? now;
      this.missingSince.set(a.routeId, since);
      if (now - since < this.holdMs) {
        kept.push(a);
        continue;
      }
      this.store.releasePort(a.routeId);
      this.missingSince.delete(a.routeId);
      this.log?.info('tcp port released', { component: 'tcp-pool', route: a.routeId, port: a.port, heldMs: now - since });
    }
    return kept;
  }

  private usable(port: number): boolean {
    return this.spans.some((s) => inSpan(s, port));
  }

  /** Logs a route's unroutable reason when it changes, and when the route is routed again. */
  private report(ids: string[], ports: Map<string, number>, unroutable: Map<string, string>): void {
    for (const [id, reason] of unroutable) {
      if (this.reported.get(id) === reason) continue;
      this.reported.set(id, reason);
      this.log?.warn('tcp route is unroutable', { component: 'tcp-pool', route: id, reason });
    }
    const present = new Set(ids);
    for (const id of [...this.reported.keys()]) {
      if (unroutable.has(id)) continue;
      this.reported.delete(id);
      if (present.has(id) && ports.has(id)) this.log?.info('tcp route is routable again', { component: 'tcp-pool', route: id, port: ports.get(id) });
    }
  }
}

/** Pure. The range without `skip`: zero, one or two spans. */
export function splitAround(range: Span, skip: number): Span[] {
  if (skip < range.start || skip > range.end) return [range];
  const out: Span[] = [];
  if (skip > range.start) out.push({ start: range.start, end: skip - 1 });
  if (skip < range.end) out.push({ start: skip + 1, end: range.end });
  return out;
}

function inSpan(s: Span, port: number | undefined): boolean {
  return port !== undefined && port >= s.start && port <= s.end;
}

/** Pure. Each route's most recently allocated port, from the allocation history. */
function lastPorts(history: PortAllocation[]): Map<string, number> {
  const best = new Map<string, PortAllocation>();
  for (const a of history) {
    const b = best.get(a.routeId);
    if (!b || a.allocatedAt >= b.allocatedAt) best.set(a.routeId, a);
  }
  return new Map([...best].map(([id, a]) => [id, a.port]));
}
