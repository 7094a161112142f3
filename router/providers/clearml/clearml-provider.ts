import type { Config } from '../../config';
import { errorMessage } from '../../errors';
import type { Logger } from '../../log';
import type { Backend, Snapshot } from '../../model/types';
import { routeId } from '../../model/validate';
import { PollingProvider, type Discovery } from '../polling-provider';
import type { Publication } from '../provider';
import { type ApiObject, ClearmlClient, type ClearmlClientOptions, ClearmlError, MAX_PAGE_SIZE, createClearmlClient } from './api-client';
import { formatBackend } from '../../model/validate';
import { EXTERNAL_SERVICE_TAG, RUNTIME_KEYS, type TcpWriteBack, isObject, parseTasks, runtimeKey } from './parse-task';

/** The fields asked of tasks.get_all: what parsing needs, and a few for operators' logs. */
export const TASK_FIELDS = ['id', 'name', 'status', 'user', 'company', 'project', 'system_tags', 'runtime', 'execution.queue', 'last_update'];

/** Runtime keys the SDK writes as JSON numbers; the tasks.edit fallback keeps that type. */
const NUMERIC_KEYS = new Set<string>([RUNTIME_KEYS.tcpPort, RUNTIME_KEYS.upstreamTaskPort]);

/** What the provider reads from the configuration. */
export type ClearmlProviderConfig = Pick<Config, 'clearml' | 'tcp' | 'routerUrl'>;

/** Tuning of the ClearML provider; the defaults suit production, tests shorten them. */
export interface ClearmlProviderOptions {
  /** A ready client (tests); otherwise one is built from the configuration. */
  client?: ClearmlClient;
  /** Options for the client built from the configuration (timeouts, API version). */
  clientOptions?: Partial<ClearmlClientOptions>;
  /** Upper bound of the backoff between failed polls; default 60 s. */
  backoffMaxMs?: number;
  /** Queue names are resolved again every this many polls; default 5. */
  queueRefreshPolls?: number;
  /** Tasks written back in parallel; default 8. */
  writeConcurrency?: number;
  now?: () => number;
  random?: () => number;
}

