import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { EphemeralRoute } from '../../router/model/types';
import { request } from '../../router/proxy/edge-client';
import { startEcho, type EchoBackend } from '../support/echo-backend';
import { MemoryTokens, startTestGateway, type TestGateway } from '../support/gateway-harness';
import { req } from '../support/http';
import { ManualProvider } from '../support/manual-provider';
import { waitFor } from '../support/net';

const TASK = 'de1a0de1a0de1a0de1a0de1a0de1a0de';
const TOKENS = 12_000;

describe('data pushes are deltas (real nginx, 12,000 tokens)', () => {
  let g: TestGateway;
  let echo: EchoBackend;
  const tokens = new MemoryTokens();
  const plain: string[] = [];

  beforeAll(async () => {
    echo = await startEcho('echo');
    for (let i = 0; i < TOKENS; i++) plain.push(tokens.add({ u: 'alice' }));
    const route: EphemeralRoute = { id: TASK, taskId: TASK, endpoint: '', owner: 'alice', company: null, backend: { host: '127.0.0.1', port: echo.port }, stripPrefix: true, provider: 'manual' };
    const provider = new ManualProvider();
    provider.snapshot = { ephemeral: [route], static: [], bindings: [], tcp: [] };
    // no periodic heal during the test: what happens is the delta path alone
    g = await startTestGateway({ providers: [provider], tokens, env: { PUSH_INTERVAL: '1h' } });
    await waitFor(async () => (await req(`${g.url}/service/${TASK}/`, { headers: { 'x-gateway-token': plain[0]! } })).status === 200, 10000, 'route live');
  }, 60000);

  afterAll(async () => {
    await g?.stop();
    await echo?.close();
  });

  const status = async (token: string) => (await req(`${g.url}/service/${TASK}/`, { headers: { 'x-gateway-token': token } })).status;

  test('revoking one of 12,000 tokens is a delta push: refused at the edge within 100 ms, no full push', async () => {
    const full = g.gw.router.stats.fullPushes;
    const pushes = g.gw.router.stats.pushes;
    const victim = plain[1]!;
    expect(await status(victim)).toBe(200);
    const t0 = performance.now();
    tokens.remove(victim);
    while ((await status(victim)) !== 401) {
      if (performance.now() - t0 > 2000) throw new Error('the revoked token still passes after 2 s');
    }
    const ms = performance.now() - t0;
    process.stdout.write(`revocation among ${TOKENS} tokens → first 401: ${ms.toFixed(1)} ms\n`);
    expect(ms).toBeLessThan(100);
    expect(g.gw.router.stats.pushes).toBeGreaterThan(pushes);
    expect(g.gw.router.stats.fullPushes).toBe(full);
    expect(await status(plain[2]!)).toBe(200);
  });

  test('a proxy that holds another version refuses the delta (409) and gets the full snapshot', async () => {
    const sock = join(g.config.runDir, 'push.sock');
    // someone else's data: another epoch, no routes, no tokens
    const other = await request({ socketPath: sock, path: '/_internal/push', method: 'POST', body: JSON.stringify({ epoch: 'other', version: 999, routes: {}, tokens: {}, users: {} }) });
    expect(other.status).toBe(200);
    expect(await status(plain[3]!)).toBe(401); // the proxy knows no token now
    // a delta against a base the proxy does not hold is refused, and changes nothing
    const stale = await request({ socketPath: sock, path: '/_internal/push', method: 'POST', body: JSON.stringify({ delta: true, epoch: 'other', version: 1001, base: 1000, set: { 't:x': '{}' }, del: [] }) });
    expect(stale.status).toBe(409);
    expect(JSON.parse(stale.body)).toMatchObject({ error: 'base_mismatch', version: 999 });
    const full = g.gw.router.stats.fullPushes;
    tokens.remove(plain[4]!);
    await waitFor(async () => (await status(plain[3]!)) === 200, 3000, 'data back after the full push');
    expect(g.gw.router.stats.fullPushes).toBe(full + 1);
    expect(await status(plain[4]!)).toBe(401);
  });

  test('a delta naming a key outside the data tables is refused whole', async () => {
    const sock = join(g.config.runDir, 'push.sock');
    const state = JSON.parse((await request({ socketPath: sock, path: '/_internal/state' })).body) as { version: number; epoch: string };
    const bad = await request({ socketPath: sock, path: '/_internal/push', method: 'POST', body: JSON.stringify({ delta: true, epoch: state.epoch, version: state.version + 1, base: state.version, set: { 't:ok': '{}', 'meta:version': '1' }, del: [] }) });
    expect(bad.status).toBe(400);
    expect(JSON.parse((await request({ socketPath: sock, path: '/_internal/state' })).body).version).toBe(state.version);
    expect(await status(plain[5]!)).toBe(200);
  });

  test('a delta that does not move the version forward is refused and changes nothing (the workers would keep their caches)', async () => {
    const sock = join(g.config.runDir, 'push.sock');
    const state = JSON.parse((await request({ socketPath: sock, path: '/_internal/state' })).body) as { version: number; epoch: string };
    const victim = plain[6]!;
    const id = /^appgw_([a-z0-9]+)_/.exec(victim)![1]!;
    expect(await status(victim)).toBe(200);
    const same = await request({ socketPath: sock, path: '/_internal/push', method: 'POST', body: JSON.stringify({ delta: true, epoch: state.epoch, version: state.version, base: state.version, set: {}, del: [`t:${id}`] }) });
    expect(same.status).toBe(400);
    expect(JSON.parse(same.body)).toMatchObject({ error: 'bad_delta', version: state.version });
    expect(JSON.parse((await request({ socketPath: sock, path: '/_internal/state' })).body).version).toBe(state.version);
    expect(await status(victim)).toBe(200);
  });
});

