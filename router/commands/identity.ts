import type { Command } from 'commander';
import { collect, storeAction, table, type Io } from './cli-support';
import { parseDuration } from '../config';
import { UserError } from '../errors';
import { show } from '../model/validate';
import { CLI_ACTOR, type SharePolicy, type ShareSubject, type Store } from '../store/store';
import { type CreatedToken, type TokenView, createToken, listTokens, parseExpiresIn, revokeToken, rotateToken } from '../store/tokens';

/**
 * `appgw token|user|group|share|audit`: identity administration from the command line. Every
 * mutation is audited with the actor `cli`. A UserError prints one line and exits with its code (2).
 */

/** Tables print nothing when there are no rows. */
const rowsTable = (headers: string[], rows: string[][]) => table(headers, rows, false);

const iso = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));


const json = (v: unknown) => JSON.stringify(v, null, 2);

function required(opts: Record<string, unknown>, name: string, hint: string): string {
  const v = opts[name];
  if (typeof v !== 'string' || v === '') throw new UserError('USAGE', `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is required (${hint})`);
  return v;
}

function subject(opts: Record<string, unknown>): ShareSubject {
  const user = opts.user as string | undefined;
  const group = opts.group as string | undefined;
  if ((user === undefined) === (group === undefined)) throw new UserError('USAGE', 'give exactly one of --user USER and --group GROUP');
  return user !== undefined ? { user } : { group: group! };
}

function printCreated(io: Io, c: CreatedToken): void {
  io.out(c.token);
  io.out(`id:       ${c.record.id}`);
  io.out(`label:    ${c.record.label}`);
  io.out(`grants:   ${c.record.grantsAs}`);
  io.out(`expires:  ${iso(c.record.expiresAt)}`);
  io.out(`routes:   ${c.record.routes.length ? c.record.routes.join(',') : 'all (unscoped)'}`);
  io.out('Copy the token now: it is shown only this once; the gateway keeps only a hash of it.');
}

function tokenRow(t: TokenView): string[] {
  return [t.id, t.label, t.state, t.grantsAs, t.createdBy, iso(t.createdAt), iso(t.expiresAt), iso(t.lastUsedAt), t.routes.length ? t.routes.join(',') : '*'];
}

