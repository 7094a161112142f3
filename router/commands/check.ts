import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config';
import { errorMessage } from '../errors';
import { memoryLogger } from '../log';
import { Applier } from '../proxy/applier';
import { request } from '../proxy/edge-client';
import { LocalNginx } from '../proxy/local-nginx';
import { probeNginx } from '../proxy/nginx-probe';
import { loadTemplates, render } from '../render/render';
import { renderBaseFor } from '../gateway';
import { CLI_ACTOR, openStore } from '../store/store';
import { createToken, revokeToken } from '../store/tokens';

/** One line of the check's report. */
export interface CheckLine {
  ok: boolean;
  what: string;
  detail: string;
}

const ACTOR = { ...CLI_ACTOR, name: 'appgw check' };

async function step(lines: CheckLine[], what: string, fn: () => Promise<string>): Promise<boolean> {
  try {
    lines.push({ ok: true, what, detail: await fn() });
    return true;
  } catch (e) {
    lines.push({ ok: false, what, detail: errorMessage(e).split('\n')[0]!.slice(0, 300) });
    return false;
  }
}

/**
 * `appgw check`: validates the configuration and the connectivity of a running gateway — nginx
 * accepts a rendered config (`nginx -t`), ClearML logs in and lists what it would route, and a
 * request goes through the edge on a short-lived test route with a short-lived token (both
 * removed afterwards). Never throws; returns the report lines.
 */
export async function runCheck(config: Config): Promise<CheckLine[]> {
  const lines: CheckLine[] = [];
  lines.push({ ok: true, what: 'configuration', detail: `router ${config.routerName}, ${config.routerUrl}, PROXY_MODE=${config.proxyMode}` });

  if (config.proxyMode !== 'docker') {
    await step(lines, 'nginx -t', async () => {
      const flavor = await probeNginx(config.nginxBin);
      const dir = mkdtempSync(join(tmpdir(), 'appgw-check-'));
      try {
        const bundle = render(loadTemplates(), {
          ...renderBaseFor(config, flavor.loadModules),
          runDir: dir, tmpDir: dir, errorLog: 'stderr', accessLog: '/dev/null', workerUser: null, workerProcesses: '1', workerShutdownTimeoutS: 10, dataDictSize: '8m',
          generation: 'g000000', static: [], tcp: [],
        });
        const nginx = new LocalNginx(config.nginxBin, dir, join(dir, 'current', 'nginx.conf'), join(dir, 'nginx.pid'), memoryLogger());
        const applier = new Applier({ nginxDir: dir, keep: 2, served: async () => null }, { test: (c) => nginx.test(c), reload: async () => undefined, running: async () => false }, memoryLogger());
        const r = await applier.apply(bundle);
        if (!r.ok) throw new Error(`${config.nginxBin} rejects the rendered config: ${r.error}`);
        return `${flavor.version} accepts the rendered config (modules: ${flavor.loadModules.length ? flavor.loadModules.map((m) => m.split('/').pop()).join(', ') : 'built in'})`;
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  if (config.clearml.apiHost) {
    const { createClearmlClient } = require('../providers/clearml/api-client') as typeof import('../providers/clearml/api-client');
    const { parseTask } = require('../providers/clearml/parse-task') as typeof import('../providers/clearml/parse-task');
    const client = createClearmlClient(config, { timeoutMs: 10_000 });
    const loggedIn = await step(lines, 'ClearML login', async () => {
      const claims = await client.login();
      return `${config.clearml.apiHost} as user ${claims?.identity?.user ?? '?'} (role ${claims?.identity?.role ?? '?'}, server ${claims?.serverVersion ?? '?'})`;
    });
    if (loggedIn) {
      await step(lines, 'ClearML discovery', async () => {
        const tasks = await client.getAllTasks({ system_tags: ['external_service'], status: ['in_progress'], search_hidden: true, only_fields: ['id', 'user', 'company', 'runtime', 'execution.queue'] });
        let http = 0;
        let tcp = 0;
        let rejected = 0;
        for (const t of tasks) {
          const p = parseTask(t, { provider: 'clearml', tcpGateway: { address: config.tcp.routerAddress, portStart: config.tcp.portStart, portEnd: config.tcp.portEnd } });
          http += p.ephemeral.length + p.bindings.length;
          tcp += p.tcp.length;
          rejected += p.rejections.length;
        }
        return `${tasks.length} running task(s) tagged external_service: ${http} HTTP and ${tcp} TCP endpoint(s) to route, ${rejected} rejected`;
      });
    }
  }

  const host = config.listenAddress === '0.0.0.0' ? '127.0.0.1' : config.listenAddress;
  const live = await step(lines, 'edge health', async () => {
    const r = await request({ host, port: config.serverPort, path: '/_gateway/health' }, 3000).catch((e) => {
      throw new Error(`no gateway answers on ${host}:${config.serverPort} (${errorMessage(e)}); is appgw serve running?`);
    });
    if (r.status !== 200) throw new Error(`/_gateway/health answered ${r.status}`);
    return `${host}:${config.serverPort} serves generation ${(JSON.parse(r.body) as { generation: string }).generation}`;
  });
  if (!live) return lines;

  await step(lines, 'request through the edge', async () => {
    const store = openStore({ dataDir: config.dataDir, tokenMaxDays: config.tokenMaxDays });
    const name = `appgw-check-${randomBytes(4).toString('hex')}`;
    const backend = http.createServer((_q, s) => {
      s.writeHead(200, { 'content-type': 'text/plain' });
      s.end(`ok ${name}`);
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    const port = (backend.address() as AddressInfo).port;
    let tokenId: string | null = null;
    try {
      store.putRoute({ name, path: `/${name}/`, backends: [{ host: '127.0.0.1', port }], description: 'temporary route of appgw check' }, ACTOR);
      const t = createToken(store, { label: name, expiresInMs: 5 * 60_000, as: 'admin', routes: [name] }, ACTOR);
      tokenId = t.record.id;
      const started = Date.now();
      let last = '';
      while (Date.now() - started < 20_000) {
        const r = await request({ host, port: config.serverPort, path: `/${name}/`, headers: { 'x-gateway-token': t.token } }, 3000).catch((e) => ({ status: 0, body: errorMessage(e) }));
        if (r.status === 200 && r.body === `ok ${name}`) return `a test route and a route-scoped token reached a test backend in ${Date.now() - started} ms`;
        last = `${r.status} ${r.body.slice(0, 100)}`;
        await new Promise((res) => setTimeout(res, 200));
      }
      throw new Error(`the test route did not answer within 20 s (last: ${last})`);
    } finally {
      try {
        store.removeRoute(name, ACTOR);
      } catch {
        /* already gone */
      }
      if (tokenId) revokeToken(store, tokenId, ACTOR);
      store.close();
      backend.close();
    }
  });
  return lines;
}

/** Pure. The report as printed: one line per check. */
export function formatCheck(lines: CheckLine[]): string {
  return lines.map((l) => `${l.ok ? 'ok  ' : 'FAIL'}  ${l.what}: ${l.detail}`).join('\n');
}
