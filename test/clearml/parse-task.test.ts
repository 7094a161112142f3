import { formatBackend } from '../../router/model/validate';
import { type ParseContext, type TcpWriteBack, parseTask, parseTasks, runtimeKey } from '../../router/providers/clearml/parse-task';

const T = '4f1c2d9e8a7b4c6d9e0f1a2b3c4d5e6f';
const T2 = '0a1b2c3d4e5f60718293a4b5c6d7e8f9';
const USER = 'bde667fbb0694de89c6ceb89242fa914';
const COMPANY = 'd1bd92a3b039400cbafc60a7a5b1e52b';

const ctx: ParseContext = { provider: 'clearml', tcpGateway: { address: 'gw.example.com', portStart: 30000, portEnd: 30100 } };

function task(runtime: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id: T, name: 'demo', status: 'in_progress', user: USER, company: COMPANY, system_tags: ['external_service'], runtime, ...extra };
}

const ids = (xs: Array<{ id: string }>) => xs.map((x) => x.id);

describe('parseTask: what SDKs and tools write (clearml-protocol.md §1.4–1.7)', () => {
  test('SDK 2.1: default and named HTTP plus default TCP, exactly the example of §1.4', () => {
    const p = parseTask(
      task({
        _SERVICE: 'EXTERNAL_TCP',
        _ADDRESS: '10.0.3.17',
        _PORT: 8000,
        _SERVICE__api: 'EXTERNAL',
        _ADDRESS__api: '10.0.3.17',
        _PORT__api: 8001,
        external_address: '10.0.3.17',
        external_tcp_port: 22,
        upstream_task_port: 22,
      }),
      ctx,
    );
    expect(p.rejections).toEqual([]);
    expect(p.ephemeral).toEqual([
      { id: T, taskId: T, endpoint: '', owner: USER, company: COMPANY, backend: { host: '10.0.3.17', port: 8000 }, stripPrefix: true, provider: 'clearml' },
      { id: `${T}-api`, taskId: T, endpoint: 'api', owner: USER, company: COMPANY, backend: { host: '10.0.3.17', port: 8001 }, stripPrefix: true, provider: 'clearml' },
    ]);
    expect(p.tcp).toEqual([{ id: T, taskId: T, endpoint: '', owner: USER, backend: { host: '10.0.3.17', port: 22 }, allowCidrs: null, provider: 'clearml' }]);
    expect(p.bindings).toEqual([]);
  });

  test('clearml-session: TCP port as a string, no upstream_task_port (§1.7)', () => {
    const p = parseTask(task({ external_address: '10.0.3.17', external_tcp_port: '10022', _SERVICE: 'EXTERNAL_TCP' }), ctx);
    expect(p.rejections).toEqual([]);
    expect(p.tcp.map((r) => r.backend)).toEqual([{ host: '10.0.3.17', port: 10022 }]);
    expect(p.ephemeral).toEqual([]);
  });

  test('old Gradio binding: system_tags replaced by ["external_service"], _PORT 7860 (§1.6)', () => {
    const p = parseTask(task({ _SERVICE: 'EXTERNAL', _ADDRESS: '10.0.3.17', _PORT: 7860 }, { system_tags: ['external_service'] }), ctx);
    expect(p.ephemeral.map((r) => [r.id, r.backend])).toEqual([[T, { host: '10.0.3.17', port: 7860 }]]);
  });

  test('HTTP ports given as strings are read as numbers', () => {
    const p = parseTask(task({ _ADDRESS__ui: '10.0.0.5', _PORT__ui: '8080' }), ctx);
    expect(p.ephemeral.map((r) => r.backend)).toEqual([{ host: '10.0.0.5', port: 8080 }]);
  });

  test('owner and tenant are null when the task does not carry them', () => {
    const p = parseTask({ id: T, runtime: { _ADDRESS: '10.0.0.5', _PORT: 80 } }, ctx);
    expect(p.ephemeral[0]).toMatchObject({ owner: null, company: null });
  });

  test.each([
    ['an empty runtime (tasks.clone / tasks.reset)', {}],
    ['no runtime at all', undefined],
    ['a null runtime', null],
    ['only agent keys', { _exec_agent_hostname: 'worker-1', _SERVICE: 'EXTERNAL' }],
    ['our own write-back keys left over', { endpoint: 'https://gw/service/x/', browser_endpoint: 'https://gw/service/x/' }],
  ])('the tag without endpoint keys yields nothing and is no error: %s', (_what, runtime) => {
    expect(parseTask(task(runtime), ctx)).toEqual({ ephemeral: [], bindings: [], tcp: [], rejections: [] });
  });

  test('static route keys (SDK 2.0.2+) turn the HTTP endpoint into a binding by route name', () => {
    const p = parseTask(
      task({
        _ADDRESS: '10.0.3.17',
        _PORT: 7860,
        _ROUTER_ENDPOINT_MODE: 'path',
        _ROUTER_ENDPOINT_MODE_PARAM: 'gradio-demo',
        _ADDRESS__api: '10.0.3.18',
        _PORT__api: 8000,
        _ROUTER_ENDPOINT_MODE__api: 'path',
        _ROUTER_ENDPOINT_MODE_PARAM__api: 'llm',
      }),
      ctx,
    );
    expect(p.rejections).toEqual([]);
    expect(p.ephemeral).toEqual([]);
    expect(p.bindings).toEqual([
      { route: 'gradio-demo', taskId: T, endpoint: '', backend: { host: '10.0.3.17', port: 7860 }, provider: 'clearml' },
      { route: 'llm', taskId: T, endpoint: 'api', backend: { host: '10.0.3.18', port: 8000 }, provider: 'clearml' },
    ]);
  });

  test('a named TCP endpoint gets the route id <task>-<name>', () => {
    const p = parseTask(task({ external_address__ssh: '10.0.3.17', external_tcp_port__ssh: 22, upstream_task_port__ssh: 22 }), ctx);
    expect(ids(p.tcp)).toEqual([`${T}-ssh`]);
    expect(p.tcp[0]!.endpoint).toBe('ssh');
  });

  test('a bad endpoint is rejected and the good endpoints of the same task are kept', () => {
    const p = parseTask(task({ _ADDRESS: '10.0.0.1', _PORT: 8000, _ADDRESS__bad: '10.0.0.1', _PORT__bad: 70000 }), ctx);
    expect(ids(p.ephemeral)).toEqual([T]);
    expect(p.rejections).toEqual([{ provider: 'clearml', source: `task ${T} http endpoint "bad"`, reason: expect.stringMatching(/_PORT__bad: port "70000" must be a whole number 1-65535/) }]);
  });
});

