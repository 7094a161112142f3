import type { Command } from 'commander';
import { type NetworkInterfaceInfo, networkInterfaces } from 'node:os';
import { UserError } from '../errors';
import { checkEndpointName, checkHost, checkPort, checkTaskId } from '../model/validate';
import { type ClearmlClient, ClearmlError } from '../providers/clearml/api-client';
import { EXTERNAL_SERVICE_TAG, RUNTIME_KEYS, isObject, runtimeKey } from '../providers/clearml/parse-task';

/**
 * `appgw expose`: asks the gateway to route a port of a ClearML task by writing what
 * `Task.request_external_endpoint()` of SDK 2.1 writes (clearml-protocol.md §1.4): the runtime keys
 * first, then the `external_service` system tag. Useful on open-source servers, where the SDK call
 * is behind the enterprise licence check (§1.2).
 */

export interface ExposeRequest {
  taskId: string;
  port: number;
  protocol: 'http' | 'tcp';
  /** Endpoint name; the default endpoint when absent (or the next free number, as the SDK does). */
  name?: string;
  /** The task's address; the first non-internal IPv4 of this host when absent. */
  address?: string;
}

export interface ExposeResult {
  taskId: string;
  protocol: 'http' | 'tcp';
  /** '' for the default endpoint. */
  endpoint: string;
  address: string;
  port: number;
  /** The runtime keys written, with their values. */
  written: Record<string, unknown>;
  tagAdded: boolean;
}

