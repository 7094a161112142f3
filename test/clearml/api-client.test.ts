import { ClearmlClient, ClearmlError, decodeToken } from '../../router/providers/clearml/api-client';
import { FakeClearml } from '../fakes/fake-clearml';
import { freePort } from '../support/net';

let fake: FakeClearml;
beforeEach(async () => {
  fake = await FakeClearml.start();
});
afterEach(() => fake.close());

const client = (o: Partial<ConstructorParameters<typeof ClearmlClient>[0]> = {}) =>
  new ClearmlClient({ host: fake.url, accessKey: 'admin-key', secretKey: 'admin-secret', timeoutMs: 2000, ...o });

async function failure(p: Promise<unknown>): Promise<ClearmlError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ClearmlError) return e;
    throw e;
  }
  throw new Error('expected a ClearmlError');
}

test('login with Basic key:secret, then bearer calls on versioned paths with a JSON POST body', async () => {
  const c = client();
  const claims = await c.login();
  expect(claims).toMatchObject({ identity: { user: 'u-admin', role: 'admin' }, featureSet: 'basic', apiVersion: '2.34', serverVersion: '2.3.0' });
  expect(claims!.exp! - claims!.iat!).toBe(30 * 24 * 3600);
  fake.addTask({ id: 'a'.repeat(32) });
  const t = await c.getTaskById('a'.repeat(32));
  expect(t.id).toBe('a'.repeat(32));
  expect(fake.calls.map((x) => [x.endpoint, x.version, x.method])).toEqual([
    ['auth.login', '2.26', 'POST'],
    ['tasks.get_by_id', '2.26', 'POST'],
  ]);
});

test('the first call logs in by itself; a requested token lifetime is sent as expiration_sec', async () => {
  const c = client({ tokenLifetimeSec: 600 });
  await c.getAllQueues();
  expect(fake.calls[0]).toMatchObject({ endpoint: 'auth.login', body: { expiration_sec: 600 } });
  expect(c.tokenClaims()!.exp! - c.tokenClaims()!.iat!).toBe(600);
});

test('bad credentials are a CLEARML_API error 401 naming the host, never the secret', async () => {
  const e = await failure(client({ secretKey: 'wrong-secret-value' }).getAllTasks({}));
  expect(e).toMatchObject({ code: 'CLEARML_API', status: 401, subcode: 22, endpoint: 'auth.login' });
  expect(e.message).toBe('ClearML auth.login failed: 401/22 Unauthorized (invalid credentials)');
  expect(e.message).not.toContain('wrong-secret-value');
});

test('a 401 for an expired or revoked token logs in again once and repeats the call', async () => {
  const c = client();
  await c.getAllTasks({});
  fake.revokeTokens();
  await c.getAllTasks({});
  expect(fake.calls.map((x) => `${x.endpoint}:${x.status}`)).toEqual(['auth.login:200', 'tasks.get_all:200', 'tasks.get_all:401', 'auth.login:200', 'tasks.get_all:200']);
});

test('a token close to its exp is refreshed before the call, with no 401 on the way', async () => {
  let now = Date.now();
  const c = client({ now: () => now });
  await c.getAllTasks({});
  const exp = c.tokenClaims()!.exp! * 1000;
  now = exp - 60_000; // within the 5-minute margin of a 30-day token
  await c.getAllTasks({});
  expect(fake.calls.map((x) => `${x.endpoint}:${x.status}`)).toEqual(['auth.login:200', 'tasks.get_all:200', 'auth.login:200', 'tasks.get_all:200']);
});

test('concurrent calls without a token share one login', async () => {
  const c = client();
  await Promise.all([c.getAllTasks({}), c.getAllQueues(), c.getAllTasks({})]);
  expect(fake.count('auth.login')).toBe(1);
});

test.each([
  ['an unknown task', () => client().getTaskById('f'.repeat(32)), { code: 'CLEARML_API', status: 400, subcode: 101 }, /^ClearML tasks.get_by_id failed: 400\/101 Invalid task id$/],
  ['a role not allowed', () => client().call('auth.validate_token', { token: 'x' }), { code: 'CLEARML_API', status: 403, subcode: 20 }, /403\/20 Forbidden \(not allowed for role\)/],
  ['an unknown endpoint', () => client().call('tasks.nothing'), { code: 'CLEARML_API', status: 404, subcode: 0 }, /404\/0 Unable to find endpoint/],
])('envelope errors become ClearmlErrors with status and subcode: %s', async (_what, run, fields, message) => {
  const e = await failure(run());
  expect(e).toMatchObject(fields);
  expect(e.message).toMatch(message);
});

