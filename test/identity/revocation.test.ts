import http from 'node:http';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { openStore, type Store } from '../../router/store/store';
import { createToken, listTokens, revokeToken } from '../../router/store/tokens';
import { StoreTokens } from '../../router/store-tokens';
import type { EphemeralRoute } from '../../router/model/types';
import { startEcho, type EchoBackend } from '../support/echo-backend';
import { startTestGateway, type TestGateway } from '../support/gateway-harness';
import { req } from '../support/http';
import { ManualProvider } from '../support/manual-provider';
import { waitFor } from '../support/net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

const TASK = 'feedfeedfeedfeedfeedfeedfeedfeed';
const ACTOR = { name: 'test', principal: null, client: null };

/** Every regular file under `dir`, recursively. */
function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return files(p);
    return e.isFile() && statSync(p).size < 64 << 20 ? [p] : [];
  });
}

describe('revocation, fuzzing and secret hygiene (real nginx, SQLite store)', () => {
  let g: TestGateway;
  let echo: EchoBackend;
  let store: Store;
  let storeDir: string;
  const secrets: string[] = [];
  const provider = new ManualProvider();

  const mint = (label = 't') => {
    const t = createToken(store, { label, expiresInMs: 3600_000, as: 'alice' }, ACTOR);
    // the secret is everything after `appgw_<id>_` (it may itself contain '_')
    secrets.push(t.token.slice(`appgw_${t.record.id}_`.length));
    return t;
  };

  beforeAll(async () => {
    echo = await startEcho('echo');
    storeDir = mkdtempSync(join(tmpdir(), 'appgw-store-'));
    store = openStore({ dataDir: storeDir });
    store.addUser({ id: 'alice', name: 'Alice' }, ACTOR);
    const route: EphemeralRoute = { id: TASK, taskId: TASK, endpoint: '', owner: 'alice', company: null, backend: { host: '127.0.0.1', port: echo.port }, stripPrefix: true, provider: 'manual' };
    provider.snapshot = { ephemeral: [route], static: [], bindings: [], tcp: [] };
    g = await startTestGateway({ providers: [provider], tokens: new StoreTokens(store), env: { DATA_DIR: storeDir } });
  });

  afterAll(async () => {
    await g?.stop();
    store?.close();
    rmSync(storeDir, { recursive: true, force: true });
    await echo?.close();
  });

  afterEach(() => {
    expect(g.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]|lua entry thread aborted|runtime error/);
  });

  const url = `/service/${TASK}/`;

  test('a revoked token is refused at the edge within 100 ms (p99 over 100 tries: one outlier of a loaded CI machine is allowed, two are not)', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const status = (token: string) =>
      new Promise<number>((resolve, reject) => {
        const r = http.get(`${g.url}${url}`, { agent, headers: { 'x-gateway-token': token } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        r.on('error', reject);
      });
    const times: number[] = [];
    for (let i = 0; i < 100; i++) {
      const t = mint(`rev${i}`);
      await waitFor(async () => (await status(t.token)) === 200, 3000, 'token live');
      revokeToken(store, t.record.id, ACTOR);
      const t0 = performance.now();
      await waitFor(async () => (await status(t.token)) === 401, 2000, 'token refused', 1);
      times.push(performance.now() - t0);
    }
    agent.destroy();
    times.sort((a, b) => a - b);
    const p50 = times[Math.floor(times.length * 0.5)]!;
    const p99 = times[Math.ceil(times.length * 0.99) - 1]!;
    process.stdout.write(`revocation → first 401 (all: ${times.map((x) => x.toFixed(0)).join(' ')}): p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${times[times.length - 1]!.toFixed(1)} ms\n`);
    expect(p99).toBeLessThanOrEqual(100);
  });

  test('an open WebSocket authorised by a token is closed within 1 s of its revocation', async () => {
    const t = mint('ws');
    await waitFor(async () => (await req(`${g.url}${url}`, { headers: { 'x-gateway-token': t.token } })).status === 200, 3000, 'token live');
    const ws = new WebSocket(`${g.url.replace('http', 'ws')}${url}ws`, { headers: { 'x-gateway-token': t.token } });
    const got: string[] = [];
    ws.on('message', (d) => got.push(d.toString()));
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    ws.send('ping');
    await waitFor(() => got.includes('echo:ping'), 2000, 'echo');
    const closed = new Promise<number>((r) => ws.once('close', () => r(performance.now())));
    revokeToken(store, t.record.id, ACTOR);
    const t0 = performance.now();
    const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 3000))]);
    expect(at).toBeGreaterThan(0);
    const ms = at - t0;
    process.stdout.write(`revocation → WebSocket closed: ${ms.toFixed(0)} ms\n`);
    expect(ms).toBeLessThanOrEqual(1000);
  });

  test('an open SSE stream authorised by a token is cut within 1 s of its revocation', async () => {
    const t = mint('sse');
    await waitFor(async () => (await req(`${g.url}${url}`, { headers: { 'x-gateway-token': t.token } })).status === 200, 3000, 'token live');
    let chunks = 0;
    let revokedAt = 0;
    const ended = new Promise<number>((resolve) => {
      http.get(`${g.url}${url}sse?n=200&gap=100`, { headers: { 'x-gateway-token': t.token } }, (res) => {
        res.on('data', () => {
          chunks += 1;
          if (chunks === 3) {
            revokeToken(store, t.record.id, ACTOR);
            revokedAt = performance.now();
          }
        });
        res.on('end', () => resolve(performance.now()));
        res.on('error', () => resolve(performance.now()));
        res.on('close', () => resolve(performance.now()));
      });
    });
    const at = await Promise.race([ended, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]);
    expect(at).toBeGreaterThan(0);
    process.stdout.write(`revocation → SSE stream cut: ${(at - revokedAt).toFixed(0)} ms after ${chunks} chunks\n`);
    expect(at - revokedAt).toBeLessThanOrEqual(1000);
    expect(chunks).toBeLessThan(20);
  });

  test('100,000 malformed credentials: none admitted, the edge stays up, no Lua errors', async () => {
    const good = mint('fuzz');
    const id = good.record.id;
    const secret = good.token.slice(`appgw_${id}_`.length);
    const rnd = (n: number) => Array.from({ length: n }, () => String.fromCharCode(33 + Math.floor(Math.random() * 94))).join('');
    const variants: Array<(i: number) => Record<string, string>> = [
      () => ({ 'x-gateway-token': `appgw_${id}_${rnd(43).replace(/[^A-Za-z0-9_-]/g, 'a')}` }), // right id, wrong secret
      (i) => ({ 'x-gateway-token': good.token.slice(0, i % good.token.length) }), // truncated
      () => ({ 'x-gateway-token': `appgw_${id}_${secret}x` }), // extended
      () => ({ 'x-gateway-token': `appgx_${id}_${secret}` }), // wrong prefix
      () => ({ 'x-gateway-token': 'appgw_' + 'a'.repeat(3000) }), // oversized
      () => ({ 'x-gateway-token': encodeURIComponent(`appgw_${id}_${secret.slice(0, 20)}é😀`) }), // unicode (encoded)
      () => ({ authorization: `Bearer appgw_${rnd(12).toLowerCase()}_${rnd(43)}` }),
      () => ({ cookie: `appgw_session=${rnd(60)}` }),
      () => ({ 'x-gateway-token': rnd(80) }),
      () => ({ 'x-gateway-token': `appgw_${id.toUpperCase()}_${secret}` }),
    ];
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    const counts = new Map<number, number>();
    let sent = 0;
    const N = 100_000;
    const worker = async () => {
      while (sent < N) {
        const i = sent++;
        const headers = variants[i % variants.length]!(i);
        const code = await new Promise<number>((resolve) => {
          const r = http.get(`${g.url}${url}`, { agent, headers }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          r.on('error', () => resolve(-1));
        });
        counts.set(code, (counts.get(code) ?? 0) + 1);
      }
    };
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 64 }, worker));
    agent.destroy();
    process.stdout.write(`fuzz: ${N} requests in ${Date.now() - t0} ms: ${JSON.stringify([...counts])}\n`);
    expect(counts.get(200) ?? 0).toBe(0);
    expect((counts.get(401) ?? 0) + (counts.get(400) ?? 0) + (counts.get(431) ?? 0)).toBe(N);
    expect((await req(`${g.url}${url}`, { headers: { 'x-gateway-token': good.token } })).status).toBe(200);
    expect(echo.seen.filter((s) => s.headers['x-gateway-token'] || s.headers.cookie).length).toBe(0);
  }, 180_000);

  test("a token's last use at the edge reaches the store (appgw token list)", async () => {
    const t = mint('last-used');
    await waitFor(async () => (await req(`${g.url}${url}`, { headers: { 'x-gateway-token': t.token } })).status === 200, 3000, 'token live');
    const before = Date.now() - 2000;
    await waitFor(() => {
      const v = listTokens(store).find((x) => x.id === t.record.id);
      return v?.lastUsedAt !== null && v!.lastUsedAt! >= before;
    }, 5000, 'last use recorded');
  });

  test('token secrets appear in no file under DATA_DIR (store, logs, rendered config, status)', async () => {
    const all = files(storeDir);
    expect(all.some((f) => f.endsWith('access.log'))).toBe(true);
    expect(all.some((f) => f.endsWith('appgw.db'))).toBe(true);
    for (const f of all) {
      const text = readFileSync(f).toString('latin1');
      for (const s of secrets) {
        const at = text.indexOf(s);
        expect([f, at === -1 ? '' : text.slice(Math.max(0, at - 120), at + 60).replace(/[^\x20-\x7e]/g, '.')]).toEqual([f, '']);
      }
    }
    const logged = JSON.stringify(g.log.lines);
    for (const s of secrets) expect(logged.includes(s)).toBe(false);
  });
});
