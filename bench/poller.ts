import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { fetchStatus, sleep } from './lib';

/**
 * The benchmark's polling client, a process of its own (started by core-bench.ts on the load
 * generator's core), so that the router's event loop never delays a poll and polls never compete
 * with the router. Reads one JSON job per stdin line: {url, headers, gapMs, timeoutMs}; polls the
 * URL with fresh connections until it answers 200; writes one JSON line per job:
 * {doneAt (epoch ms, sub-ms), polls, status, statuses (other than 200, counted)}.
 */

interface Job {
  url: string;
  headers: Record<string, string>;
  gapMs: number;
  timeoutMs: number;
}

const now = () => performance.timeOrigin + performance.now();

async function poll(job: Job): Promise<{ doneAt: number; polls: number; status: number; statuses: Record<string, number> }> {
  const deadline = now() + job.timeoutMs;
  const statuses: Record<string, number> = {};
  for (let polls = 1; ; polls++) {
    const status = await fetchStatus(job.url, job.headers);
    const at = now();
    if (status === 200 || at > deadline) return { doneAt: at, polls, status, statuses };
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (job.gapMs > 0) await sleep(job.gapMs);
  }
}

const rl = createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
  queue = queue.then(async () => {
    const res = await poll(JSON.parse(line) as Job);
    process.stdout.write(`${JSON.stringify(res)}\n`);
  });
});
rl.on('close', () => void queue.then(() => process.exit(0)));
