import type { Command } from 'commander';
import { collect, storeAction, table, type Io } from './cli-support';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type RouteView, buildRouteViews, parseBackendText, tcpProbe } from '../api/admin-api';
import { UserError } from '../errors';
import type { HealthCheck, StaticRoute } from '../model/types';
import { HEALTH_CHECK, checkBackend, checkHealthInterval, checkHealthPath, formatBackend, formatInterval, show } from '../model/validate';
import { parseRoutesFile } from '../providers/routes-file';
import type { RouterStatus } from '../router';
import { CLI_ACTOR, must, type RouteInput, type Store, type StoredRoute } from '../store/store';

/**
 * `appgw route create|update|delete|list`: static routes kept in the store. The running router
 * picks a change up within about 100 ms (store provider) — no restart. Routes of the routes file
 * (ROUTES_FILE) are listed but read-only here. Every change is audited with the actor `cli`; a
 * UserError prints one line and exits with its code (2).
 */


/** Pure. One line describing a stored route. */
export function describeRoute(r: StoredRoute): string {
  const where = r.path !== null ? `path ${r.path}` : `subdomain ${r.subdomain}`;
  const backends = r.backends.length ? r.backends.map(formatBackend).join(',') : 'none (answers 503 until one is added)';
  const groups = r.allowedGroups.length ? r.allowedGroups.join(',') : 'none (any signed-in user)';
  const health = r.healthCheck ? `; health check GET ${r.healthCheck.path} every ${formatInterval(r.healthCheck.intervalMs)}` : '';
  return `${where}; backends ${backends}; groups ${groups}; ${r.enabled ? 'enabled' : 'disabled'}; ${r.stripPrefix ? 'strips its prefix' : 'keeps its prefix'}${health}`;
}

/**
 * The health check given by `--health-path`, `--health-interval` and (update) `--no-health-check`:
 * undefined when none of them is given, null to remove it. An interval alone changes the interval
 * of the health check `old` has.
 */
function healthCheckFrom(opts: Record<string, unknown>, old: HealthCheck | null, name: string | null): HealthCheck | null | undefined {
  const path = opts.healthPath as string | undefined;
  const interval = opts.healthInterval as string | undefined;
  if (opts.healthCheck === false) {
    if (path !== undefined || interval !== undefined) throw new UserError('USAGE', '--no-health-check cannot be combined with --health-path or --health-interval');
    return null;
  }
  if (path === undefined && interval === undefined) return undefined;
  if (path === undefined && !old) throw new UserError('USAGE', `--health-interval needs --health-path${name ? ` (route ${name} has no health check)` : ''}`);
  return {
    path: path === undefined ? old!.path : must(checkHealthPath(path)),
    intervalMs: interval === undefined ? (old?.intervalMs ?? HEALTH_CHECK.defaultIntervalMs) : must(checkHealthInterval(interval)),
  };
}

