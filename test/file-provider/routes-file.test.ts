import { stringify } from 'yaml';
import { emptySnapshot, type Snapshot } from '../../router/model/types';
import { ROUTES_FILE_LIMITS, formatRoutesFileError, parseRoutesFile, type RoutesFileResult } from '../../router/providers/routes-file';

const TASK = '0123456789abcdef0123456789abcdef';

/** The routes-file example of DESIGN.md ("The user-facing surface"), verbatim. */
const DESIGN_EXAMPLE = `routes:                    # static routes, defined by an admin
  - name: llm              # [a-z0-9-]{1,63}
    path: /llm/            # or  subdomain: llm
    backends: ["127.0.0.1:8001", "127.0.0.1:8002"]
    allowed_groups: [ml-team]
tasks:                     # workloads that asked to be exposed (ephemeral routes)
  - id: 0123456789abcdef0123456789abcdef
    owner: alice
    endpoints:
      - { port: 8888, address: 127.0.0.1 }                 # /service/<id>/
      - { name: api, port: 8000, address: 127.0.0.1 }      # /service/<id>-api/
      - { name: lab, port: 8889, address: 127.0.0.1, strip_prefix: false }  # app knows its base URL (Jupyter)
      - { protocol: tcp, port: 22, address: 127.0.0.1 }    # a port from the TCP pool
`;

const DESIGN_SNAPSHOT: Snapshot = {
  static: [
    {
      name: 'llm',
      path: '/llm/',
      subdomain: null,
      backends: [
        { host: '127.0.0.1', port: 8001 },
        { host: '127.0.0.1', port: 8002 },
      ],
      allowedGroups: ['ml-team'],
      stripPrefix: true,
      enabled: true,
      healthCheck: null,
      provider: 'file',
    },
  ],
  ephemeral: [
    { id: TASK, taskId: TASK, endpoint: '', owner: 'alice', company: null, backend: { host: '127.0.0.1', port: 8888 }, stripPrefix: true, provider: 'file' },
    { id: `${TASK}-api`, taskId: TASK, endpoint: 'api', owner: 'alice', company: null, backend: { host: '127.0.0.1', port: 8000 }, stripPrefix: true, provider: 'file' },
    { id: `${TASK}-lab`, taskId: TASK, endpoint: 'lab', owner: 'alice', company: null, backend: { host: '127.0.0.1', port: 8889 }, stripPrefix: false, provider: 'file' },
  ],
  bindings: [],
  tcp: [{ id: TASK, taskId: TASK, endpoint: '', owner: 'alice', backend: { host: '127.0.0.1', port: 22 }, allowCidrs: null, provider: 'file' }],
};

function parsed(text: string, file = 'routes.yaml'): { snapshot: Snapshot; rejections: Array<{ source: string; reason: string }> } {
  const r = parseRoutesFile(text, file);
  if (!r.ok) throw new Error(`expected a snapshot, got ${formatRoutesFileError(r.error)}`);
  return { snapshot: r.snapshot, rejections: r.rejections.map(({ source, reason }) => ({ source, reason })) };
}

function failed(text: string, file = 'routes.yaml'): { line: number | null; reason: string; file: string } {
  const r: RoutesFileResult = parseRoutesFile(text, file);
  if (r.ok) throw new Error(`expected a parse error, got ${JSON.stringify(r)}`);
  return r.error;
}

