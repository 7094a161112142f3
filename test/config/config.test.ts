import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { type Config, VARIABLES, parseConfig, parseDuration, parseEnvFile } from '../../router/config';
import { thrown } from '../support/errors';

const ROOT = join(__dirname, '..', '..');
const EXAMPLE_FILE = join(ROOT, 'runtime.env.example');
const CWD = '/srv/gw';
const SPEC = new Map(VARIABLES.map((v) => [v.name, v]));
const ALL_NAMES = new Set(VARIABLES.flatMap((v) => [v.name, ...(v.aliases ?? [])]));

describe('parseConfig: defaults', () => {
  it('gives the documented defaults for an empty environment', () => {
    const expected: Config = {
      routerName: 'appgw',
      routerUrl: 'http://127.0.0.1:8080',
      routerDomain: null,
      listenAddress: '0.0.0.0',
      serverPort: 8080,
      proxyMode: 'local',
      dataDir: '/srv/gw/data',
      nginxBin: 'nginx',
      nginxDir: '/srv/gw/data/nginx',
      luaDir: '/srv/gw/data/lua',
      runDir: '/srv/gw/data/run',
      proxyContainer: 'task_traffic_webserver',
      proxyWorkerUser: null,
      proxyWorkerProcesses: 'auto',
      routesFile: null,
      reloadMinIntervalMs: 1000,
      pushIntervalMs: 5000,
      workerShutdownTimeoutS: 300,
      maxBodySize: '100m',
      readTimeoutS: 3600,
      adminToken: null,
      keepGenerations: 5,
      clearml: { apiHost: null, accessKey: null, secretKey: null, pollIntervalMs: 5000, listenQueues: [], stripPrefix: true },
      authCookieName: 'clearml_token_basic',
      authSecure: false,
      streamRevocation: true,
      tokenMaxDays: 90,
      tcp: { routerAddress: null, portStart: null, portEnd: null, allowCidrs: [] },
      dockerProvider: false,
      dockerSocket: '/var/run/docker.sock',
      loggerLevel: 'info',
    };
    expect(parseConfig({}, CWD)).toEqual(expected);
  });

  it('treats empty and blank values as unset', () => {
    expect(parseConfig({ ROUTER_NAME: '', TCP_PORT_START: '  ', LOGGER_LEVEL: '' }, CWD)).toEqual(parseConfig({}, CWD));
  });

  it.each<[string, Record<string, string>, (c: Config) => unknown, unknown]>([
    ['relative paths resolve against the working directory', { DATA_DIR: './state', ROUTES_FILE: 'routes.yaml' }, (c) => [c.dataDir, c.nginxDir, c.routesFile], ['/srv/gw/state', '/srv/gw/state/nginx', '/srv/gw/routes.yaml']],
    ['ROUTER_URL follows the port by default', { ROUTER__WEBSERVER__SERVER_PORT: '9000' }, (c) => c.routerUrl, 'http://127.0.0.1:9000'],
    ['a trailing slash of ROUTER_URL is dropped', { ROUTER_URL: 'https://gw.example.com/' }, (c) => c.routerUrl, 'https://gw.example.com'],
    ['ROUTER_DOMAIN is lower-cased', { ROUTER_DOMAIN: 'Apps.Example.COM' }, (c) => c.routerDomain, 'apps.example.com'],
    ['durations take units', { RELOAD_MIN_INTERVAL: '250ms', PUSH_INTERVAL: '2m', WORKER_SHUTDOWN_TIMEOUT: '1h', PROXY_READ_TIMEOUT: '90' }, (c) => [c.reloadMinIntervalMs, c.pushIntervalMs, c.workerShutdownTimeoutS, c.readTimeoutS], [250, 120_000, 3600, 90]],
    ['queues split on commas and spaces', { LISTEN_QUEUE_NAME: 'a, b  c*,,d?' }, (c) => c.clearml.listenQueues, ['a', 'b', 'c*', 'd?']],
    ['booleans accept yes/no/1/0/on/off', { AUTH_SECURE_ENABLED: 'Yes', DOCKER_PROVIDER: 'on' }, (c) => [c.authSecure, c.dockerProvider], [true, true]],
    ['stream revocation can be turned off', { STREAM_REVOCATION: 'false' }, (c) => c.streamRevocation, false],
    ['LOGGER_LEVEL in any case, warning meaning warn', { LOGGER_LEVEL: 'WARNING' }, (c) => c.loggerLevel, 'warn'],
    ['TCP_ROUTER_ADDRESS drops a scheme and a port', { TCP_ROUTER_ADDRESS: 'tcp://tcp.example.com:443' }, (c) => c.tcp.routerAddress, 'tcp.example.com'],
    ['values are trimmed', { ROUTER_NAME: '  gw-1  ' }, (c) => c.routerName, 'gw-1'],
  ])('%s', (_case, env, get, expected) => {
    expect(get(parseConfig(env, CWD))).toEqual(expected);
  });

  it('parseDuration reads units and bare seconds, and refuses anything else', () => {
    expect(['500ms', '2s', '1.5s', '5m', '1h', '1d', '30'].map(parseDuration)).toEqual([500, 2000, 1500, 300_000, 3_600_000, 86_400_000, 30_000]);
    expect(['', 's', '-1s', '1w', '1 s', '5 minutes'].map(parseDuration)).toEqual([null, null, null, null, null, null]);
  });
});

