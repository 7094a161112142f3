import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from './config';
import { HealthChecker, type BackendHealth } from './health/health-checker';
import type { Logger } from './log';
import { merge, type ProviderViews } from './model/merge';
import { buildPushData, type EdgeShare, type EdgeToken, type EdgeUser } from './model/push-payload';
import type { Backend, DesiredState, ProviderState, Rejection } from './model/types';
import { formatBackend } from './model/validate';
import type { Provider, Publication } from './providers/provider';
import type { Applier, ApplyResult } from './proxy/applier';
import { pushData, pushDelta, proxyDataState, request } from './proxy/edge-client';
import { deltaBody, diffData, encodeData, fullBody, type Encoded } from './proxy/push-delta';
import { render, sameConfig, type Bundle, type RenderInput, type RenderedTcp, type Templates } from './render/render';

/** Where the live identity tables come from (the store); bumps its version on every change. */
export interface TokenSource {
  version(): number;
  /** Live tokens at `nowMs` (revoked and expired ones left out). */
  table(nowMs: number): Record<string, EdgeToken>;
  users?(): Record<string, EdgeUser>;
  shares?(): Record<string, EdgeShare>;
  /** Records denials reported by the edge in the audit log. */
  recordDenials?(entries: EdgeDenial[]): void;
  /** Records when tokens were last used at the edge (epoch seconds, by token id). */
  recordLastUsed?(seen: Record<string, number>): void;
}

/** A 401/403 the edge reported (no secret in it). */
export interface EdgeDenial {
  ts: number;
  status: number;
  reason: string;
  route?: string;
  token?: string;
  user?: string;
  client: string;
  path?: string;
}

/** Assigns TCP pool ports to TCP routes (persisted by the store). */
export interface PortAllocator {
  assign(routes: DesiredState['tcp']): { ports: Map<string, number>; unroutable: Map<string, string> };
}

/** The router's view for `appgw routes` and the health/status API. */
export interface RouterStatus {
  router: string;
  generation: string | null;
  lastApply: (ApplyResult & { at: string }) | null;
  lastFailure: (ApplyResult & { at: string }) | null;
  reloads: number;
  pushes: number;
  dataVersion: number;
  providers: ReturnType<Provider['status']>[];
  routes: Array<{ kind: 'ephemeral' | 'static' | 'tcp'; id: string; url: string; backends: string[]; status: string; provider: string; owner?: string | null; health?: RouteHealthStatus }>;
  rejections: Rejection[];
}

/**
 * The active health check of a static route as the status shows it. `backends` of the route
 * leaves out the ones that are `down` here.
 */
export interface RouteHealthStatus {
  path: string;
  interval_ms: number;
  /** Per checked backend; empty until the route has a backend to check. */
  backends: Array<{ backend: string; state: BackendHealth['state']; reason: string | null; failures: number; since: string | null; checked_at: string | null }>;
}

export interface RouterDeps {
  config: Config;
  log: Logger;
  templates: Templates;
  applier: Applier;
  providers: Provider[];
  tokens: TokenSource;
  ports?: PortAllocator;
  /** Static part of the render input (paths, modules, users); routes are added per render. */
  renderBase: Omit<RenderInput, 'generation' | 'static' | 'tcp'>;
  /** Unix socket of the proxy's push channel. */
  pushSocket: string;
  /** Milliseconds to wait for a burst of changes to settle before a reload. */
  settleMs?: number;
}

/**
 * The control loop: merge provider snapshots → validate → if equal to running, stop → classify
 * (data push and/or reload) → render → apply. Never on the request path.
 */
export class Router {
  private readonly views: ProviderViews = new Map();
  private readonly epoch = randomBytes(8).toString('hex');
  private version = 0;
  /** What the proxy holds after the last push, or null when unknown (none yet, failed, proxy restarted). */
  private lastPushed: Encoded | null = null;
  private live: Bundle | null = null;
  private lastFailedBundle: Bundle | null = null;
  private desired: DesiredState = { ephemeral: [], static: [], tcp: [], rejections: [] };
  private tcpPorts = new Map<string, number>();
  private tcpUnroutable = new Map<string, string>();
  private reconcileTimer: NodeJS.Timeout | null = null;
  private reloadTimer: NodeJS.Timeout | null = null;
  private healTimer: NodeJS.Timeout | null = null;
  private watchTimer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private dirty = false;
  private lastReloadAt = 0;
  private reloadPendingSince: number | null = null;
  private readonly dns = new Map<string, { ip: string | null; at: number }>();
  private stopped = false;
  /** False until the first generation is applied: snapshots are only recorded before that. */
  private ready = false;
  private applying: Promise<void> | null = null;
  readonly stats = { reloads: 0, pushes: 0, fullPushes: 0, lastApply: null as (ApplyResult & { at: string }) | null, lastFailure: null as (ApplyResult & { at: string }) | null };
  /** Called after every apply attempt (tests and supervision hook in here). */
  onApply: ((r: ApplyResult) => void) | null = null;
  /** Active health checks of static routes; a backend going down or coming back is a data push. */
  readonly health: HealthChecker;