const TEN_KB = 'a'.repeat(10_240);

/** [case, task, reason pattern]: every one is rejected with a reason and routes nothing. */
const HOSTILE: Array<[string, unknown, RegExp]> = [
  ['task id with config syntax', { id: 'x; } server { listen 80', runtime: { _ADDRESS: '10.0.0.1', _PORT: 80 } }, /task id .* must match/],
  ['task id with a newline', { id: 'abc\ndef', runtime: { _ADDRESS: '10.0.0.1', _PORT: 80 } }, /task id/],
  ['task id of 10 kB', { id: TEN_KB, runtime: { _ADDRESS: '10.0.0.1', _PORT: 80 } }, /task id is longer than 40/],
  ['task id as a number', { id: 1234, runtime: { _ADDRESS: '10.0.0.1', _PORT: 80 } }, /task id must be a string/],
  ['task that is not an object', 'not a task', /a task must be an object/],
  ['runtime that is a string', task('x; rm -rf /'), /runtime must be an object/],
  ['runtime that is a list', task([{ _PORT: 80 }]), /runtime must be an object/],
  ['address with ;', task({ _ADDRESS: '10.0.0.1;', _PORT: 80 }), /_ADDRESS: address .* must be an IP address or a DNS name/],
  ['address with {', task({ _ADDRESS: 'a{b}.example.com', _PORT: 80 }), /_ADDRESS: address/],
  ['address with a newline', task({ _ADDRESS: '10.0.0.1\nlisten 80;', _PORT: 80 }), /_ADDRESS: address/],
  ['address with NUL', task({ _ADDRESS: '10.0.0.1\u0000', _PORT: 80 }), /_ADDRESS: address/],
  ['address of 10 kB', task({ _ADDRESS: TEN_KB, _PORT: 80 }), /_ADDRESS: address is longer than 253/],
  ['address that is no IP', task({ _ADDRESS: '999.1.2.3', _PORT: 80 }), /is not a valid IP address/],
  ['address that is a URL', task({ _ADDRESS: 'http://10.0.0.1/', _PORT: 80 }), /_ADDRESS: address/],
  ['address as a number', task({ _ADDRESS: 167772161, _PORT: 80 }), /_ADDRESS: address must be a string/],
  ['address missing', task({ _PORT: 80 }), /_ADDRESS is missing/],
  ['port 0', task({ _ADDRESS: '10.0.0.1', _PORT: 0 }), /_PORT: port "0" must be a whole number 1-65535/],
  ['port 70000', task({ _ADDRESS: '10.0.0.1', _PORT: 70000 }), /_PORT: port "70000"/],
  ['port -1', task({ _ADDRESS: '10.0.0.1', _PORT: -1 }), /_PORT: port "-1"/],
  ['port 80.5', task({ _ADDRESS: '10.0.0.1', _PORT: 80.5 }), /_PORT: port "80.5"/],
  ['port "80; }"', task({ _ADDRESS: '10.0.0.1', _PORT: '80; }' }), /_PORT: port/],
  ['port "0x50"', task({ _ADDRESS: '10.0.0.1', _PORT: '0x50' }), /_PORT: port/],
  ['port true', task({ _ADDRESS: '10.0.0.1', _PORT: true }), /_PORT: port "true"/],
  ['port null', task({ _ADDRESS: '10.0.0.1', _PORT: null }), /_PORT: port "null"/],
  ['port of 10 kB digits', task({ _ADDRESS: '10.0.0.1', _PORT: '8'.repeat(10_240) }), /_PORT: port/],
  ['endpoint name in capitals', task({ _ADDRESS__API: '10.0.0.1', _PORT__API: 80 }), /endpoint name "API" must match \[a-z0-9_\]/],
  ['endpoint name with -', task({ _ADDRESS__a: '10.0.0.1', '_PORT__my-app': 80 }), /endpoint name "my-app"/],
  ['endpoint name with ;', task({ '_PORT__x;y': 80 }), /endpoint name "x;y"/],
  ['endpoint name with a newline', task({ '_PORT__x\ny': 80 }), /endpoint name "x\\ny"/],
  ['endpoint name with {', task({ '_PORT__x{': 80 }), /endpoint name/],
  ['endpoint name of 10 kB', task({ [`_PORT__${TEN_KB}`]: 80 }), /endpoint name is longer than 32/],
  ['empty endpoint name', task({ _PORT__: 80, _ADDRESS__: '10.0.0.1' }), /runtime key "_PORT__": the endpoint name is empty/],
  ['owner with ;', task({ _ADDRESS: '10.0.0.1', _PORT: 80 }, { user: 'bob; drop' }), /owner \(task.user\): user "bob; drop"/],
  ['owner of 10 kB', task({ _ADDRESS: '10.0.0.1', _PORT: 80 }, { user: TEN_KB }), /owner \(task.user\): user is longer than 128/],
  ['tenant with {', task({ _ADDRESS: '10.0.0.1', _PORT: 80 }, { company: '{x}' }), /tenant \(task.company\)/],
  ['tenant as an object', task({ _ADDRESS: '10.0.0.1', _PORT: 80 }, { company: { id: 'x' } }), /tenant \(task.company\): user must be a string/],
  ['static route name with ;', task({ _ADDRESS: '10.0.0.1', _PORT: 80, _ROUTER_ENDPOINT_MODE: 'path', _ROUTER_ENDPOINT_MODE_PARAM: 'llm; }' }), /_ROUTER_ENDPOINT_MODE_PARAM: route name/],
  ['static route name missing', task({ _ADDRESS: '10.0.0.1', _PORT: 80, _ROUTER_ENDPOINT_MODE: 'path' }), /_ROUTER_ENDPOINT_MODE_PARAM: route name must be a string/],
  ['unknown endpoint mode', task({ _ADDRESS: '10.0.0.1', _PORT: 80, _ROUTER_ENDPOINT_MODE: 'x\n}' }), /_ROUTER_ENDPOINT_MODE "x\\n}" must be "path"/],
  ['TCP address with a newline', task({ external_address: '10.0.0.1\nx', external_tcp_port: 22 }), /external_address: address/],
  ['TCP address missing', task({ external_tcp_port: 22 }), /external_address is missing/],
  ['TCP port 70000', task({ external_address: '10.0.0.1', external_tcp_port: 70000 }), /external_tcp_port: port "70000"/],
  ['TCP port 0 as a string', task({ external_address: '10.0.0.1', external_tcp_port: '0' }), /external_tcp_port: port "0"/],
  [
    'TCP pointing at the gateway with a hostile upstream key',
    task({ external_address: 'gw.example.com', external_tcp_port: 30001, _appgw_upstream: '10.0.0.1:22; }' }),
    /_appgw_upstream: backend .* must be host:port/,
  ],
  ['too many endpoints', task(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`_PORT__e${i}`, 80]))), /declares 65 endpoints; at most 64/],
];

