import { errorMessage } from '../errors';
import type { Logger } from '../log';
import type { ProviderState, Rejection, Snapshot } from '../model/types';
import { providerStatus, type Provider, type ProviderStatus } from './provider';

/** How often a polling provider asks its source, and how it backs off. */
export interface PollTiming {
  /** Between healthy polls. */
  pollMs: number;
  /** Upper bound of the backoff between failed polls. */
  backoffMaxMs: number;
  now: () => number;
  random: () => number;
}

/** What one healthy poll found. */
export interface Discovery {
  snapshot: Snapshot;
  rejections: Rejection[];
  /** Fields of the "discovered" log line besides the snapshot's counts (e.g. `tasks`, `ms`). */
  logFields: Record<string, unknown>;
}

/** The log lines a provider words in its own terms. */
export interface PollMessages {
  /** e.g. `ClearML API reachable again` */
  recovered: string;
  /** e.g. `ClearML tasks have rejected endpoints` */
  rejected: string;
  /** e.g. `ClearML tasks discovered` */
  discovered: string;
  /** e.g. `ClearML poll failed; keeping the last good routes` */
  failedKeeping: string;
  /** e.g. `ClearML poll failed; nothing routed from ClearML yet` */
  failedEmpty: string;
}

/**
 * A provider that polls a source (the ClearML API, the Docker engine): one job at a time (polls and
 * whatever else the provider queues), the usual rhythm after a healthy poll and an exponential
 * backoff with jitter after failed ones (reset by a healthy poll). A failed poll keeps the last
 * good view and emits nothing; the provider is degraded in status() with the reason and since
 * when. A healthy poll emits only when the view changed. Never throws into the event loop.
 */
export abstract class PollingProvider implements Provider {
  abstract readonly name: string;

  private emit: ((state: ProviderState, rejections: Rejection[]) => void) | null = null;
  /** Set by stop(): no poll, emit or write starts after it. */
  protected stopped = true;
  private timer: NodeJS.Timeout | null = null;
  private work: Promise<void> = Promise.resolve();

  private good: { key: string; snapshot: Snapshot } | null = null;
  /** The reason of the last failed poll, null when the last poll was healthy. */
  protected error: string | null = null;
  private degradedSince: number | null = null;
  private lastSuccess: number | null = null;
  private rejections: Rejection[] = [];
  private failures = 0;

  protected constructor(
    protected readonly timing: PollTiming,
    private readonly messages: PollMessages,
  ) {}

  /** The provider's logger (a child with its component and name). */
  protected abstract get log(): Logger;

  /** One poll: report it with `succeeded()` or `failed()`; true when it succeeded. Never throws. */
  protected abstract poll(): Promise<boolean>;

  /** Runs after a healthy poll, in the same job (ClearML writes back here). */
  protected async afterHealthyPoll(): Promise<void> {}

  /** Cancels a poll in flight, when stop() is called. */
  protected cancel(): void {}

  /** Starts polling; resolves after the first poll finished, successfully or not. Never throws. */
  async start(emit: (state: ProviderState, rejections: Rejection[]) => void): Promise<void> {
    this.emit = emit;
    this.stopped = false;
    await this.enqueue(() => this.cycle());
  }

  /** Stops polling and cancels a poll in flight; no emit (and no write) happens after it resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.cancel();
    await this.work;
    this.emit = null;
  }

  /** Polls now, then keeps the usual rhythm; resolves when done. */
  pollNow(): Promise<void> {
    return this.enqueue(() => this.cycle());
  }

  /** Pure view of the provider's health. */
  status(): ProviderStatus {
    const { error, degradedSince, lastSuccess, rejections } = this;
    return providerStatus(this.name, { error, ready: this.good !== null, degradedSince, lastSuccess, rejections });
  }

  /** Runs jobs one at a time; a job never rejects (each catches its own errors). */
  protected enqueue(job: () => Promise<void>): Promise<void> {
    const run = this.work.then(() => (this.stopped ? undefined : job()));
    this.work = run.catch((e) => this.log.error(`${this.name} provider job failed`, { error: errorMessage(e) }));
    return this.work;
  }

  private async cycle(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ok = await this.poll();
    if (ok) await this.afterHealthyPoll();
    if (this.stopped) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        void this.enqueue(() => this.cycle());
      },
      ok ? this.timing.pollMs : this.backoff(),
    );
    this.timer.unref();
  }

  /** Exponential in the number of failures since the last healthy poll, capped, with jitter. */
  private backoff(): number {
    const { pollMs, backoffMaxMs, random } = this.timing;
    const cap = Math.min(backoffMaxMs, pollMs * 2 ** Math.min(this.failures - 1, 20));
    return Math.round(cap / 2 + (random() * cap) / 2);
  }

  /** Records a healthy poll; emits when the view changed. */
  protected succeeded(d: Discovery): void {
    if (this.stopped) return;
    const { snapshot, rejections } = d;
    const key = JSON.stringify([snapshot, rejections]);
    const at = this.timing.now();
    const recovered = this.error !== null;
    const rejectionsChanged = JSON.stringify(rejections) !== JSON.stringify(this.rejections);
    this.error = null;
    this.degradedSince = null;
    this.failures = 0;
    this.lastSuccess = at;
    this.rejections = rejections;
    if (recovered) this.log.info(this.messages.recovered, this.recoveredFields(d));
    if (rejectionsChanged && rejections.length > 0) {
      this.log.warn(this.messages.rejected, {
        count: rejections.length,
        rejections: rejections.slice(0, 20).map((r) => `${r.source}: ${r.reason}`),
      });
    }
    if (this.good && this.good.key === key) return;
    this.good = { key, snapshot };
    const { ms, ...fields } = d.logFields;
    this.log.info(this.messages.discovered, {
      ...fields,
      ephemeral: snapshot.ephemeral.length,
      bindings: snapshot.bindings.length,
      tcp: snapshot.tcp.length,
      rejected: rejections.length,
      ms,
    });
    try {
      this.emit?.({ kind: 'ready', snapshot, at, degradedSince: null, error: null }, [...rejections]);
    } catch (e) {
      this.log.error(`handling the ${this.name} snapshot failed`, { error: errorMessage(e) });
    }
  }

  /** Fields of the "reachable again" log line. */
  protected recoveredFields(d: Discovery): Record<string, unknown> {
    const { ms: _ms, ...fields } = d.logFields;
    return fields;
  }

  /** Records a failed poll (logged once per distinct reason); the last good view stays. */
  protected failed(reason: string, fields: Record<string, unknown> = {}): void {
    if (this.stopped) return;
    if (reason !== this.error) {
      this.log.warn(this.good ? this.messages.failedKeeping : this.messages.failedEmpty, { ...fields, error: reason });
    }
    this.error = reason;
    this.degradedSince ??= this.timing.now();
    this.failures++;
  }
}
