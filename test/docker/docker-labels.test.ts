import type { Snapshot } from '../../router/model/types';
import { DOCKER_LIMITS, buildDockerSnapshot, type ContainerSummary } from '../../router/providers/docker-labels';

const ID_A = 'a1b2c3d4e5f6' + '0'.repeat(52);
const ID_B = 'b1b2c3d4e5f6' + '1'.repeat(52);

/** A running container summary as `GET /containers/json` returns it, on the default bridge network. */
function container(labels: Record<string, unknown>, extra: Partial<ContainerSummary> & Record<string, unknown> = {}): ContainerSummary {
  return {
    Id: ID_A,
    Names: ['/web'],
    Image: 'vllm/vllm-openai:latest',
    State: 'running',
    Status: 'Up 3 minutes',
    Created: 1_700_000_000,
    Ports: [{ PrivatePort: 8000, Type: 'tcp' }],
    Labels: { 'appgw.enable': 'true', ...labels },
    NetworkSettings: { Networks: { bridge: { IPAddress: '172.17.0.2', GlobalIPv6Address: '' } } },
    ...extra,
  } as ContainerSummary;
}

/** A second, well-formed container that must survive whatever happens to the first. */
const bystander = () => container({ 'appgw.port': '9000' }, { Id: ID_B, Names: ['/other'], Created: 1_700_000_100, NetworkSettings: { Networks: { bridge: { IPAddress: '172.17.0.3' } } } });

const ids = (s: Snapshot) => ({
  ephemeral: s.ephemeral.map((r) => r.id),
  bindings: s.bindings.map((b) => `${b.route}<-${b.taskId}${b.endpoint ? `-${b.endpoint}` : ''}`),
  tcp: s.tcp.map((r) => r.id),
});