describe('parseTask: hostile values are inert', () => {
  test.each(HOSTILE)('%s is rejected with a reason', (_what, raw, reason) => {
    const p = parseTask(raw, ctx);
    expect(p.ephemeral).toEqual([]);
    expect(p.bindings).toEqual([]);
    expect(p.tcp).toEqual([]);
    expect(p.rejections).toHaveLength(1);
    const r = p.rejections[0]!;
    expect(r.provider).toBe('clearml');
    expect(r.reason).toMatch(reason);
    // what reaches logs and the status file is short and has no raw control characters
    for (const text of [r.source, r.reason]) {
      expect(text).not.toMatch(/[\u0000-\u001f]/);
      expect(text.length).toBeLessThan(400);
    }
  });

  test('all hostile tasks together do not hide a good one, and each is reported', () => {
    const good = { id: T2, user: USER, company: COMPANY, runtime: { _ADDRESS: '10.0.0.9', _PORT: 8000, external_address: '10.0.0.9', external_tcp_port: 22 } };
    const all = [...HOSTILE.map(([, raw]) => raw), good];
    const p = parseTasks(all, ctx);
    expect(ids(p.ephemeral)).toEqual([T2]);
    expect(ids(p.tcp)).toEqual([T2]);
    expect(p.rejections).toHaveLength(HOSTILE.length);
  });
});

