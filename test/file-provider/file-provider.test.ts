import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryLogger } from '../../router/log';
import type { ProviderState, Rejection, Snapshot } from '../../router/model/types';
import { FileProvider } from '../../router/providers/file-provider';

type Emitted = { state: ProviderState; rejections: Rejection[] };

/** Polls `cond` until it holds; fails with `what` after `timeoutMs`. */
async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const route = (name: string, port = 8001) => `  - { name: ${name}, path: /${name}/, backends: ["127.0.0.1:${port}"] }\n`;
const routesFile = (...names: string[]) => `routes:\n${names.map((n) => route(n)).join('')}`;

function names(e: Emitted | undefined): string[] {
  if (!e || e.state.kind !== 'ready') throw new Error(`expected a ready state, got ${JSON.stringify(e)}`);
  return e.state.snapshot.static.map((r) => r.name);
}

describe('FileProvider', () => {
  let dir: string;
  let file: string;
  let log: ReturnType<typeof memoryLogger>;
  const started: FileProvider[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'appgw-file-provider-'));
    file = join(dir, 'routes.yaml');
    log = memoryLogger();
  });

  afterEach(async () => {
    for (const p of started.splice(0)) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function startProvider(path = file, options = {}): Promise<{ provider: FileProvider; emits: Emitted[] }> {
    const provider = new FileProvider(path, log, { debounceMs: 20, dirPollMs: 20, ...options });
    started.push(provider);
    const emits: Emitted[] = [];
    await provider.start((state, rejections) => emits.push({ state, rejections }));
    return { provider, emits };
  }

  const last = <T>(xs: T[]) => xs[xs.length - 1];
  const warnings = () => log.lines.filter((l) => l.level === 'warn');
  const reads = () => log.lines.filter((l) => l.msg === 'routes file read').length;

  it('emits a complete snapshot before start() resolves when the file exists', async () => {
    writeFileSync(file, routesFile('llm', 'web'));
    const { provider, emits } = await startProvider();
    expect(emits).toHaveLength(1);
    expect(names(emits[0])).toEqual(['llm', 'web']);
    expect(emits[0]!.state).toMatchObject({ kind: 'ready', degradedSince: null, error: null });
    expect(emits[0]!.rejections).toEqual([]);
    expect(provider.status()).toMatchObject({ name: 'file', state: 'ok', lastError: null, degradedSince: null });
    expect(provider.status().lastSuccess).not.toBeNull();
    expect(provider.name).toBe('file');
  });

  it('an empty file is an authoritative empty snapshot, not pending', async () => {
    writeFileSync(file, '# no routes yet\n');
    const { provider, emits } = await startProvider();
    expect(emits).toHaveLength(1);
    expect(emits[0]!.state).toMatchObject({ kind: 'ready', snapshot: { static: [], ephemeral: [], bindings: [], tcp: [] } as Snapshot });
    expect(provider.status().state).toBe('ok');
  });

  it('emits the rejected entries with the snapshot and shows them in status', async () => {
    writeFileSync(file, `routes:\n${route('good')}  - { name: Bad, path: /bad/ }\n`);
    const { provider, emits } = await startProvider();
    expect(names(emits[0])).toEqual(['good']);
    expect(emits[0]!.rejections).toEqual([{ provider: 'file', source: `${file}: routes[1] (name "Bad")`, reason: expect.stringMatching(/route name/) }]);
    expect(provider.status().rejections).toEqual(emits[0]!.rejections);
    expect(provider.status().state).toBe('ok');
  });

  it('emits a new snapshot within 1 s of an edit (default timings)', async () => {
    writeFileSync(file, routesFile('a'));
    const { emits } = await startProvider(file, { debounceMs: undefined, dirPollMs: undefined });
    writeFileSync(file, routesFile('a', 'b'));
    await waitFor(() => emits.length === 2, 'the edit to be emitted', 1000);
    expect(names(emits[1])).toEqual(['a', 'b']);
  });

  it('debounces a burst of writes into few reads that end with the last content', async () => {
    writeFileSync(file, routesFile('a'));
    const { emits } = await startProvider();
    for (let i = 0; i < 20; i++) writeFileSync(file, routesFile('a', `b${i}`));
    await waitFor(() => emits.length > 1 && names(last(emits)).includes('b19'), 'the last write to be emitted');
    expect(emits.length).toBeLessThanOrEqual(4);
  });

  it('keeps the last good view through invalid YAML, reports it once, and recovers on a good save', async () => {
    writeFileSync(file, routesFile('a'));
    const { provider, emits } = await startProvider();

    writeFileSync(file, 'routes:\n  - name: a\n   path: /a/\n');
    await waitFor(() => provider.status().state === 'degraded', 'the provider to be degraded');
    const status = provider.status();
    expect(status.lastError).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:3: `));
    expect(status.degradedSince).not.toBeNull();
    expect(status.rejections).toEqual([]);
    expect(emits).toHaveLength(1);
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]!.fields).toMatchObject({ component: 'provider', provider: 'file', file, error: status.lastError });

    // The same problem saved again is not warned about again.
    const readsBefore = reads();
    writeFileSync(file, 'routes:\n  - name: a\n   path: /a/\n\n');
    await waitFor(() => reads() > readsBefore, 'the second broken save to be read');
    expect(provider.status().lastError).toBe(status.lastError);
    expect(warnings()).toHaveLength(1);

    writeFileSync(file, 'routes: [\n');
    await waitFor(() => provider.status().lastError !== status.lastError, 'the new error to be seen');
    expect(warnings()).toHaveLength(2);
    expect(provider.status().degradedSince).toBe(status.degradedSince);
    expect(emits).toHaveLength(1);

    writeFileSync(file, routesFile('a', 'c'));
    await waitFor(() => emits.length === 2, 'the recovery to be emitted');
    expect(names(emits[1])).toEqual(['a', 'c']);
    expect(provider.status()).toMatchObject({ state: 'ok', lastError: null, degradedSince: null });
  });

  it('follows atomic saves (write a temporary file, rename it over the original), again and again', async () => {
    writeFileSync(file, routesFile('a'));
    const { emits } = await startProvider();
    for (const [i, name] of ['b', 'c', 'd'].entries()) {
      const tmp = join(dir, `.routes.yaml.${i}.swp`);
      writeFileSync(tmp, routesFile(name));
      renameSync(tmp, file);
      await waitFor(() => emits.length === i + 2, `atomic save ${i + 1} to be emitted`, 1000);
      expect(names(last(emits))).toEqual([name]);
    }
  });

  it('is pending and says so while the file does not exist, then loads it once created', async () => {
    const { provider, emits } = await startProvider();
    expect(emits).toEqual([]);
    expect(provider.status()).toMatchObject({ state: 'degraded', lastSuccess: null });
    expect(provider.status().lastError).toMatch(/does not exist \(yet\); nothing is routed from it until it is created/);
    expect(warnings()).toHaveLength(1);

    writeFileSync(file, routesFile('late'));
    await waitFor(() => emits.length === 1, 'the created file to be emitted');
    expect(names(emits[0])).toEqual(['late']);
    expect(provider.status()).toMatchObject({ state: 'ok', lastError: null });
  });

  it('keeps the last good view when the file is removed, and recovers when it is back', async () => {
    writeFileSync(file, routesFile('a'));
    const { provider, emits } = await startProvider();
    unlinkSync(file);
    await waitFor(() => provider.status().state === 'degraded', 'the removal to be seen');
    expect(provider.status().lastError).toMatch(/was removed; the last good routes stay/);
    expect(emits).toHaveLength(1);
    writeFileSync(file, routesFile('a'));
    await waitFor(() => provider.status().state === 'ok', 'the file to be back');
    expect(emits).toHaveLength(2);
    expect(names(emits[1])).toEqual(['a']);
  });

  it('starts without an emit when the first read does not parse, and emits once it is fixed', async () => {
    writeFileSync(file, 'routes: {{\n');
    const { provider, emits } = await startProvider();
    expect(emits).toEqual([]);
    expect(provider.status().state).toBe('degraded');
    writeFileSync(file, routesFile('fixed'));
    await waitFor(() => emits.length === 1, 'the fixed file to be emitted');
    expect(names(emits[0])).toEqual(['fixed']);
  });

  it('waits for a directory that does not exist yet', async () => {
    const sub = join(dir, 'later');
    const { provider, emits } = await startProvider(join(sub, 'routes.yaml'));
    expect(provider.status().state).toBe('degraded');
    mkdirSync(sub);
    writeFileSync(join(sub, 'routes.yaml'), routesFile('x'));
    await waitFor(() => emits.length === 1, 'the file in the new directory to be emitted');
    writeFileSync(join(sub, 'routes.yaml'), routesFile('y'));
    await waitFor(() => emits.length === 2, 'an edit in the new directory to be emitted');
    expect(names(emits[1])).toEqual(['y']);
  });

  it('reads JSON when the file ends in .json', async () => {
    const jsonFile = join(dir, 'routes.json');
    writeFileSync(jsonFile, JSON.stringify({ routes: [{ name: 'j', subdomain: 'j' }] }));
    const { emits } = await startProvider(jsonFile);
    expect(names(emits[0])).toEqual(['j']);
  });

  it('ignores other files in the directory', async () => {
    writeFileSync(file, routesFile('a'));
    const { emits } = await startProvider();
    writeFileSync(join(dir, 'other.yaml'), 'garbage: [');
    writeFileSync(file, routesFile('b'));
    await waitFor(() => emits.length === 2, 'the edit to be emitted');
    expect(names(emits[1])).toEqual(['b']);
  });

  it('follows a Kubernetes ConfigMap update (the ..data symlink swapped)', async () => {
    mkdirSync(join(dir, '..v1'));
    writeFileSync(join(dir, '..v1', 'routes.yaml'), routesFile('v1'));
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync(join('..data', 'routes.yaml'), file);
    const { emits } = await startProvider();
    expect(names(emits[0])).toEqual(['v1']);

    mkdirSync(join(dir, '..v2'));
    writeFileSync(join(dir, '..v2', 'routes.yaml'), routesFile('v2'));
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    await waitFor(() => emits.length === 2, 'the swapped ConfigMap to be emitted');
    expect(names(emits[1])).toEqual(['v2']);
  });

  it('survives an emit callback that throws', async () => {
    writeFileSync(file, routesFile('a'));
    const provider = new FileProvider(file, log, { debounceMs: 20 });
    started.push(provider);
    let calls = 0;
    await provider.start(() => {
      calls++;
      throw new Error('boom');
    });
    writeFileSync(file, routesFile('b'));
    await waitFor(() => calls === 2, 'the second emit');
    expect(log.lines.filter((l) => l.level === 'error').map((l) => l.fields.error)).toEqual(['boom', 'boom']);
    expect(provider.status().state).toBe('ok');
  });

  it('emits nothing after stop()', async () => {
    writeFileSync(file, routesFile('a'));
    const { provider, emits } = await startProvider();
    await provider.stop();
    // A second provider on the same file tells when the change has surely been noticed.
    const { emits: witness } = await startProvider();
    writeFileSync(file, routesFile('b'));
    await waitFor(() => witness.length === 2, 'the witness to see the edit');
    expect(emits).toHaveLength(1);
  });
});