/**
 * One bad value for every variable in VARIABLES (plus what else must be set for the value to be
 * looked at). The table must cover VARIABLES exactly, so a new variable needs a bad case here.
 */
const BAD: Record<string, { value: string; with?: Record<string, string> }> = {
  ROUTER_NAME: { value: 'Gate_Way' },
  ROUTER_URL: { value: 'ftp://gateway.example.com' },
  ROUTER_DOMAIN: { value: 'not a domain' },
  ROUTER__WEBSERVER__SERVER_PORT: { value: '70000' },
  LISTEN_ADDRESS: { value: '1.2.3.4.5' },
  PROXY_MODE: { value: 'kubernetes' },
  DATA_DIR: { value: '/data;rm -rf /' },
  NGINX_BIN: { value: 'nginx $(id)' },
  NGINX_CONF_DIR: { value: '/etc/{nginx}' },
  LUA_DIR: { value: '/lua"' },
  RUN_DIR: { value: '/run\n/x' },
  PROXY_CONTAINER_NAME: { value: '-proxy' },
  PROXY_WORKER_USER: { value: 'Root!' },
  PROXY_WORKER_PROCESSES: { value: '0' },
  ROUTES_FILE: { value: 'routes;.yaml' },
  RELOAD_MIN_INTERVAL: { value: 'soon' },
  PUSH_INTERVAL: { value: '10ms' },
  WORKER_SHUTDOWN_TIMEOUT: { value: '500ms' },
  PROXY_MAX_BODY_SIZE: { value: '1t' },
  PROXY_READ_TIMEOUT: { value: '-5s' },
  ADMIN_TOKEN: { value: 'letmein' },
  KEEP_GENERATIONS: { value: '1' },
  CLEARML_API_HOST: { value: 'api.clearml.example.com' },
  CLEARML_API_ACCESS_KEY: { value: 'key with spaces' },
  CLEARML_API_SECRET_KEY: { value: 'secret with spaces' },
  CLEARML_POLL_INTERVAL: { value: '5 seconds' },
  LISTEN_QUEUE_NAME: { value: 'gpu;queue' },
  AUTH_COOKIE_NAME: { value: 'cookie;name' },
  AUTH_SECURE_ENABLED: { value: 'maybe' },
  STREAM_REVOCATION: { value: 'maybe' },
  CLEARML_STRIP_PREFIX: { value: 'sometimes' },
  TOKEN_MAX_DAYS: { value: '0' },
  TCP_ROUTER_ADDRESS: { value: 'tcp router' },
  TCP_PORT_START: { value: 'abc', with: { TCP_PORT_END: '30100' } },
  TCP_PORT_END: { value: '70000', with: { TCP_PORT_START: '30000' } },
  TCP_ALLOW_CIDRS: { value: '10.0.0.0/33' },
  DOCKER_PROVIDER: { value: '2' },
  DOCKER_SOCKET: { value: '/var/run/`docker`.sock' },
  LOGGER_LEVEL: { value: 'verbose' },
};

