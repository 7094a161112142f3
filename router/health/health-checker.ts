import http from 'node:http';
import type { Logger } from '../log';
import type { Backend, StaticRoute } from '../model/types';
import { HEALTH_CHECK, formatBackend, printable } from '../model/validate';

/**
 * Active health checks of static routes' backends. For every backend of an enabled static route
 * that has a `healthCheck`, the router sends `GET <path>` (HTTP/1.1, to the backend's resolved
 * address) every `intervalMs`, with a timeout of min(interval, 5 s). A status 200-399 passes;
 * anything else (another status, a refused or reset connection, a timeout) fails.
 *
 * - A backend counts as healthy until its first probes say otherwise (a new route routes at once).
 * - 2 failures in a row take it out (`down`); 1 success puts it back (`up`).
 * - `healthy()` is what the router filters the pushed backends with; when a backend goes down or
 *   comes back, `onChange` is called (the router reconciles and pushes data; never a reload), and
 *   one line is logged with the route, the backend and the reason (never the path or its query).
 *
 * Checks are keyed by route and backend: the same backend in two routes is checked once per
 * route, each with its route's path. Never throws into the event loop; `stop()` clears every timer
 * and aborts probes in flight.
 */

/** Failures in a row that take a backend out (one success puts it back). */
export const FALL = 2;

/** What one probe targets: the resolved IP to connect to, the configured host for the Host header. */
export interface ProbeTarget {
  ip: string;
  host: string;
  port: number;
  path: string;
  timeoutMs: number;
}

/** The outcome of one probe: passed with a status, or failed with a short reason. */
export type ProbeResult = { ok: true; status: number } | { ok: false; reason: string };

/** Sends one probe; must never reject. */
export type Probe = (t: ProbeTarget, signal: AbortSignal) => Promise<ProbeResult>;

/** `unknown`: not probed yet (counts as healthy); `up`; `down` (left out of the push). */
export type HealthState = 'unknown' | 'up' | 'down';

/** The health of one backend of a route, as the status shows it. */
export interface BackendHealth {
  /** `host:port` (`[v6]:port`). */
  backend: string;
  state: HealthState;
  /** Why the last probe failed (`status 503`, `timeout after 5000 ms`, `connection refused`), or null. */
  reason: string | null;
  /** Failures in a row. */
  failures: number;
  /** When the state last changed (epoch ms), null while unknown. */
  since: number | null;
  /** When the last probe finished (epoch ms), null before the first. */
  checkedAt: number | null;
}

const ERRNO: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EPIPE: 'connection closed',
};

/** Pure. A short, printable reason for a failed connection. */
function errorReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (code && ERRNO[code]) return ERRNO[code]!;
  if (code?.startsWith('HPE_')) return 'not an HTTP answer';
  const msg = code ?? (e instanceof Error ? e.message : String(e));
  const p = printable(msg);
  return `error ${p.length > 80 ? `${p.slice(0, 80)}…` : p}`;
}

/** One HTTP/1.1 GET to `http://<ip>:<port><path>` (Host: the configured host). Never rejects. */
export function httpProbe(t: ProbeTarget, signal?: AbortSignal): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let done = false;
    let timer: NodeJS.Timeout | null = null;
    let req: http.ClientRequest | null = null;
    const finish = (r: ProbeResult) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      req?.destroy();
      resolve(r);
    };
    const onAbort = () => finish({ ok: false, reason: 'aborted' });
    try {
      req = http.request({
        host: t.ip,
        port: t.port,
        path: t.path,
        method: 'GET',
        agent: false,
        headers: { host: formatBackend(t), 'user-agent': 'appgw-health-check', accept: '*/*', connection: 'close' },
      });
      timer = setTimeout(() => finish({ ok: false, reason: `timeout after ${t.timeoutMs} ms` }), t.timeoutMs);
      timer.unref();
      req.on('response', (res) => {
        const s = res.statusCode ?? 0;
        res.resume();
        finish(s >= 200 && s <= 399 ? { ok: true, status: s } : { ok: false, reason: `status ${s}` });
      });
      req.on('error', (e) => finish({ ok: false, reason: errorReason(e) }));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      req.end();
    } catch (e) {
      finish({ ok: false, reason: errorReason(e) });
    }
  });
}

interface Check {
  route: string;
  backend: Backend;
  path: string;
  intervalMs: number;
  ip: string | null;
  state: HealthState;
  failures: number;
  reason: string | null;
  since: number | null;
  checkedAt: number | null;
  timer: NodeJS.Timeout | null;
  inFlight: AbortController | null;
  removed: boolean;
}

/** What the checker needs. */
export interface HealthCheckerOptions {
  log: Logger;
  /** Called (outside any probe's stack) when a backend goes down or comes back. */
  onChange: () => void;
  /** The probe; default `httpProbe`. */
  probe?: Probe;
  now?: () => number;
}

/** The active health checks of the static routes (see the module comment). */
export class HealthChecker {
  private readonly checks = new Map<string, Check>();
  private readonly log: Logger;
  private readonly probe: Probe;
  private readonly now: () => number;
  private stopped = false;

