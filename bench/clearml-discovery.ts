/**
 * Discovery of many running ClearML tasks through the fake API server.
 *
 *   npx tsx bench/clearml-discovery.ts [tasks=10000] [polls=10]
 *
 * The fake server runs in a child process so that the CPU time measured here is the router's
 * alone (the provider's process: HTTP client, JSON parsing, validation, snapshot building).
 * Measured: the first poll (login + listing), steady polls with nothing to write, and the first
 * write-back round of every endpoint (tasks.edit_runtime).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { memoryLogger } from '../router/log';
import type { Snapshot } from '../router/model/types';
import { ClearmlProvider } from '../router/providers/clearml/clearml-provider';
import type { Publication } from '../router/providers/provider';
import { FakeClearml } from '../test/fakes/fake-clearml';

const ROUTER_URL = 'https://gw.example.com';

async function serveFake(count: number): Promise<void> {
  const fake = await FakeClearml.start();
  fake.recordCalls = false;
  for (let i = 0; i < count; i++) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    // a mix like a busy cluster: most tasks one HTTP endpoint, some a named one too, a few SSH sessions
    const runtime: Record<string, unknown> =
      i % 20 === 0
        ? { _SERVICE: 'EXTERNAL_TCP', external_address: ip, external_tcp_port: '10022' }
        : i % 7 === 0
          ? { _SERVICE: 'EXTERNAL', _ADDRESS: ip, _PORT: 8000, _SERVICE__api: 'EXTERNAL', _ADDRESS__api: ip, _PORT__api: 8001, _exec_agent_hostname: `worker-${i % 50}` }
          : { _SERVICE: 'EXTERNAL', _ADDRESS: ip, _PORT: 7860, _exec_agent_hostname: `worker-${i % 50}` };
    fake.addTask({ name: `bench task ${i}`, runtime });
  }
  process.on('message', (m) => {
    if (m === 'cpu') process.send!({ cpu: process.cpuUsage() });
    if (m === 'exit') void fake.close().then(() => process.exit(0));
  });
  process.send!({ url: fake.url });
}

function ask<T>(child: ChildProcess, message: string, key: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: Record<string, unknown>) => {
      if (!(key in m)) return;
      child.off('message', on);
      resolve(m[key] as T);
    };
    child.on('message', on);
    if (message) child.send(message);
  });
}

const cpuMs = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1000;

async function measure<T>(fn: () => Promise<T>): Promise<{ wallMs: number; cpuMs: number; value: T }> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const value = await fn();
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  return { wallMs, cpuMs: cpuMs(process.cpuUsage(c0)), value };
}

function publications(s: Snapshot): Publication[] {
  const pubs: Publication[] = [];
  for (const r of s.ephemeral) pubs.push({ protocol: 'http', taskId: r.taskId, endpoint: r.endpoint, url: `${ROUTER_URL}/service/${r.id}/`, browserUrl: `${ROUTER_URL}/service/${r.id}/` });
  s.tcp.forEach((r, i) => pubs.push({ protocol: 'tcp', taskId: r.taskId, endpoint: r.endpoint, address: 'gw.example.com', port: 30000 + i, upstreamPort: r.backend.port }));
  return pubs;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => n.toFixed(1).padStart(8);

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 10_000);
  const polls = Number(process.argv[3] ?? 10);
  const child = fork(__filename, ['--fake', String(count)], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const url = await ask<string>(child, '', 'url');
  const fakeCpu = async () => cpuMs(await ask<NodeJS.CpuUsage>(child, 'cpu', 'cpu'));

  let snapshot: Snapshot | null = null;
  const provider = new ClearmlProvider(
    {
      routerUrl: ROUTER_URL,
      clearml: { apiHost: url, accessKey: 'admin-key', secretKey: 'admin-secret', pollIntervalMs: 3_600_000, listenQueues: [], stripPrefix: true },
      tcp: { routerAddress: 'gw.example.com', portStart: 30000, portEnd: 40000, allowCidrs: [] },
    },
    memoryLogger(),
  );
  const rss0 = process.memoryUsage().rss;
  const f0 = await fakeCpu();
  const first = await measure(() =>
    provider.start((state) => {
      if (state.kind === 'ready') snapshot = state.snapshot;
    }),
  );
  const s = snapshot as Snapshot | null;
  if (!s) throw new Error(`no snapshot: ${provider.status().lastError}`);
  const routes = { ephemeral: s.ephemeral.length, tcp: s.tcp.length };

  const steady: Array<{ wallMs: number; cpuMs: number }> = [];
  const f1 = await fakeCpu();
  for (let i = 0; i < polls; i++) steady.push(await measure(() => provider.pollNow()));
  const fakePerPoll = ((await fakeCpu()) - f1) / polls;

  provider.published(publications(s));
  const writeBack = await measure(() => provider.pollNow());
  const after: Array<{ wallMs: number; cpuMs: number }> = [];
  for (let i = 0; i < polls; i++) after.push(await measure(() => provider.pollNow()));
  const rss1 = process.memoryUsage().rss;
  await provider.stop();
  child.send('exit');

  const lines = [
    `ClearML discovery: ${count} running tasks (${routes.ephemeral} HTTP routes, ${routes.tcp} TCP routes), fake server in a child process`,
    `                                            wall ms   router CPU ms`,
    `first poll (login + ${Math.ceil(count / 500)} pages)              ${fmt(first.wallMs)}  ${fmt(first.cpuMs)}`,
    `steady poll, median of ${polls}                   ${fmt(median(steady.map((x) => x.wallMs)))}  ${fmt(median(steady.map((x) => x.cpuMs)))}`,
    `steady poll, worst of ${polls}                    ${fmt(Math.max(...steady.map((x) => x.wallMs)))}  ${fmt(Math.max(...steady.map((x) => x.cpuMs)))}`,
    `poll + first write-back of every endpoint   ${fmt(writeBack.wallMs)}  ${fmt(writeBack.cpuMs)}`,
    `steady poll after write-back, median        ${fmt(median(after.map((x) => x.wallMs)))}  ${fmt(median(after.map((x) => x.cpuMs)))}`,
    `fake server CPU per steady poll: ${fakePerPoll.toFixed(1)} ms; fake CPU during the first poll: ${(f1 - f0).toFixed(1)} ms`,
    `router RSS growth: ${((rss1 - rss0) / 1048576).toFixed(0)} MB; node ${process.version}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (process.argv[2] === '--fake') void serveFake(Number(process.argv[3]));
else
  main().catch((e) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  });
