import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Logger } from '../log';
import type { ProxyControl } from './control';

/**
 * A local nginx, run as a child process with its own prefix. The master is started detached, so
 * a router crash leaves the proxy serving the last good config; a restarted router adopts it
 * through the pid file.
 */
export class LocalNginx implements ProxyControl {
  constructor(
    private readonly bin: string,
    private readonly prefix: string,
    private readonly liveConf: string,
    private readonly pidFile: string,
    private readonly log: Logger,
  ) {}

  /** The pid of a running master started for this prefix, or null. */
  pid(): number | null {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, 'utf8').trim());
    } catch {
      return null;
    }
    if (!Number.isInteger(pid) || pid <= 1) return null;
    try {
      process.kill(pid, 0);
    } catch {
      return null;
    }
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!/nginx|openresty/.test(cmd)) return null;
    } catch {
      /* no /proc: trust the pid file */
    }
    return pid;
  }

  async running(): Promise<boolean> {
    return this.pid() !== null;
  }

  test(confPath: string): Promise<{ ok: boolean; output: string }> {
    return new Promise((resolve) => {
      execFile(this.bin, ['-t', '-q', '-e', 'stderr', '-p', this.prefix, '-c', confPath], { timeout: 30_000 }, (err, stdout, stderr) => {
        resolve({ ok: !err, output: `${stdout}${stderr}`.trim() });
      });
    });
  }

  async reload(): Promise<void> {
    const pid = this.pid();
    if (pid === null) throw new Error('nginx is not running');
    process.kill(pid, 'SIGHUP');
  }

  /** Starts the master (detached) on the live config; resolves when the pid file names it. */
  async start(): Promise<number> {
    const existing = this.pid();
    if (existing !== null) {
      this.log.info('adopting running nginx', { component: 'proxy', pid: existing });
      return existing;
    }
    const child = spawn(this.bin, ['-e', 'stderr', '-p', this.prefix, '-c', this.liveConf, '-g', 'daemon off;'], {
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 8192) stderr += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const pid = this.pid();
      if (pid === child.pid) {
        child.stderr!.destroy();
        child.unref();
        return pid;
      }
      const done = await Promise.race([exited, new Promise<'wait'>((r) => setTimeout(() => r('wait'), 50))]);
      if (done !== 'wait') throw new Error(`nginx exited at start (code ${done}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
    }
    throw new Error('nginx did not write its pid file within 10 s');
  }

  /** Stops the master gracefully (QUIT), waiting up to `ms`, then TERM. */
  async stop(ms = 5000): Promise<void> {
    const pid = this.pid();
    if (pid === null) return;
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      return;
    }
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
}
