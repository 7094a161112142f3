import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../router/config';
import { memoryLogger } from '../../router/log';
import { ClearmlProvider } from '../../router/providers/clearml/clearml-provider';
import { StoreProvider } from '../../router/providers/store-provider';
import { ensureAdminToken } from '../../router/store/bootstrap';
import { openStore, type Store } from '../../router/store/store';
import { listTokens } from '../../router/store/tokens';
import { StoreTokens } from '../../router/store-tokens';
import { FakeClearml } from '../fakes/fake-clearml';
import { startTestGateway, type TestGateway } from '../support/gateway-harness';
import { freePort } from '../support/net';

const BIN = join(__dirname, '..', '..', 'bin', 'appgw');

function run(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(BIN, args, { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('appgw check against a running gateway and a fake ClearML server', () => {
  let fake: FakeClearml;
  let g: TestGateway;
  let store: Store;
  let dir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    fake = await FakeClearml.start();
    fake.addTask({ runtime: { _SERVICE: 'EXTERNAL', _ADDRESS: '127.0.0.1', _PORT: 9 } });
    fake.addTask({ runtime: { external_address: '127.0.0.1', external_tcp_port: '22', _SERVICE: 'EXTERNAL_TCP' } });
    dir = mkdtempSync(join(tmpdir(), 'appgw-check-'));
    const port = await freePort();
    env = {
      DATA_DIR: dir,
      LISTEN_ADDRESS: '127.0.0.1',
      ROUTER__WEBSERVER__SERVER_PORT: String(port),
      ROUTER_URL: `http://127.0.0.1:${port}`,
      CLEARML_API_HOST: fake.url,
      CLEARML_API_ACCESS_KEY: 'admin-key',
      CLEARML_API_SECRET_KEY: 'admin-secret',
      CLEARML_POLL_INTERVAL: '500ms',
    };
    store = openStore({ dataDir: dir });
    ensureAdminToken(store, { adminToken: null }, () => undefined);
    const config = parseConfig(env, dir);
    g = await startTestGateway({
      dir,
      env,
      tokens: new StoreTokens(store),
      providers: [new StoreProvider(store, memoryLogger()), new ClearmlProvider(config, memoryLogger())],
    });
  });

  afterAll(async () => {
    await g?.stop();
    store?.close();
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every check passes, and the test route and token are removed afterwards', async () => {
    const r = await run(['check'], env);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^ok {4}configuration: router appgw/m);
    expect(r.stdout).toMatch(/^ok {4}nginx -t: nginx\/\S+ accepts the rendered config/m);
    expect(r.stdout).toMatch(/^ok {4}ClearML login: /m);
    expect(r.stdout).toMatch(/^ok {4}ClearML discovery: 2 running task\(s\) tagged external_service: 1 HTTP and 1 TCP endpoint\(s\) to route, 0 rejected$/m);
    expect(r.stdout).toMatch(/^ok {4}edge health: 127\.0\.0\.1:\d+ serves generation g\d+$/m);
    expect(r.stdout).toMatch(/^ok {4}request through the edge: a test route and a route-scoped token reached a test backend in \d+ ms$/m);
    expect(r.stdout).toMatch(/all checks passed\n$/);
    expect(r.code).toBe(0);
    expect(store.listRoutes().filter((x) => x.name.startsWith('appgw-check-'))).toEqual([]);
    expect(listTokens(store).filter((t) => t.label.startsWith('appgw-check-') && t.state === 'active')).toEqual([]);
  });

  test('a ClearML that refuses the key and a gateway that is not running are reported, exit code 1', async () => {
    const r = await run(['check'], { ...env, CLEARML_API_SECRET_KEY: 'wrong', ROUTER__WEBSERVER__SERVER_PORT: String(await freePort()) });
    expect(r.stdout).toMatch(/^FAIL {2}ClearML login: .*401/m);
    expect(r.stdout).toMatch(/^FAIL {2}edge health: no gateway answers on 127\.0\.0\.1:\d+ .*is appgw serve running\?$/m);
    expect(r.stdout).toMatch(/2 check\(s\) failed\n$/);
    expect(r.code).toBe(1);
  });
});
