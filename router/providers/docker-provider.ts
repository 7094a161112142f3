import Docker from 'dockerode';
import { errorMessage } from '../errors';
import type { Logger } from '../log';
import type { ProviderState, Rejection, Snapshot } from '../model/types';
import { DOCKER_PROVIDER, ENABLE_LABEL, buildDockerSnapshot } from './docker-labels';
import type { Provider, ProviderStatus } from './provider';

/** Tuning of the docker provider; the defaults suit production, tests shorten them. */
export interface DockerProviderOptions {
  /** Time between two listings of the containers; default 2 s. */
  pollMs?: number;
  /** Upper bound of the backoff between failed listings; default 30 s. */
  backoffMaxMs?: number;
  /** A listing that takes longer fails; default 10 s. */
  timeoutMs?: number;
  now?: () => number;
  random?: () => number;
}

interface GoodView {
  key: string;
  snapshot: Snapshot;
}

/**
 * The `docker` provider: lists the running containers labelled `appgw.enable=true` through the
 * Docker engine's socket every `pollMs`, reads their labels (docker-labels.ts) and emits a complete
 * snapshot whenever the view changes. Until the first successful listing it emits nothing. When the
 * engine is unreachable, slow or answers with an error it keeps the last good view, is degraded in
 * status() (with the reason and since when), and retries with an exponential backoff with jitter
 * that resets after a healthy listing. The only dockerode import besides the proxy's; never throws.
 */
export class DockerProvider implements Provider {
  readonly name = DOCKER_PROVIDER;
  private readonly docker: Docker;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly backoffMaxMs: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly random: () => number;

  private emit: ((state: ProviderState, rejections: Rejection[]) => void) | null = null;
  private stopped = true;
  private timer: NodeJS.Timeout | null = null;
  private work: Promise<void> = Promise.resolve();
  private abort: AbortController | null = null;

  private good: GoodView | null = null;
  private error: string | null = null;
  private degradedSince: number | null = null;
  private lastSuccess: number | null = null;
  private rejections: Rejection[] = [];
  private failures = 0;

  constructor(
    private readonly socketPath: string,
    log: Logger,
    options: DockerProviderOptions = {},
  ) {
    this.pollMs = Math.max(10, options.pollMs ?? 2000);
    this.backoffMaxMs = Math.max(options.backoffMaxMs ?? 30_000, this.pollMs);
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.timeoutMs = Math.max(1, options.timeoutMs ?? 10_000);
    this.docker = new Docker({ socketPath });
    this.log = log.child({ component: 'provider', provider: this.name });
  }

  /** Starts polling; resolves after the first listing finished, successfully or not. Never throws. */
  async start(emit: (state: ProviderState, rejections: Rejection[]) => void): Promise<void> {
    this.emit = emit;
    this.stopped = false;
    await this.enqueue(() => this.cycle());
  }

  /** Stops polling and cancels a listing in flight; no emit happens after it resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    await this.work;
    this.emit = null;
  }

  /** Lists now, then keeps the usual rhythm; resolves when done. */
  pollNow(): Promise<void> {
    return this.enqueue(() => this.cycle());
  }

  /** Pure view of the provider's health. */
  status(): ProviderStatus {
    return {
      name: this.name,
      state: this.error !== null ? 'degraded' : this.good ? 'ok' : 'pending',
      degradedSince: this.degradedSince,
      lastError: this.error,
      lastSuccess: this.lastSuccess,
      rejections: [...this.rejections],
    };
  }

  /** Runs jobs one at a time; a job never rejects (each catches its own errors). */
  private enqueue(job: () => Promise<void>): Promise<void> {
    const run = this.work.then(() => (this.stopped ? undefined : job()));
    this.work = run.catch((e) => this.log.error('docker provider job failed', { error: errorMessage(e) }));
    return this.work;
  }

  private async cycle(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ok = await this.poll();
    if (this.stopped) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        void this.enqueue(() => this.cycle());
      },
      ok ? this.pollMs : this.backoff(),
    );
    this.timer.unref();
  }

  /** Exponential in the number of failures since the last healthy listing, capped, with jitter. */
  private backoff(): number {
    const cap = Math.min(this.backoffMaxMs, this.pollMs * 2 ** Math.min(this.failures - 1, 20));
    return Math.round(cap / 2 + (this.random() * cap) / 2);
  }

  /** One listing; true when it succeeded. Never throws. */
  private async poll(): Promise<boolean> {
    const started = this.now();
    const abort = new AbortController();
    this.abort = abort;
    // a deadline for the whole listing: the client's own timeout only notices an idle socket
    let timedOut = false;
    const deadline = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, this.timeoutMs);
    try {
      const containers: unknown = await this.docker.listContainers({
        all: false,
        filters: { label: [`${ENABLE_LABEL}=true`], status: ['running'] },
        abortSignal: abort.signal,
      });
      if (!Array.isArray(containers)) throw new Error(`the engine answered GET /containers/json with ${typeof containers}, not a list`);
      this.accept(containers, this.now() - started);
      return true;
    } catch (e) {
      this.fault(timedOut ? new Error(`no answer within ${this.timeoutMs} ms`) : e);
      return false;
    } finally {
      clearTimeout(deadline);
      this.abort = null;
    }
  }

  private accept(containers: unknown[], tookMs: number): void {
    if (this.stopped) return;
    const { snapshot, rejections } = buildDockerSnapshot(containers, this.name);
    const key = JSON.stringify([snapshot, rejections]);
    const at = this.now();
    const recovered = this.error !== null;
    const rejectionsChanged = JSON.stringify(rejections) !== JSON.stringify(this.rejections);
    this.error = null;
    this.degradedSince = null;
    this.failures = 0;
    this.lastSuccess = at;
    this.rejections = rejections;
    if (recovered) this.log.info('Docker engine reachable again', { socket: this.socketPath, containers: containers.length });
    if (rejectionsChanged && rejections.length > 0) {
      this.log.warn('containers have rejected labels', {
        count: rejections.length,
        rejections: rejections.slice(0, 20).map((r) => `${r.source}: ${r.reason}`),
      });
    }
    if (this.good && this.good.key === key) return;
    this.good = { key, snapshot };
    this.log.info('containers discovered', {
      containers: containers.length,
      ephemeral: snapshot.ephemeral.length,
      bindings: snapshot.bindings.length,
      tcp: snapshot.tcp.length,
      rejected: rejections.length,
      ms: tookMs,
    });
    try {
      this.emit?.({ kind: 'ready', snapshot, at, degradedSince: null, error: null }, [...rejections]);
    } catch (e) {
      this.log.error('handling the docker snapshot failed', { error: errorMessage(e) });
    }
  }

  /** Records a failed listing; the last good view stays and nothing is emitted. */
  private fault(e: unknown): void {
    if (this.stopped) return;
    const reason = `cannot list containers through the Docker engine at ${this.socketPath}: ${oneLine(errorMessage(e))}`;
    if (reason !== this.error) {
      this.log.warn(this.good ? 'Docker engine unreachable; keeping the last good routes' : 'Docker engine unreachable; nothing routed from Docker yet', {
        socket: this.socketPath,
        error: reason,
      });
    }
    this.error = reason;
    this.degradedSince ??= this.now();
    this.failures++;
  }
}

/** An engine's error message as one bounded line (it may echo what a container was configured with). */
function oneLine(s: string): string {
  const flat = s.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]+/gu, ' ').trim();
  return flat.length > 300 ? `${flat.slice(0, 300)}…` : flat;
}
