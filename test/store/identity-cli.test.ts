import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { registerIdentityCommands } from '../../router/commands/identity';
import { openStore } from '../../router/store/store';
import { parseToken, verifyToken } from '../../router/store/tokens';
import { type CliRun as Run, runCli } from '../support/cli';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** `appgw` with the identity commands, on a temp DATA_DIR. */
function cli(dataDir: string, tokenMaxDays = 90) {
  return (...argv: string[]) => runCli((program) => registerIdentityCommands(program, () => openStore({ dataDir, tokenMaxDays })), argv);
}

function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appgw-cli-'));
  dirs.push(dir);
  return { dir, appgw: cli(path.join(dir, 'data')) };
}

/** One line on stderr, nothing on stdout, exit code 2. */
function expectUserError(r: Run, message: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.out).toBe('');
  expect(r.err).toMatch(/^appgw: [^\n]+\n$/);
  expect(r.err).toMatch(message);
}

describe('appgw token', () => {
  it('create prints the token once with id and expiry; list never shows a secret; revoke works', async () => {
    const { dir, appgw } = setup();
    expect((await appgw('user', 'add', 'alice')).out).toBe('added user alice\n');
    const c = await appgw('token', 'create', '--label', 'my laptop', '--expires-in', '30d', '--as', 'alice', '--route', 'llm', '--route', 'embed');
    expect(c.code).toBe(0);
    expect(c.err).toBe('');
    const lines = c.out.split('\n');
    const token = lines[0]!;
    const parsed = parseToken(token);
    if (!parsed.ok) throw new Error(parsed.reason);
    expect(c.out).toContain(`id:       ${parsed.value.id}`);
    expect(c.out).toMatch(/expires:  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/);
    expect(c.out).toContain('routes:   embed,llm');
    expect(c.out.split(parsed.value.secret)).toHaveLength(2);

    const store = openStore({ dataDir: path.join(dir, 'data') });
    expect(verifyToken(store, token, Date.now())).toMatchObject({ ok: true, value: { principal: 'alice' } });
    store.close();

    const list = await appgw('token', 'list');
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/^ID\s+LABEL\s+STATE\s+GRANTS-AS\s+CREATED-BY\s+CREATED\s+EXPIRES\s+LAST-USED\s+ROUTES\n/);
    expect(list.out).toContain('my laptop');
    expect(list.out).toMatch(/active\s+alice\s+cli/);
    const json = await appgw('token', 'list', '--json');
    const views = JSON.parse(json.out) as Array<Record<string, unknown>>;
    expect(views).toEqual([expect.objectContaining({ id: parsed.value.id, label: 'my laptop', grantsAs: 'alice', createdBy: 'cli', state: 'active', routes: ['embed', 'llm'] })]);
    for (const r of [list, json, await appgw('audit', '--json'), await appgw('audit')]) expect(r.out).not.toContain(parsed.value.secret);

    expect((await appgw('token', 'revoke', parsed.value.id)).out).toBe(`revoked token ${parsed.value.id} (my laptop)\n`);
    expect((await appgw('token', 'revoke', parsed.value.id)).out).toBe(`token ${parsed.value.id} was already revoked\n`);
    expect((await appgw('token', 'list')).out).toMatch(/revoked\s+alice/);
  });

  it('rotate prints a new token; --grace keeps the old one working for a while', async () => {
    const { appgw } = setup();
    await appgw('user', 'add', 'ci-bot', '--service');
    const first = (await appgw('token', 'create', '--label', 'ci', '--expires-in', '12h', '--as', 'ci-bot')).out.split('\n')[0]!;
    const id = first.split('_')[1]!;
    const r = await appgw('token', 'rotate', id, '--grace', '10m');
    expect(r.code).toBe(0);
    const second = r.out.split('\n')[0]!;
    expect(parseToken(second).ok).toBe(true);
    expect(second).not.toBe(first);
    expect(r.out).toMatch(new RegExp(`old token ${id} keeps working until \\d{4}-`));
    const r2 = await appgw('token', 'rotate', second.split('_')[1]!);
    expect(r2.out).toContain(`old token ${second.split('_')[1]} is revoked`);
  });

  it.each<[string, string[], RegExp]>([
    ['a missing label', ['token', 'create', '--expires-in', '30d', '--as', 'alice'], /--label is required/],
    ['a missing expiry', ['token', 'create', '--label', 'x', '--as', 'alice'], /--expires-in is required.*90d/],
    ['a bad expiry', ['token', 'create', '--label', 'x', '--expires-in', 'forever', '--as', 'alice'], /--expires-in: lifetime "forever" must look like 30d/],
    ['an expiry beyond TOKEN_MAX_DAYS', ['token', 'create', '--label', 'x', '--expires-in', '365d', '--as', 'alice'], /365 days is beyond TOKEN_MAX_DAYS \(90 days\)/],
    ['no --as from the CLI', ['token', 'create', '--label', 'x', '--expires-in', '30d'], /--as USER/],
    ['an unknown principal', ['token', 'create', '--label', 'x', '--expires-in', '30d', '--as', 'bob'], /user "bob" does not exist; add it first with: appgw user add bob/],
    ['a label with a newline', ['token', 'create', '--label', 'a\nb', '--expires-in', '30d', '--as', 'alice'], /control/],
    ['revoking an unknown token', ['token', 'revoke', 'abcdefghijkl'], /token abcdefghijkl does not exist/],
    ['revoking a malformed id', ['token', 'revoke', 'x\ny'], /token id .* must be the id shown by appgw token list/],
    ['rotating with a bad grace', ['token', 'rotate', 'abcdefghijkl', '--grace', 'soon'], /--grace "soon" must be a duration/],
  ])('refuses %s with one line and exit code 2', async (_name, argv, message) => {
    const { appgw } = setup();
    await appgw('user', 'add', 'alice');
    expectUserError(await appgw(...argv), message);
    expect(JSON.parse((await appgw('token', 'list', '--json')).out)).toEqual([]);
  });
});