/** A token table that throws once when asked (a store that is briefly unreadable). */
class FlakyTokens extends MemoryTokens {
  failNext = false;
  override table(): ReturnType<MemoryTokens['table']> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('the store is busy');
    }
    return super.table();
  }
}

describe('a push that fails before it is sent does not stop later pushes (real nginx)', () => {
  let g: TestGateway;
  let echo: EchoBackend;
  const tokens = new FlakyTokens();

  beforeAll(async () => {
    echo = await startEcho('echo');
    const route: EphemeralRoute = { id: TASK, taskId: TASK, endpoint: '', owner: 'alice', company: null, backend: { host: '127.0.0.1', port: echo.port }, stripPrefix: true, provider: 'manual' };
    const provider = new ManualProvider();
    provider.snapshot = { ephemeral: [route], static: [], bindings: [], tcp: [] };
    g = await startTestGateway({ providers: [provider], tokens, env: { PUSH_INTERVAL: '1h' } });
  });

  afterAll(async () => {
    await g?.stop();
    await echo?.close();
  });

  test('the token table throws once: that reconcile fails and is logged; the next change is pushed and served', async () => {
    const status = async (token: string) => (await req(`${g.url}/service/${TASK}/`, { headers: { 'x-gateway-token': token } })).status;
    tokens.failNext = true;
    const first = tokens.add({ u: 'alice' });
    await waitFor(() => g.log.lines.some((l) => l.msg === 'reconcile failed' && /the store is busy/.test(String(l.fields.error))), 3000, 'the failed reconcile logged');
    const second = tokens.add({ u: 'alice' });
    await waitFor(async () => (await status(second)) === 200, 3000, 'the next token served');
    expect(await status(first)).toBe(200);
  });

  test('a status file write that does not finish holds back no push (it is written off the reconcile path)', async () => {
    const status = async (token: string) => (await req(`${g.url}/service/${TASK}/`, { headers: { 'x-gateway-token': token } })).status;
    // the router writes status.json through this temp file: a FIFO with no reader blocks the write
    // (a write still under way from the previous test holds the name: try again once it is renamed)
    const tmp = join(g.dir, `status.json.${process.pid}.tmp`);
    await waitFor(() => {
      try {
        execFileSync('mkfifo', [tmp], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    }, 5000, 'the FIFO in place of the status temp file', 5);
    const stuck = tokens.add({ u: 'alice' });
    await waitFor(async () => (await status(stuck)) === 200, 3000, 'a token served while the status write hangs');
    const next = tokens.add({ u: 'alice' });
    await waitFor(async () => (await status(next)) === 200, 3000, 'the next token served too');
    // a reader lets the hung write finish; the change made meanwhile is written after it
    const drained = await readFile(tmp).catch(() => Buffer.alloc(0));
    expect(drained.length).toBeGreaterThan(0);
    const file = join(g.dir, 'status.json');
    await waitFor(() => statSync(file).isFile() && JSON.parse(readFileSync(file, 'utf8')).dataVersion === g.gw.router.status().dataVersion, 3000, 'status.json up to date');
  });
});