describe('parseConfig: bad values', () => {
  it('has a bad case for exactly the variables in VARIABLES', () => {
    expect(Object.keys(BAD).sort()).toEqual(VARIABLES.map((v) => v.name).sort());
  });

  it.each(VARIABLES.map((v) => [v.name, v.expects] as const))('%s: a bad value stops with one line naming it and what it expects', (name, expects) => {
    const bad = BAD[name]!;
    const e = thrown(() => parseConfig({ ...bad.with, [name]: bad.value }, CWD));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message.startsWith(`${name} is `)).toBe(true);
    expect(e.message).toContain(`; expected ${expects}`);
    expect(e.message).not.toMatch(/[\n\r]/);
  });

  it.each<[string, Record<string, string>, string]>([
    ['the ClearML access key is missing', { CLEARML_API_HOST: 'https://api.example.com', CLEARML_API_SECRET_KEY: 's' }, 'CLEARML_API_ACCESS_KEY is missing; expected a ClearML access key'],
    ['the ClearML secret key is missing', { CLEARML_API_HOST: 'https://api.example.com', CLEARML_API_ACCESS_KEY: 'k' }, 'CLEARML_API_SECRET_KEY is missing; expected a ClearML secret key'],
    ['the end of the TCP range is missing', { TCP_PORT_START: '30000' }, 'TCP_PORT_END is missing; expected'],
    ['the start of the TCP range is missing', { TCP_PORT_END: '30000' }, 'TCP_PORT_START is missing; expected'],
    ['the TCP range is reversed', { TCP_PORT_START: '30100', TCP_PORT_END: '30000' }, 'TCP_PORT_END is "30000"; expected a TCP port 1-65535, not below TCP_PORT_START'],
    ['a URL carries credentials', { ROUTER_URL: 'https://user:pw@gw.example.com' }, 'ROUTER_URL is "https://user:pw@gw.example.com"; expected'],
  ])('%s', (_case, env, message) => {
    const e = thrown(() => parseConfig(env, CWD));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message.startsWith(message)).toBe(true);
  });

  it('cuts a long bad value in the message', () => {
    const e = thrown(() => parseConfig({ PROXY_MODE: 'x'.repeat(5000) }, CWD));
    expect(e.message.length).toBeLessThan(300);
  });
});

/** A good value for every variable that has aliases, what it must become, and what else must be set. */
const ALIAS_CASES: Record<string, { value: string; get: (c: Config) => unknown; expected: unknown; with?: Record<string, string> }> = {
  ROUTER__WEBSERVER__SERVER_PORT: { value: '9090', get: (c) => c.serverPort, expected: 9090 },
  AUTH_COOKIE_NAME: { value: 'clearml-token-k8s', get: (c) => c.authCookieName, expected: 'clearml-token-k8s' },
  AUTH_SECURE_ENABLED: { value: 'true', get: (c) => c.authSecure, expected: true },
  TCP_ROUTER_ADDRESS: { value: 'tcp.example.com', get: (c) => c.tcp.routerAddress, expected: 'tcp.example.com' },
  TCP_PORT_START: { value: '30000', get: (c) => c.tcp.portStart, expected: 30000, with: { TCP_PORT_END: '30100' } },
  TCP_PORT_END: { value: '30100', get: (c) => c.tcp.portEnd, expected: 30100, with: { TCP_PORT_START: '30000' } },
};

