import { watch, type FSWatcher } from 'chokidar';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { errorMessage } from '../errors';
import type { Logger } from '../log';
import type { ProviderState, Rejection, Snapshot } from '../model/types';
import { providerStatus, type Provider, type ProviderStatus } from './provider';
import { ROUTES_FILE_LIMITS, formatRoutesFileError, parseRoutesFile } from './routes-file';

/** Tuning of the file provider; the defaults suit production, tests shorten them. */
export interface FileProviderOptions {
  /** Quiet time after the last change event before the file is re-read. */
  debounceMs?: number;
  /** How often to look for the file's directory while it does not exist. */
  dirPollMs?: number;
  /** Clock for `at`, `degradedSince` and `lastSuccess`. */
  now?: () => number;
}

/** chokidar 4 drops a `change` of a file within this long after the previous one (see schedule()). */
const CHOKIDAR_CHANGE_THROTTLE_MS = 50;
const SETTLE_MARGIN_MS = 30;

interface GoodView {
  text: string;
  snapshot: Snapshot;
  rejections: Rejection[];
}

/**
 * The `file` provider: watches the routes file (`ROUTES_FILE`) and emits a complete snapshot,
 * with the rejected entries, each time its content changes. The only module that imports chokidar.
 *
 * It watches the file's directory rather than the file, so that a file created after start and
 * editors' atomic saves (write a temporary file, rename it over the original) are both seen. A file
 * that does not parse, cannot be read or vanishes keeps the last good view: nothing new is
 * emitted, status() is degraded with the reason, and one warning is logged per distinct problem.
 * Until the file has been read successfully once, nothing is emitted at all (the provider is
 * pending, never "authoritatively empty" by accident).
 */
export class FileProvider implements Provider {
  readonly name = 'file';
  private readonly path: string;
  private readonly dir: string;
  private readonly debounceMs: number;
  private readonly dirPollMs: number;
  private readonly now: () => number;
  private readonly log: Logger;

  private emit: ((state: ProviderState, rejections: Rejection[]) => void) | null = null;
  private watcher: FSWatcher | null = null;
  private dirTimer: NodeJS.Timeout | null = null;
  private debounceTimer: NodeJS.Timeout | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private burstStart = 0;
  private reading: Promise<void> | null = null;
  private again = false;
  private stopped = true;

  private good: GoodView | null = null;
  private error: string | null = null;
  private degradedSince: number | null = null;
  private lastSuccess: number | null = null;
  private rejections: Rejection[] = [];

  constructor(path: string, log: Logger, options: FileProviderOptions = {}) {
    this.path = resolve(path);
    this.dir = dirname(this.path);
    this.debounceMs = options.debounceMs ?? 50;
    this.dirPollMs = options.dirPollMs ?? 2000;
    this.now = options.now ?? Date.now;
    this.log = log.child({ component: 'provider', provider: this.name });
  }

  /** Starts watching, then reads the file once; resolves after that first read. Never throws. */
  async start(emit: (state: ProviderState, rejections: Rejection[]) => void): Promise<void> {
    this.emit = emit;
    this.stopped = false;
    await this.watchDirectory();
    await this.refresh();
  }

  /** Stops watching; no emit happens after it resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    if (this.dirTimer) clearInterval(this.dirTimer);
    this.debounceTimer = null;
    this.settleTimer = null;
    this.dirTimer = null;
    const w = this.watcher;
    this.watcher = null;
    if (w) await w.close().catch(() => undefined);
    if (this.reading) await this.reading;
    this.emit = null;
  }

  /** Pure view of the provider's health. */
  status(): ProviderStatus {
    const { error, degradedSince, lastSuccess, rejections } = this;
    return providerStatus(this.name, { error, ready: this.good !== null, degradedSince, lastSuccess, rejections });
  }