describe('buildDockerSnapshot: what labels produce', () => {
  test('appgw.enable + appgw.port: /service/<first 12 of the id>/ on the container IP, admins only, prefix stripped', () => {
    const { snapshot, rejections } = buildDockerSnapshot([container({ 'appgw.port': '8000' })]);
    expect(rejections).toEqual([]);
    expect(snapshot).toEqual({
      ephemeral: [{ id: 'a1b2c3d4e5f6', taskId: 'a1b2c3d4e5f6', endpoint: '', owner: null, company: null, backend: { host: '172.17.0.2', port: 8000 }, stripPrefix: true, provider: 'docker' }],
      static: [],
      bindings: [],
      tcp: [],
    });
  });

  test('every label at once', () => {
    const { snapshot, rejections } = buildDockerSnapshot([
      container({
        'appgw.id': 'vllm',
        'appgw.owner': 'alice',
        'appgw.address': 'VLLM.internal',
        'appgw.port': '8000',
        'appgw.strip_prefix': 'false',
        'appgw.tcp.port': '22',
        'appgw.endpoints.lab.port': '8888',
        'appgw.endpoints.lab.strip_prefix': 'false',
        'appgw.endpoints.metrics.port': '9100',
        'appgw.endpoints.metrics.route': 'metrics',
        'appgw.endpoints.ssh2.port': '2222',
        'appgw.endpoints.ssh2.protocol': 'tcp',
        'com.example.unrelated': 'anything; { goes\n',
      }),
    ]);
    expect(rejections).toEqual([]);
    const backend = (port: number) => ({ host: 'vllm.internal', port });
    expect(snapshot.ephemeral).toEqual([
      { id: 'vllm', taskId: 'vllm', endpoint: '', owner: 'alice', company: null, backend: backend(8000), stripPrefix: false, provider: 'docker' },
      { id: 'vllm-lab', taskId: 'vllm', endpoint: 'lab', owner: 'alice', company: null, backend: backend(8888), stripPrefix: false, provider: 'docker' },
    ]);
    expect(snapshot.bindings).toEqual([{ route: 'metrics', taskId: 'vllm', endpoint: 'metrics', backend: backend(9100), provider: 'docker' }]);
    expect(snapshot.tcp).toEqual([
      { id: 'vllm', taskId: 'vllm', endpoint: '', owner: 'alice', backend: backend(22), allowCidrs: null, provider: 'docker' },
      { id: 'vllm-ssh2', taskId: 'vllm', endpoint: 'ssh2', owner: 'alice', backend: backend(2222), allowCidrs: null, provider: 'docker' },
    ]);
  });

  test.each<[string, Record<string, string>, ReturnType<typeof ids>]>([
    ['appgw.route binds the default endpoint to a static route', { 'appgw.port': '8000', 'appgw.route': 'llm' }, { ephemeral: [], bindings: ['llm<-a1b2c3d4e5f6'], tcp: [] }],
    ['only appgw.tcp.port: no HTTP route needed', { 'appgw.tcp.port': '22' }, { ephemeral: [], bindings: [], tcp: ['a1b2c3d4e5f6'] }],
    ['only a named endpoint', { 'appgw.endpoints.api.port': '8001' }, { ephemeral: ['a1b2c3d4e5f6-api'], bindings: [], tcp: [] }],
    ['protocol http is the default and may be written out', { 'appgw.endpoints.api.port': '8001', 'appgw.endpoints.api.protocol': 'http' }, { ephemeral: ['a1b2c3d4e5f6-api'], bindings: [], tcp: [] }],
    ['named endpoints come sorted by name', { 'appgw.endpoints.zz.port': '1', 'appgw.endpoints.aa.port': '2', 'appgw.port': '3' }, { ephemeral: ['a1b2c3d4e5f6', 'a1b2c3d4e5f6-aa', 'a1b2c3d4e5f6-zz'], bindings: [], tcp: [] }],
  ])('%s', (_case, labels, want) => {
    const { snapshot, rejections } = buildDockerSnapshot([container(labels)]);
    expect(rejections).toEqual([]);
    expect(ids(snapshot)).toEqual(want);
  });

  test.each<[string, ContainerSummary['NetworkSettings'], Record<string, string>, string]>([
    ['the first network by name that has an IP', { Networks: { zeta: { IPAddress: '10.0.9.9' }, alpha: { IPAddress: '' }, beta: { IPAddress: '10.0.2.2' } } }, {}, '10.0.2.2'],
    ['appgw.network picks the network', { Networks: { alpha: { IPAddress: '10.0.1.1' }, models: { IPAddress: '10.0.7.7' } } }, { 'appgw.network': 'models' }, '10.0.7.7'],
    ['an IPv6-only network', { Networks: { v6: { IPAddress: '', GlobalIPv6Address: 'FD00::7' } } }, {}, 'fd00::7'],
    ['appgw.address wins over the networks', { Networks: { bridge: { IPAddress: '172.17.0.2' } } }, { 'appgw.address': '127.0.0.1' }, '127.0.0.1'],
    ['appgw.address with network_mode host', { Networks: { host: { IPAddress: '' } } }, { 'appgw.address': '192.168.1.10' }, '192.168.1.10'],
  ])('address: %s', (_case, net, labels, host) => {
    const { snapshot, rejections } = buildDockerSnapshot([container({ 'appgw.port': '8000', ...labels }, { NetworkSettings: net })]);
    expect(rejections).toEqual([]);
    expect(snapshot.ephemeral[0]!.backend).toEqual({ host, port: 8000 });
  });

  test.each<[string, ContainerSummary]>([
    ['no appgw.enable', container({ 'appgw.port': '8000' }, { Labels: { 'appgw.port': '8000' } })],
    ['appgw.enable=false', container({ 'appgw.enable': 'false', 'appgw.port': '8000' })],
    ['appgw.enable=TRUE (only the exact value counts, as in the engine filter)', container({ 'appgw.enable': 'TRUE', 'appgw.port': '8000' })],
    ['a container that is not running', container({ 'appgw.port': '8000' }, { State: 'exited' })],
    ['a paused container', container({ 'appgw.port': '8000' }, { State: 'paused' })],
  ])('ignored without a word: %s', (_case, c) => {
    expect(buildDockerSnapshot([c, bystander()])).toEqual(buildDockerSnapshot([bystander()]));
    expect(buildDockerSnapshot([c]).rejections).toEqual([]);
  });

  test('the order of the engine answer does not matter; on a clash of ids the older container keeps it', () => {
    const older = container({ 'appgw.id': 'shared', 'appgw.port': '8000' }, { Id: ID_B, Names: ['/older'], Created: 100, NetworkSettings: { Networks: { n: { IPAddress: '10.0.0.1' } } } });
    const newer = container({ 'appgw.id': 'shared', 'appgw.port': '8000' }, { Id: ID_A, Names: ['/newer'], Created: 200 });
    const one = buildDockerSnapshot([newer, older]);
    expect(buildDockerSnapshot([older, newer])).toEqual(one);
    expect(one.snapshot.ephemeral.map((r) => r.backend.host)).toEqual(['10.0.0.1']);
    expect(one.snapshot.ephemeral[0]).toMatchObject({ id: 'shared' });
    expect(one.rejections).toEqual([
      { provider: 'docker', source: 'container newer (a1b2c3d4e5f6) label appgw.id', reason: 'route id "shared" is already used by container older (b1b2c3d4e5f6)' },
    ]);
  });

  test('a bad endpoint is skipped, the container\'s other endpoints kept', () => {
    const { snapshot, rejections } = buildDockerSnapshot([container({ 'appgw.port': '8000', 'appgw.endpoints.bad.port': '70000', 'appgw.tcp.port': '22' })]);
    expect(ids(snapshot)).toEqual({ ephemeral: ['a1b2c3d4e5f6'], bindings: [], tcp: ['a1b2c3d4e5f6'] });
    expect(rejections).toEqual([
      { provider: 'docker', source: 'container web (a1b2c3d4e5f6) label appgw.endpoints.bad.port', reason: 'port "70000" must be a whole number 1-65535' },
    ]);
  });

  test('a provider name can be given', () => {
    const { snapshot } = buildDockerSnapshot([container({ 'appgw.port': '8000' })], 'docker2');
    expect(snapshot.ephemeral[0]!.provider).toBe('docker2');
  });
});

