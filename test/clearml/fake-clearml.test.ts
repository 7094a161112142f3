import http from 'node:http';
import { FakeClearml } from '../fakes/fake-clearml';

/** The fake must speak the wire format of clearml-protocol.md §2.1/§2.5, or the other tests prove nothing. */

interface Answer {
  status: number;
  body: { meta: Record<string, unknown>; data: Record<string, unknown> };
  headers: http.IncomingHttpHeaders;
}

/** A raw request, with a body even on GET, as the SDK sends it. */
function raw(url: string, method: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? '' : JSON.stringify(body);
    const req = http.request(url, { method, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString('utf8')), headers: res.headers }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const basic = (k: string, s: string) => `Basic ${Buffer.from(`${k}:${s}`).toString('base64')}`;

let fake: FakeClearml;
let token: string;
const call = (endpoint: string, body: unknown = {}, version = 'v2.26/') => raw(`${fake.url}/${version}${endpoint}`, 'POST', body, { authorization: `Bearer ${token}` });

beforeEach(async () => {
  fake = await FakeClearml.start();
  token = (await raw(`${fake.url}/auth.login`, 'POST', {}, { authorization: basic('admin-key', 'admin-secret') })).body.data.token as string;
});
afterEach(() => fake.close());

test('auth.login: Basic key:secret gives a JWT-shaped token with the SDK claims, and sets the session cookie', async () => {
  const a = await raw(`${fake.url}/v2.26/auth.login?expiration_sec=60`, 'GET', undefined, { authorization: basic('admin-key', 'admin-secret') });
  expect(a.status).toBe(200);
  const [head, payload, sig] = (a.body.data.token as string).split('.');
  expect(JSON.parse(Buffer.from(head!, 'base64url').toString())).toEqual({ alg: 'HS256', typ: 'JWT' });
  const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString());
  expect(claims).toMatchObject({ identity: { user: 'u-admin', role: 'admin', company: expect.any(String) }, api_version: '2.34', server_version: '2.3.0', feature_set: 'basic' });
  expect(claims.exp - claims.iat).toBe(60);
  expect(sig).toMatch(/^[A-Za-z0-9_-]+$/);
  expect(a.headers['set-cookie']?.[0]).toMatch(/^clearml_token_basic=/);
});

test('the envelope carries meta with id, trx, endpoint versions, codes and message', async () => {
  const a = await call('tasks.get_all', { status: ['in_progress'] });
  expect(a.body.meta).toEqual({
    id: expect.stringMatching(/^[0-9a-f]{32}$/),
    trx: expect.stringMatching(/^[0-9a-f]{32}$/),
    endpoint: { name: 'tasks.get_all', requested_version: '2.26', actual_version: '2.26' },
    result_code: 200,
    result_subcode: 0,
    result_msg: 'OK',
    error_stack: null,
    error_data: {},
  });
});

test.each([
  ['no credentials', {}, 401, 20],
  ['malformed Basic credentials', { authorization: 'Basic !!!' }, 401, 21],
  ['wrong secret', { authorization: basic('admin-key', 'nope') }, 401, 22],
])('auth.login with %s answers %i/%i', async (_what, headers, code, subcode) => {
  const a = await raw(`${fake.url}/auth.login`, 'POST', {}, headers as Record<string, string>);
  expect([a.status, a.body.meta.result_code, a.body.meta.result_subcode]).toEqual([code, code, subcode]);
});

test('bearer checks: missing 401/20, garbage or revoked 401/30; unknown endpoint 404; unknown task 400/101', async () => {
  expect((await raw(`${fake.url}/tasks.get_all`, 'POST', {})).body.meta.result_subcode).toBe(20);
  const bad = await raw(`${fake.url}/tasks.get_all`, 'POST', {}, { authorization: 'Bearer a.b.c' });
  expect([bad.status, bad.body.meta.result_subcode]).toEqual([401, 30]);
  const unknown = await call('tasks.nothing');
  expect([unknown.status, unknown.body.meta.result_msg]).toEqual([404, 'Unable to find endpoint for name tasks.nothing and version 2.26']);
  const missing = await call('tasks.get_by_id', { task: 'f'.repeat(32) });
  expect([missing.status, missing.body.meta.result_subcode, missing.body.meta.error_data]).toEqual([400, 101, { id: 'f'.repeat(32) }]);
  fake.revokeTokens();
  expect((await call('tasks.get_all')).body.meta.result_subcode).toBe(30);
});

test('tasks.get_all filters: status, system_tags with -exclusion, hidden, execution.queue, runtime.<key>, id; only_fields nests', async () => {
  const q = fake.addQueue('gpu');
  const a = fake.addTask({ runtime: { _SERVICE: 'EXTERNAL', _PORT: 1 }, execution: { queue: q } });
  const b = fake.addTask({ runtime: { _SERVICE: 'EXTERNAL_TCP' }, system_tags: ['external_service', 'hidden'] });
  const c = fake.addTask({ status: 'stopped', system_tags: ['external_service', 'archived'] });
  const d = fake.addTask({ system_tags: [] });
  const ids = async (body: Record<string, unknown>) => ((await call('tasks.get_all', body)).body.data.tasks as Array<{ id: string }>).map((t) => t.id).sort();
  expect(await ids({ status: ['in_progress'] })).toEqual([a.id, d.id].sort());
  expect(await ids({ status: ['in_progress'], search_hidden: true })).toEqual([a.id, b.id, d.id].sort());
  expect(await ids({ system_tags: ['external_service'], search_hidden: true })).toEqual([a.id, b.id, c.id].sort());
  expect(await ids({ system_tags: ['-archived'], search_hidden: true })).toEqual([a.id, b.id, d.id].sort());
  expect(await ids({ 'execution.queue': [q] })).toEqual([a.id]);
  expect(await ids({ 'runtime._SERVICE': 'EXTERNAL_TCP', search_hidden: true })).toEqual([b.id]);
  expect(await ids({ id: [b.id] })).toEqual([b.id]);
  const projected = (await call('tasks.get_all', { id: [a.id], only_fields: ['runtime._PORT', 'execution.queue'] })).body.data.tasks;
  expect(projected).toEqual([{ id: a.id, runtime: { _PORT: 1 }, execution: { queue: q } }]);
});

