import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileProvider } from '../../router/providers/file-provider';
import { memoryLogger } from '../../router/log';
import type { ProxyControl } from '../../router/proxy/control';
import { startEcho, type EchoBackend } from '../support/echo-backend';
import { startTestGateway, type TestGateway } from '../support/gateway-harness';
import { req } from '../support/http';
import { waitFor } from '../support/net';

const BIN = join(__dirname, '..', '..', 'bin', 'appgw');

function run(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(BIN, args, { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const HOSTILE = [
  'x; } server { listen 80',
  'a{b',
  'a}b',
  'a"b',
  "a'b",
  '$host',
  'a\nb',
  'a\u0000b',
  '../etc',
  'ünï',
  'x'.repeat(10_000),
];

describe('routes file through the real edge: hostile values are inert', () => {
  let g: TestGateway;
  let echo: EchoBackend;
  let dir: string;
  let file: string;
  const tested: string[] = [];

  beforeAll(async () => {
    echo = await startEcho('echo');
    dir = mkdtempSync(join(tmpdir(), 'appgw-routes-'));
    file = join(dir, 'routes.yaml');
    writeFileSync(file, `routes:\n  - { name: good, path: /good/, backends: ["127.0.0.1:${echo.port}"] }\n`);
    const spy = (c: ProxyControl): ProxyControl => ({
      test: async (conf) => {
        const folder = conf.replace(/\/nginx\.conf$/, '');
        const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [readFileSync(join(d, e.name), 'utf8')]));
        tested.push(walk(folder).join('\n'));
        return c.test(conf);
      },
      reload: () => c.reload(),
      running: () => c.running(),
    });
    g = await startTestGateway({ providers: [new FileProvider(file, memoryLogger(), { debounceMs: 20 })], wrapControl: spy });
    await waitFor(async () => (await req(`${g.url}/good/`, { headers: { 'x-gateway-token': g.adminToken } })).status === 200, 5000, 'good route');
  });

  afterAll(async () => {
    await g?.stop();
    await echo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every hostile value in every field is rejected with a reason; nginx -t never sees it; the edge keeps serving', async () => {
    const entries: string[] = [];
    const q = (v: string) => JSON.stringify(v);
    for (const v of HOSTILE) {
      entries.push(`  - { name: ${q(v)}, path: /h1/, backends: ["127.0.0.1:${echo.port}"] }`);
      entries.push(`  - { name: h2, path: ${q(`/${v}/`)}, backends: ["127.0.0.1:${echo.port}"] }`);
      entries.push(`  - { name: h3, subdomain: ${q(v)}, backends: ["127.0.0.1:${echo.port}"] }`);
      entries.push(`  - { name: h4, path: /h4/, backends: [${q(`${v}:80`)}] }`);
      entries.push(`  - { name: h5, path: /h5/, backends: ["127.0.0.1:${echo.port}"], allowed_groups: [${q(v)}] }`);
    }
    for (const p of ['0', '70000', '-1', '80; x']) entries.push(`  - { name: h6, path: /h6/, backends: ["127.0.0.1:${p}"] }`);
    for (const a of ['1.2.3.4.5', 'localhost;', 'a b', '999.1.1.1']) entries.push(`  - { name: h7, path: /h7/, backends: [${q(`${a}:80`)}] }`);
    const tasks: string[] = [];
    for (const v of HOSTILE) {
      tasks.push(`  - { id: ${q(v)}, owner: alice, endpoints: [{ port: ${echo.port}, address: 127.0.0.1 }] }`);
      tasks.push(`  - { id: abcdef01, owner: ${q(v)}, endpoints: [{ port: ${echo.port}, address: 127.0.0.1 }] }`);
      tasks.push(`  - { id: abcdef02, owner: alice, endpoints: [{ name: ${q(v)}, port: ${echo.port}, address: 127.0.0.1 }] }`);
      tasks.push(`  - { id: abcdef03, owner: alice, endpoints: [{ port: ${echo.port}, address: ${q(v)} }] }`);
    }
    const before = g.gw.router.stats.reloads;
    const yaml = `routes:\n  - { name: good, path: /good/, backends: ["127.0.0.1:${echo.port}"] }\n  - { name: added, path: /added/, backends: ["127.0.0.1:${echo.port}"] }\n${entries.join('\n')}\ntasks:\n  - { id: abcdef09, owner: alice, endpoints: [{ port: ${echo.port}, address: 127.0.0.1 }] }\n${tasks.join('\n')}\n`;
    writeFileSync(file, yaml);
    await waitFor(async () => (await req(`${g.url}/added/`, { headers: { 'x-gateway-token': g.adminToken } })).status === 200, 5000, 'good change applied');
    // a large file may be read while it is being written: the provider settles on the full file
    await waitFor(async () => (await req(`${g.url}/service/abcdef09/`, { headers: { 'x-gateway-token': g.adminToken } })).status === 200, 5000, 'good task');
    // the edge may serve the new generation a moment before the applier has confirmed it
    await waitFor(() => g.gw.router.stats.reloads > before, 5000, 'reload counted');
    const rejections = g.gw.router.status().rejections;
    expect(rejections.length).toBeGreaterThanOrEqual(entries.length + tasks.length - 5);
    for (const r of rejections) {
      expect(r.reason.length).toBeGreaterThan(5);
      expect(r.source).toContain('routes.yaml');
    }
    // nothing hostile reached any rendered file that nginx -t checked
    const rendered = tested.join('\n');
    for (const needle of ['listen 80\n', 'a{b', 'a}b', '../etc', 'ünï', 'xxxxxxxxxx', 'server { listen 80']) expect(rendered).not.toContain(needle);
    expect(g.gw.router.status().lastFailure).toBeNull();
    // the edge keeps serving: old and new good routes, the good task
    for (const path of ['/good/', '/added/', '/service/abcdef09/']) {
      const r = await req(`${g.url}${path}`, { headers: { 'x-gateway-token': g.adminToken } });
      expect([path, r.status, r.body.slice(0, 120)]).toEqual([path, 200, expect.any(String)]);
    }
    expect(g.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
  });

  test('a file that fails to parse keeps the last good view', async () => {
    writeFileSync(file, 'routes: [ { name: broken');
    await waitFor(() => g.gw.router.status().providers.some((p) => p.name === 'file' && p.state === 'degraded'), 5000, 'provider degraded');
    expect((await req(`${g.url}/good/`, { headers: { 'x-gateway-token': g.adminToken } })).status).toBe(200);
    expect((await req(`${g.url}/service/abcdef09/`, { headers: { 'x-gateway-token': g.adminToken } })).status).toBe(200);
  });

  test('appgw routes prints the routes, rejections and provider state from the status file', async () => {
    // the router rewrites status.json at every reconcile (at least every PUSH_INTERVAL)
    await waitFor(() => readFileSync(join(g.dir, 'status.json'), 'utf8').includes('"degraded"'), 3000, 'status file updated');
    const r = await run(['routes'], { DATA_DIR: g.dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^static\s+good\s+Routing\s+http:\/\/127\.0\.0\.1:\d+\/good\//m);
    expect(r.stdout).toMatch(/^ephemeral\s+abcdef09\s+Routing/m);
    expect(r.stdout).toMatch(/provider file: degraded since/);
  });
});

describe('configuration errors', () => {
  test.each([
    [{ ROUTER__WEBSERVER__SERVER_PORT: '70000' }, /^appgw: ROUTER__WEBSERVER__SERVER_PORT is "70000"; expected a TCP port 1-65535\n$/],
    [{ PROXY_MODE: 'kubernetes' }, /^appgw: PROXY_MODE is "kubernetes"; expected one of local, docker, external\n$/],
    [{ CLEARML_API_HOST: 'https://api.example.com' }, /^appgw: CLEARML_API_ACCESS_KEY is missing; expected a ClearML access key\n$/],
    [{ TCP_PORT_START: '30000' }, /^appgw: TCP_PORT_END is missing; expected /],
  ])('a bad env var gives one clear line and exit code 2 (%j), nothing started', async (env, expected) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'appgw-bad-'));
    const r = await run(['serve'], { DATA_DIR: dataDir, ...env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(expected);
    expect(r.stdout).toBe('');
    expect(readdirSync(dataDir)).toEqual([]);
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('an unreadable env file is one line, exit code 2', async () => {
    const r = await run(['--env-file', '/nonexistent/runtime.env', 'routes'], {});
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('appgw: cannot read --env-file /nonexistent/runtime.env: ENOENT\n');
  });
});
