import { parseConfig } from '../../router/config';
import { memoryLogger } from '../../router/log';
import { ClearmlProvider } from '../../router/providers/clearml/clearml-provider';
import { clearmlSessions } from '../../router/serve';
import { FakeClearml, type FakeUser } from '../fakes/fake-clearml';
import { startEcho, type EchoBackend } from '../support/echo-backend';
import { startTestGateway, type TestGateway } from '../support/gateway-harness';
import { req } from '../support/http';
import { freePort, waitFor } from '../support/net';

const POLL_MS = 300;

describe('ClearML tasks through the real edge (fake ClearML API, real nginx)', () => {
  let fake: FakeClearml;
  let echo: EchoBackend;
  let g: TestGateway;
  let alice: FakeUser;
  let bob: FakeUser;

  beforeAll(async () => {
    fake = await FakeClearml.start();
    alice = fake.addUser({ id: 'a11ce000000000000000000000000000', name: 'Alice', accessKey: 'ak-alice', secretKey: 'sk-alice' });
    bob = fake.addUser({ id: 'b0b00000000000000000000000000000', name: 'Bob', accessKey: 'ak-bob', secretKey: 'sk-bob' });
    echo = await startEcho('task-backend');
    const port = await freePort();
    const env = {
      ROUTER__WEBSERVER__SERVER_PORT: String(port),
      ROUTER_URL: `http://127.0.0.1:${port}`,
      CLEARML_API_HOST: fake.url,
      CLEARML_API_ACCESS_KEY: 'admin-key',
      CLEARML_API_SECRET_KEY: 'admin-secret',
      CLEARML_POLL_INTERVAL: `${POLL_MS}ms`,
      AUTH_COOKIE_NAME: 'clearml_token_basic',
    };
    const config = parseConfig(env, '/tmp');
    g = await startTestGateway({ env, providers: [new ClearmlProvider(config, memoryLogger())], sessions: clearmlSessions(config) });
  });

  afterAll(async () => {
    await g?.stop();
    await echo?.close();
    await fake?.close();
  });

  afterEach(() => {
    expect(g.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
  });

  let taskId: string;

  test('a task written the way SDK 2.1 writes it is routed within the poll interval plus a second, and written back', async () => {
    const t0 = Date.now();
    const task = fake.addTask({
      user: alice.id,
      runtime: { _SERVICE: 'EXTERNAL', _ADDRESS: '127.0.0.1', _PORT: echo.port, _SERVICE__api: 'EXTERNAL', _ADDRESS__api: '127.0.0.1', _PORT__api: echo.port },
    });
    taskId = task.id;
    await waitFor(async () => (await req(`${g.url}/service/${taskId}/hello`, { headers: { 'x-gateway-token': g.adminToken } })).status === 200, POLL_MS + 1000, 'task reachable');
    const ms = Date.now() - t0;
    process.stdout.write(`ClearML task registered → reachable through the edge: ${ms} ms (poll interval ${POLL_MS} ms)\n`);
    const r = await req(`${g.url}/service/${taskId}-api/v1/models`, { headers: { 'x-gateway-token': g.adminToken } });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ backend: 'task-backend', url: '/v1/models' });
    // what the SDK's wait loop reads: endpoint[__n] and browser_endpoint[__n]
    await waitFor(() => fake.task(taskId).runtime.endpoint__api !== undefined, 3000, 'write-back');
    const rt = fake.task(taskId).runtime;
    expect(rt.endpoint).toBe(`${g.url}/service/${taskId}/`);
    expect(rt.browser_endpoint).toBe(`${g.url}/service/${taskId}/`);
    expect(rt.endpoint__api).toBe(`${g.url}/service/${taskId}-api/`);
    expect(rt._PORT).toBe(echo.port);
    expect(rt._ADDRESS).toBe('127.0.0.1');
  });

  test("the owner's ClearML web session is admitted, another user's is refused, a forged one is 401", async () => {
    const url = `${g.url}/service/${taskId}/x`;
    const ok = await req(url, { headers: { cookie: `clearml_token_basic=${fake.tokenFor(alice)}; other=1` } });
    expect(ok.status).toBe(200);
    expect(ok.json().headers['x-forwarded-user']).toBe(alice.id);
    expect(ok.json().headers.cookie).toBe('other=1');
    const other = await req(url, { headers: { cookie: `clearml_token_basic=${fake.tokenFor(bob)}` } });
    expect(other.status).toBe(403);
    const forged = await req(url, { headers: { cookie: `clearml_token_basic=${fake.tokenFor(alice).slice(0, -4)}AAAA` } });
    expect(forged.status).toBe(401);
  });

  test('a ClearML outage fails closed for sessions it cannot check, and keeps the routes', async () => {
    const fresh = fake.tokenFor(alice, 3600);
    await fake.down('refuse');
    try {
      const r = await req(`${g.url}/service/${taskId}/`, { headers: { cookie: `clearml_token_basic=${fresh}x` } });
      expect(r.status).toBe(503);
      await new Promise((res) => setTimeout(res, POLL_MS * 3));
      expect((await req(`${g.url}/service/${taskId}/`, { headers: { 'x-gateway-token': g.adminToken } })).status).toBe(200);
      expect(g.gw.router.status().providers.find((p) => p.name === 'clearml')?.state).toBe('degraded');
    } finally {
      await fake.up();
    }
  });

  test('a task that stops loses its route within one poll', async () => {
    fake.updateTask(taskId, { status: 'stopped' });
    const t0 = Date.now();
    await waitFor(async () => (await req(`${g.url}/service/${taskId}/`, { headers: { 'x-gateway-token': g.adminToken } })).status === 404, POLL_MS * 3 + 1000, 'route gone');
    process.stdout.write(`ClearML task stopped → route gone: ${Date.now() - t0} ms\n`);
  });
});
