import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { registerRouteCommands } from '../../router/commands/route';
import { openStore } from '../../router/store/store';
import { type CliRun as Run, runCli } from '../support/cli';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function setup(routesYaml?: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appgw-route-cli-'));
  dirs.push(dir);
  const dataDir = path.join(dir, 'data');
  const routesFile = routesYaml === undefined ? null : path.join(dir, 'routes.yaml');
  if (routesFile) fs.writeFileSync(routesFile, routesYaml!);
  const appgw = (...argv: string[]) => runCli((program) => registerRouteCommands(program, () => openStore({ dataDir }), () => routesFile), argv);
  const store = () => openStore({ dataDir });
  return { dir, dataDir, routesFile, appgw, store };
}

function expectUserError(r: Run, message: RegExp | string): void {
  expect(r.code).toBe(2);
  expect(r.out).toBe('');
  expect(r.err).toMatch(/^appgw: [^\n]+\n$/);
  if (typeof message === 'string') expect(r.err).toBe(`appgw: ${message}\n`);
  else expect(r.err).toMatch(message);
}

describe('appgw route', () => {
  test('create, update, list, delete; every change audited as cli', async () => {
    const { appgw, store } = setup();
    const c = await appgw('route', 'create', 'llm', '--path', '/llm', '--backend', '10.0.0.1:8000', '--backend', '10.0.0.2:8000', '--group', 'ml-team', '--description', 'team LLM');
    expect(c).toEqual({ code: 0, err: '', out: 'created route llm: path /llm/; backends 10.0.0.1:8000,10.0.0.2:8000; groups ml-team; enabled; strips its prefix\n' });
    const s = await appgw('route', 'create', 'chat', '--subdomain', 'chat', '--disabled', '--no-strip-prefix');
    expect(s.out).toBe('created route chat: subdomain chat; backends none (answers 503 until one is added); groups none (any signed-in user); disabled; keeps its prefix\n');

    const u = await appgw('route', 'update', 'llm', '--remove-backend', '10.0.0.1:8000', '--add-backend', 'backend.internal:9000', '--add-group', 'partners', '--no-strip-prefix');
    expect(u.code).toBe(0);
    expect(u.out).toBe('updated route llm: path /llm/; backends 10.0.0.2:8000,backend.internal:9000; groups ml-team,partners; enabled; keeps its prefix\n');
    expect((await appgw('route', 'update', 'chat', '--enable', '--path', '/chat/', '--description', 'moved')).out).toMatch(/^updated route chat: path \/chat\/; .*; enabled; keeps its prefix\n$/);
    expect((await appgw('route', 'update', 'llm', '--clear-backends', '--strip-prefix')).out).toMatch(/backends none .*strips its prefix/);

    const list = await appgw('route', 'list');
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/^NAME\s+SOURCE\s+STATUS\s+AT\s+BACKENDS\s+LIVE\s+GROUPS\s+NOTE\n/);
    expect(list.out).toMatch(/\nchat\s+store\s+Unknown\s+\/chat\/\s+-\s+-\s+-\s+moved\n/);
    expect(list.out).toMatch(/\nllm\s+store\s+Unknown\s+\/llm\/\s+-\s+-\s+ml-team,partners\s+team LLM\n/);
    expect(list.out).toContain('status Unknown: the router has not written DATA_DIR/status.json');
    expect(list.out).toContain('routes can also be defined in a routes file (ROUTES_FILE); none is configured');
    const json = JSON.parse((await appgw('route', 'list', '--json')).out);
    expect(json.routes.map((r: { name: string }) => r.name)).toEqual(['chat', 'llm']);
    expect(json.routes[1]).toMatchObject({ source: 'store', read_only: false, allowed_groups: ['ml-team', 'partners'], strip_prefix: true });

    expect((await appgw('route', 'delete', 'chat')).out).toBe('deleted route chat\n');
    const st = store();
    expect(st.listRoutes().map((r) => r.name)).toEqual(['llm']);
    const audit = st.listAudit({ limit: 10 });
    expect(audit.map((a) => [a.actor, a.action, a.target])).toEqual([
      ['cli', 'route.remove', 'chat'],
      ['cli', 'route.update', 'llm'],
      ['cli', 'route.update', 'chat'],
      ['cli', 'route.update', 'llm'],
      ['cli', 'route.create', 'chat'],
      ['cli', 'route.create', 'llm'],
    ]);
    st.close();
  });

  test('user errors are one line with exit code 2 and change nothing', async () => {
    const { appgw, store } = setup();
    await appgw('route', 'create', 'llm', '--path', '/llm/');
    expectUserError(await appgw('route', 'create', 'x'), 'give --path /prefix/ or --subdomain label');
    expectUserError(await appgw('route', 'create', 'x', '--path', '/x/', '--subdomain', 'x'), 'give one of --path and --subdomain, not both');
    expectUserError(await appgw('route', 'create', 'llm', '--path', '/other/'), 'route "llm" already exists; change it with: appgw route update llm');
    expectUserError(await appgw('route', 'create', 'copy', '--path', '/llm/'), /path \/llm\//);
    expectUserError(await appgw('route', 'create', 'Bad', '--path', '/bad/'), /route name "Bad" must match/);
    expectUserError(await appgw('route', 'create', 'svc', '--path', '/service/'), /reserved for the gateway/);
    expectUserError(await appgw('route', 'create', 'x', '--path', '/x/', '--backend', 'no-port'), /backend "no-port" must be host:port/);
    expectUserError(await appgw('route', 'update', 'nope', '--disable'), /route "nope" does not exist; create it with: appgw route create nope/);
    expectUserError(await appgw('route', 'update', 'llm', '--remove-backend', '10.9.9.9:1'), 'route llm has no backend "10.9.9.9:1"');
    expectUserError(await appgw('route', 'update', 'llm', '--remove-group', 'ghosts'), 'route llm does not allow group "ghosts"');
    expectUserError(await appgw('route', 'update', 'llm', '--enable', '--disable'), 'give one of --enable and --disable, not both');
    expectUserError(await appgw('route', 'delete', 'nope'), 'route "nope" does not exist');
    const st = store();
    expect(st.listRoutes()).toEqual([expect.objectContaining({ name: 'llm', path: '/llm/', backends: [] })]);
    st.close();
  });

  test('routes of the routes file are listed read-only and cannot be changed here', async () => {
    const { appgw, routesFile } = setup('routes:\n  - name: filed\n    path: /filed/\n    backends: ["10.0.0.9:80"]\n    allowed_groups: [ops]\n');
    const ro = `route filed is defined in the routes file ${routesFile}; edit it there`;
    expectUserError(await appgw('route', 'create', 'filed', '--path', '/x/'), ro);
    expectUserError(await appgw('route', 'update', 'filed', '--disable'), ro);
    expectUserError(await appgw('route', 'delete', 'filed'), ro);
    const list = await appgw('route', 'list');
    expect(list.out).toMatch(/\nfiled\s+file\s+Unknown\s+\/filed\/\s+10\.0\.0\.9:80\s+-\s+ops\s*\n/);
    expect(list.out).toContain(`routes with source "file" come from the routes file ${routesFile} (ROUTES_FILE) and are read-only here: edit that file`);
  });

  test('a routes file that cannot be used is reported by list', async () => {
    const { appgw } = setup('routes: [unclosed\n');
    const list = await appgw('route', 'list');
    expect(list.code).toBe(0);
    expect(list.out).toContain('no static routes');
    expect(list.out).toMatch(/the routes file cannot be used: .*routes\.yaml:\d+: /);
  });
});