  constructor(private readonly opts: HealthCheckerOptions) {
    this.log = opts.log.child({ component: 'health' });
    this.probe = opts.probe ?? httpProbe;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Makes the checks follow the desired static routes (with their merged backends): starts a
   * check for each new backend of an enabled route with a health check (first probe at once),
   * drops the checks of backends and routes that went, restarts a check whose path changed and
   * reschedules one whose interval changed. `resolve` gives the IP to probe (null: not probed).
   */
  sync(routes: StaticRoute[], resolve: (b: Backend) => string | null): void {
    if (this.stopped) return;
    const want = new Set<string>();
    for (const r of routes) {
      const hc = r.healthCheck;
      if (!r.enabled || !hc) continue;
      for (const b of r.backends) {
        const key = `${r.name}|${formatBackend(b)}`;
        want.add(key);
        const ip = resolve(b);
        const c = this.checks.get(key);
        if (c && c.path === hc.path) {
          c.ip = ip;
          if (c.intervalMs !== hc.intervalMs) {
            c.intervalMs = hc.intervalMs;
            if (c.timer) this.schedule(c, hc.intervalMs);
          }
          continue;
        }
        if (c) this.drop(key, c);
        const fresh: Check = { route: r.name, backend: b, path: hc.path, intervalMs: hc.intervalMs, ip, state: 'unknown', failures: 0, reason: null, since: null, checkedAt: null, timer: null, inFlight: null, removed: false };
        this.checks.set(key, fresh);
        this.schedule(fresh, 0);
      }
    }
    for (const [key, c] of this.checks) if (!want.has(key)) this.drop(key, c);
  }

  /** Whether the backend may be pushed for the route: true unless its health check took it out. */
  healthy(route: string, b: Backend): boolean {
    return this.checks.get(`${route}|${formatBackend(b)}`)?.state !== 'down';
  }

  /** The health of the route's checked backends, in backend order; null when it has no checks. */
  view(route: string): BackendHealth[] | null {
    const out: BackendHealth[] = [];
    for (const c of this.checks.values()) {
      if (c.route !== route) continue;
      out.push({ backend: formatBackend(c.backend), state: c.state, reason: c.reason, failures: c.failures, since: c.since, checkedAt: c.checkedAt });
    }
    return out.length ? out : null;
  }

  /** Stops every check: timers cleared, probes in flight aborted, no callback after this. */
  stop(): void {
    this.stopped = true;
    for (const [key, c] of this.checks) this.drop(key, c);
  }

  private drop(key: string, c: Check): void {
    c.removed = true;
    if (c.timer) clearTimeout(c.timer);
    c.timer = null;
    c.inFlight?.abort();
    c.inFlight = null;
    this.checks.delete(key);
  }

  private schedule(c: Check, delayMs: number): void {
    if (c.timer) clearTimeout(c.timer);
    c.timer = null;
    if (this.stopped || c.removed || c.inFlight) return;
    c.timer = setTimeout(() => this.run(c), Math.max(0, delayMs));
    c.timer.unref();
  }

  private run(c: Check): void {
    c.timer = null;
    if (this.stopped || c.removed) return;
    if (c.ip === null) return this.schedule(c, c.intervalMs);
    const started = this.now();
    const ctrl = new AbortController();
    c.inFlight = ctrl;
    const target: ProbeTarget = { ip: c.ip, host: c.backend.host, port: c.backend.port, path: c.path, timeoutMs: Math.min(c.intervalMs, HEALTH_CHECK.maxTimeoutMs) };
    let pending: Promise<ProbeResult>;
    try {
      pending = this.probe(target, ctrl.signal);
    } catch (e) {
      pending = Promise.resolve({ ok: false, reason: `probe failed: ${(e as Error).message}` });
    }
    pending
      .catch((e: unknown): ProbeResult => ({ ok: false, reason: `probe failed: ${(e as Error)?.message ?? String(e)}` }))
      .then((r) => {
        if (c.inFlight === ctrl) c.inFlight = null;
        if (this.stopped || c.removed) return;
        this.record(c, r);
        this.schedule(c, c.intervalMs - (this.now() - started));
      })
      .catch((e: unknown) => this.log.error('health check bookkeeping failed', { error: (e as Error)?.message ?? String(e) }));
  }

  private record(c: Check, r: ProbeResult): void {
    const now = this.now();
    c.checkedAt = now;
    const was = c.state;
    if (r.ok) {
      c.failures = 0;
      c.reason = null;
      if (was !== 'up') {
        c.state = 'up';
        c.since = now;
      }
      if (was === 'down') {
        this.log.info('backend passed its health check; back in the route', { route: c.route, backend: formatBackend(c.backend), status: r.status });
        this.changed();
      }
      return;
    }
    c.failures += 1;
    c.reason = printable(r.reason).slice(0, 120);
    if (was !== 'down' && c.failures >= FALL) {
      c.state = 'down';
      c.since = now;
      this.log.warn('backend failed its health check; taken out of the route', { route: c.route, backend: formatBackend(c.backend), reason: c.reason, failures: c.failures });
      this.changed();
    }
  }

  private changed(): void {
    try {
      this.opts.onChange();
    } catch (e) {
      this.log.error('reacting to a health change failed', { error: (e as Error)?.message ?? String(e) });
    }
  }
}