/** Registers the identity commands on `program`; `open` opens the store of the configured DATA_DIR. */
export function registerIdentityCommands(program: Command, open: () => Store): void {
  const by = CLI_ACTOR;

  // ---- token ---------------------------------------------------------------------------------
  const token = program.command('token').description('create, list, revoke and rotate gateway tokens');

  token
    .command('create')
    .description('create a token; it is printed once')
    .option('--label <label>', 'what the token is for (1-100 printable characters)')
    .option('--expires-in <duration>', 'lifetime such as 30d, 12h or 90m (at most TOKEN_MAX_DAYS)')
    .option('--as <principal>', 'user or service account the token grants access as')
    .option('--route <name>', 'limit the token to this static route (repeatable)', collect, [])
    .action(
      storeAction(open, (store, io, _args, opts) => {
        const label = required(opts, 'label', 'what the token is for, 1-100 printable characters');
        const expiresIn = required(opts, 'expiresIn', `a lifetime such as 30d, at most ${store.tokenMaxDays}d`);
        const lifetime = parseExpiresIn(expiresIn);
        if (!lifetime.ok) throw new UserError('USAGE', `--expires-in: ${lifetime.reason}`);
        const created = createToken(store, { label, expiresInMs: lifetime.value, as: (opts.as as string | undefined) ?? null, routes: opts.route as string[] }, by);
        printCreated(io, created);
      }),
    );

  token
    .command('list')
    .description('list tokens (never their secrets)')
    .option('--json', 'print JSON')
    .action(
      storeAction(open, (store, io, _args, opts) => {
        const tokens = listTokens(store);
        if (opts.json) return io.out(json(tokens));
        if (tokens.length === 0) return io.out('no tokens');
        io.out(rowsTable(['ID', 'LABEL', 'STATE', 'GRANTS-AS', 'CREATED-BY', 'CREATED', 'EXPIRES', 'LAST-USED', 'ROUTES'], tokens.map(tokenRow)));
      }),
    );

  token
    .command('revoke <id>')
    .description('revoke a token now')
    .action(
      storeAction(open, (store, io, [id]) => {
        const r = revokeToken(store, id!, by);
        io.out(r.changed ? `revoked token ${r.record.id} (${r.record.label})` : `token ${r.record.id} was already revoked`);
      }),
    );

  token
    .command('rotate <id>')
    .description('replace a token with a new one (same label, scope and user)')
    .option('--grace <duration>', 'keep the old token working this long, e.g. 10m (default: revoke it now)')
    .action(
      storeAction(open, (store, io, [id], opts) => {
        let grace = 0;
        if (opts.grace !== undefined) {
          const ms = parseDuration(String(opts.grace));
          if (ms === null || ms < 0) throw new UserError('USAGE', `--grace ${show(opts.grace)} must be a duration such as 10m or 30s`);
          grace = Math.ceil(ms / 1000);
        }
        const r = rotateToken(store, id!, by, grace);
        printCreated(io, r);
        io.out(grace > 0 ? `old token ${r.old.id} keeps working until ${iso(r.old.expiresAt)}` : `old token ${r.old.id} is revoked`);
      }),
    );

  // ---- user ----------------------------------------------------------------------------------
  const user = program.command('user').description('users and service accounts');

  user
    .command('add <id>')
    .description('add a user (or a service account with --service)')
    .option('--name <name>', 'display name')
    .option('--service', 'a service account (for programs)')
    .option('--admin', 'may use the admin API and web UI')
    .action(
      storeAction(open, (store, io, [id], opts) => {
        const u = store.addUser({ id: id!, name: opts.name as string | undefined, kind: opts.service ? 'service' : 'user', admin: opts.admin === true }, by);
        io.out(`added ${u.kind === 'service' ? 'service account' : 'user'} ${u.id}${u.admin ? ' (admin)' : ''}`);
      }),
    );

  user
    .command('list')
    .description('list users and service accounts')
    .option('--json', 'print JSON')
    .action(
      storeAction(open, (store, io, _args, opts) => {
        const users = store.listUsers();
        if (opts.json) return io.out(json(users));
        if (users.length === 0) return io.out('no users');
        io.out(rowsTable(['ID', 'NAME', 'KIND', 'ADMIN', 'GROUPS', 'CREATED'], users.map((u) => [u.id, u.name, u.kind, u.admin ? 'yes' : 'no', u.groups.join(',') || '-', iso(u.createdAt)])));
      }),
    );

  user
    .command('remove <id>')
    .description('remove a user; their tokens are revoked')
    .action(
      storeAction(open, (store, io, [id]) => {
        store.removeUser(id!, by);
        io.out(`removed user ${id}; tokens granting access as ${id} are revoked`);
      }),
    );

  // ---- group ---------------------------------------------------------------------------------
  const group = program.command('group').description('groups of users');

  group
    .command('create <name>')
    .option('--description <text>', 'what the group is for')
    .action(
      storeAction(open, (store, io, [name], opts) => {
        const g = store.createGroup({ name: name!, description: opts.description as string | undefined }, by);
        io.out(`created group ${g.name}`);
      }),
    );

  group.command('delete <name>').action(
    storeAction(open, (store, io, [name]) => {
      store.deleteGroup(name!, by);
      io.out(`deleted group ${name}`);
    }),
  );

  group
    .command('list')
    .option('--json', 'print JSON')
    .action(
      storeAction(open, (store, io, _args, opts) => {
        const groups = store.listGroups();
        if (opts.json) return io.out(json(groups));
        if (groups.length === 0) return io.out('no groups');
        io.out(rowsTable(['NAME', 'MEMBERS', 'DESCRIPTION'], groups.map((g) => [g.name, g.members.join(',') || '-', g.description])));
      }),
    );

  group.command('add-member <group> <user>').action(
    storeAction(open, (store, io, [g, u]) => {
      store.addMember(g!, u!, by);
      io.out(`added ${u} to group ${g}`);
    }),
  );

  group.command('remove-member <group> <user>').action(
    storeAction(open, (store, io, [g, u]) => {
      store.removeMember(g!, u!, by);
      io.out(`removed ${u} from group ${g}`);
    }),
  );

  // ---- share ---------------------------------------------------------------------------------
  const share = program.command('share').description('who may reach an ephemeral task besides its owner');
  const shareOpts = (c: Command) =>
    c.option('--task <id>', 'task id').option('--user <user>', 'share with this user').option('--group <group>', 'share with this group');

  shareOpts(share.command('add')).action(
    storeAction(open, (store, io, _args, opts) => {
      const task = required(opts, 'task', 'the task id');
      const s = store.addShare(task, subject(opts), by);
      io.out(`shared task ${s.taskId} with ${s.user !== null ? `user ${s.user}` : `group ${s.group}`}`);
    }),
  );

  shareOpts(share.command('remove')).action(
    storeAction(open, (store, io, _args, opts) => {
      const task = required(opts, 'task', 'the task id');
      const s = subject(opts);
      store.removeShare(task, s, by);
      io.out(`task ${task} is no longer shared with ${s.user !== undefined ? `user ${s.user}` : `group ${s.group}`}`);
    }),
  );

  share
    .command('list')
    .option('--task <id>', 'only this task')
    .option('--json', 'print JSON')
    .action(
      storeAction(open, (store, io, _args, opts) => {
        const shares = store.listShares(opts.task as string | undefined);
        if (opts.json) return io.out(json(shares));
        if (shares.length === 0) return io.out('no shares');
        io.out(
          rowsTable(
            ['TASK', 'POLICY', 'WITH', 'CREATED', 'BY'],
            shares.map((s) => [s.taskId, store.getSharePolicy(s.taskId), s.user !== null ? `user:${s.user}` : `group:${s.group}`, iso(s.createdAt), s.createdBy]),
          ),
        );
      }),
    );

  share
    .command('policy <policy>')
    .description('owner: only the owner (and shares); company: anyone of the same company')
    .option('--task <id>', 'task id')
    .action(
      storeAction(open, (store, io, [policy], opts) => {
        const task = required(opts, 'task', 'the task id');
        if (policy !== 'owner' && policy !== 'company') throw new UserError('USAGE', `policy ${show(policy)} must be owner or company`);
        store.setSharePolicy(task, policy as SharePolicy, by);
        io.out(`task ${task} policy: ${policy}`);
      }),
    );

  // ---- audit ---------------------------------------------------------------------------------
  program
    .command('audit')
    .description('recent admin actions, newest first')
    .option('--limit <n>', 'how many rows (1-10000)', '50')
    .option('--json', 'print JSON')
    .action(
      storeAction(open, (store, io, _args, opts) => {
        const raw = String(opts.limit);
        if (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > 10_000) throw new UserError('USAGE', `--limit ${show(raw)} must be a whole number from 1 to 10000`);
        const rows = store.listAudit({ limit: Number(raw) });
        if (opts.json) return io.out(json(rows));
        if (rows.length === 0) return io.out('no audit entries');
        io.out(rowsTable(['TIME', 'ACTOR', 'ACTION', 'TARGET', 'CLIENT', 'DETAIL'], rows.map((r) => [iso(r.ts), r.actor, r.action, r.target, r.client ?? '-', JSON.stringify(r.detail)])));
      }),
    );
}