  /**
   * Watches the directory when it exists; otherwise polls for it, since chokidar does not notice
   * a watched directory that is created later.
   */
  private async watchDirectory(): Promise<void> {
    if (this.stopped || this.watcher) return;
    if (!(await isDirectory(this.dir))) {
      if (!this.dirTimer) {
        this.dirTimer = setInterval(() => {
          void isDirectory(this.dir).then(async (exists) => {
            if (!exists || this.stopped || !this.dirTimer) return;
            clearInterval(this.dirTimer);
            this.dirTimer = null;
            await this.watchDirectory();
            this.schedule();
          });
        }, this.dirPollMs);
      }
      return;
    }
    const file = this.path;
    const dir = this.dir;
    const watcher = watch(dir, {
      depth: 0,
      ignoreInitial: true,
      // Besides the file itself, entries named `..*` matter: Kubernetes mounts a ConfigMap as
      // symlinks through `..data`, and an update swaps that link rather than touching the file.
      ignored: (p: string) => p !== dir && p !== file && !basename(p).startsWith('..'),
    });
    this.watcher = watcher;
    watcher.on('all', (event, p) => {
      if (event === 'unlinkDir' && p === dir) {
        this.watcher = null;
        void watcher.close().catch(() => undefined);
        void this.watchDirectory();
      }
      this.schedule();
    });
    watcher.on('error', (err) => this.log.warn('watching the routes file failed', { file, error: errorMessage(err) }));
    await new Promise<void>((done) => watcher.once('ready', () => done()));
  }

  /**
   * Debounces a burst of events into one read; a burst that never pauses is read every 10
   * debounces. chokidar drops a change event that follows another within 50 ms for the same file,
   * so a second, settling read follows once that window is over (unchanged content costs a compare).
   */
  private schedule(): void {
    if (this.stopped) return;
    const t = Date.now();
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    else this.burstStart = t;
    const wait = t - this.burstStart >= this.debounceMs * 10 ? 0 : this.debounceMs;
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = null;
      void this.refresh();
    }, wait);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => {
      this.settleTimer = null;
      void this.refresh();
    }, Math.max(wait, CHOKIDAR_CHANGE_THROTTLE_MS) + SETTLE_MARGIN_MS);
  }

  /** Reads the file, one read at a time; a change during a read causes one more read. Never rejects. */
  private refresh(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return this.reading;
    }
    this.reading = (async () => {
      do {
        this.again = false;
        try {
          await this.readOnce();
        } catch (err) {
          this.fault(`${this.path}: ${errorMessage(err)}`);
        }
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  private async readOnce(): Promise<void> {
    let text: string;
    try {
      const st = await stat(this.path);
      if (!st.isFile()) return this.fault(`${this.path} is not a regular file`);
      if (st.size > ROUTES_FILE_LIMITS.fileBytes) return this.fault(`${this.path} is larger than ${ROUTES_FILE_LIMITS.fileBytes} bytes`);
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return this.fault(
          this.good
            ? `${this.path} was removed; the last good routes stay until it is back`
            : `${this.path} does not exist (yet); nothing is routed from it until it is created`,
        );
      }
      return this.fault(`${this.path} cannot be read: ${errorMessage(err)}`);
    }
    if (this.stopped) return;
    this.log.debug('routes file read', { file: this.path, bytes: text.length });
    if (this.good && this.error === null && text === this.good.text) return;
    const parsed = parseRoutesFile(text, this.path, this.name);
    if (!parsed.ok) return this.fault(formatRoutesFileError(parsed.error));
    this.accept({ text, snapshot: parsed.snapshot, rejections: parsed.rejections });
  }

  /** Records a problem; the last good view stays and nothing is emitted. */
  private fault(reason: string): void {
    if (this.stopped) return;
    if (reason !== this.error) {
      this.log.warn(this.good ? 'routes file unusable; keeping the last good routes' : 'routes file unusable; nothing routed from it yet', {
        file: this.path,
        error: reason,
      });
    }
    this.error = reason;
    this.degradedSince ??= this.now();
  }

  private accept(view: GoodView): void {
    const at = this.now();
    const recovered = this.error !== null;
    const rejectionsChanged = JSON.stringify(view.rejections) !== JSON.stringify(this.rejections);
    this.good = view;
    this.error = null;
    this.degradedSince = null;
    this.lastSuccess = at;
    this.rejections = view.rejections;
    const s = view.snapshot;
    this.log.info(recovered ? 'routes file loaded again' : 'routes file loaded', {
      file: this.path,
      static: s.static.length,
      ephemeral: s.ephemeral.length,
      bindings: s.bindings.length,
      tcp: s.tcp.length,
      rejected: view.rejections.length,
    });
    if (rejectionsChanged && view.rejections.length > 0) {
      this.log.warn('routes file has rejected entries', {
        file: this.path,
        count: view.rejections.length,
        rejections: view.rejections.slice(0, 20).map((r) => `${r.source}: ${r.reason}`),
      });
    }
    try {
      this.emit?.({ kind: 'ready', snapshot: view.snapshot, at, degradedSince: null, error: null }, [...view.rejections]);
    } catch (err) {
      this.log.error('handling the routes file snapshot failed', { file: this.path, error: errorMessage(err) });
    }
  }
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}
