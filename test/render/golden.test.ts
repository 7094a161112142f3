import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadTemplates, render, RenderError, sameConfig, type RenderInput } from '../../router/render/render';
import type { StaticRoute } from '../../router/model/types';

const GOLDEN = join(__dirname, '..', 'golden');

function route(name: string, extra: Partial<StaticRoute> = {}): StaticRoute {
  return { name, path: `/${name}/`, subdomain: null, backends: [{ host: '10.0.0.1', port: 8000 }], allowedGroups: [], stripPrefix: true, enabled: true, provider: 'file', ...extra };
}

const base: RenderInput = {
  generation: 'g000042',
  listenAddress: '0.0.0.0',
  listenPort: 8080,
  routerDomain: 'apps.example.com',
  luaDir: '/etc/appgw/lua',
  runDir: '/var/run/appgw',
  tmpDir: '/etc/appgw/nginx/tmp',
  errorLog: '/dev/stderr',
  errorLogLevel: 'warn',
  accessLog: '/dev/stdout',
  loadModules: ['/usr/lib/nginx/modules/ndk_http_module.so', '/usr/lib/nginx/modules/ngx_http_lua_module.so', '/usr/lib/nginx/modules/ngx_stream_module.so'],
  workerUser: null,
  workerProcesses: 'auto',
  workerShutdownTimeoutS: 300,
  maxBodySize: '100m',
  readTimeoutS: 3600,
  streamRevocation: true,
  dataDictSize: '64m',
  static: [route('llm'), route('chat', { subdomain: 'chat', path: null }), route('off', { enabled: false }), route('deep', { path: '/team/a/' })],
  tcp: [{ id: '0123456789abcdef0123456789abcdef', port: 30001, backend: { host: '10.0.3.17', port: 22 }, allow: ['10.0.0.0/8'] }],
};

const CASES: Array<[string, RenderInput]> = [
  ['full', base],
  ['empty', { ...base, routerDomain: null, static: [], tcp: [], loadModules: [] }],
];

describe('golden: desired state → rendered files, exact bytes', () => {
  const t = loadTemplates();
  test.each(CASES)('%s', (name, input) => {
    const bundle = render(t, input);
    const dir = join(GOLDEN, name);
    if (process.env.UPDATE_GOLDEN === '1') {
      rmSync(dir, { recursive: true, force: true });
      for (const [file, content] of bundle) {
        mkdirSync(dirname(join(dir, file)), { recursive: true });
        writeFileSync(join(dir, file), content);
      }
      throw new Error(`golden files for ${name} rewritten; run again without UPDATE_GOLDEN`);
    }
    const list = (d: string, pre = ''): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? list(join(d, e.name), `${pre}${e.name}/`) : [`${pre}${e.name}`]));
    expect(existsSync(dir)).toBe(true);
    expect([...bundle.keys()].sort()).toEqual(list(dir).sort());
    for (const [file, content] of bundle) expect(content).toBe(readFileSync(join(dir, file), 'utf8'));
  });

  test('rendering is deterministic and ignores input order; only generation.conf differs between generations', () => {
    const a = render(t, base);
    const b = render(t, { ...base, static: [...base.static].reverse(), generation: 'g000043' });
    expect(sameConfig(a, b)).toBe(true);
    expect(a.get('generation.conf')).not.toBe(b.get('generation.conf'));
    expect(sameConfig(a, render(t, { ...base, static: base.static.slice(1) }))).toBe(false);
  });

  test.each([
    ['route name', { static: [route('x; } server { listen 80')] }],
    ['path', { static: [route('ok', { path: '/a b/' })] }],
    ['path with brace', { static: [route('ok', { path: '/a}/' })] }],
    ['subdomain', { static: [route('ok', { path: null, subdomain: 'a.b' })] }],
    ['tcp backend', { tcp: [{ id: 'abc', port: 30001, backend: { host: '1.2.3.4;', port: 22 }, allow: [] }] }],
    ['tcp cidr', { tcp: [{ id: 'abc', port: 30001, backend: { host: '1.2.3.4', port: 22 }, allow: ['all; allow 0.0.0.0/0'] }] }],
    ['tcp port', { tcp: [{ id: 'abc', port: 70000, backend: { host: '1.2.3.4', port: 22 }, allow: [] }] }],
    ['lua dir', { luaDir: '/x"; lua_code_cache off; #' }],
    ['max body size', { maxBodySize: '1m; include /etc/passwd' }],
  ] as Array<[string, Partial<RenderInput>]>)('refuses a hostile %s even if validation upstream missed it', (_n, bad) => {
    expect(() => render(t, { ...base, ...bad })).toThrow(RenderError);
  });
});
