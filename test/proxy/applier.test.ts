import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Applier } from '../../router/proxy/applier';
import type { ProxyControl } from '../../router/proxy/control';
import { memoryLogger } from '../../router/log';

/** The applier against a fake proxy: what it writes, links, swaps and rolls back. */
describe('applier: generations on disk', () => {
  let dir: string;
  let served: string | null;
  let failTest = false;
  const control: ProxyControl = {
    test: async () => (failTest ? { ok: false, output: 'forced' } : { ok: true, output: '' }),
    reload: async () => undefined,
    running: async () => true,
  };
  const applier = () =>
    new Applier({ nginxDir: dir, keep: 2, served: async () => served, confirmTimeoutMs: 500 }, control, memoryLogger());

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'appgw-applier-'));
    failTest = false;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const bundle = (routes: Record<string, string>, gen: string) =>
    new Map<string, string>([
      ['nginx.conf', 'events {}\n'],
      ['generation.conf', `set $appgw_generation "${gen}";\n`],
      ...Object.entries(routes).map(([name, line]) => [`conf.d/path/${name}.conf`, line] as [string, string]),
    ]);
  const ino = (gen: string, rel: string) => statSync(join(dir, 'generations', gen, rel)).ino;

  test('files equal to the live generation are hard links to it; changed files are written; pruning keeps them readable', async () => {
    const a = applier();
    served = 'g000001';
    expect(await a.apply(bundle({ a: '/a/ "s:a /a/";\n', b: '/b/ "s:b /b/";\n' }, 'g000001'))).toMatchObject({ ok: true, generation: 'g000001' });
    served = 'g000002';
    expect(await a.apply(bundle({ a: '/a/ "s:a /a/";\n', b: '/bb/ "s:b /bb/";\n' }, 'g000002'))).toMatchObject({ ok: true, generation: 'g000002' });
    expect(ino('g000002', 'conf.d/path/a.conf')).toBe(ino('g000001', 'conf.d/path/a.conf'));
    expect(ino('g000002', 'nginx.conf')).toBe(ino('g000001', 'nginx.conf'));
    expect(ino('g000002', 'conf.d/path/b.conf')).not.toBe(ino('g000001', 'conf.d/path/b.conf'));
    expect(ino('g000002', 'generation.conf')).not.toBe(ino('g000001', 'generation.conf'));
    served = 'g000003';
    expect(await a.apply(bundle({ a: '/a/ "s:a /a/";\n' }, 'g000003'))).toMatchObject({ ok: true });
    served = 'g000004';
    expect(await a.apply(bundle({ a: '/a/ "s:a /a/";\n' }, 'g000004'))).toMatchObject({ ok: true });
    // g000001 and g000002 were pruned; the shared file lives on in the generations kept
    expect(existsSync(join(dir, 'generations', 'g000001'))).toBe(false);
    expect(readFileSync(join(dir, 'current', 'conf.d/path/a.conf'), 'utf8')).toBe('/a/ "s:a /a/";\n');
    expect(readFileSync(join(dir, 'current', 'generation.conf'), 'utf8')).toContain('g000004');
  });

  test('after a failed nginx -t the next generation still links from the live one, never from the failed one', async () => {
    const a = applier();
    served = 'g000001';
    await a.apply(bundle({ a: 'one\n' }, 'g000001'));
    failTest = true;
    expect(await a.apply(bundle({ a: 'two\n' }, 'g000002'))).toMatchObject({ ok: false, stage: 'test' });
    failTest = false;
    served = 'g000003';
    expect(await a.apply(bundle({ a: 'one\n' }, 'g000003'))).toMatchObject({ ok: true });
    expect(ino('g000003', 'conf.d/path/a.conf')).toBe(ino('g000001', 'conf.d/path/a.conf'));
    expect(readFileSync(join(dir, 'current', 'conf.d/path/a.conf'), 'utf8')).toBe('one\n');
  });

  test('a new applier (router restart) writes every file once, then links again', async () => {
    served = 'g000001';
    await applier().apply(bundle({ a: 'one\n' }, 'g000001'));
    const b = applier();
    served = 'g000002';
    await b.apply(bundle({ a: 'one\n' }, 'g000002'));
    expect(ino('g000002', 'conf.d/path/a.conf')).not.toBe(ino('g000001', 'conf.d/path/a.conf'));
    served = 'g000003';
    await b.apply(bundle({ a: 'one\n' }, 'g000003'));
    expect(ino('g000003', 'conf.d/path/a.conf')).toBe(ino('g000002', 'conf.d/path/a.conf'));
  });
});