describe('parseRoutesFile: whole files', () => {
  it('parses the DESIGN.md example verbatim', () => {
    expect(parsed(DESIGN_EXAMPLE)).toEqual({ snapshot: DESIGN_SNAPSHOT, rejections: [] });
  });

  it('parses the same content given as JSON in a .json file', () => {
    const doc = {
      routes: [{ name: 'llm', path: '/llm/', backends: ['127.0.0.1:8001', '127.0.0.1:8002'], allowed_groups: ['ml-team'] }],
      tasks: [
        {
          id: TASK,
          owner: 'alice',
          endpoints: [
            { port: 8888, address: '127.0.0.1' },
            { name: 'api', port: 8000, address: '127.0.0.1' },
            { name: 'lab', port: 8889, address: '127.0.0.1', strip_prefix: false },
            { protocol: 'tcp', port: 22, address: '127.0.0.1' },
          ],
        },
      ],
    };
    expect(parsed(JSON.stringify(doc, null, 2), 'routes.json')).toEqual({ snapshot: DESIGN_SNAPSHOT, rejections: [] });
  });

  it.each([
    ['an empty file', ''],
    ['only whitespace', '\n\n  \n'],
    ['only comments', '# nothing routed yet\n# still nothing\n'],
    ['an empty mapping', '{}'],
    ['a null document', '~\n'],
    ['empty lists', 'routes: []\ntasks: []\n'],
    ['keys without values', 'routes:\ntasks:\n'],
  ])('%s is an authoritative empty snapshot', (_case, text) => {
    expect(parsed(text)).toEqual({ snapshot: emptySnapshot(), rejections: [] });
  });

  it('an empty JSON object is an authoritative empty snapshot', () => {
    expect(parsed('{}', 'routes.json')).toEqual({ snapshot: emptySnapshot(), rejections: [] });
  });

  it.each<[string, string, string, number | null, RegExp]>([
    ['bad indentation', 'routes.yaml', 'routes:\n  - name: a\n   path: /a/\n', 3, /without - indicator/],
    ['an unclosed list', 'routes.yaml', 'routes:\n  - name: a\n    path: [/a/\n', 4, /end with a \]/],
    ['a duplicate key', 'routes.yaml', 'routes: []\nroutes: []\n', 2, /unique/i],
    ['tabs as indentation', 'routes.yaml', 'routes:\n\t- name: a\n', 2, /tab/i],
    ['a list at the top', 'routes.yaml', '- name: a\n', 1, /top level must be a mapping.*a list/],
    ['a scalar at the top', 'routes.yaml', 'hello\n', 1, /top level must be a mapping.*"hello"/],
    ['a typo in a top-level key', 'routes.yaml', 'routes: []\ntaks: []\n', 2, /unknown top-level key "taks"/],
    ['routes that is not a list', 'routes.yaml', 'tasks: []\nroutes: {name: a}\n', 2, /routes must be a list/],
    ['tasks that is not a list', 'routes.yaml', 'tasks: abc\n', 1, /tasks must be a list/],
    ['several documents', 'routes.yaml', 'routes: []\n---\ntasks: []\n', 2, /multiple documents/i],
    ['a complex key', 'routes.yaml', 'routes:\n  - ? [a, b]\n    : c\n', 2, /keys must be plain strings/],
    ['YAML in a .json file', 'routes.json', 'routes: []\n', 1, /plain scalar/i],
    ['broken JSON', 'routes.json', '{"routes": [}\n', 1, /./],
    ['a duplicate key in JSON', 'routes.json', '{"routes": [], "routes": []}', 1, /unique/i],
  ])('%s is a parse error with its line', (_case, file, text, line, reason) => {
    const e = failed(text, file);
    expect(e.file).toBe(file);
    expect(e.line).toBe(line);
    expect(e.reason).toMatch(reason);
    expect(e.reason).not.toMatch(/\n/);
    expect(formatRoutesFileError(e)).toBe(`${file}:${line}: ${e.reason}`);
  });

  it('refuses an alias bomb instead of expanding it', () => {
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 12; i++) lines.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]`);
    const e = failed(lines.join('\n') + '\n');
    expect(e.reason).not.toMatch(/\n/);
  });

  it('refuses a file larger than the size limit', () => {
    const text = `# ${'x'.repeat(ROUTES_FILE_LIMITS.fileBytes)}\n`;
    expect(failed(text).reason).toMatch(/larger than/);
  });

  it('accepts anchors and aliases in normal use', () => {
    const text = 'routes:\n  - {name: a, path: /a/, allowed_groups: &g [ml]}\n  - {name: b, path: /b/, allowed_groups: *g}\n';
    const { snapshot, rejections } = parsed(text);
    expect(rejections).toEqual([]);
    expect(snapshot.static.map((r) => r.allowedGroups)).toEqual([['ml'], ['ml']]);
  });
});