  constructor(private readonly d: RouterDeps) {
    this.health = new HealthChecker({ log: d.log, onChange: () => this.scheduleReconcile() });
  }

  /**
   * Starts the providers and waits for their first answer, renders and applies the first
   * generation from what they said (so a restart does not flap routes through an empty config),
   * lets the caller start the proxy on it (`afterFirstApply`), then pushes the data and starts
   * the periodic heal and the identity watch.
   */
  async start(afterFirstApply?: () => Promise<void>): Promise<void> {
    for (const p of this.d.providers) this.views.set(p.name, { state: { kind: 'pending' }, rejections: [] });
    await Promise.all(
      this.d.providers.map((p) =>
        p.start((state, rejections) => this.onSnapshot(p.name, state, rejections)).catch((e) => {
          this.d.log.error('provider failed to start', { component: 'router', provider: p.name, error: (e as Error).message });
        }),
      ),
    );
    await this.computeDesired();
    const first = await this.applyNow();
    if (!first.ok) throw new Error(`the first generation could not be applied: ${first.stage}: ${first.error}`);
    await afterFirstApply?.();
    this.ready = true;
    await this.reconcileNow();
    this.healTimer = setInterval(() => void this.heal(), this.d.config.pushIntervalMs);
    this.healTimer.unref();
    // identity changes come from other processes too (the CLI writes the store): watch its version
    let seen = this.d.tokens.version();
    this.watchTimer = setInterval(() => {
      try {
        const v = this.d.tokens.version();
        if (v !== seen) {
          seen = v;
          this.scheduleReconcile();
        }
      } catch (e) {
        this.d.log.warn('cannot read the token version', { component: 'router', error: (e as Error).message });
      }
    }, 10);
    this.watchTimer.unref();
  }

  /** Stops providers and timers; the proxy keeps serving what it has. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.health.stop();
    for (const t of [this.reconcileTimer, this.reloadTimer]) if (t) clearTimeout(t);
    if (this.healTimer) clearInterval(this.healTimer);
    if (this.watchTimer) clearInterval(this.watchTimer);
    await Promise.all(this.d.providers.map((p) => p.stop().catch(() => undefined)));
    await this.running;
    // an apply under way finishes (or rolls back) before stop returns, and the status is on disk
    await this.applying;
    await this.statusWriting;
  }

  /** A provider sent a (complete) snapshot. */
  onSnapshot(name: string, state: ProviderState, rejections: Rejection[]): void {
    this.views.set(name, { state, rejections });
    this.scheduleReconcile();
  }

  /** Something outside the providers changed (tokens, store routes): reconcile soon. */
  scheduleReconcile(): void {
    if (!this.ready || this.stopped || this.reconcileTimer) return;
    this.reconcileTimer = setTimeout(() => {
      this.reconcileTimer = null;
      void this.reconcileNow();
    }, 2);
  }