describe('parseTask: TCP after our write-back (external_* hold the gateway, §1.10)', () => {
  const gwRuntime = (extra: Record<string, unknown> = {}) => ({ _SERVICE: 'EXTERNAL_TCP', external_address: 'gw.example.com', external_tcp_port: 30001, upstream_task_port: 22, ...extra });

  test('the task address persisted in _appgw_upstream is the upstream, never the gateway', () => {
    const p = parseTask(task(gwRuntime({ _appgw_upstream: '10.0.3.17:22' })), ctx);
    expect(p.rejections).toEqual([]);
    expect(p.tcp.map((r) => r.backend)).toEqual([{ host: '10.0.3.17', port: 22 }]);
  });

  test('the gateway address with no known upstream is rejected rather than routed to itself', () => {
    const p = parseTask(task(gwRuntime()), ctx);
    expect(p.tcp).toEqual([]);
    expect(p.rejections[0]!.reason).toMatch(/is this gateway's own address and the task's address is unknown \(no _appgw_upstream\)/);
  });

  test('what the provider remembers writing wins over the persisted key', () => {
    const written: TcpWriteBack = { address: 'gw.example.com', port: 30001, upstream: { host: '10.0.0.77', port: 2222 } };
    const p = parseTask(task(gwRuntime({ _appgw_upstream: '10.0.3.17:22' })), { ...ctx, tcpWritten: new Map([[T, written]]) });
    expect(p.tcp.map((r) => r.backend)).toEqual([{ host: '10.0.0.77', port: 2222 }]);
  });

  test('the task requesting the endpoint again after our write-back wins over the stale persisted key', () => {
    const p = parseTask(task({ external_address: '10.0.3.99', external_tcp_port: 2200, _appgw_upstream: '10.0.3.17:22' }), ctx);
    expect(p.tcp.map((r) => r.backend)).toEqual([{ host: '10.0.3.99', port: 2200 }]);
  });

  test('the gateway host with a port outside the TCP pool is a task on that host', () => {
    const p = parseTask(task({ external_address: 'GW.example.com', external_tcp_port: 22 }), ctx);
    expect(p.tcp.map((r) => r.backend)).toEqual([{ host: 'gw.example.com', port: 22 }]);
  });

  test('a persisted upstream pointing at the gateway itself is rejected', () => {
    const p = parseTask(task(gwRuntime({ _appgw_upstream: 'gw.example.com:30005' })), ctx);
    expect(p.tcp).toEqual([]);
    expect(p.rejections[0]!.reason).toMatch(/_appgw_upstream "gw.example.com:30005" points at this gateway itself/);
  });

  test('named endpoint and IPv6 upstream round-trip through formatBackend', () => {
    const up = formatBackend({ host: 'fd00::17', port: 22 });
    expect(up).toBe('[fd00::17]:22');
    const p = parseTask(
      task({ [runtimeKey('external_address', 'ssh')]: 'gw.example.com', [runtimeKey('external_tcp_port', 'ssh')]: '30002', [runtimeKey('_appgw_upstream', 'ssh')]: up }),
      ctx,
    );
    expect(p.tcp.map((r) => [r.id, r.backend])).toEqual([[`${T}-ssh`, { host: 'fd00::17', port: 22 }]]);
  });
});