describe('parseRoutesFile: entries', () => {
  const base = { name: 'r', path: '/r/' };
  const route = (over: Record<string, unknown>) => parsed(stringify({ routes: [{ ...base, ...over }] })).snapshot.static[0];

  it.each<[string, Record<string, unknown>, Record<string, unknown>]>([
    ['defaults', {}, { backends: [], allowedGroups: [], stripPrefix: true, enabled: true, path: '/r/', subdomain: null }],
    ['a path without slashes is normalised', { path: '/a/b' }, { path: '/a/b/' }],
    ['a subdomain route', { path: undefined, subdomain: 'llm' }, { path: null, subdomain: 'llm' }],
    ['backend objects with address or host', { backends: [{ address: '10.0.0.1', port: 80 }, { host: 'Model.Internal', port: '81' }] }, { backends: [{ host: '10.0.0.1', port: 80 }, { host: 'model.internal', port: 81 }] }],
    ['an IPv6 backend', { backends: ['[::1]:8000'] }, { backends: [{ host: '::1', port: 8000 }] }],
    ['switches', { strip_prefix: false, enabled: false }, { stripPrefix: false, enabled: false }],
    ['repeated groups are kept once', { allowed_groups: ['ml', 'ml', 'ops'] }, { allowedGroups: ['ml', 'ops'] }],
  ])('static route: %s', (_case, over, expected) => {
    expect(route(over)).toMatchObject(expected);
  });

  const ep = (over: Record<string, unknown>, task: Record<string, unknown> = {}) =>
    parsed(stringify({ tasks: [{ id: 'abc', owner: 'alice', endpoints: [{ port: 80, address: '10.0.0.1', ...over }], ...task }] })).snapshot;

  it('an http endpoint becomes an ephemeral route with the task owner and company', () => {
    expect(ep({ name: 'api' }, { company: 'c0ffee' }).ephemeral).toEqual([
      { id: 'abc-api', taskId: 'abc', endpoint: 'api', owner: 'alice', company: 'c0ffee', backend: { host: '10.0.0.1', port: 80 }, stripPrefix: true, provider: 'file' },
    ]);
  });

  it('an http endpoint with route: binds to that static route instead', () => {
    const s = ep({ name: 'w1', route: 'llm' });
    expect(s.ephemeral).toEqual([]);
    expect(s.bindings).toEqual([{ route: 'llm', taskId: 'abc', endpoint: 'w1', backend: { host: '10.0.0.1', port: 80 }, provider: 'file' }]);
  });

  it('a tcp endpoint becomes a TCP route, with its CIDRs when given', () => {
    expect(ep({ protocol: 'tcp', name: 'ssh', allow_cidrs: ['10.0.0.0/8'] }).tcp).toEqual([
      { id: 'abc-ssh', taskId: 'abc', endpoint: 'ssh', owner: 'alice', backend: { host: '10.0.0.1', port: 80 }, allowCidrs: ['10.0.0.0/8'], provider: 'file' },
    ]);
    expect(ep({ protocol: 'tcp' }).tcp[0]!.allowCidrs).toBeNull();
  });

  it('a default http and a default tcp endpoint of one task may share the id', () => {
    const s = ep({}, { endpoints: [{ port: 80, address: 'a' }, { protocol: 'tcp', port: 22, address: 'a' }] });
    expect(s.ephemeral.map((r) => r.id)).toEqual(['abc']);
    expect(s.tcp.map((r) => r.id)).toEqual(['abc']);
  });

  type Case = [string, unknown, RegExp, string];
  it.each<Case>([
    ['a route without name', { routes: [{ path: '/a/' }] }, /name is required/, 'routes[0]'],
    ['a route with path and subdomain', { routes: [{ name: 'a', path: '/a/', subdomain: 'a' }] }, /exactly one of path and subdomain/, 'routes[0] (name "a")'],
    ['a route with neither', { routes: [{ name: 'a' }] }, /exactly one of path and subdomain/, 'routes[0] (name "a")'],
    ['a typo in a route key', { routes: [{ name: 'a', path: '/a/', backend: ['a:1'] }] }, /unknown key "backend"; expected name, path/, 'routes[0] (name "a")'],
    ['several unknown keys', { routes: [{ name: 'a', path: '/a/', x: 1, y: 2 }] }, /unknown keys "x", "y"/, 'routes[0] (name "a")'],
    ['a route that is not a mapping', { routes: ['llm'] }, /must be a mapping/, 'routes[0]'],
    ['a route that is a list', { routes: [[1]] }, /must be a mapping/, 'routes[0]'],
    ['backends that is not a list', { routes: [{ name: 'a', path: '/a/', backends: 'a:1' }] }, /backends must be a list/, 'routes[0] (name "a")'],
    ['a backend listed twice', { routes: [{ name: 'a', path: '/a/', backends: ['h:1', { address: 'H', port: 1 }] }] }, /backend h:1 is listed twice/, 'routes[0] (name "a")'],
    ['a reserved path', { routes: [{ name: 'a', path: '/service/' }] }, /reserved/, 'routes[0] (name "a")'],
    ['a string for a switch', { routes: [{ name: 'a', path: '/a/', enabled: 'yes' }] }, /enabled must be true or false/, 'routes[0] (name "a")'],
    ['a task without id', { tasks: [{ owner: 'a', endpoints: [{ port: 1, address: 'a' }] }] }, /id is required/, 'tasks[0]'],
    ['a numeric task id', { tasks: [{ id: 123, owner: 'a', endpoints: [{ port: 1, address: 'a' }] }] }, /task id must be a string/, 'tasks[0]'],
    ['a task without owner', { tasks: [{ id: 'a', endpoints: [{ port: 1, address: 'a' }] }] }, /owner is required/, 'tasks[0] (id "a")'],
    ['a typo in a task key', { tasks: [{ id: 'a', owner: 'a', endpoint: [] }] }, /unknown key "endpoint"/, 'tasks[0] (id "a")'],
    ['a task without endpoints', { tasks: [{ id: 'a', owner: 'a' }] }, /endpoints must be a list/, 'tasks[0] (id "a")'],
    ['a task with an empty endpoint list', { tasks: [{ id: 'a', owner: 'a', endpoints: [] }] }, /at least one/, 'tasks[0] (id "a")'],
    ['too many endpoints', { tasks: [{ id: 'a', owner: 'a', endpoints: Array.from({ length: 65 }, (_, i) => ({ name: `e${i}`, port: 1, address: 'a' })) }] }, /65 entries; at most 64/, 'tasks[0] (id "a")'],
    ['an endpoint without port', { tasks: [{ id: 'a', owner: 'a', endpoints: [{ address: 'a' }] }] }, /port is required/, 'tasks[0].endpoints[0]'],
    ['an endpoint without address', { tasks: [{ id: 'a', owner: 'a', endpoints: [{ port: 1 }] }] }, /address is required/, 'tasks[0].endpoints[0]'],
    ['a typo in an endpoint key', { tasks: [{ id: 'a', owner: 'a', endpoints: [{ port: 1, address: 'a', strip_prefx: false }] }] }, /unknown key "strip_prefx"/, 'tasks[0].endpoints[0]'],
    ['host instead of address in an endpoint', { tasks: [{ id: 'a', owner: 'a', endpoints: [{ port: 1, host: 'a' }] }] }, /unknown key "host"/, 'tasks[0].endpoints[0]'],
    ['an unknown protocol', { tasks: [{ id: 'a', owner: 'a', endpoints: [{ port: 1, address: 'a', protocol: 'udp' }] }] }, /protocol "udp" must be http or tcp/, 'tasks[0].endpoints[0]'],
    ['strip_prefix on tcp', { tasks: [{ id: 'a', owner: 'a', endpoints: [{ port: 1, address: 'a', protocol: 'tcp', strip_prefix: true }] }] }, /strip_prefix applies to http/, 'tasks[0].endpoints[0]'],
    ['route on tcp', { tasks: [{ id: 'a', owner: 'a', endpoints: [{ port: 1, address: 'a', protocol: 'tcp', route: 'llm' }] }] }, /route applies to http/, 'tasks[0].endpoints[0]'],
    ['allow_cidrs on http', { tasks: [{ id: 'a', owner: 'a', endpoints: [{ port: 1, address: 'a', allow_cidrs: ['10.0.0.0/8'] }] }] }, /allow_cidrs applies to tcp/, 'tasks[0].endpoints[0]'],
    ['strip_prefix with route', { tasks: [{ id: 'a', owner: 'a', endpoints: [{ port: 1, address: 'a', route: 'llm', strip_prefix: false }] }] }, /strip_prefix is set by the static route "llm"/, 'tasks[0].endpoints[0]'],
    ['an endpoint that is not a mapping', { tasks: [{ id: 'a', owner: 'a', endpoints: ['a:1'] }] }, /must be a mapping/, 'tasks[0].endpoints[0]'],
    ['a __proto__ key', { routes: [JSON.parse('{"name": "a", "path": "/a/", "__proto__": {"enabled": false}}')] }, /unknown key "__proto__"/, 'routes[0] (name "a")'],
  ])('%s is rejected with a reason', (_case, doc, reason, where) => {
    for (const [file, text] of [['routes.yaml', stringify(doc)], ['routes.json', JSON.stringify(doc)]] as const) {
      const { snapshot, rejections } = parsed(text, file);
      expect(rejections).toEqual([{ source: `${file}: ${where}`, reason: expect.stringMatching(reason) }]);
      expect(snapshot).toEqual(emptySnapshot());
    }
  });

  it.each<[string, unknown, string, RegExp]>([
    ['same route name', { routes: [{ name: 'a', path: '/a/' }, { name: 'a', path: '/b/' }] }, 'routes[1] (name "a")', /route name "a" is already defined by routes\[0\]/],
    ['same path, written differently', { routes: [{ name: 'a', path: '/a/' }, { name: 'b', path: '/a' }] }, 'routes[1] (name "b")', /path "\/a\/" is already defined by routes\[0\]/],
    ['same path in another case', { routes: [{ name: 'a', path: '/a/' }, { name: 'b', path: '/A/' }] }, 'routes[1] (name "b")', /path "\/A\/" is already defined by routes\[0\] \(paths are compared ignoring case\)/],
    ['same subdomain', { routes: [{ name: 'a', subdomain: 'x' }, { name: 'b', subdomain: 'x' }] }, 'routes[1] (name "b")', /subdomain "x" is already defined by routes\[0\]/],
    ['same task id', { tasks: [{ id: 't', owner: 'a', endpoints: [{ port: 1, address: 'a' }] }, { id: 't', owner: 'b', endpoints: [{ port: 2, address: 'a' }] }] }, 'tasks[1] (id "t")', /task id "t" is already defined by tasks\[0\]/],
    ['same http route id', { tasks: [{ id: 't', owner: 'a', endpoints: [{ name: 'x', port: 1, address: 'a' }, { name: 'x', port: 2, address: 'a' }] }] }, 'tasks[0].endpoints[1]', /route id "t-x" is already defined by tasks\[0\].endpoints\[0\]/],
    ['same id for an ephemeral route and a binding', { tasks: [{ id: 't', owner: 'a', endpoints: [{ port: 1, address: 'a' }, { port: 2, address: 'a', route: 'llm' }] }] }, 'tasks[0].endpoints[1]', /route id "t" is already defined/],
    ['same tcp route id', { tasks: [{ id: 't', owner: 'a', endpoints: [{ protocol: 'tcp', port: 1, address: 'a' }, { protocol: 'tcp', port: 2, address: 'a' }] }] }, 'tasks[0].endpoints[1]', /tcp route id "t" is already defined/],
  ])('a duplicate (%s) keeps the first and rejects the later one', (_case, doc, where, reason) => {
    const { snapshot, rejections } = parsed(stringify(doc));
    expect(rejections).toEqual([{ source: `routes.yaml: ${where}`, reason: expect.stringMatching(reason) }]);
    const kept = [...snapshot.static.map((r) => r.path ?? r.subdomain), ...snapshot.ephemeral.map((r) => r.backend.port), ...snapshot.bindings.map((r) => r.backend.port), ...snapshot.tcp.map((r) => r.backend.port)];
    expect(kept).toHaveLength(1);
    expect(kept[0] === '/a/' || kept[0] === 'x' || kept[0] === 1).toBe(true);
  });

  it('a route rejected as a duplicate does not claim its other names', () => {
    const { snapshot, rejections } = parsed(stringify({ routes: [{ name: 'a', path: '/a/' }, { name: 'b', path: '/a/' }, { name: 'b', path: '/b/' }] }));
    expect(rejections).toHaveLength(1);
    expect(snapshot.static.map((r) => r.name)).toEqual(['a', 'b']);
  });

  it(`keeps the first ${ROUTES_FILE_LIMITS.entries} routes and rejects the rest in one line`, () => {
    const n = ROUTES_FILE_LIMITS.entries + 5;
    const routes = Array.from({ length: n }, (_, i) => ({ name: `r${i}`, path: `/r${i}/` }));
    const { snapshot, rejections } = parsed(JSON.stringify({ routes }), 'routes.json');
    expect(snapshot.static).toHaveLength(ROUTES_FILE_LIMITS.entries);
    expect(rejections).toEqual([{ source: `routes.json: routes[10000..${n - 1}]`, reason: expect.stringMatching(/only the first 10000/) }]);
  });

  it('keeps 64 endpoints of a task', () => {
    const endpoints = Array.from({ length: 64 }, (_, i) => ({ name: `e${i}`, port: 1000 + i, address: '10.0.0.1' }));
    expect(parsed(stringify({ tasks: [{ id: 'a', owner: 'a', endpoints }] })).snapshot.ephemeral).toHaveLength(64);
  });

  it('reports every bad entry and keeps every good one', () => {
    const doc = {
      routes: [{ name: 'ok1', path: '/ok1/' }, { name: 'Bad', path: '/b/' }, { name: 'ok2', subdomain: 'ok2' }, { name: 'x', path: '/x/', enabld: true }],
      tasks: [{ id: 'a', owner: 'a', endpoints: [{ port: 1, address: 'a' }, { port: 0, address: 'a' }, { name: 'b', port: 2, address: 'a' }] }],
    };
    const { snapshot, rejections } = parsed(stringify(doc));
    expect(snapshot.static.map((r) => r.name)).toEqual(['ok1', 'ok2']);
    expect(snapshot.ephemeral.map((r) => r.id)).toEqual(['a', 'a-b']);
    expect(rejections.map((r) => r.source)).toEqual(['routes.yaml: routes[1] (name "Bad")', 'routes.yaml: routes[3] (name "x")', 'routes.yaml: tasks[0].endpoints[1]']);
  });
});