describe('parseConfig: aliases', () => {
  const pairs = VARIABLES.flatMap((v) => (v.aliases ?? []).map((a) => [v.name, a] as const));

  it('has a case for every variable with aliases', () => {
    expect(Object.keys(ALIAS_CASES).sort()).toEqual(VARIABLES.filter((v) => v.aliases?.length).map((v) => v.name).sort());
  });

  it.each(pairs)('%s is also read as %s', (name, alias) => {
    const c = ALIAS_CASES[name]!;
    const viaAlias = parseConfig({ ...c.with, [alias]: c.value }, CWD);
    expect(c.get(viaAlias)).toEqual(c.expected);
    expect(viaAlias).toEqual(parseConfig({ ...c.with, [name]: c.value }, CWD));
  });

  it('the enterprise stream names set the TCP pool together', () => {
    const c = parseConfig({ ROUTER__STREAM__PORT_RANGE__START: '31000', STREAM_PORT_END: '31010', ROUTER__STREAM__EXTERNAL_URL: 'tcp://edge.example.com' }, CWD);
    expect(c.tcp).toMatchObject({ portStart: 31000, portEnd: 31010, routerAddress: 'edge.example.com' });
  });

  it.each(pairs)('%s wins over its alias %s when both are set', (name, alias) => {
    const c = ALIAS_CASES[name]!;
    expect(c.get(parseConfig({ ...c.with, [name]: c.value, [alias]: BAD[name]!.value }, CWD))).toEqual(c.expected);
  });

  it.each(pairs)('a bad %s given as %s stops with one line naming it', (name, alias) => {
    const bad = BAD[name]!;
    const e = thrown(() => parseConfig({ ...bad.with, [alias]: bad.value }, CWD));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message.startsWith(`${alias} is `) || e.message.startsWith(`${name} is `)).toBe(true);
    expect(e.message).not.toMatch(/[\n\r]/);
  });

  it.each(pairs)('a bad %s given as %s names the alias and what it expects', (name, alias) => {
    const bad = BAD[name]!;
    const e = thrown(() => parseConfig({ ...bad.with, [alias]: bad.value }, CWD));
    expect(e.message.startsWith(`${alias} is `)).toBe(true);
    expect(e.message).toContain(`; expected ${SPEC.get(name)!.expects}`);
  });
});

describe('parseEnvFile', () => {
  it('reads KEY=VALUE lines with comments, blank lines, quotes and export', () => {
    const text = [
      '# a comment',
      '',
      '   # an indented comment',
      'ROUTER_NAME=gw',
      'export LOGGER_LEVEL=debug',
      'ROUTER_URL = "https://gw.example.com"  ',
      "CLEARML_API_SECRET_KEY='s3cr3t # not a comment'",
      'LISTEN_QUEUE_NAME=a b   # a trailing comment',
      'AUTH_COOKIE_NAME=a#b',
      'ADMIN_TOKEN=',
      'DATA_DIR=/x=y',
      'ROUTER_DOMAIN="unterminated',
    ].join('\r\n');
    expect(parseEnvFile(text, 'runtime.env')).toEqual({
      ROUTER_NAME: 'gw',
      LOGGER_LEVEL: 'debug',
      ROUTER_URL: 'https://gw.example.com',
      CLEARML_API_SECRET_KEY: 's3cr3t # not a comment',
      LISTEN_QUEUE_NAME: 'a b',
      AUTH_COOKIE_NAME: 'a#b',
      ADMIN_TOKEN: '',
      DATA_DIR: '/x=y',
      ROUTER_DOMAIN: '"unterminated',
    });
  });

  it('a later line wins over an earlier one', () => {
    expect(parseEnvFile('A=1\nA=2\n', 'f')).toEqual({ A: '2' });
  });

  it.each([
    ['a line without =', 'ROUTER_NAME=gw\njust words\n', 2, 'just words'],
    ['a key with a dash', '\n\nROUTER-NAME=gw\n', 3, 'ROUTER-NAME=gw'],
    ['a key starting with a digit', '1KEY=x\n', 1, '1KEY=x'],
    ['a shell command', '# ok\nexport\n', 2, 'export'],
  ])('%s is named with its line number', (_case, text, line, shown) => {
    const e = thrown(() => parseEnvFile(text, 'runtime.env'));
    expect(e.code).toBe('ENV_FILE_UNREADABLE');
    expect(e.message).toBe(`runtime.env:${line}: expected KEY=VALUE, got ${JSON.stringify(shown)}`);
  });
});