  /** Runs one reconcile (serialised: a call during a run makes the run repeat once). */
  async reconcileNow(): Promise<void> {
    if (this.running) {
      this.dirty = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.dirty = false;
        try {
          await this.reconcileOnce();
        } catch (e) {
          this.d.log.error('reconcile failed', { component: 'router', error: (e as Error).stack ?? String(e) });
        }
      } while (this.dirty && !this.stopped);
    })();
    try {
      await this.running;
    } finally {
      this.running = null;
    }
  }

  /** Merges the providers' views, resolves backend names and assigns TCP ports. */
  private async computeDesired(): Promise<void> {
    const desired = merge(this.views);
    await this.resolveHosts(desired);
    this.desired = desired;
    if (!this.stopped) this.health.sync(desired.static, (b) => this.resolved(b));
    if (this.d.ports) {
      const a = this.d.ports.assign(desired.tcp);
      this.tcpPorts = a.ports;
      this.tcpUnroutable = a.unroutable;
    }
  }

  private async reconcileOnce(): Promise<void> {
    await this.computeDesired();
    // pushes run one at a time, inside the serialised reconcile: each is a delta against the last
    await this.push();
    const bundle = this.renderFor('g000000');
    if (!sameConfig(this.live, bundle) && !sameConfig(this.lastFailedBundle, bundle)) this.scheduleReload();
    this.publish();
    this.writeStatus();
  }

  private renderFor(generation: string): Bundle {
    const tcp: RenderedTcp[] = [];
    for (const r of this.desired.tcp) {
      const port = this.tcpPorts.get(r.id);
      const ip = this.resolved(r.backend);
      if (port === undefined || !ip) continue;
      tcp.push({ id: r.id, port, backend: { host: ip, port: r.backend.port }, allow: r.allowCidrs ?? this.d.config.tcp.allowCidrs });
    }
    return render(this.d.templates, { ...this.d.renderBase, generation, static: this.desired.static, tcp });
  }

  /**
   * Trailing debounce of reloads: each change waits for `settleMs` of quiet (so a burst of edits
   * is one reload), never longer than max(RELOAD_MIN_INTERVAL, 1 s) after the first pending
   * change, and never sooner than RELOAD_MIN_INTERVAL after the previous reload.
   */
  private scheduleReload(): void {
    if (this.stopped) return;
    const now = Date.now();
    const minInterval = this.d.config.reloadMinIntervalMs;
    this.reloadPendingSince ??= now;
    const earliest = this.lastReloadAt + minInterval;
    const latest = Math.max(this.reloadPendingSince + Math.max(minInterval, 1000), earliest);
    const at = Math.min(Math.max(now + (this.d.settleMs ?? 150), earliest), latest);
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      this.reloadPendingSince = null;
      void this.reloadNow();
    }, Math.max(0, at - now));
  }

  private async reloadNow(): Promise<void> {
    if (this.stopped) return;
    // an apply still running finishes first; then decide on the state as it is by then
    await this.applying;
    const bundle = this.renderFor('g000000');
    if (this.stopped || sameConfig(this.live, bundle)) return;
    this.lastReloadAt = Date.now();
    await this.applyNow();
  }

  /** Applies are serialised: one that is asked for while another runs starts after it. */
  private applyNow(): Promise<ApplyResult> {
    const run = (this.applying ?? Promise.resolve()).then(() => this.applyOnce());
    this.applying = run.then(() => undefined, () => undefined);
    return run;
  }

  private async applyOnce(): Promise<ApplyResult> {
    const generation = this.d.applier.peekGeneration();
    const bundle = this.renderFor(generation);
    const result = await this.d.applier.apply(bundle);
    const stamped = { ...result, at: new Date().toISOString() };
    this.stats.lastApply = stamped;
    if (result.ok) {
      this.live = bundle;
      this.lastFailedBundle = null;
      if (result.reloaded) this.stats.reloads += 1;
      this.d.log.info(result.reloaded ? 'reloaded' : 'generation written', { component: 'applier', generation, ms: result.ms });
    } else {
      this.lastFailedBundle = bundle;
      this.stats.lastFailure = stamped;
    }
    this.onApply?.(result);
    this.writeStatus();
    return result;
  }

  /** JSON of record objects already serialised (token sources reuse unchanged records). */
  private readonly pushedJson = new WeakMap<object, string>();
  /**
   * Pushes the data when it changed: a delta against what the proxy holds when the last push
   * succeeded (router/proxy/push-delta.ts), else — first push, after a failure, a proxy that
   * reports another version (heal), or one that refuses the delta — the full snapshot.
   */
  private async push(): Promise<void> {
    const t = this.d.tokens;
    const identity = { tokens: t.table(Date.now()), users: t.users?.() ?? {}, shares: t.shares?.() ?? {} };
    const data = buildPushData(
      this.desired,
      (b) => this.resolved(b),
      identity,
      { clearml_cookie: this.d.config.authCookieName, secure: this.d.config.authSecure, read_timeout_s: this.d.config.readTimeoutS },
      (route, b) => this.health.healthy(route, b),
    );
    const enc = encodeData(data, this.pushedJson);
    const last = this.lastPushed;
    const diff = last ? diffData(last, enc) : null;
    if (last && !diff) return;
    const base = this.version;
    this.version += 1;
    try {
      const delta = diff ? await pushDelta(this.d.pushSocket, deltaBody(this.epoch, this.version, base, diff)) : null;
      if (delta === 'refused') this.d.log.info('the proxy does not hold the base of a delta; pushing everything', { component: 'router', base });
      if (delta !== 'applied') {
        await pushData(this.d.pushSocket, fullBody(this.epoch, this.version, data));
        this.stats.fullPushes += 1;
      }
      this.lastPushed = enc;
      this.stats.pushes += 1;
    } catch (e) {
      this.lastPushed = null;
      this.d.log.warn('push to the proxy failed; will retry', { component: 'router', error: (e as Error).message });
    }
  }

  /** Periodic: re-push when the proxy lost its data (restart) and refresh token expiry. */
  async heal(): Promise<void> {
    if (this.stopped) return;
    // a push in flight changes the version under the probe: judge only an idle router's answer
    const version = this.version;
    const idle = this.running === null;
    try {
      const s = await proxyDataState(this.d.pushSocket);
      const stillIdle = idle && this.running === null && this.version === version;
      if (stillIdle && (s.epoch !== this.epoch || s.version !== version)) this.lastPushed = null;
    } catch (e) {
      // no answer is not a different version: a busy proxy keeps its data; ask again next tick
      this.d.log.debug('proxy state probe failed', { component: 'router', error: (e as Error).message });
    }
    await this.reconcileNow();
    await this.drainDenials();
  }

  /** Moves the denials the edge queued into the audit log, and token last-use times into the store. */
  async drainDenials(): Promise<void> {
    const t = this.d.tokens;
    const collect = async <T>(path: string, use: (v: T) => void) => {
      try {
        const res = await request({ socketPath: this.d.pushSocket, path, method: 'POST', body: '' }, 3000);
        if (res.status === 200) use(JSON.parse(res.body) as T);
      } catch (e) {
        this.d.log.debug('cannot collect from the proxy', { component: 'router', path, error: (e as Error).message });
      }
    };
    if (t.recordDenials) await collect<EdgeDenial[]>('/_internal/denials', (v) => v.length && t.recordDenials!(v));
    if (t.recordLastUsed) await collect<Record<string, number> | unknown[]>('/_internal/last-used', (v) => !Array.isArray(v) && Object.keys(v).length && t.recordLastUsed!(v));
  }

  /** Pure lookup of a backend's IP (literal, or from the DNS cache). */
  private resolved(b: Backend): string | null {
    if (isIP(b.host)) return b.host;
    return this.dns.get(b.host)?.ip ?? null;
  }

  private async resolveHosts(desired: DesiredState): Promise<void> {
    const names = new Set<string>();
    for (const r of desired.ephemeral) if (!isIP(r.backend.host)) names.add(r.backend.host);
    for (const r of desired.static) for (const b of r.backends) if (!isIP(b.host)) names.add(b.host);
    for (const r of desired.tcp) if (!isIP(r.backend.host)) names.add(r.backend.host);
    const now = Date.now();
    await Promise.all(
      [...names].map(async (n) => {
        const c = this.dns.get(n);
        if (c && now - c.at < 30_000) return;
        try {
          const { address } = await lookup(n, { family: 4 });
          this.dns.set(n, { ip: address, at: now });
        } catch {
          this.dns.set(n, { ip: c?.ip ?? null, at: now });
          this.d.log.warn('backend name does not resolve', { component: 'router', host: n });
        }
      }),
    );
  }

  /** The public URL of an ephemeral route or static route. */
  private urlOf(kind: 'ephemeral' | 'static', id: string): string {
    const base = this.d.config.routerUrl;
    if (kind === 'ephemeral') return `${base}/service/${id}/`;
    const r = this.desired.static.find((s) => s.name === id);
    if (r?.path) return `${base}${r.path}`;
    if (r?.subdomain && this.d.config.routerDomain) {
      const u = new URL(base);
      return `${u.protocol}//${r.subdomain}.${this.d.config.routerDomain}${u.port ? `:${u.port}` : ''}/`;
    }
    return base;
  }

  private publish(): void {
    const byProvider = new Map<string, Publication[]>();
    const add = (p: string, x: Publication) => {
      if (!byProvider.has(p)) byProvider.set(p, []);
      byProvider.get(p)!.push(x);
    };
    for (const r of this.desired.ephemeral) {
      const url = this.urlOf('ephemeral', r.id);
      add(r.provider, { protocol: 'http', taskId: r.taskId, endpoint: r.endpoint, url, browserUrl: url });
    }
    for (const [name, view] of this.views) {
      if (view.state.kind !== 'ready') continue;
      for (const b of view.state.snapshot.bindings) {
        if (!this.desired.static.some((s) => s.name === b.route)) continue;
        const url = this.urlOf('static', b.route);
        add(name, { protocol: 'http', taskId: b.taskId, endpoint: b.endpoint, url, browserUrl: url });
      }
    }
    const address = this.d.config.tcp.routerAddress ?? new URL(this.d.config.routerUrl).hostname;
    for (const r of this.desired.tcp) {
      const port = this.tcpPorts.get(r.id);
      if (port !== undefined) add(r.provider, { protocol: 'tcp', taskId: r.taskId, endpoint: r.endpoint, address, port, upstreamPort: r.backend.port });
      else add(r.provider, { protocol: 'tcp', taskId: r.taskId, endpoint: r.endpoint, unroutable: this.tcpUnroutable.get(r.id) ?? 'no TCP port pool is configured (TCP_PORT_START/TCP_PORT_END)' });
    }
    for (const p of this.d.providers) {
      try {
        p.published?.(byProvider.get(p.name) ?? []);
      } catch (e) {
        this.d.log.error('provider publish failed', { component: 'router', provider: p.name, error: (e as Error).message });
      }
    }
  }

  /** The current status (also written to DATA_DIR/status.json for `appgw routes`). */
  status(): RouterStatus {
    const address = this.d.config.tcp.routerAddress ?? new URL(this.d.config.routerUrl).hostname;
    const live = (bs: Backend[]) => bs.map(formatBackend);
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    const routes: RouterStatus['routes'] = [
      ...this.desired.static.map((r) => {
        const healthy = r.backends.filter((b) => this.health.healthy(r.name, b));
        const checked = r.healthCheck && r.enabled ? this.health.view(r.name) ?? [] : null;
        return {
          kind: 'static' as const,
          id: r.name,
          url: this.urlOf('static', r.name),
          backends: live(healthy),
          // every backend failing its health check: Pending, as when none accepts connections
          status: !r.enabled ? 'Disabled' : r.backends.length === 0 ? 'Not in use' : healthy.length === 0 ? 'Pending' : 'Routing',
          provider: r.provider,
          ...(r.healthCheck && checked
            ? {
                health: {
                  path: r.healthCheck.path,
                  interval_ms: r.healthCheck.intervalMs,
                  backends: checked.map((h) => ({ backend: h.backend, state: h.state, reason: h.reason, failures: h.failures, since: iso(h.since), checked_at: iso(h.checkedAt) })),
                },
              }
            : {}),
        };
      }),
      ...this.desired.ephemeral.map((r) => ({
        kind: 'ephemeral' as const,
        id: r.id,
        url: this.urlOf('ephemeral', r.id),
        backends: live([r.backend]),
        status: this.resolved(r.backend) ? 'Routing' : 'Pending',
        provider: r.provider,
        owner: r.owner,
      })),
      ...this.desired.tcp.map((r) => {
        const port = this.tcpPorts.get(r.id);
        return {
          kind: 'tcp' as const,
          id: r.id,
          url: port !== undefined ? `${address}:${port}` : '',
          backends: live([r.backend]),
          status: port !== undefined ? 'Routing' : `Unroutable: ${this.tcpUnroutable.get(r.id) ?? 'no TCP port pool is configured'}`,
          provider: r.provider,
          owner: r.owner,
        };
      }),
    ];
    return {
      router: this.d.config.routerName,
      generation: this.d.applier.liveGeneration(),
      lastApply: this.stats.lastApply,
      lastFailure: this.stats.lastFailure,
      reloads: this.stats.reloads,
      pushes: this.stats.pushes,
      dataVersion: this.version,
      providers: this.d.providers.map((p) => p.status()),
      routes,
      rejections: this.desired.rejections,
    };
  }

  /**
   * Writes status.json and routes.json off the reconcile's path: file creation on a slow disk took
   * 30–680 ms here, and done inline it held back the next push (a revocation) by as much. One
   * write at a time, of the state when it starts; a change meanwhile writes again after it.
   */
  private writeStatus(): void {
    this.statusDirty = true;
    if (this.statusWriting) return;
    this.statusWriting = (async () => {
      while (this.statusDirty) {
        this.statusDirty = false;
        try {
          const s = this.status();
          await atomicWrite(join(this.d.config.dataDir, 'status.json'), JSON.stringify(s, null, 2));
          await atomicWrite(join(this.d.config.nginxDir, 'routes.json'), JSON.stringify({ generated: new Date().toISOString(), ephemeral: this.desired.ephemeral }, null, 2));
        } catch (e) {
          this.d.log.warn('could not write status', { component: 'router', error: (e as Error).message });
        }
      }
    })().finally(() => {
      this.statusWriting = null;
    });
  }

  private statusWriting: Promise<void> | null = null;
  private statusDirty = false;
}

async function atomicWrite(path: string, content: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(tmp, content, { mode: 0o644 });
  await rename(tmp, path);
}