/**
 * Hostile values, each put into one field of an entry that sits beside a good neighbour. Every
 * one must be rejected with a one-line reason while the neighbour survives unchanged.
 */
describe('parseRoutesFile: hostile values', () => {
  const TEN_KB = 'a'.repeat(10 * 1024);
  const HOSTILE: Array<[string, unknown]> = [
    ['semicolon', ';'],
    ['open brace', '{'],
    ['close brace', '}'],
    ['double quote', '"'],
    ['single quote', "'"],
    ['backtick', '`'],
    ['dollar', '$'],
    ['nginx variable', '$host'],
    ['newline', '\n'],
    ['carriage return', '\r'],
    ['NUL', '\0'],
    ['parent dir', '../'],
    ['parent dir path', '../../etc/passwd'],
    ['unicode letter', 'ü'],
    ['emoji', '🦄'],
    ['right-to-left override', '\u202e'],
    ['cyrillic homoglyph', '\u0430'],
    ['space', 'a b'],
    ['10 kB string', TEN_KB],
    ['config injection', 'x; } server { listen 80; }'],
    ['backslash', '\\'],
    ['a number for a string', 12345],
    ['a mapping', { a: 1 }],
    ['a list', ['a']],
  ];
  /** Values that are fine elsewhere (a group may be called 1.2.3.4.5) but are no address. */
  const ADDRESSES: Array<[string, unknown]> = [
    ['not an address', '1.2.3.4.5'],
    ['address with semicolon', 'localhost;'],
    ['an IPv4 literal out of range', '256.1.1.1'],
    ['an address with a port', '127.0.0.1:80'],
    ['a URL', 'http://127.0.0.1'],
    ['an IPv6 scope', 'fe80::1%eth0'],
    ['a leading dot', '.example.com'],
  ];
  const NOT_A_PORT = HOSTILE.filter(([, v]) => typeof v !== 'number');
  const PORTS: Array<[string, unknown]> = [
    ['port 0', 0],
    ['port 70000', 70000],
    ['negative port', -1],
    ['fractional port', 80.5],
    ['port as text with junk', '80;'],
    ['port true', true],
  ];
  const BOOLS: Array<[string, unknown]> = [
    ['the string true', 'true'],
    ['yes', 'yes'],
    ['one', 1],
  ];

  const GOOD_ROUTE = { name: 'good', path: '/good/', backends: ['127.0.0.1:8001'], allowed_groups: ['ml'] };
  const GOOD_TASK = { id: 'goodtask', owner: 'alice', endpoints: [{ name: 'web', port: 8000, address: '127.0.0.1' }] };
  const goodOnly = parsed(stringify({ routes: [GOOD_ROUTE], tasks: [GOOD_TASK] })).snapshot;

  type Field = {
    field: string;
    /** A document whose second route / task / endpoint carries `v`. */
    doc: (v: unknown) => unknown;
    where: string;
    /** `v` embedded in an otherwise plausible value, so that a pattern must match the whole value. */
    wrap: (h: string) => unknown;
    values: Array<[string, unknown]>;
  };
  const withRoute = (bad: Record<string, unknown>) => ({ routes: [GOOD_ROUTE, bad], tasks: [GOOD_TASK] });
  const withTask = (bad: Record<string, unknown>) => ({ routes: [GOOD_ROUTE], tasks: [GOOD_TASK, bad] });
  const withEndpoint = (bad: Record<string, unknown>) => ({ routes: [GOOD_ROUTE], tasks: [{ ...GOOD_TASK, endpoints: [...GOOD_TASK.endpoints, bad] }] });
  const badTask = (over: Record<string, unknown>) => ({ id: 'badtask', owner: 'bob', endpoints: [{ port: 9000, address: '127.0.0.1' }], ...over });
  const badEndpoint = (over: Record<string, unknown>) => ({ name: 'other', port: 9000, address: '127.0.0.1', ...over });

  const FIELDS: Field[] = [
    { field: 'route name', doc: (v) => withRoute({ name: v, path: '/bad/' }), where: 'routes[1]', wrap: (h) => `bad${h}x`, values: HOSTILE },
    { field: 'route path', doc: (v) => withRoute({ name: 'bad', path: v }), where: 'routes[1]', wrap: (h) => `/bad/${h}x/`, values: HOSTILE },
    { field: 'route subdomain', doc: (v) => withRoute({ name: 'bad', subdomain: v }), where: 'routes[1]', wrap: (h) => `bad${h}x`, values: HOSTILE },
    { field: 'backend string', doc: (v) => withRoute({ name: 'bad', path: '/bad/', backends: [v] }), where: 'routes[1]', wrap: (h) => `127.0.0.1${h}:80`, values: [...HOSTILE, ...ADDRESSES.filter(([, v]) => v !== '127.0.0.1:80')] },
    { field: 'backend string port', doc: (v) => withRoute({ name: 'bad', path: '/bad/', backends: [`127.0.0.1:${String(v)}`] }), where: 'routes[1]', wrap: (h) => `8${h}0`, values: [...NOT_A_PORT, ...PORTS] },
    { field: 'backend address', doc: (v) => withRoute({ name: 'bad', path: '/bad/', backends: [{ address: v, port: 80 }] }), where: 'routes[1]', wrap: (h) => `127.0${h}.0.1`, values: [...HOSTILE, ...ADDRESSES] },
    { field: 'backend host', doc: (v) => withRoute({ name: 'bad', path: '/bad/', backends: [{ host: v, port: 80 }] }), where: 'routes[1]', wrap: (h) => `model${h}.internal`, values: [...HOSTILE, ...ADDRESSES] },
    { field: 'backend port', doc: (v) => withRoute({ name: 'bad', path: '/bad/', backends: [{ address: '127.0.0.1', port: v }] }), where: 'routes[1]', wrap: (h) => `8${h}0`, values: [...NOT_A_PORT, ...PORTS] },
    { field: 'backends', doc: (v) => withRoute({ name: 'bad', path: '/bad/', backends: v }), where: 'routes[1]', wrap: (h) => h, values: HOSTILE.filter(([, v]) => !Array.isArray(v)) },
    { field: 'allowed group', doc: (v) => withRoute({ name: 'bad', path: '/bad/', allowed_groups: [v] }), where: 'routes[1]', wrap: (h) => `ml${h}x`, values: HOSTILE },
    { field: 'route strip_prefix', doc: (v) => withRoute({ name: 'bad', path: '/bad/', strip_prefix: v }), where: 'routes[1]', wrap: (h) => h, values: [...HOSTILE, ...BOOLS] },
    { field: 'route enabled', doc: (v) => withRoute({ name: 'bad', path: '/bad/', enabled: v }), where: 'routes[1]', wrap: (h) => h, values: [...HOSTILE, ...BOOLS] },
    { field: 'route key', doc: (v) => withRoute({ name: 'bad', path: '/bad/', [String(v)]: 1 }), where: 'routes[1]', wrap: (h) => `path${h}`, values: HOSTILE.filter(([, v]) => typeof v === 'string') },
    { field: 'task id', doc: (v) => withTask(badTask({ id: v })), where: 'tasks[1]', wrap: (h) => `bad${h}task`, values: HOSTILE },
    { field: 'task owner', doc: (v) => withTask(badTask({ owner: v })), where: 'tasks[1]', wrap: (h) => `bob${h}x`, values: HOSTILE },
    { field: 'task company', doc: (v) => withTask(badTask({ company: v })), where: 'tasks[1]', wrap: (h) => `c0ffee${h}`, values: HOSTILE },
    { field: 'task endpoints', doc: (v) => withTask(badTask({ endpoints: v })), where: 'tasks[1]', wrap: (h) => h, values: HOSTILE },
    { field: 'task key', doc: (v) => withTask(badTask({ [String(v)]: 1 })), where: 'tasks[1]', wrap: (h) => `owner${h}`, values: HOSTILE.filter(([, v]) => typeof v === 'string') },
    { field: 'endpoint name', doc: (v) => withEndpoint(badEndpoint({ name: v })), where: 'tasks[0].endpoints[1]', wrap: (h) => `api${h}x`, values: HOSTILE },
    { field: 'endpoint port', doc: (v) => withEndpoint(badEndpoint({ port: v })), where: 'tasks[0].endpoints[1]', wrap: (h) => `8${h}0`, values: [...NOT_A_PORT, ...PORTS] },
    { field: 'endpoint address', doc: (v) => withEndpoint(badEndpoint({ address: v })), where: 'tasks[0].endpoints[1]', wrap: (h) => `10.0.0${h}.1`, values: [...HOSTILE, ...ADDRESSES] },
    { field: 'endpoint protocol', doc: (v) => withEndpoint(badEndpoint({ protocol: v })), where: 'tasks[0].endpoints[1]', wrap: (h) => `http${h}`, values: HOSTILE },
    { field: 'endpoint strip_prefix', doc: (v) => withEndpoint(badEndpoint({ strip_prefix: v })), where: 'tasks[0].endpoints[1]', wrap: (h) => h, values: [...HOSTILE, ...BOOLS] },
    { field: 'endpoint route', doc: (v) => withEndpoint(badEndpoint({ route: v })), where: 'tasks[0].endpoints[1]', wrap: (h) => `llm${h}x`, values: HOSTILE },
    { field: 'endpoint allow_cidrs', doc: (v) => withEndpoint(badEndpoint({ protocol: 'tcp', allow_cidrs: [v] })), where: 'tasks[0].endpoints[1]', wrap: (h) => `10.0.0.0/8${h}`, values: HOSTILE },
    { field: 'endpoint key', doc: (v) => withEndpoint(badEndpoint({ [String(v)]: 1 })), where: 'tasks[0].endpoints[1]', wrap: (h) => `port${h}`, values: HOSTILE.filter(([, v]) => typeof v === 'string') },
  ];

  const cases = FIELDS.flatMap((f) => f.values.map(([label, v]) => [f.field, label, f, v] as const));
  const ADDRESS_VALUES = new Set(ADDRESSES.map(([, v]) => v));

  it.each(cases)('%s: %s is rejected and the good neighbour survives', (_field, _label, f, v) => {
    // Address-shaped values are bad only as a whole: embedded in a host name they may be fine.
    const variants = typeof v === 'string' && !ADDRESS_VALUES.has(v) ? [v, f.wrap(v)] : [v];
    for (const value of variants) {
      for (const [file, text] of [['routes.yaml', stringify(f.doc(value))], ['routes.json', JSON.stringify(f.doc(value))]] as const) {
        const r = parseRoutesFile(text, file);
        if (!r.ok) throw new Error(`${file} did not parse: ${formatRoutesFileError(r.error)}`);
        expect(r.snapshot).toEqual(goodOnly);
        expect(r.rejections).toHaveLength(1);
        const [rej] = r.rejections;
        expect(rej!.provider).toBe('file');
        expect(rej!.source.startsWith(`${file}: ${f.where}`)).toBe(true);
        expect(rej!.reason.length).toBeGreaterThan(0);
        // The reason is shown in logs, status and the UI: one line, bounded, hostile bytes escaped.
        for (const s of [rej!.reason, rej!.source]) {
          expect(s).not.toMatch(/[\n\r\0\u202e]/);
          expect(s.length).toBeLessThan(400);
        }
      }
    }
  });
});
