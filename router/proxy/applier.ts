import { mkdirSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync, existsSync, linkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Bundle } from '../render/render';
import type { Logger } from '../log';
import type { ProxyControl } from './control';

/** Outcome of one apply. */
export type ApplyResult =
  | { ok: true; generation: string; reloaded: boolean; ms: number }
  | { ok: false; generation: string; stage: 'write' | 'test' | 'reload' | 'confirm'; error: string; ms: number };

export interface ApplierOptions {
  /** Root of the rendered config: generations/, current (symlink), failed/. */
  nginxDir: string;
  keep: number;
  /** Returns the generation the edge serves, or null. */
  served: () => Promise<string | null>;
  confirmTimeoutMs?: number;
}

const GEN = /^g(\d{6,})$/;

/**
 * Writes a bundle as a new generation folder, checks it with `nginx -t`, swaps the `current`
 * symlink atomically, reloads, confirms the edge serves the new generation, and rolls back to the
 * previous generation on any failure. Keeps the last few generations on disk.
 */
export class Applier {
  private readonly gens: string;
  private readonly current: string;
  private next: number;
  /** What the live generation holds, when this process wrote it: unchanged files are hard-linked from it. */
  private written: { generation: string; bundle: Bundle } | null = null;

  constructor(
    private readonly opts: ApplierOptions,
    private readonly control: ProxyControl,
    private readonly log: Logger,
  ) {
    this.gens = join(opts.nginxDir, 'generations');
    this.current = join(opts.nginxDir, 'current');
    mkdirSync(this.gens, { recursive: true, mode: 0o755 });
    const nums = readdirSync(this.gens).map((n) => GEN.exec(n)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1]));
    this.next = (nums.length ? Math.max(...nums) : 0) + 1;
  }

  /** The path of the live nginx.conf (through the `current` symlink). */
  get liveConf(): string {
    return join(this.current, 'nginx.conf');
  }

  /** The generation `current` points at, or null before the first apply. */
  liveGeneration(): string | null {
    try {
      const target = readlinkSync(this.current);
      const name = target.split('/').pop()!;
      return GEN.test(name) ? name : null;
    } catch {
      return null;
    }
  }

  /** The id the next generation will get (for rendering it). */
  peekGeneration(): string {
    return `g${String(this.next).padStart(6, '0')}`;
  }

  /** Applies a bundle rendered for `peekGeneration()`. Never throws; the result says what happened. */
  async apply(bundle: Bundle): Promise<ApplyResult> {
    const started = Date.now();
    const generation = this.peekGeneration();
    this.next += 1;
    const dir = join(this.gens, generation);
    const ms = () => Date.now() - started;
    try {
      const staging = `${dir}.tmp`;
      rmSync(staging, { recursive: true, force: true });
      for (const sub of ['conf.d/path', 'conf.d/subdomain', 'conf.d/stream']) mkdirSync(join(staging, sub), { recursive: true, mode: 0o755 });
      // files are never changed once written, so a file equal to the live generation's is a hard
      // link to it (a thousand route files: one link each instead of a create and a write)
      const live = this.written && this.written.generation === this.liveGeneration() ? this.written : null;
      for (const [rel, content] of bundle) {
        const p = join(staging, rel);
        mkdirSync(dirname(p), { recursive: true, mode: 0o755 });
        if (live && live.bundle.get(rel) === content && this.linked(join(this.gens, live.generation, rel), p)) continue;
        writeFileSync(p, content, { mode: 0o644 });
      }
      renameSync(staging, dir);
    } catch (e) {
      return { ok: false, generation, stage: 'write', error: (e as Error).message, ms: ms() };
    }

    const test = await this.control.test(join(dir, 'nginx.conf'));
    if (!test.ok) {
      this.quarantine(generation);
      this.log.error('generation failed nginx -t; the previous one keeps serving', { component: 'applier', generation, output: test.output.slice(0, 2000) });
      return { ok: false, generation, stage: 'test', error: test.output || 'nginx -t failed', ms: ms() };
    }

    const previous = this.liveGeneration();
    try {
      this.swap(generation);
    } catch (e) {
      this.quarantine(generation);
      return { ok: false, generation, stage: 'write', error: `cannot swap the live config: ${(e as Error).message}`, ms: ms() };
    }
    this.written = { generation, bundle };
    if (!(await this.control.running())) {
      this.prune(generation, previous);
      return { ok: true, generation, reloaded: false, ms: ms() };
    }
    let failure: { stage: 'reload' | 'confirm'; error: string } | null = null;
    try {
      await this.control.reload();
      if (!(await this.confirm(generation))) failure = { stage: 'confirm', error: `the edge did not serve ${generation} within ${this.opts.confirmTimeoutMs ?? 10_000} ms` };
    } catch (e) {
      failure = { stage: 'reload', error: (e as Error).message };
    }
    if (failure) {
      this.log.error('reload failed; rolling back', { component: 'applier', generation, previous, error: failure.error });
      if (previous) {
        try {
          this.swap(previous);
          await this.control.reload();
          await this.confirm(previous);
        } catch (e) {
          this.log.error('rollback reload failed', { component: 'applier', generation: previous, error: (e as Error).message });
        }
      }
      this.quarantine(generation);
      this.written = null;
      return { ok: false, generation, ...failure, ms: ms() };
    }
    this.prune(generation, previous);
    return { ok: true, generation, reloaded: true, ms: ms() };
  }

  /** Hard-links `from` to `to`; false when the file system refuses (then the caller writes). */
  private linked(from: string, to: string): boolean {
    try {
      linkSync(from, to);
      return true;
    } catch {
      return false;
    }
  }

  private swap(generation: string): void {
    const tmp = `${this.current}.${process.pid}.tmp`;
    rmSync(tmp, { force: true });
    symlinkSync(join('generations', generation), tmp);
    renameSync(tmp, this.current);
  }

  /** True once the edge answered with `generation` on three fresh connections in a row. */
  private async confirm(generation: string): Promise<boolean> {
    const deadline = Date.now() + (this.opts.confirmTimeoutMs ?? 10_000);
    let streak = 0;
    while (Date.now() < deadline) {
      streak = (await this.opts.served()) === generation ? streak + 1 : 0;
      if (streak >= 3) return true;
      await new Promise((r) => setTimeout(r, 5));
    }
    return false;
  }

  /** Moves a failed generation to failed/ (only the latest few are kept) for inspection. */
  private quarantine(generation: string): void {
    const failed = join(this.opts.nginxDir, 'failed');
    try {
      mkdirSync(failed, { recursive: true });
      rmSync(join(failed, generation), { recursive: true, force: true });
      renameSync(join(this.gens, generation), join(failed, generation));
      const old = readdirSync(failed).filter((n) => GEN.test(n)).sort().slice(0, -3);
      for (const n of old) rmSync(join(failed, n), { recursive: true, force: true });
    } catch (e) {
      this.log.warn('could not quarantine failed generation', { component: 'applier', generation, error: (e as Error).message });
    }
  }

  private prune(live: string, previous: string | null): void {
    const all = readdirSync(this.gens).filter((n) => GEN.test(n)).sort();
    const drop = all.slice(0, Math.max(0, all.length - this.opts.keep)).filter((n) => n !== live && n !== previous);
    for (const n of drop) rmSync(join(this.gens, n), { recursive: true, force: true });
    for (const n of readdirSync(this.gens)) if (n.endsWith('.tmp') && existsSync(join(this.gens, n))) rmSync(join(this.gens, n), { recursive: true, force: true });
  }
}
