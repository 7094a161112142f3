import http from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EphemeralRoute } from '../../router/model/types';
import { startEcho, type EchoBackend } from '../support/echo-backend';
import { MemoryTokens, startTestGateway, type TestGateway } from '../support/gateway-harness';
import { req } from '../support/http';
import { ManualProvider } from '../support/manual-provider';
import { waitFor } from '../support/net';

const TASK = '5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a';

describe('STREAM_REVOCATION=false (real nginx)', () => {
  let g: TestGateway;
  let echo: EchoBackend;
  const tokens = new MemoryTokens();

  beforeAll(async () => {
    echo = await startEcho('echo');
    const route: EphemeralRoute = { id: TASK, taskId: TASK, endpoint: '', owner: 'alice', company: null, backend: { host: '127.0.0.1', port: echo.port }, stripPrefix: true, provider: 'manual' };
    const provider = new ManualProvider();
    provider.snapshot = { ephemeral: [route], static: [], bindings: [], tcp: [] };
    g = await startTestGateway({ providers: [provider], tokens, env: { STREAM_REVOCATION: 'false' } });
  });

  afterAll(async () => {
    await g?.stop();
    await echo?.close();
  });

  test('no body filter is rendered; an open stream runs to its end after a revocation, new requests get 401', async () => {
    const common = readFileSync(join(g.config.nginxDir, 'current', 'server-common.conf'), 'utf8');
    expect(common).not.toMatch(/body_filter_by_lua/);
    expect(common).toMatch(/access_by_lua_block/);
    const token = tokens.add({ u: 'alice' });
    const url = `${g.url}/service/${TASK}/`;
    await waitFor(async () => (await req(url, { headers: { 'x-gateway-token': token } })).status === 200, 3000, 'token live');
    let events = 0;
    let revoked = false;
    await new Promise<void>((resolve, reject) => {
      http.get(`${url}sse?n=8&gap=80`, { headers: { 'x-gateway-token': token } }, (res) => {
        res.on('data', (c: Buffer) => {
          events += (c.toString().match(/^data: /gm) ?? []).length;
          if (events >= 2 && !revoked) {
            revoked = true;
            tokens.remove(token);
          }
        });
        res.on('end', () => resolve());
        res.on('error', reject);
      }).on('error', reject);
    });
    expect(revoked).toBe(true);
    expect(events).toBe(8);
    expect((await req(url, { headers: { 'x-gateway-token': token } })).status).toBe(401);
  });
});
