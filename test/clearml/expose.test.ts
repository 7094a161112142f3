import { Command, CommanderError } from 'commander';
import { defaultAddress, exposeTask, registerExposeCommand } from '../../router/commands/expose';
import { UserError } from '../../router/errors';
import { ClearmlClient } from '../../router/providers/clearml/api-client';
import { parseTask } from '../../router/providers/clearml/parse-task';
import { FakeClearml } from '../fakes/fake-clearml';

let fake: FakeClearml;
let client: ClearmlClient;
beforeEach(async () => {
  fake = await FakeClearml.start();
  client = new ClearmlClient({ host: fake.url, accessKey: 'admin-key', secretKey: 'admin-secret' });
});
afterEach(() => fake.close());

const ctx = { provider: 'clearml', tcpGateway: { address: 'gw.example.com', portStart: 30000, portEnd: 30100 } };

test('HTTP default endpoint: the SDK 2.1 keys, runtime first, then the tag added to the others', async () => {
  const t = fake.addTask({ status: 'in_progress', system_tags: ['development'], runtime: { _exec_agent_hostname: 'worker-1' } });
  const r = await exposeTask(client, { taskId: t.id, port: 8000, protocol: 'http', address: '10.0.3.17' });
  expect(r).toMatchObject({ endpoint: '', address: '10.0.3.17', port: 8000, tagAdded: true });
  expect(fake.task(t.id).runtime).toEqual({ _exec_agent_hostname: 'worker-1', _SERVICE: 'EXTERNAL', _ADDRESS: '10.0.3.17', _PORT: 8000 });
  expect(fake.task(t.id).system_tags).toEqual(['development', 'external_service']);
  const edits = fake.calls.filter((c) => c.endpoint === 'tasks.edit');
  expect(edits.map((c) => Object.keys(c.body).sort())).toEqual([
    ['force', 'runtime', 'task'],
    ['force', 'system_tags', 'task'],
  ]);
  // and the router picks it up as the SDK's own request
  expect(parseTask(fake.task(t.id), ctx).ephemeral.map((e) => [e.id, e.backend])).toEqual([[t.id, { host: '10.0.3.17', port: 8000 }]]);
});

test('TCP named endpoint writes external_address, external_tcp_port and upstream_task_port; the tag is not added twice', async () => {
  const t = fake.addTask({ runtime: { _ADDRESS: '10.0.3.17', _PORT: 8000 } });
  const r = await exposeTask(client, { taskId: t.id, port: 22, protocol: 'tcp', name: 'ssh', address: '10.0.3.17' });
  expect(r).toMatchObject({ endpoint: 'ssh', tagAdded: false });
  expect(fake.task(t.id).runtime).toEqual({
    _ADDRESS: '10.0.3.17',
    _PORT: 8000,
    _SERVICE__ssh: 'EXTERNAL_TCP',
    external_address__ssh: '10.0.3.17',
    external_tcp_port__ssh: 22,
    upstream_task_port__ssh: 22,
  });
  expect(fake.count('tasks.edit')).toBe(1);
  expect(parseTask(fake.task(t.id), ctx).tcp.map((e) => e.id)).toEqual([`${t.id}-ssh`]);
});

test('without a name, a second port becomes endpoint "1" as in SDK 2.1; the same port again is a no-op', async () => {
  const t = fake.addTask();
  await exposeTask(client, { taskId: t.id, port: 8000, protocol: 'http', address: '10.0.3.17' });
  expect((await exposeTask(client, { taskId: t.id, port: 8000, protocol: 'http', address: '10.0.3.17' })).endpoint).toBe('');
  expect((await exposeTask(client, { taskId: t.id, port: 9000, protocol: 'http', address: '10.0.3.17' })).endpoint).toBe('1');
  expect((await exposeTask(client, { taskId: t.id, port: 9100, protocol: 'http', address: '10.0.3.17' })).endpoint).toBe('2');
  expect(fake.task(t.id).runtime).toMatchObject({ _PORT: 8000, _PORT__1: 9000, _PORT__2: 9100 });
});

test.each([
  ['a hostile task id', { taskId: 'x; }', port: 80 }, 'INVALID_INPUT', /task id "x; }" must match/],
  ['port 70000', { port: 70000 }, 'INVALID_INPUT', /port "70000" must be a whole number/],
  ['an endpoint name in capitals', { name: 'API' }, 'INVALID_INPUT', /endpoint name "API"/],
  ['an address with a newline', { address: '10.0.0.1\nx' }, 'INVALID_INPUT', /address .* must be an IP address or a DNS name/],
  ['an unknown task', { taskId: 'f'.repeat(32) }, 'NOT_FOUND', /task f{32} does not exist on the ClearML server/],
])('%s is a UserError and writes nothing', async (_what, over, code, message) => {
  const t = fake.addTask();
  const err = await exposeTask(client, { taskId: t.id, port: 8000, protocol: 'http', address: '10.0.3.17', ...over }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(UserError);
  expect(err).toMatchObject({ code, message: expect.stringMatching(message) });
  expect(fake.count('tasks.edit')).toBe(0);
});

test('defaultAddress: the first non-internal IPv4', () => {
  const nic = (address: string, family: 'IPv4' | 'IPv6', internal: boolean) => ({ address, family, internal, netmask: '', mac: '', cidr: null }) as never;
  expect(defaultAddress({ lo: [nic('127.0.0.1', 'IPv4', true)], eth0: [nic('fe80::1', 'IPv6', false), nic('10.0.3.17', 'IPv4', false)] })).toBe('10.0.3.17');
  expect(defaultAddress({ lo: [nic('127.0.0.1', 'IPv4', true)] })).toBeNull();
});

describe('appgw expose', () => {
  function program(): { program: Command; out: string[]; err: string[] } {
    const out: string[] = [];
    const err: string[] = [];
    const p = new Command('appgw').exitOverride().configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => err.push(s) });
    registerExposeCommand(p, { client: () => client });
    return { program: p, out, err };
  }

  test('writes the keys and prints one line', async () => {
    const t = fake.addTask();
    const { program: p, out } = program();
    await p.parseAsync(['node', 'appgw', 'expose', '--task', t.id, '--port', '2222', '--protocol', 'tcp', '--name', 'ssh', '--address', '10.0.3.17']);
    expect(out).toEqual([`task ${t.id}: tcp endpoint "ssh" -> 10.0.3.17:2222 requested; the gateway writes external_address__ssh:external_tcp_port__ssh into the task once it routes it\n`]);
    expect(fake.task(t.id).runtime).toMatchObject({ external_tcp_port__ssh: 2222 });
  });

  test.each([
    [['--port', '80'], 'appgw: --task is required (the ClearML task id)'],
    [['--task', 'a'.repeat(32)], 'appgw: --port is required (the port the task listens on)'],
    [['--task', 'a'.repeat(32), '--port', '80x'], 'appgw: --port "80x" must be a whole number 1-65535'],
    [['--task', 'a'.repeat(32), '--port', '80', '--protocol', 'udp'], 'appgw: --protocol "udp" must be http or tcp'],
    [['--task', 'a'.repeat(32), '--port', '80', '--address', '10.0.0.1'], `appgw: task ${'a'.repeat(32)} does not exist on the ClearML server`],
  ])('bad input %j is one line and exit code 2', async (args, line) => {
    const { program: p, err } = program();
    const e = await p.parseAsync(['node', 'appgw', 'expose', ...args]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CommanderError);
    expect((e as CommanderError).exitCode).toBe(2);
    expect(err.join('')).toBe(`${line}\n`);
  });
});