/** Pure. The first non-internal IPv4 address among `interfaces`, or null. */
export function defaultAddress(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string | null {
  for (const name of Object.keys(interfaces).sort()) {
    for (const i of interfaces[name] ?? []) if (i.family === 'IPv4' && !i.internal) return i.address;
  }
  return null;
}

function input<T>(c: { ok: true; value: T } | { ok: false; reason: string }): T {
  if (!c.ok) throw new UserError('INVALID_INPUT', c.reason);
  return c.value;
}

/**
 * Writes the runtime keys of one endpoint into the task (tasks.edit with the whole merged runtime,
 * as the SDK does), then adds the `external_service` system tag keeping the others. Throws a
 * UserError for bad input, an unknown task or an API failure.
 */
export async function exposeTask(client: ClearmlClient, req: ExposeRequest): Promise<ExposeResult> {
  const taskId = input(checkTaskId(req.taskId));
  const port = input(checkPort(req.port));
  if (req.protocol !== 'http' && req.protocol !== 'tcp') throw new UserError('INVALID_INPUT', `protocol ${JSON.stringify(req.protocol)} must be http or tcp`);
  const named = req.name === undefined ? null : input(checkEndpointName(req.name));
  const rawAddress = req.address ?? defaultAddress();
  if (rawAddress === null) throw new UserError('INVALID_INPUT', 'this host has no non-internal IPv4 address; give the task address with --address');
  const address = input(checkHost(rawAddress));

  let task: Record<string, unknown>;
  try {
    task = await client.getTaskById(taskId);
  } catch (e) {
    if (e instanceof ClearmlError && e.status === 400 && e.subcode === 101) throw new UserError('NOT_FOUND', `task ${taskId} does not exist on the ClearML server`);
    throw e;
  }
  const runtime: Record<string, unknown> = isObject(task.runtime) ? { ...task.runtime } : {};
  const portKey = req.protocol === 'http' ? RUNTIME_KEYS.httpPort : RUNTIME_KEYS.tcpPort;
  const addressKey = req.protocol === 'http' ? RUNTIME_KEYS.httpAddress : RUNTIME_KEYS.tcpAddress;

  // SDK 2.1: the default endpoint if free, else "1", "2", ...; asking again for the same port is a no-op
  let endpoint = named ?? '';
  if (named === null && runtime[portKey] !== undefined && String(runtime[portKey]) !== String(port)) {
    let i = 1;
    while (runtime[runtimeKey(portKey, String(i))] !== undefined && String(runtime[runtimeKey(portKey, String(i))]) !== String(port)) i++;
    endpoint = String(i);
  }
  const written: Record<string, unknown> = {
    [runtimeKey(RUNTIME_KEYS.service, endpoint)]: req.protocol === 'http' ? 'EXTERNAL' : 'EXTERNAL_TCP',
    [runtimeKey(addressKey, endpoint)]: address,
    [runtimeKey(portKey, endpoint)]: port,
  };
  if (req.protocol === 'tcp') written[runtimeKey(RUNTIME_KEYS.upstreamTaskPort, endpoint)] = port;
  await client.editTask({ task: taskId, force: true, runtime: { ...runtime, ...written } });

  const tags = Array.isArray(task.system_tags) ? task.system_tags.filter((t): t is string => typeof t === 'string') : [];
  const tagAdded = !tags.includes(EXTERNAL_SERVICE_TAG);
  if (tagAdded) await client.editTask({ task: taskId, force: true, system_tags: [...tags, EXTERNAL_SERVICE_TAG] });
  return { taskId, protocol: req.protocol, endpoint, address, port, written, tagAdded };
}

/** What `appgw expose` needs from the CLI: a ClearML client built from the configuration. */
export interface ExposeContext {
  client(): ClearmlClient;
}

/** Registers `appgw expose --task ID --port N [--protocol tcp] [--name NAME] [--address IP]`. */
export function registerExposeCommand(program: Command, ctx: ExposeContext): void {
  program
    .command('expose')
    .description('ask the gateway to route a port of a ClearML task (writes the runtime keys and the external_service tag, as the SDK does)')
    .option('--task <id>', 'ClearML task id (32 hex)')
    .option('--port <n>', 'port the task listens on')
    .option('--protocol <protocol>', 'http or tcp', 'http')
    .option('--name <name>', 'endpoint name ([a-z0-9_]); the default endpoint when omitted')
    .option('--address <ip>', "the task's address (default: this host's first non-internal IPv4)")
    .action(async (opts: { task?: string; port?: string; protocol: string; name?: string; address?: string }, cmd: Command) => {
      let root = cmd;
      while (root.parent) root = root.parent;
      const out = root.configureOutput().writeOut ?? ((s: string) => void process.stdout.write(s));
      try {
        if (!opts.task) throw new UserError('USAGE', '--task is required (the ClearML task id)');
        if (!opts.port) throw new UserError('USAGE', '--port is required (the port the task listens on)');
        if (!/^\d{1,5}$/.test(opts.port)) throw new UserError('USAGE', `--port ${JSON.stringify(opts.port)} must be a whole number 1-65535`);
        if (opts.protocol !== 'http' && opts.protocol !== 'tcp') throw new UserError('USAGE', `--protocol ${JSON.stringify(opts.protocol)} must be http or tcp`);
        const r = await exposeTask(ctx.client(), { taskId: opts.task, port: Number(opts.port), protocol: opts.protocol, name: opts.name, address: opts.address });
        const which = r.endpoint === '' ? `default ${r.protocol} endpoint` : `${r.protocol} endpoint "${r.endpoint}"`;
        const back = r.protocol === 'http' ? runtimeKey(RUNTIME_KEYS.endpoint, r.endpoint) : `${runtimeKey(RUNTIME_KEYS.tcpAddress, r.endpoint)}:${runtimeKey(RUNTIME_KEYS.tcpPort, r.endpoint)}`;
        out(`task ${r.taskId}: ${which} -> ${r.address}:${r.port} requested; the gateway writes ${back} into the task once it routes it\n`);
      } catch (err) {
        if (!(err instanceof UserError)) throw err;
        root.error(`appgw: ${err.message.replace(/[\r\n]+/g, ' ')}`, { exitCode: err.exitCode, code: `appgw.${err.code}` });
      }
    });
}