test('tasks.get_all pages at most 500 and silently caps an unpaged answer at 500; order_by sorts', async () => {
  for (let i = 0; i < 1203; i++) fake.addTask({ name: `t${String(i).padStart(4, '0')}` });
  expect(((await call('tasks.get_all', {})).body.data.tasks as unknown[]).length).toBe(500);
  const page2 = (await call('tasks.get_all', { page: 2, page_size: 500, order_by: ['name'], only_fields: ['name'] })).body.data.tasks as Array<{ name: string }>;
  expect(page2.map((t) => t.name)).toEqual(Array.from({ length: 203 }, (_, i) => `t${String(1000 + i).padStart(4, '0')}`));
  expect(((await call('tasks.get_all', { page: 0, page_size: 5000 })).body.data.tasks as unknown[]).length).toBe(500);
  const desc = (await call('tasks.get_all', { page: 0, page_size: 2, order_by: ['-name'], only_fields: ['name'] })).body.data.tasks;
  expect(desc).toEqual([expect.objectContaining({ name: 't1202' }), expect.objectContaining({ name: 't1201' })]);
});

test('tasks.edit replaces runtime and system_tags whole, needs force for a running task; edit_runtime merges strings', async () => {
  const t = fake.addTask({ runtime: { a: 1, b: 2 } });
  const noForce = await call('tasks.edit', { task: t.id, runtime: { c: 3 } });
  expect([noForce.status, noForce.body.meta.result_subcode]).toEqual([400, 110]);
  const ok = await call('tasks.edit', { task: t.id, force: true, runtime: { c: 3 }, system_tags: ['x'] });
  expect(ok.body.data).toMatchObject({ updated: 1, fields: { runtime: { c: 3 }, system_tags: ['x'] } });
  expect(fake.task(t.id)).toMatchObject({ runtime: { c: 3 }, system_tags: ['x'] });
  const old = await call('tasks.edit_runtime', { task: t.id, add_or_update: { d: '4' }, force: true });
  expect(old.status).toBe(404);
  const er = await call('tasks.edit_runtime', { task: t.id, add_or_update: { d: '4' }, remove: ['c'], force: true }, 'v2.34/');
  expect(er.body.data).toEqual({ updated: 1 });
  expect(fake.task(t.id).runtime).toEqual({ d: '4' });
  expect((await call('tasks.edit_runtime', { task: t.id, add_or_update: { e: 5 }, force: true }, 'v2.34/')).body.meta.result_subcode).toBe(12);
  fake.editRuntimeEnabled = false;
  expect((await call('tasks.edit_runtime', { task: t.id, add_or_update: { e: '5' }, force: true }, 'v2.34/')).status).toBe(404);
});

test('queues.get_all by name regex with only_fields; users.get_current_user by bearer or cookie; auth.validate_token for system roles only', async () => {
  const g1 = fake.addQueue('gpu-a100');
  fake.addQueue('cpu');
  expect((await call('queues.get_all', { name: '^gpu-', only_fields: ['id', 'name'] })).body.data.queues).toEqual([{ id: g1, name: 'gpu-a100' }]);
  const me = await raw(`${fake.url}/users.get_current_user`, 'GET', {}, { cookie: `other=1; clearml_token_basic=${token}` });
  expect(me.body.data.user).toMatchObject({ id: 'u-admin', role: 'admin', company: { id: expect.any(String), name: 'acme' } });
  const denied = await call('auth.validate_token', { token });
  expect([denied.status, denied.body.meta.result_subcode]).toEqual([403, 20]);
  fake.addUser({ id: 'u-sys', role: 'system', accessKey: 'sys-key', secretKey: 'sys-secret' });
  const sys = (await raw(`${fake.url}/auth.login`, 'POST', {}, { authorization: basic('sys-key', 'sys-secret') })).body.data.token as string;
  const v = await raw(`${fake.url}/auth.validate_token`, 'POST', { token }, { authorization: `Bearer ${sys}` });
  expect(v.body.data).toEqual({ valid: true, user: 'u-admin', company: expect.any(String) });
});

test('test controls: 503 page, refused connections and back on the same port, injected errors, interleaved writes', async () => {
  const t = fake.addTask({ runtime: { a: 1 } });
  await fake.down('503');
  const page = await new Promise<number>((r) => http.get(`${fake.url}/tasks.get_all`, (res) => r(res.statusCode!)));
  expect(page).toBe(503);
  await fake.up();
  await fake.down('refuse');
  await expect(call('tasks.get_all')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  await fake.up();
  expect((await call('tasks.get_all')).status).toBe(200);
  fake.failNext('tasks.get_all', 500, 0, 'General server error');
  expect((await call('tasks.get_all')).status).toBe(500);
  expect((await call('tasks.get_all')).status).toBe(200);
  fake.interleaveAfter('tasks.get_by_id', () => fake.mergeRuntime(t.id, { b: 2 }), t.id);
  expect((await call('tasks.get_by_id', { task: t.id })).body.data.task).toMatchObject({ runtime: { a: 1 } });
  expect(fake.task(t.id).runtime).toEqual({ a: 1, b: 2 });
  // the 503 page and three answers; a refused connection never reaches the server
  expect(fake.count('tasks.get_all')).toBe(4);
});