interface ExampleEntry {
  name: string;
  example: string;
  meaning: string;
  defaultLine: string;
  line: number;
}

/** The documented variables of runtime.env.example: `# NAME=example` after a meaning and a Default line. */
function readExample(): { text: string; entries: ExampleEntry[] } {
  const text = readFileSync(EXAMPLE_FILE, 'utf8');
  const lines = text.split('\n');
  const entries: ExampleEntry[] = [];
  lines.forEach((l, i) => {
    const m = /^# ?([A-Z][A-Z0-9_]*)=(.*)$/.exec(l);
    if (m) entries.push({ name: m[1]!, example: m[2]!, meaning: lines[i - 2] ?? '', defaultLine: lines[i - 1] ?? '', line: i + 1 });
  });
  return { text, entries };
}

/** Values in angle brackets are placeholders: deliberately invalid, so that they cannot be used by accident. */
const isPlaceholder = (v: string) => /<[^>]+>/.test(v);
const PLACEHOLDER_STAND_INS: Record<string, string> = {
  CLEARML_API_ACCESS_KEY: 'EXAMPLEACCESSKEY0123',
  CLEARML_API_SECRET_KEY: 'example-secret-key-0123456789',
  ADMIN_TOKEN: 'appgw_0123abcd_abcdefghijklmnopqrstuvwxyz',
};

