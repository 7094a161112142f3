import { Command, CommanderError, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isUserError, errorMessage } from './errors';
import { registerIdentityCommands } from './commands/identity';
import { formatHealth, registerRouteCommands } from './commands/route';
import { registerExposeCommand } from './commands/expose';
import { formatCheck, runCheck } from './commands/check';
import { merge } from './model/merge';
import { formatInterval } from './model/validate';
import { loadTemplates, render } from './render/render';
import { loadConfig, serve } from './serve';
import { renderBaseFor } from './gateway';
import { openStore } from './store/store';
import { FileProvider } from './providers/file-provider';
import { memoryLogger } from './log';
import type { ProviderViews } from './model/merge';
import type { RouterStatus } from './router';

/** Pure. Formats the status file as the `appgw routes` table. */
export function formatRoutes(s: RouterStatus): string {
  const lines: string[] = [];
  lines.push(`router ${s.router} · generation ${s.generation ?? '-'} · data version ${s.dataVersion} · reloads ${s.reloads}`);
  if (s.lastFailure) lines.push(`LAST APPLY FAILED (${s.lastFailure.at}, ${s.lastFailure.generation}, ${s.lastFailure.ok ? '' : `${s.lastFailure.stage}: ${s.lastFailure.error.split('\n')[0]}`})`);
  for (const p of s.providers) lines.push(`provider ${p.name}: ${p.state}${p.degradedSince ? ` since ${new Date(p.degradedSince).toISOString()}` : ''}${p.lastError ? ` — ${p.lastError}` : ''}`);
  const rows = s.routes.map((r) => [r.kind, r.id, r.status, r.url, r.backends.join(',') || '-', r.provider]);
  const head = ['KIND', 'ROUTE', 'STATUS', 'URL', 'BACKENDS', 'PROVIDER'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  lines.push(fmt(head), ...rows.map(fmt));
  for (const r of s.routes) if (r.health) lines.push(`health ${formatHealth(r.id, r.health.path, formatInterval(r.health.interval_ms), r.health.backends)}`);
  for (const r of s.rejections) lines.push(`rejected (${r.provider}) ${r.source}: ${r.reason}`);
  return lines.join('\n');
}

/** Builds the `appgw` program. `io` lets tests capture output. */
export function buildProgram(io: { out: (s: string) => void; err: (s: string) => void } = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }): Command {
  const program = new Command('appgw');
  program
    .description('AI Application Gateway: the identity-aware front door to AI workloads')
    .option('--env-file <file>', 'read configuration from a runtime.env file (the environment wins)')
    .addOption(new Option('--appgw-env-file <file>').hideHelp())
    .configureOutput({ writeOut: io.out, writeErr: io.err, outputError: (s, w) => w(s) })
    .exitOverride()
    .showHelpAfterError(false);
  // bin/appgw renames --env-file (Node 20 would read it itself)
  const envFile = () => {
    const o = program.opts<{ envFile?: string; appgwEnvFile?: string }>();
    return o.envFile ?? o.appgwEnvFile;
  };

  program
    .command('serve')
    .description('run the router (with PROXY_MODE=local it starts and supervises a local nginx)')
    .option('--demo', 'also start a demo backend and use examples/routes.yaml (quick start)')
    .action(async (o: { demo?: boolean }) => {
      await serve({ envFile: envFile(), demo: o.demo, out: (l) => io.out(`${l}\n`) });
    });

  program
    .command('render')
    .description('print what would be rendered for the routes file, without applying it')
    .action(async () => {
      const config = loadConfig(envFile());
      const providers = config.routesFile ? [new FileProvider(config.routesFile, memoryLogger())] : [];
      const views: ProviderViews = new Map();
      for (const p of providers) await p.start((state, rejections) => views.set(p.name, { state, rejections }));
      for (const p of providers) await p.stop();
      const desired = merge(views);
      const bundle = render(loadTemplates(), { ...renderBaseFor(config, []), generation: 'g000000', static: desired.static, tcp: [] });
      for (const [file, content] of [...bundle].sort(([a], [b]) => (a < b ? -1 : 1))) io.out(`# ---- ${file}\n${content}\n`);
      io.out(`# ---- pushed data (not rendered): ${desired.ephemeral.length} task route(s)\n`);
      for (const r of desired.ephemeral) io.out(`#   /service/${r.id}/ -> ${r.backend.host}:${r.backend.port} (owner ${r.owner ?? '-'})\n`);
      for (const r of desired.rejections) io.err(`rejected (${r.provider}) ${r.source}: ${r.reason}\n`);
    });

  program
    .command('routes')
    .description('list routes with their status, as the running router last wrote them')
    .option('--json', 'print the status as JSON')
    .action((o: { json?: boolean }) => {
      const config = loadConfig(envFile());
      const file = join(config.dataDir, 'status.json');
      if (!existsSync(file)) {
        io.err(`appgw: no status in ${config.dataDir}: is the router running with this DATA_DIR? (start it with: appgw serve)\n`);
        process.exitCode = 3;
        return;
      }
      const status = JSON.parse(readFileSync(file, 'utf8')) as RouterStatus;
      io.out(o.json ? `${JSON.stringify(status, null, 2)}\n` : `${formatRoutes(status)}\n`);
    });

  const openConfiguredStore = () => {
    const config = loadConfig(envFile());
    return openStore({ dataDir: config.dataDir, tokenMaxDays: config.tokenMaxDays });
  };
  program
    .command('check')
    .description('check the configuration and connectivity: nginx -t, ClearML login and discovery, a request through the edge')
    .action(async () => {
      const config = loadConfig(envFile());
      const lines = await runCheck(config);
      io.out(`${formatCheck(lines)}\n`);
      const failed = lines.filter((l) => !l.ok).length;
      io.out(failed ? `${failed} check(s) failed\n` : 'all checks passed\n');
      if (failed) process.exitCode = 1;
    });

  registerIdentityCommands(program, openConfiguredStore);
  registerRouteCommands(program, openConfiguredStore, () => loadConfig(envFile()).routesFile);
  registerExposeCommand(program, {
    client: () => {
      const { createClearmlClient } = require('./providers/clearml/api-client') as typeof import('./providers/clearml/api-client');
      return createClearmlClient(loadConfig(envFile()));
    },
  });
  return program;
}

/** Runs the CLI; returns the exit code. User errors print one line, never a stack. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (isUserError(err)) {
      process.stderr.write(`appgw: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`appgw: internal error: ${errorMessage(err)}\n${(err as Error).stack ?? ''}\n`);
    return 1;
  }
}