test('a 5xx envelope and a non-envelope 503 page are CLEARML_UNREACHABLE with their status', async () => {
  fake.failNext('tasks.get_all', 500, 102, 'database is temporarily unavailable\nretry');
  const e = await failure(client().getAllTasks({}));
  expect(e).toMatchObject({ code: 'CLEARML_UNREACHABLE', status: 500, subcode: 102 });
  expect(e.message).toBe('ClearML tasks.get_all failed: 500/102 database is temporarily unavailable retry');
  await fake.down('503');
  const page = await failure(client().getAllTasks({}));
  expect(page).toMatchObject({ code: 'CLEARML_UNREACHABLE', status: 503, subcode: null });
  expect(page.message).toMatch(/answered 503 without an API envelope \(auth.login\)/);
});

test('no server and a slow server are CLEARML_UNREACHABLE without a status', async () => {
  const port = await freePort();
  const refused = await failure(new ClearmlClient({ host: `http://127.0.0.1:${port}`, accessKey: 'k', secretKey: 's' }).getAllTasks({}));
  expect(refused).toMatchObject({ code: 'CLEARML_UNREACHABLE', status: null });
  expect(refused.message).toBe(`ClearML API at http://127.0.0.1:${port} unreachable (auth.login): ECONNREFUSED`);
  fake.delayMs = 400;
  const t0 = Date.now();
  const slow = await failure(client({ timeoutMs: 100 }).getAllTasks({}));
  expect(slow.message).toMatch(/unreachable \(auth.login\): timed out$/);
  expect(Date.now() - t0).toBeLessThan(400);
});

test('getAllTasks pages with page_size 500 until a short page', async () => {
  for (let i = 0; i < 1234; i++) fake.addTask();
  const tasks = await client().getAllTasks({ status: ['in_progress'], order_by: ['id'] });
  expect(new Set(tasks.map((t) => t.id)).size).toBe(1234);
  expect(fake.calls.filter((x) => x.endpoint === 'tasks.get_all').map((x) => [x.body.page, x.body.page_size])).toEqual([
    [0, 500],
    [1, 500],
    [2, 500],
  ]);
});

test('exactly 500 tasks take one more (empty) page; a server that ignores paging does not loop', async () => {
  for (let i = 0; i < 500; i++) fake.addTask();
  expect(await client().getAllTasks({})).toHaveLength(500);
  expect(fake.count('tasks.get_all')).toBe(2);
  // a page that repeats the previous one (paging ignored) ends the listing
  const c = client();
  const spy = jest.spyOn(c, 'call').mockImplementation(async () => ({ tasks: Array.from({ length: 500 }, (_, i) => ({ id: `t${i}` })) }) as never);
  expect(await c.getAllTasks({})).toHaveLength(500);
  expect(spy).toHaveBeenCalledTimes(2);
});

test('editRuntime uses tasks.edit_runtime at API 2.34 with string values; without it, says so once and stops asking', async () => {
  const t = fake.addTask({ runtime: { _PORT: 8000 } });
  const c = client();
  expect(await c.editRuntime(t.id, { endpoint: 'http://gw/service/x/' })).toBe(true);
  expect(c.editRuntimeSupported).toBe(true);
  expect(fake.task(t.id).runtime).toEqual({ _PORT: 8000, endpoint: 'http://gw/service/x/' });
  expect(fake.calls.find((x) => x.endpoint === 'tasks.edit_runtime')).toMatchObject({ version: '2.34', body: { task: t.id, add_or_update: { endpoint: 'http://gw/service/x/' }, force: true } });

  fake.editRuntimeEnabled = false;
  const old = client();
  expect(await old.editRuntime(t.id, { endpoint: 'x' })).toBe(false);
  expect(await old.editRuntime(t.id, { endpoint: 'x' })).toBe(false);
  expect(old.editRuntimeSupported).toBe(false);
  expect(fake.count('tasks.edit_runtime')).toBe(2);
  expect(fake.task(t.id).runtime.endpoint).toBe('http://gw/service/x/');
});

test('editTask sends task, force and the whole runtime map', async () => {
  const t = fake.addTask({ runtime: { a: 1 } });
  expect(await client().editTask({ task: t.id, force: true, runtime: { b: 2 } })).toEqual({ updated: 1 });
  expect(fake.task(t.id).runtime).toEqual({ b: 2 });
});

test('decodeToken reads claims without verifying and refuses what is not a JWT', () => {
  const payload = Buffer.from(JSON.stringify({ exp: 10, iat: 5, feature_set: 'advanced' })).toString('base64url');
  expect(decodeToken(`x.${payload}.y`)).toMatchObject({ exp: 10, iat: 5, featureSet: 'advanced', identity: null });
  expect(decodeToken('not-a-jwt')).toBeNull();
  expect(decodeToken('a.%%%.b')).toBeNull();
});