/** Pure. A LISTEN_QUEUE_NAME entry (`*` and `?` wildcards) as an anchored regular expression. */
export function queuePattern(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * The `clearml` provider: polls tasks.get_all for running tasks tagged `external_service`
 * (optionally only those of the LISTEN_QUEUE_NAME queues), parses their runtime endpoints and emits
 * a complete snapshot whenever the view changes. Until the first successful poll it emits nothing.
 * When the API is unreachable, slow or refuses the credentials it keeps the last good view, is
 * degraded in status(), and retries with an exponential backoff with jitter that resets after a
 * healthy poll. After each reconcile it writes the published URLs and TCP addresses back into the
 * tasks' runtime (clearml-protocol.md §1.10, §2.4), only what changed; failures are logged and
 * retried next round. Polls and write-backs run one at a time (polling-provider.ts).
 */
export class ClearmlProvider extends PollingProvider {
  readonly name = 'clearml';
  private readonly client: ClearmlClient;
  private readonly logger: Logger;
  private readonly queueRefreshPolls: number;
  private readonly writeConcurrency: number;
  private readonly queueGlobs: string[];
  private readonly tcpGateway: { address: string | null; portStart: number | null; portEnd: number | null };
  private readonly stripPrefix: boolean;
  private writeQueued = false;

  private pollSeq = 0;
  private queueIds: string[] | null = null;
  private pollsSinceQueues = 0;
  /** Runtime of each task of the last good poll, and that poll's number. */
  private observed = new Map<string, Record<string, unknown>>();
  private observedSeq = 0;
  /** Upstream of each TCP route of the last good poll, by route id. */
  private tcpUpstreams = new Map<string, Backend>();
  /** What we wrote into `external_*` per TCP route, to recognise it when it comes back. */
  private readonly tcpWritten = new Map<string, TcpWriteBack>();
  /** Values written per task since the poll numbered `seq` read it. */
  private readonly written = new Map<string, { values: Record<string, string>; seq: number }>();
  private publications: Publication[] | null = null;

  constructor(config: ClearmlProviderConfig, log: Logger, options: ClearmlProviderOptions = {}) {
    const pollMs = config.clearml.pollIntervalMs;
    super(
      { pollMs, backoffMaxMs: Math.max(options.backoffMaxMs ?? 60_000, pollMs), now: options.now ?? Date.now, random: options.random ?? Math.random },
      {
        recovered: 'ClearML API reachable again',
        rejected: 'ClearML tasks have rejected endpoints',
        discovered: 'ClearML tasks discovered',
        failedKeeping: 'ClearML poll failed; keeping the last good routes',
        failedEmpty: 'ClearML poll failed; nothing routed from ClearML yet',
      },
    );
    this.client = options.client ?? createClearmlClient(config, options.clientOptions);
    this.logger = log.child({ component: 'provider', provider: 'clearml' });
    this.queueRefreshPolls = Math.max(1, options.queueRefreshPolls ?? 5);
    this.writeConcurrency = Math.max(1, options.writeConcurrency ?? 8);
    this.queueGlobs = config.clearml.listenQueues.flatMap((q) => q.split(/[\s,]+/)).filter(Boolean);
    // the router publishes TCP routes on TCP_ROUTER_ADDRESS, or else on ROUTER_URL's host
    const address = config.tcp.routerAddress ?? new URL(config.routerUrl).hostname.replace(/^\[|\]$/g, '');
    this.tcpGateway = { address: address.toLowerCase(), portStart: config.tcp.portStart, portEnd: config.tcp.portEnd };
    this.stripPrefix = config.clearml.stripPrefix ?? true;
  }

  protected get log(): Logger {
    return this.logger;
  }

  /** Takes the router's publications and writes what changed back into the tasks, soon and in order with polls. */
  published(publications: Publication[]): void {
    this.publications = publications;
    if (this.writeQueued || this.stopped) return;
    this.writeQueued = true;
    void this.enqueue(async () => {
      this.writeQueued = false;
      await this.writeBack();
    });
  }

  /** After a healthy poll: write back what the router published (same job, so in order with polls). */
  protected override async afterHealthyPoll(): Promise<void> {
    await this.writeBack();
  }

  /** One poll; true when it succeeded. Never throws. */
  protected async poll(): Promise<boolean> {
    const seq = ++this.pollSeq;
    const started = this.timing.now();
    try {
      const filter = await this.filter();
      let tasks: ApiObject[] = [];
      if (filter !== null) {
        tasks = await this.client.getAllTasks({ ...filter, only_fields: TASK_FIELDS, order_by: ['id'] });
        tasks = await this.confirmMissing(filter, tasks);
      }
      this.accept(tasks, seq, this.timing.now() - started);
      return true;
    } catch (e) {
      this.failed(errorMessage(e), { code: e instanceof ClearmlError ? e.code : undefined });
      return false;
    }
  }

  /**
   * The tasks.get_all filter, or null when LISTEN_QUEUE_NAME matches no queue (then nothing is
   * routed: an empty `execution.queue` list would mean "any queue" to the server).
   */
  private async filter(): Promise<ApiObject | null> {
    const body: ApiObject = { system_tags: [EXTERNAL_SERVICE_TAG], status: ['in_progress'], search_hidden: true };
    if (this.queueGlobs.length === 0) return body;
    if (this.queueIds === null || this.pollsSinceQueues >= this.queueRefreshPolls) await this.resolveQueues();
    this.pollsSinceQueues++;
    if (this.queueIds!.length === 0) return null;
    body['execution.queue'] = this.queueIds;
    return body;
  }

  private async resolveQueues(): Promise<void> {
    const queues = await this.client.getAllQueues({ only_fields: ['id', 'name'] });
    const patterns = this.queueGlobs.map(queuePattern);
    const ids = queues
      .filter((q) => typeof q.id === 'string' && typeof q.name === 'string' && patterns.some((p) => p.test(q.name as string)))
      .map((q) => q.id as string)
      .sort();
    if (JSON.stringify(ids) !== JSON.stringify(this.queueIds)) {
      const names = queues.filter((q) => ids.includes(q.id as string)).map((q) => String(q.name));
      if (ids.length === 0) this.log.warn('LISTEN_QUEUE_NAME matches no ClearML queue; no task is routed', { queues: this.queueGlobs });
      else this.log.info('listening to ClearML queues', { queues: names.slice(0, 50), count: names.length });
    }
    this.queueIds = ids;
    this.pollsSinceQueues = 0;
  }

  /**
   * Paging by offset can skip a task when another leaves the result set mid-listing, so tasks of
   * the last view that did not come back are asked for by id before their routes are dropped.
   */
  private async confirmMissing(filter: ApiObject, tasks: ApiObject[]): Promise<ApiObject[]> {
    const present = new Set(tasks.map((t) => t.id));
    const missing = [...this.observed.keys()].filter((id) => !present.has(id));
    let rescued = 0;
    for (let i = 0; i < missing.length; i += MAX_PAGE_SIZE) {
      const again = await this.client.getAllTasks({ ...filter, id: missing.slice(i, i + MAX_PAGE_SIZE), only_fields: TASK_FIELDS, order_by: ['id'] });
      for (const t of again) {
        if (present.has(t.id)) continue;
        present.add(t.id);
        tasks.push(t);
        rescued++;
      }
    }
    if (rescued > 0) this.log.debug('tasks missed by paging were found by id', { count: rescued });
    return tasks;
  }

  private accept(tasks: ApiObject[], seq: number, tookMs: number): void {
    if (this.stopped) return;
    const parsed = parseTasks(tasks, { provider: this.name, tcpGateway: this.tcpGateway, tcpWritten: this.tcpWritten, stripPrefix: this.stripPrefix });
    this.observed = new Map();
    for (const t of tasks) if (typeof t.id === 'string') this.observed.set(t.id, isObject(t.runtime) ? t.runtime : {});
    this.observedSeq = seq;
    this.tcpUpstreams = new Map(parsed.tcp.map((r) => [r.id, r.backend]));
    for (const id of this.written.keys()) if (!this.observed.has(id)) this.written.delete(id);
    for (const id of this.tcpWritten.keys()) if (!this.observed.has(id.split('-')[0]!)) this.tcpWritten.delete(id);

    const snapshot: Snapshot = { ephemeral: parsed.ephemeral, static: [], bindings: parsed.bindings, tcp: parsed.tcp };
    this.succeeded({ snapshot, rejections: parsed.rejections, logFields: { tasks: tasks.length, ms: tookMs } } satisfies Discovery);
  }

  /** Writes the latest publications back into the tasks of the last good poll, where they differ. */
  private async writeBack(): Promise<void> {
    const pubs = this.publications;
    if (pubs === null || this.error !== null || this.stopped) return;
    const plans = this.plan(pubs);
    let next = 0;
    const worker = async () => {
      while (next < plans.length && !this.stopped) await this.write(plans[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(this.writeConcurrency, plans.length) }, worker));
  }

  /** Pure over the provider's memory: the runtime values each task should hold and which of them differ. */
  private plan(pubs: Publication[]): WritePlan[] {
    const byTask = new Map<string, WritePlan>();
    for (const p of pubs) {
      if ('unroutable' in p) continue;
      const runtime = this.observed.get(p.taskId);
      if (!runtime) continue;
      let plan = byTask.get(p.taskId);
      if (!plan) byTask.set(p.taskId, (plan = { taskId: p.taskId, values: {}, changed: [], tcp: [] }));
      const v = plan.values;
      if (p.protocol === 'http') {
        v[runtimeKey(RUNTIME_KEYS.endpoint, p.endpoint)] = p.url;
        v[runtimeKey(RUNTIME_KEYS.browserEndpoint, p.endpoint)] = p.browserUrl;
        continue;
      }
      const id = routeId(p.taskId, p.endpoint);
      const upstream = this.tcpUpstreams.get(id);
      if (!upstream) continue;
      const taskPort = runtime[runtimeKey(RUNTIME_KEYS.upstreamTaskPort, p.endpoint)];
      v[runtimeKey(RUNTIME_KEYS.tcpAddress, p.endpoint)] = p.address;
      v[runtimeKey(RUNTIME_KEYS.tcpPort, p.endpoint)] = String(p.port);
      // the SDK (2.1+) writes the task-side port itself; keep it, fill it in for older writers
      v[runtimeKey(RUNTIME_KEYS.upstreamTaskPort, p.endpoint)] = taskPort ? String(taskPort) : String(p.upstreamPort);
      v[runtimeKey(RUNTIME_KEYS.upstream, p.endpoint)] = formatBackend(upstream);
      plan.tcp.push([id, { address: p.address, port: p.port, upstream }]);
    }
    const plans: WritePlan[] = [];
    for (const plan of byTask.values()) {
      const runtime = this.observed.get(plan.taskId)!;
      // what we wrote after the last poll read the task is not in `runtime` yet
      const w = this.written.get(plan.taskId);
      const since = w && w.seq >= this.observedSeq ? w.values : {};
      plan.changed = Object.keys(plan.values).filter((k) => {
        const v = plan.values[k];
        const seen = runtime[k] === undefined || runtime[k] === null ? undefined : String(runtime[k]);
        return seen !== v && since[k] !== v;
      });
      if (plan.changed.length > 0) plans.push(plan);
    }
    return plans;
  }

  private async write(plan: WritePlan): Promise<void> {
    try {
      const changed = Object.fromEntries(plan.changed.map((k) => [k, plan.values[k]!]));
      let via: string;
      if (await this.client.editRuntime(plan.taskId, changed)) via = 'tasks.edit_runtime';
      else via = await this.readModifyWrite(plan.taskId, plan.values);
      if (this.stopped) return;
      const before = this.written.get(plan.taskId);
      const kept = before && before.seq >= this.pollSeq ? before.values : {};
      this.written.set(plan.taskId, { values: { ...kept, ...changed }, seq: this.pollSeq });
      for (const [id, w] of plan.tcp) this.tcpWritten.set(id, w);
      this.log.info('endpoints written back to the task', { task: plan.taskId, keys: plan.changed, via });
    } catch (e) {
      this.log.warn('writing endpoints back to the task failed; retrying next round', { task: plan.taskId, error: errorMessage(e) });
    }
  }

  /**
   * For servers without tasks.edit_runtime: re-reads the task and writes its whole runtime map with
   * our keys merged in, right away, so keys written by others since the poll are kept. Never
   * touches keys it does not own (`_ADDRESS`, `_PORT` and all others pass through unchanged).
   */
  private async readModifyWrite(taskId: string, values: Record<string, string>): Promise<string> {
    const task = await this.client.getTaskById(taskId);
    if (task.status !== 'in_progress') return 'skipped (the task is no longer running)';
    const runtime: Record<string, unknown> = isObject(task.runtime) ? { ...task.runtime } : {};
    let changed = false;
    for (const [k, v] of Object.entries(values)) {
      if (runtime[k] !== undefined && runtime[k] !== null && String(runtime[k]) === v) continue;
      runtime[k] = NUMERIC_KEYS.has(k.split('__')[0]!) ? Number(v) : v;
      changed = true;
    }
    if (!changed) return 'nothing (already up to date)';
    await this.client.editTask({ task: taskId, force: true, runtime });
    return 'tasks.edit';
  }
}

interface WritePlan {
  taskId: string;
  /** Every runtime value our publications give the task. */
  values: Record<string, string>;
  /** The keys whose value differs from the last poll. */
  changed: string[];
  tcp: Array<[string, TcpWriteBack]>;
}