describe('runtime.env.example (drift)', () => {
  const { text, entries } = readExample();

  it('documents every variable of VARIABLES once, and nothing else', () => {
    const names = entries.map((e) => e.name);
    expect(new Set(names).size).toBe(names.length);
    expect([...names].sort()).toEqual(VARIABLES.map((v) => v.name).sort());
  });

  it.each(VARIABLES.map((v) => [v.name] as const))('%s has a meaning, a default and its aliases', (name) => {
    const e = entries.find((x) => x.name === name);
    if (!e) throw new Error(`${name} is not documented in runtime.env.example`);
    expect(e.meaning).toMatch(/^# [A-Z].{10,}$/);
    expect(e.meaning).not.toMatch(/^# Default:/);
    expect(e.defaultLine).toMatch(/^# Default: .+\.$/);
    const aliases = /Alias(?:es)?: ([A-Z0-9_, ]+)\.$/.exec(e.defaultLine)?.[1]?.split(', ') ?? [];
    expect(aliases.sort()).toEqual([...(SPEC.get(name)!.aliases ?? [])].sort());
  });

  it('mentions no variable the router does not read', () => {
    const mentioned = new Set(text.match(/\b[A-Z][A-Z0-9]*(?:__?[A-Z0-9]+)+\b/g) ?? []);
    const unknown = [...mentioned].filter((n) => !ALL_NAMES.has(n));
    expect(unknown).toEqual([]);
  });

  it('documents every alias', () => {
    for (const a of [...ALL_NAMES].filter((n) => !SPEC.has(n))) expect(text).toContain(a);
  });

  it('has literal defaults that are the real defaults', () => {
    const literal = entries.flatMap((e) => {
      const m = /^# Default: `([^`]*)`/.exec(e.defaultLine);
      return m ? [[e.name, m[1]!] as const] : [];
    });
    expect(literal.length).toBeGreaterThan(20);
    const defaults = parseConfig({}, CWD);
    for (const [name, value] of literal) expect([name, parseConfig({ [name]: value }, CWD)]).toEqual([name, defaults]);
  });

  it('has examples that are valid together once uncommented', () => {
    const uncommented = entries.map((e) => `${e.name}=${e.example}`).join('\n');
    const env = parseEnvFile(uncommented, 'runtime.env.example');
    for (const [name, value] of Object.entries(env)) if (isPlaceholder(value)) env[name] = PLACEHOLDER_STAND_INS[name] ?? value;
    const c = parseConfig(env, CWD);
    expect(c.routerName).toBe(env.ROUTER_NAME);
    expect(c.clearml.listenQueues.length).toBeGreaterThan(0);
    expect(c.tcp.portStart).not.toBeNull();
  });

  it('has placeholders only where a copied value would be a secret, and they are refused as they stand', () => {
    const placeholders = entries.filter((e) => isPlaceholder(e.example));
    expect(placeholders.map((e) => e.name).sort()).toEqual(Object.keys(PLACEHOLDER_STAND_INS).sort());
    for (const e of placeholders) {
      const env = { CLEARML_API_HOST: 'https://api.example.com', ...PLACEHOLDER_STAND_INS, [e.name]: e.example };
      expect(thrown(() => parseConfig(env, CWD)).message.startsWith(`${e.name} is `)).toBe(true);
    }
  });

  it('sets nothing as it stands (every variable is commented out)', () => {
    expect(parseEnvFile(text, 'runtime.env.example')).toEqual({});
  });
});

/** Every name read from the environment in `source`: process.env.X, process.env['X'], env['X'], { X } = process.env. */
function envReads(source: string): string[] {
  const out = new Set<string>();
  for (const re of [
    /\benv\s*\[\s*(['"`])([^'"`]+)\1\s*\]/g,
    /process\.env\.([A-Za-z_][A-Za-z0-9_]*)/g,
    // `env.X` for any other env map; upper case only, so that prose like runtime.env.example is no read
    /\benv\.([A-Z_][A-Z0-9_]*)\b/g,
    /\benv\s*\?\.\s*\[?\s*['"`]?([A-Z_][A-Z0-9_]*)/g,
  ]) {
    for (const m of source.matchAll(re)) out.add(m[m.length - 1]!);
  }
  for (const m of source.matchAll(/\{([^{}]*)\}\s*=\s*process\.env\b/g)) {
    for (const part of m[1]!.split(',')) {
      const key = part.split(':')[0]!.split('=')[0]!.trim();
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) out.add(key);
    }
  }
  return [...out];
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return n === 'node_modules' ? [] : sourceFiles(p);
    return /\.ts$/.test(n) ? [p] : [];
  });
}

describe('environment reads in the router', () => {
  it('finds reads in every form it knows', () => {
    const src = "a = process.env.ALPHA; b = process.env['BETA']; c = env[\"GAMMA\"]; d = env.DELTA; const { EPSILON, ZETA: z } = process.env; e = env?.ETA; f = process.env.lower; // see runtime.env.example";
    expect(envReads(src).sort()).toEqual(['ALPHA', 'BETA', 'DELTA', 'EPSILON', 'ETA', 'GAMMA', 'ZETA', 'lower']);
  });

  it('reads no variable that VARIABLES does not declare', () => {
    const files = [...sourceFiles(join(ROOT, 'router')), join(ROOT, 'bin', 'appgw')];
    const undeclared = files.flatMap((f) => envReads(readFileSync(f, 'utf8')).filter((n) => !ALL_NAMES.has(n)).map((n) => `${relative(ROOT, f)}: ${n}`));
    expect(undeclared).toEqual([]);
  });

  it('parseConfig reads every declared variable, and only those', () => {
    const source = readFileSync(join(ROOT, 'router', 'config.ts'), 'utf8');
    const read = new Set([...source.matchAll(/\(env, '([A-Z][A-Z0-9_]*)'/g)].map((m) => m[1]!));
    expect([...read].sort()).toEqual(VARIABLES.map((v) => v.name).sort());
  });
});