/** The routes file's static routes, or null (with why) when it is not set or not usable. */
function readFileRoutes(routesFile: string | null): { routes: StaticRoute[] | null; problem: string | null } {
  if (!routesFile) return { routes: null, problem: null };
  try {
    const parsed = parseRoutesFile(readFileSync(routesFile, 'utf8'), routesFile);
    return parsed.ok ? { routes: parsed.snapshot.static, problem: null } : { routes: null, problem: `${parsed.error.file}${parsed.error.line ? `:${parsed.error.line}` : ''}: ${parsed.error.reason}` };
  } catch (err) {
    return { routes: null, problem: `${routesFile} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
}

/** The status the running router last wrote beside the store (DATA_DIR/status.json), or null. */
function readStatus(store: Store): RouterStatus | null {
  const file = join(dirname(store.file), 'status.json');
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as RouterStatus;
  } catch {
    return null;
  }
}

function refuseFileRoute(name: string, routesFile: string | null, store: Store): void {
  const file = readFileRoutes(routesFile).routes ?? [];
  const live = readStatus(store)?.routes.some((r) => r.kind === 'static' && r.provider === 'file' && r.id === name) ?? false;
  if (file.some((r) => r.name === name) || live) {
    throw new UserError('CONFLICT', `route ${name} is defined in the routes file ${routesFile ?? '(ROUTES_FILE)'}; edit it there`);
  }
}

function where(opts: Record<string, unknown>): { path?: string | null; subdomain?: string | null } {
  const path = opts.path as string | undefined;
  const subdomain = opts.subdomain as string | undefined;
  if (path !== undefined && subdomain !== undefined) throw new UserError('USAGE', 'give one of --path and --subdomain, not both');
  if (path !== undefined) return { path, subdomain: null };
  if (subdomain !== undefined) return { subdomain, path: null };
  return {};
}

function statusRow(v: RouteView): string[] {
  const at = v.path ?? (v.subdomain !== null ? `${v.subdomain}.` : v.url ?? '-');
  const live = v.live_backends.length ? v.live_backends.join(',') : '-';
  return [v.name, v.source, v.status, at, v.backends.join(',') || '-', live, v.allowed_groups.join(',') || '-', v.problem ?? v.description];
}

/**
 * Pure. `llm: health check GET /health every 10s: 10.0.0.5:8000 up, 10.0.0.6:8000 down (status 503)`
 * (`appgw route list` and `appgw routes`).
 */
export function formatHealth(name: string, path: string, interval: string, backends: Array<{ backend: string; state: string; reason: string | null }>): string {
  const states = backends.map((b) => `${b.backend} ${b.state}${b.state === 'down' && b.reason ? ` (${b.reason})` : ''}`);
  return `${name}: health check GET ${path} every ${interval}${states.length ? `: ${states.join(', ')}` : ''}`;
}

/** Pure. The health line of a route of `appgw route list`. */
export function healthLine(v: RouteView): string {
  const hc = v.health_check!;
  return formatHealth(v.name, hc.path, hc.interval, v.backend_health ?? []);
}

/**
 * Registers `appgw route ...` on `program`. `open` opens the store of the configured DATA_DIR;
 * `routesFile` gives ROUTES_FILE (its routes are listed and refused for changes).
 */
export function registerRouteCommands(program: Command, open: () => Store, routesFile: () => string | null = () => null): void {
  const by = CLI_ACTOR;
  const route = program
    .command('route')
    .description('static routes (path or subdomain, backends, allowed groups); the running router applies changes without a restart');

  route
    .command('create <name>')
    .description('create a static route at /<path>/ or <subdomain>.<ROUTER_DOMAIN>')
    .option('--path <prefix>', 'path prefix such as /llm/')
    .option('--subdomain <label>', 'subdomain label such as llm')
    .option('--backend <host:port>', 'a backend (repeat for several; none: the route answers 503 until one is added)', collect)
    .option('--group <group>', 'a group whose members may use the route (repeat for several)', collect)
    .option('--description <text>', 'what the route is for')
    .option('--disabled', 'create it disabled (not served)')
    .option('--no-strip-prefix', 'pass the path prefix on to the backend (apps that know their base URL)')
    .option('--health-path <path>', 'check each backend with GET <path> (such as /health); failing backends are taken out until they pass')
    .option('--health-interval <duration>', 'how often to check (1s to 1h, default 10s); needs --health-path')
    .action(
      storeAction(open, (store, io, [name], opts) => {
        const at = where(opts);
        if (at.path === undefined && at.subdomain === undefined) throw new UserError('USAGE', 'give --path /prefix/ or --subdomain label');
        refuseFileRoute(name!, routesFile(), store);
        const input: RouteInput = {
          name: name!,
          ...at,
          backends: (opts.backend as string[] | undefined) ?? [],
          allowedGroups: (opts.group as string[] | undefined) ?? [],
          description: (opts.description as string | undefined) ?? '',
          enabled: !opts.disabled,
          stripPrefix: opts.stripPrefix !== false,
          healthCheck: healthCheckFrom(opts, null, null) ?? null,
        };
        const r = store.tx(() => {
          if (store.getRoute(name!)) throw new UserError('CONFLICT', `route ${show(name)} already exists; change it with: appgw route update ${name}`);
          return store.putRoute(input, by);
        });
        io.out(`created route ${r.name}: ${describeRoute(r)}`);
      }),
    );

  route
    .command('update <name>')
    .description('change a static route; options not given keep their value')
    .option('--path <prefix>', 'move the route to this path prefix')
    .option('--subdomain <label>', 'move the route to this subdomain')
    .option('--backend <host:port>', 'replace the backends with these (repeatable)', collect)
    .option('--add-backend <host:port>', 'add a backend (repeatable)', collect)
    .option('--remove-backend <host:port>', 'remove a backend (repeatable)', collect)
    .option('--clear-backends', 'remove every backend (the route answers 503)')
    .option('--group <group>', 'replace the allowed groups with these (repeatable)', collect)
    .option('--add-group <group>', 'allow a group (repeatable)', collect)
    .option('--remove-group <group>', 'stop allowing a group (repeatable)', collect)
    .option('--description <text>', 'what the route is for')
    .option('--enable', 'serve the route')
    .option('--disable', 'stop serving the route (kept in the store)')
    .option('--strip-prefix', 'strip the path prefix before proxying')
    .option('--no-strip-prefix', 'pass the path prefix on to the backend')
    .option('--health-path <path>', 'check each backend with GET <path>; failing backends are taken out until they pass')
    .option('--health-interval <duration>', 'how often to check (1s to 1h; default 10s)')
    .option('--no-health-check', 'remove the health check')
    .action(
      storeAction(open, (store, io, [name], opts) => {
        refuseFileRoute(name!, routesFile(), store);
        if (opts.enable && opts.disable) throw new UserError('USAGE', 'give one of --enable and --disable, not both');
        if (opts.clearBackends && (opts.backend || opts.addBackend)) throw new UserError('USAGE', '--clear-backends cannot be combined with --backend or --add-backend');
        const r = store.tx(() => {
          const old = store.getRoute(name!);
          if (!old) throw new UserError('NOT_FOUND', `route ${show(name)} does not exist; create it with: appgw route create ${name} --path /${name}/`);
          let backends: unknown[] = opts.clearBackends ? [] : ((opts.backend as string[] | undefined) ?? old.backends);
          for (const text of (opts.removeBackend as string[] | undefined) ?? []) {
            const gone = must(checkBackend(text));
            const before = backends.length;
            backends = backends.filter((x) => {
              const c = checkBackend(x);
              return !(c.ok && c.value.host === gone.host && c.value.port === gone.port);
            });
            if (backends.length === before) throw new UserError('NOT_FOUND', `route ${old.name} has no backend ${show(text)}`);
          }
          backends = [...backends, ...((opts.addBackend as string[] | undefined) ?? [])];
          let groups: string[] = (opts.group as string[] | undefined) ?? old.allowedGroups;
          for (const g of (opts.removeGroup as string[] | undefined) ?? []) {
            if (!groups.includes(g)) throw new UserError('NOT_FOUND', `route ${old.name} does not allow group ${show(g)}`);
            groups = groups.filter((x) => x !== g);
          }
          groups = [...groups, ...((opts.addGroup as string[] | undefined) ?? [])];
          const at = where(opts);
          const health = healthCheckFrom(opts, old.healthCheck, old.name);
          return store.putRoute(
            {
              name: old.name,
              path: at.path !== undefined || at.subdomain !== undefined ? at.path : old.path,
              subdomain: at.path !== undefined || at.subdomain !== undefined ? at.subdomain : old.subdomain,
              backends,
              allowedGroups: groups,
              description: (opts.description as string | undefined) ?? old.description,
              enabled: opts.enable ? true : opts.disable ? false : old.enabled,
              stripPrefix: typeof opts.stripPrefix === 'boolean' ? opts.stripPrefix : old.stripPrefix,
              healthCheck: health === undefined ? old.healthCheck : health,
            },
            by,
          );
        });
        io.out(`updated route ${r.name}: ${describeRoute(r)}`);
      }),
    );

  route
    .command('delete <name>')
    .description('delete a static route; its URL answers 404 from then on')
    .action(
      storeAction(open, (store, io, [name]) => {
        if (!store.getRoute(name!)) refuseFileRoute(name!, routesFile(), store);
        store.removeRoute(name!, by);
        io.out(`deleted route ${name}`);
      }),
    );

  route
    .command('list')
    .description('static routes with their status (Not in use, Pending, Routing) and live backends')
    .option('--json', 'print JSON')
    .action(
      storeAction(open, async (store, io, _args, opts) => {
        const file = routesFile();
        const fromFile = readFileRoutes(file);
        const status = readStatus(store);
        const live = new Set<string>();
        for (const r of status?.routes ?? []) if (r.kind === 'static') for (const b of r.backends) live.add(b);
        const reachable = new Set<string>();
        await Promise.all(
          [...live].map(async (b) => {
            const parsed = parseBackendText(b);
            if (parsed && (await tcpProbe(parsed))) reachable.add(b);
          }),
        );
        const views = buildRouteViews({ stored: store.listRoutes(), fileRoutes: fromFile.routes, status, reachable: status ? reachable : null, routesFile: file });
        if (opts.json) return io.out(JSON.stringify({ routes: views, routes_file: file }, null, 2));
        if (views.length === 0) io.out('no static routes');
        else io.out(table(['NAME', 'SOURCE', 'STATUS', 'AT', 'BACKENDS', 'LIVE', 'GROUPS', 'NOTE'], views.map(statusRow)));
        for (const v of views) if (v.health_check) io.out(healthLine(v));
        if (!status) io.out('status Unknown: the router has not written DATA_DIR/status.json (is it running with this DATA_DIR?)');
        if (file) io.out(`routes with source "file" come from the routes file ${file} (ROUTES_FILE) and are read-only here: edit that file`);
        else io.out('routes can also be defined in a routes file (ROUTES_FILE); none is configured');
        if (fromFile.problem) io.out(`the routes file cannot be used: ${fromFile.problem}`);
      }),
    );
}