test('parseTasks sorts routes by id so snapshots compare equal', () => {
  const a = { id: 'b'.repeat(32), runtime: { _ADDRESS: '10.0.0.1', _PORT: 80 } };
  const b = { id: 'a'.repeat(32), runtime: { _ADDRESS: '10.0.0.2', _PORT: 80 } };
  expect(ids(parseTasks([a, b], ctx).ephemeral)).toEqual(['a'.repeat(32), 'b'.repeat(32)]);
  expect(parseTasks([a, b], ctx)).toEqual(parseTasks([b, a], ctx));
});

describe('CLEARML_STRIP_PREFIX', () => {
  const task = { id: 'ab'.repeat(16), user: 'u1', company: 'c1', system_tags: ['external_service'], runtime: { _SERVICE: 'EXTERNAL', _ADDRESS: '10.0.0.1', _PORT: 8080 } };
  test.each([
    [undefined, true],
    [true, true],
    [false, false],
  ])('stripPrefix %p gives task routes stripPrefix %p', (strip, expected) => {
    const r = parseTask(task, { provider: 'clearml', tcpGateway: { address: null, portStart: null, portEnd: null }, stripPrefix: strip });
    expect(r.ephemeral.map((e) => e.stripPrefix)).toEqual([expected]);
  });
});