const TEN_KB = 'x'.repeat(10 * 1024);

/**
 * Label sets that must be refused, with the label the rejection names ('' for the container
 * itself) and whether only an endpoint is lost (the container keeps its appgw.port route).
 */
const HOSTILE: Array<[string, Record<string, unknown>, string, 'container' | 'endpoint' | 'tcp kept']> = [
  // ports
  ['port 0', { 'appgw.port': '0' }, 'appgw.port', 'container'],
  ['port 70000', { 'appgw.port': '70000' }, 'appgw.port', 'container'],
  ['port -1', { 'appgw.port': '-1' }, 'appgw.port', 'container'],
  ['port 80.5', { 'appgw.port': '80.5' }, 'appgw.port', 'container'],
  ['port with ;', { 'appgw.port': '8000;' }, 'appgw.port', 'container'],
  ['port with {', { 'appgw.port': '{8000}' }, 'appgw.port', 'container'],
  ['port with a newline', { 'appgw.port': '8000\n' }, 'appgw.port', 'container'],
  ['port with NUL', { 'appgw.port': '80\u000000' }, 'appgw.port', 'container'],
  ['port with a leading space', { 'appgw.port': ' 8000' }, 'appgw.port', 'container'],
  ['port of 10 kB', { 'appgw.port': TEN_KB }, 'appgw.port', 'container'],
  ['port empty', { 'appgw.port': '' }, 'appgw.port', 'container'],
  ['port as a number (not what the engine sends)', { 'appgw.port': 8000 }, 'appgw.port', 'container'],
  ['tcp port 0', { 'appgw.port': '8000', 'appgw.tcp.port': '0' }, 'appgw.tcp.port', 'endpoint'],
  ['named port 70000', { 'appgw.port': '8000', 'appgw.endpoints.api.port': '70000' }, 'appgw.endpoints.api.port', 'endpoint'],
  // addresses
  ['address with ;', { 'appgw.port': '8000', 'appgw.address': '10.0.0.1; deny all' }, 'appgw.address', 'container'],
  ['address with {', { 'appgw.port': '8000', 'appgw.address': 'x{y}' }, 'appgw.address', 'container'],
  ['address with a newline', { 'appgw.port': '8000', 'appgw.address': '10.0.0.1\nserver evil' }, 'appgw.address', 'container'],
  ['address with NUL', { 'appgw.port': '8000', 'appgw.address': '10.0.0.1\u0000' }, 'appgw.address', 'container'],
  ['address 999.1.1.1', { 'appgw.port': '8000', 'appgw.address': '999.1.1.1' }, 'appgw.address', 'container'],
  ['address as a URL', { 'appgw.port': '8000', 'appgw.address': 'http://10.0.0.1/' }, 'appgw.address', 'container'],
  ['address with a port', { 'appgw.port': '8000', 'appgw.address': '10.0.0.1:80' }, 'appgw.address', 'container'],
  ['address with a zone', { 'appgw.port': '8000', 'appgw.address': 'fe80::1%eth0' }, 'appgw.address', 'container'],
  ['address with a bidi override', { 'appgw.port': '8000', 'appgw.address': 'a\u202eb.com' }, 'appgw.address', 'container'],
  ['address of 10 kB', { 'appgw.port': '8000', 'appgw.address': TEN_KB }, 'appgw.address', 'container'],
  ['address and network together', { 'appgw.port': '8000', 'appgw.address': '10.0.0.1', 'appgw.network': 'bridge' }, 'appgw.network', 'container'],
  ['a network the container is not on', { 'appgw.port': '8000', 'appgw.network': 'nope;{' }, 'appgw.network', 'container'],
  // ids, owners, routes, flags
  ['id in capitals', { 'appgw.port': '8000', 'appgw.id': 'VLLM' }, 'appgw.id', 'container'],
  ['id with a dash', { 'appgw.port': '8000', 'appgw.id': 'a-b' }, 'appgw.id', 'container'],
  ['id with ../', { 'appgw.port': '8000', 'appgw.id': '../admin' }, 'appgw.id', 'container'],
  ['id of 41 chars', { 'appgw.port': '8000', 'appgw.id': 'a'.repeat(41) }, 'appgw.id', 'container'],
  ['owner with ;', { 'appgw.port': '8000', 'appgw.owner': 'alice;bob' }, 'appgw.owner', 'container'],
  ['owner with a newline', { 'appgw.port': '8000', 'appgw.owner': 'alice\nadmin' }, 'appgw.owner', 'container'],
  ['owner with {', { 'appgw.port': '8000', 'appgw.owner': '{admin}' }, 'appgw.owner', 'container'],
  ['owner empty', { 'appgw.port': '8000', 'appgw.owner': '' }, 'appgw.owner', 'container'],
  ['route with ;', { 'appgw.port': '8000', 'appgw.route': 'llm;' }, 'appgw.route', 'container'],
  ['route as a path', { 'appgw.port': '8000', 'appgw.route': '/llm/' }, 'appgw.route', 'container'],
  ['strip_prefix yes', { 'appgw.port': '8000', 'appgw.strip_prefix': 'yes' }, 'appgw.strip_prefix', 'container'],
  ['strip_prefix with a route', { 'appgw.port': '8000', 'appgw.route': 'llm', 'appgw.strip_prefix': 'false' }, 'appgw.strip_prefix', 'container'],
  ['strip_prefix without a port', { 'appgw.tcp.port': '22', 'appgw.strip_prefix': 'false' }, 'appgw.strip_prefix', 'tcp kept'],
  // named endpoints
  ['endpoint name with ;', { 'appgw.port': '8000', 'appgw.endpoints.a;b.port': '8001' }, '"appgw.endpoints.a;b.port"', 'endpoint'],
  ['endpoint name with {', { 'appgw.port': '8000', 'appgw.endpoints.{x}.port': '8001' }, '"appgw.endpoints.{x}.port"', 'endpoint'],
  ['endpoint name with a newline', { 'appgw.port': '8000', 'appgw.endpoints.a\nb.port': '8001' }, '"appgw.endpoints.a\\nb.port"', 'endpoint'],
  ['endpoint name in capitals', { 'appgw.port': '8000', 'appgw.endpoints.API.port': '8001' }, '"appgw.endpoints.API.port"', 'endpoint'],
  ['endpoint name empty', { 'appgw.port': '8000', 'appgw.endpoints..port': '8001' }, 'appgw.endpoints..port', 'endpoint'],
  ['endpoint protocol udp', { 'appgw.port': '8000', 'appgw.endpoints.x.port': '53', 'appgw.endpoints.x.protocol': 'udp' }, 'appgw.endpoints.x.protocol', 'endpoint'],
  ['tcp endpoint with a route', { 'appgw.port': '8000', 'appgw.endpoints.x.port': '22', 'appgw.endpoints.x.protocol': 'tcp', 'appgw.endpoints.x.route': 'llm' }, 'appgw.endpoints.x.route', 'endpoint'],
  ['endpoint without a port', { 'appgw.port': '8000', 'appgw.endpoints.x.protocol': 'tcp' }, 'appgw.endpoints.x.protocol', 'endpoint'],
  // the container as a whole
  ['an unknown label (a typo)', { 'appgw.prot': '8000', 'appgw.port': '8000' }, 'appgw.prot', 'container'],
  ['an unknown endpoint field', { 'appgw.port': '8000', 'appgw.endpoints.x.address': '10.0.0.1' }, 'appgw.endpoints.x.address', 'container'],
  ['a hostile unknown label key', { 'appgw.port': '8000', 'appgw.x\u0000;{': '1' }, '"appgw.x\\u0000;{"', 'container'],
  ['nothing to route', { 'appgw.owner': 'alice' }, '', 'container'],
  ['too many endpoints', Object.fromEntries(Array.from({ length: DOCKER_LIMITS.endpointsPerContainer + 1 }, (_, i) => [`appgw.endpoints.e${i}.port`, '8000'])), '', 'container'],
];

