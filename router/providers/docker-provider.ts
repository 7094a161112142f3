import Docker from 'dockerode';
import { errorMessage } from '../errors';
import type { Logger } from '../log';
import { DOCKER_PROVIDER, ENABLE_LABEL, buildDockerSnapshot } from './docker-labels';
import { PollingProvider, type Discovery } from './polling-provider';

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

/**
 * The `docker` provider: lists the running containers labelled `appgw.enable=true` through the
 * Docker engine's socket every `pollMs`, reads their labels (docker-labels.ts) and emits a complete
 * snapshot whenever the view changes. Until the first successful listing it emits nothing. When the
 * engine is unreachable, slow or answers with an error it keeps the last good view, is degraded in
 * status() (with the reason and since when), and retries with an exponential backoff with jitter
 * that resets after a healthy listing (polling-provider.ts). The only dockerode import besides the
 * proxy's; never throws.
 */
export class DockerProvider extends PollingProvider {
  readonly name = DOCKER_PROVIDER;
  private readonly docker: Docker;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private abort: AbortController | null = null;

  constructor(
    private readonly socketPath: string,
    log: Logger,
    options: DockerProviderOptions = {},
  ) {
    const pollMs = Math.max(10, options.pollMs ?? 2000);
    super(
      { pollMs, backoffMaxMs: Math.max(options.backoffMaxMs ?? 30_000, pollMs), now: options.now ?? Date.now, random: options.random ?? Math.random },
      {
        recovered: 'Docker engine reachable again',
        rejected: 'containers have rejected labels',
        discovered: 'containers discovered',
        failedKeeping: 'Docker engine unreachable; keeping the last good routes',
        failedEmpty: 'Docker engine unreachable; nothing routed from Docker yet',
      },
    );
    this.timeoutMs = Math.max(1, options.timeoutMs ?? 10_000);
    this.docker = new Docker({ socketPath });
    this.logger = log.child({ component: 'provider', provider: DOCKER_PROVIDER });
  }

  protected get log(): Logger {
    return this.logger;
  }

  protected override cancel(): void {
    this.abort?.abort();
  }

  protected override recoveredFields(d: Discovery): Record<string, unknown> {
    return { socket: this.socketPath, containers: d.logFields.containers };
  }

  /** One listing; true when it succeeded. Never throws. */
  protected async poll(): Promise<boolean> {
    const started = this.timing.now();
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
      const { snapshot, rejections } = buildDockerSnapshot(containers, this.name);
      this.succeeded({ snapshot, rejections, logFields: { containers: containers.length, ms: this.timing.now() - started } });
      return true;
    } catch (e) {
      const why = timedOut ? `no answer within ${this.timeoutMs} ms` : errorMessage(e);
      this.failed(`cannot list containers through the Docker engine at ${this.socketPath}: ${oneLine(why)}`, { socket: this.socketPath });
      return false;
    } finally {
      clearTimeout(deadline);
      this.abort = null;
    }
  }
}

/** An engine's error message as one bounded line (it may echo what a container was configured with). */
function oneLine(s: string): string {
  const flat = s.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]+/gu, ' ').trim();
  return flat.length > 300 ? `${flat.slice(0, 300)}…` : flat;
}