describe('appgw user, group, share, audit', () => {
  it('manages users and groups and lists them', async () => {
    const { appgw } = setup();
    expect((await appgw('user', 'add', 'root', '--admin', '--name', 'Root')).out).toBe('added user root (admin)\n');
    expect((await appgw('user', 'add', 'ci-bot', '--service')).out).toBe('added service account ci-bot\n');
    expect((await appgw('group', 'create', 'ml-team', '--description', 'ML people')).out).toBe('created group ml-team\n');
    expect((await appgw('group', 'add-member', 'ml-team', 'ci-bot')).out).toBe('added ci-bot to group ml-team\n');
    const users = await appgw('user', 'list');
    expect(users.out).toMatch(/^ID\s+NAME\s+KIND\s+ADMIN\s+GROUPS\s+CREATED\n/);
    expect(users.out).toMatch(/ci-bot\s+ci-bot\s+service\s+no\s+ml-team/);
    expect(users.out).toMatch(/root\s+Root\s+user\s+yes\s+-/);
    expect(JSON.parse((await appgw('group', 'list', '--json')).out)).toEqual([expect.objectContaining({ name: 'ml-team', description: 'ML people', members: ['ci-bot'] })]);
    expect((await appgw('group', 'remove-member', 'ml-team', 'ci-bot')).code).toBe(0);
    expect((await appgw('group', 'delete', 'ml-team')).out).toBe('deleted group ml-team\n');
    expect((await appgw('group', 'list')).out).toBe('no groups\n');
    expect((await appgw('user', 'remove', 'ci-bot')).code).toBe(0);
    expectUserError(await appgw('user', 'remove', 'root'), /last admin/);
    expectUserError(await appgw('user', 'add', 'root'), /user "root" already exists/);
    expectUserError(await appgw('user', 'add', 'bad user'), /user "bad user" must match/);
    expectUserError(await appgw('group', 'add-member', 'nope', 'root'), /group "nope" does not exist/);
  });

  it('shares tasks and sets their policy', async () => {
    const { appgw } = setup();
    const task = '0123456789abcdef0123456789abcdef';
    await appgw('group', 'create', 'ml-team');
    expect((await appgw('share', 'add', '--task', task, '--user', 'alice')).out).toBe(`shared task ${task} with user alice\n`);
    expect((await appgw('share', 'add', '--task', task, '--group', 'ml-team')).out).toBe(`shared task ${task} with group ml-team\n`);
    expect((await appgw('share', 'policy', '--task', task, 'company')).out).toBe(`task ${task} policy: company\n`);
    const list = await appgw('share', 'list', '--task', task);
    expect(list.out).toMatch(/^TASK\s+POLICY\s+WITH\s+CREATED\s+BY\n/);
    expect(list.out).toMatch(/company\s+group:ml-team/);
    expect(list.out).toMatch(/company\s+user:alice/);
    expect((await appgw('share', 'remove', '--task', task, '--user', 'alice')).code).toBe(0);
    expect(JSON.parse((await appgw('share', 'list', '--json')).out)).toEqual([expect.objectContaining({ taskId: task, group: 'ml-team', user: null })]);
    expectUserError(await appgw('share', 'add', '--task', task), /exactly one of --user USER and --group GROUP/);
    expectUserError(await appgw('share', 'add', '--task', task, '--user', 'a', '--group', 'ml-team'), /exactly one/);
    expectUserError(await appgw('share', 'add', '--user', 'a'), /--task is required/);
    expectUserError(await appgw('share', 'add', '--task', 'x; rm -rf /', '--user', 'a'), /task id .* must match/);
    expectUserError(await appgw('share', 'policy', '--task', task, 'everyone'), /policy "everyone" must be owner or company/);
  });

  it('audits every mutation with actor cli, newest first; --limit and --json work', async () => {
    const { appgw } = setup();
    await appgw('user', 'add', 'alice');
    await appgw('group', 'create', 'g');
    await appgw('group', 'add-member', 'g', 'alice');
    await appgw('token', 'create', '--label', 'x', '--expires-in', '1h', '--as', 'alice');
    await appgw('user', 'add', 'alice'); // refused: not audited
    const rows = JSON.parse((await appgw('audit', '--json')).out) as Array<{ actor: string; action: string; target: string }>;
    expect(rows.map((r) => [r.actor, r.action])).toEqual([
      ['cli', 'token.create'],
      ['cli', 'group.add-member'],
      ['cli', 'group.create'],
      ['cli', 'user.add'],
    ]);
    const text = await appgw('audit', '--limit', '2');
    expect(text.out.trim().split('\n')).toHaveLength(3);
    expect(text.out).toMatch(/^TIME\s+ACTOR\s+ACTION\s+TARGET\s+CLIENT\s+DETAIL\n/);
    expectUserError(await appgw('audit', '--limit', '0'), /--limit "0" must be a whole number from 1 to 10000/);
    expectUserError(await appgw('audit', '--limit', 'lots'), /--limit/);
  });
});

describe('appgw with a broken store', () => {
  it('prints one STORE_UNREADABLE line naming the file and exits 2, leaving the file as it was', async () => {
    const { dir, appgw } = setup();
    const data = path.join(dir, 'data');
    fs.mkdirSync(data);
    const file = path.join(data, 'appgw.db');
    fs.writeFileSync(file, 'garbage '.repeat(1000));
    const r = await appgw('token', 'list');
    expectUserError(r, new RegExp(`the store ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} cannot be used`));
    expect(fs.readFileSync(file, 'utf8')).toBe('garbage '.repeat(1000));
  });
});