describe('buildDockerSnapshot: hostile label values are inert and reported', () => {
  test.each(HOSTILE)('%s', (_case, labels, label, scope) => {
    const { snapshot, rejections } = buildDockerSnapshot([container(labels), bystander()]);
    expect(rejections).toHaveLength(1);
    const r = rejections[0]!;
    expect(r.provider).toBe('docker');
    expect(r.source).toBe(label === '' ? 'container web (a1b2c3d4e5f6)' : `container web (a1b2c3d4e5f6) label ${label}`);
    // one honest, bounded line, whatever the value held
    for (const s of [r.source, r.reason]) {
      expect(s).not.toMatch(/[\u0000-\u001f\u007f\u2028\u2029\u202e]/u);
      expect(s.length).toBeLessThan(400);
    }
    const mine = (x: { backend: { host: string } }) => x.backend.host !== '172.17.0.3';
    const kept = [...snapshot.ephemeral.filter(mine).map((r) => `http ${r.id}`), ...snapshot.bindings.filter(mine).map((b) => `bind ${b.taskId}`), ...snapshot.tcp.filter(mine).map((r) => `tcp ${r.id}`)];
    expect(kept).toEqual({ container: [], endpoint: ['http a1b2c3d4e5f6'], 'tcp kept': ['tcp a1b2c3d4e5f6'] }[scope]);
    // the bystander is always kept
    expect(snapshot.ephemeral.filter((x) => x.backend.host === '172.17.0.3').map((x) => x.id)).toEqual(['b1b2c3d4e5f6']);
  });

  test('the reason for a 10 kB value does not echo it', () => {
    const { rejections } = buildDockerSnapshot([container({ 'appgw.owner': TEN_KB, 'appgw.port': '8000' })]);
    expect(rejections).toEqual([{ provider: 'docker', source: 'container web (a1b2c3d4e5f6) label appgw.owner', reason: 'is longer than 1024 characters' }]);
  });

  test.each<[string, unknown, string]>([
    ['an id that is not hex', container({ 'appgw.port': '8000' }, { Id: 'zz;{' }), 'container web ("zz;{")'],
    ['an address the engine reports that is not one', container({ 'appgw.port': '8000' }, { NetworkSettings: { Networks: { br: { IPAddress: '1.2.3.4;' } } } }), 'container web (a1b2c3d4e5f6)'],
    ['no IP on any network', container({ 'appgw.port': '8000' }, { NetworkSettings: { Networks: { host: { IPAddress: '' } } } }), 'container web (a1b2c3d4e5f6)'],
    ['no NetworkSettings at all', container({ 'appgw.port': '8000' }, { NetworkSettings: null }), 'container web (a1b2c3d4e5f6)'],
  ])('odd engine answers are rejected, not thrown: %s', (_case, c, source) => {
    const { snapshot, rejections } = buildDockerSnapshot([c, bystander()]);
    expect(rejections.map((r) => r.source)).toEqual([source]);
    expect(snapshot.ephemeral.map((r) => r.id)).toEqual(['b1b2c3d4e5f6']);
  });

  test('a hostile container name is only ever shown quoted and escaped (names are not routed)', () => {
    const { snapshot, rejections } = buildDockerSnapshot([container({ 'appgw.port': '0' }, { Names: ['/a\nb\u202e;{'] })]);
    expect(snapshot.ephemeral).toEqual([]);
    expect(rejections.map((r) => r.source)).toEqual(['container "a\\nb\\u202e;{" (a1b2c3d4e5f6) label appgw.port']);
    const ok = buildDockerSnapshot([container({ 'appgw.port': '8000' }, { Names: ['/a\nb'] })]);
    expect(ok.snapshot.ephemeral.map((r) => r.id)).toEqual(['a1b2c3d4e5f6']);
  });

  test('garbage in the list is skipped without throwing', () => {
    const junk: unknown[] = [null, 42, 'x', [], { Labels: null }, { Labels: { 'appgw.enable': 'true' }, Id: 7 }, bystander()];
    const { snapshot, rejections } = buildDockerSnapshot(junk);
    expect(snapshot.ephemeral.map((r) => r.id)).toEqual(['b1b2c3d4e5f6']);
    expect(rejections).toHaveLength(1);
    expect(buildDockerSnapshot('nope' as unknown as unknown[])).toEqual({ snapshot: { ephemeral: [], static: [], bindings: [], tcp: [] }, rejections: [] });
  });

  test('more containers than the limit: the oldest are kept, one rejection says so', () => {
    const many = Array.from({ length: DOCKER_LIMITS.containers + 2 }, (_, i) =>
      container({ 'appgw.port': '8000' }, { Id: i.toString(16).padStart(12, '0') + 'f'.repeat(52), Created: i, Names: [`/c${i}`] }),
    );
    const { snapshot, rejections } = buildDockerSnapshot(many.reverse());
    expect(snapshot.ephemeral).toHaveLength(DOCKER_LIMITS.containers);
    expect(snapshot.ephemeral[0]!.id).toBe('000000000000');
    expect(rejections).toEqual([expect.objectContaining({ source: 'docker engine' })]);
  });
});
