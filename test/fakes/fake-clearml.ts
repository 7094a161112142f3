import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A fake ClearML API server on node:http (127.0.0.1, port 0) with the wire format of
 * clearml-protocol.md §2.1/§2.5: the `{meta, data}` envelope, Basic login to a JWT-shaped token,
 * bearer or cookie auth, GET-with-body and POST, versioned and unversioned paths, and the task,
 * queue and user endpoints the router and the SDK use. Test controls take it down, slow it,
 * count calls, inject errors and interleave a concurrent write.
 */

export type FakeTask = Record<string, unknown> & {
  id: string;
  status: string;
  system_tags: string[];
  runtime: Record<string, unknown>;
};

export interface FakeUser {
  id: string;
  name: string;
  role: 'system' | 'root' | 'admin' | 'superuser' | 'user' | 'annotator' | 'guest';
  company: { id: string; name: string };
  accessKey: string;
  secretKey: string;
}

export interface FakeCall {
  endpoint: string;
  version: string | null;
  method: string;
  body: Record<string, unknown>;
  status: number;
}

export interface FakeOptions {
  /** Highest API version the server has; tasks.edit_runtime needs 2.34. */
  maxApiVersion?: string;
  /** Default token lifetime in seconds (auth.login `expiration_sec` overrides it). */
  tokenLifetimeSec?: number;
  cookieName?: string;
}

const SECRET = 'fake-clearml-token-secret';
const LIST_FIELDS = ['id', 'user', 'tags', 'system_tags', 'type', 'status', 'project', 'parent', 'execution.queue'];
const MAX_PAGE_SIZE = 500;

const hex32 = () => randomBytes(16).toString('hex');
const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly subcode: number,
    msg: string,
    readonly errorData: Record<string, unknown> = {},
  ) {
    super(msg);
  }
}

function get(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function set(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    if (typeof cur[part] !== 'object' || cur[part] === null) cur[part] = {};
    cur = cur[part] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

/** `only_fields` projection: nested fields come back nested; `id` is always returned. */
function project(task: Record<string, unknown>, fields: unknown): Record<string, unknown> {
  if (!Array.isArray(fields) || fields.length === 0) return structuredClone(task);
  const out: Record<string, unknown> = { id: task.id };
  for (const f of fields) {
    if (typeof f !== 'string') continue;
    const v = get(task, f);
    if (v !== undefined) set(out, f, v);
  }
  return structuredClone(out);
}

/** A list-field filter: plain values are OR-ed, `-x` excludes; an empty list is no condition. */
function listFilter(wanted: unknown): (actual: unknown) => boolean {
  const values = (Array.isArray(wanted) ? wanted : [wanted]).filter((v) => v !== null && v !== undefined).map(String);
  const include = new Set(values.filter((v) => !v.startsWith('-')));
  const exclude = new Set(values.filter((v) => v.startsWith('-')).map((v) => v.slice(1)));
  return (actual) => {
    const have = (Array.isArray(actual) ? actual : actual === undefined || actual === null ? [] : [actual]).map(String);
    if (include.size > 0 && !have.some((h) => include.has(h))) return false;
    return !have.some((h) => exclude.has(h));
  };
}

function compare(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === undefined || a === null) return -1;
  if (b === undefined || b === null) return 1;
  return (a as number | string) < (b as number | string) ? -1 : 1;
}

/** The fake server. Create with FakeClearml.start(). */
export class FakeClearml {
  readonly tasks = new Map<string, FakeTask>();
  readonly queues = new Map<string, { id: string; name: string }>();
  readonly users: FakeUser[] = [];
  readonly calls: FakeCall[] = [];
  /** When false, tasks.edit_runtime answers like an unknown endpoint (servers before 2.3). */
  editRuntimeEnabled = true;
  /** Delay before every answer, in ms. */
  delayMs = 0;
  /** Record every call in `calls` (the benchmark turns it off). */
  recordCalls = true;
  readonly maxApiVersion: string;
  readonly cookieName: string;
  private tokenLifetimeSec: number;
  private readonly issued: string[] = [];
  private readonly revoked = new Set<string>();
  private readonly failures: Array<{ endpoint: string; code: number; subcode: number; msg: string; times: number }> = [];
  private readonly interleaved: Array<{ endpoint: string; taskId?: string; write: () => void }> = [];
  private downMode: 'refuse' | '503' | null = null;
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private port = 0;
  private clock = 0;

  private constructor(options: FakeOptions) {
    this.maxApiVersion = options.maxApiVersion ?? '2.34';
    this.tokenLifetimeSec = options.tokenLifetimeSec ?? 30 * 24 * 3600;
    this.cookieName = options.cookieName ?? 'clearml_token_basic';
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  /** Starts a fake on 127.0.0.1 with a free port and one admin user (key `admin-key`, secret `admin-secret`). */
  static async start(options: FakeOptions = {}): Promise<FakeClearml> {
    const f = new FakeClearml(options);
    f.addUser({ id: 'u-admin', name: 'Admin', role: 'admin', accessKey: 'admin-key', secretKey: 'admin-secret' });
    await f.listen(0);
    return f;
  }

  /** Base URL, e.g. http://127.0.0.1:41234 */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    if (this.server.listening) {
      await new Promise<void>((r) => {
        this.server.close(() => r());
        this.server.closeAllConnections();
      });
    }
    for (const s of this.sockets) s.destroy();
  }

  // ---- test controls --------------------------------------------------------------------------

  addUser(u: Partial<FakeUser> & { id: string; accessKey: string; secretKey: string }): FakeUser {
    const user: FakeUser = { name: u.id, role: 'user', company: { id: 'c0ffee00c0ffee00c0ffee00c0ffee00', name: 'acme' }, ...u };
    this.users.push(user);
    return user;
  }

  /** Adds a task; defaults: running, tagged `external_service`, empty runtime, owned by u-admin. */
  addTask(t: Partial<FakeTask> = {}): FakeTask {
    const task: FakeTask = {
      id: hex32(),
      name: 'task',
      status: 'in_progress',
      system_tags: ['external_service'],
      tags: [],
      user: 'u-admin',
      company: 'c0ffee00c0ffee00c0ffee00c0ffee00',
      project: 'p0',
      type: 'training',
      runtime: {},
      execution: { queue: null },
      last_update: this.stamp(),
      ...structuredClone(t),
    } as FakeTask;
    this.tasks.set(task.id, task);
    return task;
  }

  /** Replaces fields of a stored task (as another client's write would). */
  updateTask(id: string, patch: Partial<FakeTask>): FakeTask {
    const t = this.task(id);
    Object.assign(t, structuredClone(patch), { last_update: this.stamp() });
    return t;
  }

  /** Merges keys into a task's runtime, as the SDK's read-modify-write ends up doing. */
  mergeRuntime(id: string, keys: Record<string, unknown>): void {
    const t = this.task(id);
    t.runtime = { ...t.runtime, ...structuredClone(keys) };
    t.last_update = this.stamp();
  }

  removeTask(id: string): void {
    this.tasks.delete(id);
  }

  task(id: string): FakeTask {
    const t = this.tasks.get(id);
    if (!t) throw new Error(`fake: no task ${id}`);
    return t;
  }

  addQueue(name: string, id = hex32()): string {
    this.queues.set(id, { id, name });
    return id;
  }

  /** Takes the server down: `refuse` closes the port (connection refused), `503` answers a proxy error page. */
  async down(mode: 'refuse' | '503'): Promise<void> {
    this.downMode = mode;
    if (mode === 'refuse' && this.server.listening) {
      await new Promise<void>((r) => {
        this.server.close(() => r());
        this.server.closeAllConnections();
      });
    }
  }

  /** Brings the server back on the same port. */
  async up(): Promise<void> {
    const was = this.downMode;
    this.downMode = null;
    if (was === 'refuse' && !this.server.listening) await this.listen(this.port);
  }

  /** The next `times` calls of `endpoint` fail with this error envelope. */
  failNext(endpoint: string, code: number, subcode: number, msg: string, times = 1): void {
    this.failures.push({ endpoint, code, subcode, msg, times });
  }

  /** Invalidates every token issued so far (the next bearer call gets 401/30). */
  revokeTokens(): void {
    for (const u of this.issued) this.revoked.add(u);
  }

  /** Token lifetime for the next logins. */
  setTokenLifetime(sec: number): void {
    this.tokenLifetimeSec = sec;
  }

  /**
   * Runs `write` right after the next call of `endpoint` (for `taskId`, when given) has been
   * answered, before the server handles anything else: a concurrent writer landing between two
   * calls of a client, e.g. between the read and the edit of a read-modify-write.
   */
  interleaveAfter(endpoint: string, write: () => void, taskId?: string): void {
    this.interleaved.push({ endpoint, taskId, write });
  }

  /** Number of calls of `endpoint` (all endpoints when omitted). */
  count(endpoint?: string): number {
    return endpoint === undefined ? this.calls.length : this.calls.filter((c) => c.endpoint === endpoint).length;
  }

  resetCalls(): void {
    this.calls.length = 0;
  }

  /** Signs a token for a user, as auth.login would. */
  tokenFor(user: FakeUser, lifetimeSec = this.tokenLifetimeSec, featureSet = 'basic'): string {
    const iat = Math.floor(Date.now() / 1000);
    const payload = {
      auth_type: 'Bearer',
      identity: { user: user.id, company: user.company.id, role: user.role, user_name: user.name, company_name: user.company.name },
      env: '<unknown>',
      iat,
      exp: iat + lifetimeSec,
      session_id: hex32(),
      api_version: this.maxApiVersion,
      server_version: '2.3.0',
      server_build: '1',
      feature_set: featureSet,
    };
    const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(payload)}`;
    const token = `${head}.${createHmac('sha256', SECRET).update(head).digest('base64url')}`;
    this.issued.push(payload.session_id);
    return token;
  }

  // ---- server ---------------------------------------------------------------------------------

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private stamp(): string {
    // strictly increasing, so ordering by last_update is deterministic
    this.clock = Math.max(this.clock + 1, Date.now());
    return new Date(this.clock).toISOString().replace('Z', '000+00:00');
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    const url = new URL(req.url ?? '/', 'http://fake');
    const m = /^\/?(v(\d+\.?\d+)\/)?([a-zA-Z_]\w+\.[a-zA-Z_]\w+)\/?$/.exec(url.pathname);
    const endpoint = m?.[3] ?? url.pathname;
    const version = m?.[2] ?? null;
    if (this.downMode === '503') {
      if (this.recordCalls) this.calls.push({ endpoint, version, method: req.method ?? 'GET', body: {}, status: 503 });
      res.writeHead(503, { 'content-type': 'text/html' });
      res.end('<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>');
      return;
    }
    let body: Record<string, unknown> = {};
    let status = 200;
    let subcode = 0;
    let msg = 'OK';
    let data: unknown = {};
    let errorData: Record<string, unknown> = {};
    let headers: Record<string, string> = {};
    let after: (() => void) | null = null;
    try {
      if (!m) throw new ApiError(400, 0, `Invalid request path ${url.pathname}`);
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() !== '') {
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          throw new ApiError(400, 0, 'Content could not be parsed as JSON');
        }
      }
      for (const [k, v] of url.searchParams) body[k] = /^\d+$/.test(v) ? Number(v) : v === 'true' ? true : v === 'false' ? false : v;
      const fail = this.failures.find((f) => f.endpoint === endpoint);
      if (fail) {
        if (--fail.times <= 0) this.failures.splice(this.failures.indexOf(fail), 1);
        throw new ApiError(fail.code, fail.subcode, fail.msg);
      }
      const r = this.dispatch(endpoint, version, body, req);
      data = r.data;
      headers = r.headers ?? {};
      const i = this.interleaved.findIndex((x) => x.endpoint === endpoint && (x.taskId === undefined || x.taskId === body.task));
      if (i >= 0) after = this.interleaved.splice(i, 1)[0]!.write;
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(500, 0, `General server error (${(e as Error).message})`);
      status = err.code;
      subcode = err.subcode;
      msg = err.message;
      errorData = err.errorData;
      data = {};
    }
    if (this.recordCalls) this.calls.push({ endpoint, version, method: req.method ?? 'GET', body, status });
    const envelope = {
      meta: {
        id: hex32(),
        trx: hex32(),
        endpoint: { name: endpoint, requested_version: version ?? this.maxApiVersion, actual_version: version ?? this.maxApiVersion },
        result_code: status,
        result_subcode: subcode,
        result_msg: msg,
        error_stack: null,
        error_data: errorData,
      },
      data,
    };
    const payload = JSON.stringify(envelope);
    after?.();
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)), ...headers });
    res.end(payload);
  }

  private identify(req: http.IncomingMessage): FakeUser {
    let auth = req.headers.authorization;
    if (!auth) {
      const cookie = (req.headers.cookie ?? '').split(/;\s*/).find((c) => c.startsWith(`${this.cookieName}=`));
      if (cookie) auth = `Bearer ${cookie.slice(this.cookieName.length + 1)}`;
    }
    if (!auth) throw new ApiError(401, 20, 'Unauthorized (missing credentials)');
    const m = /^Bearer (.+)$/.exec(auth);
    if (!m) throw new ApiError(401, 10, 'Unauthorized (bad authentication header type)');
    return this.verify(m[1]!).user;
  }

  private verify(token: string): { user: FakeUser; exp: number } {
    const parts = token.split('.');
    const bad = () => new ApiError(401, 30, 'Invalid token');
    if (parts.length !== 3) throw bad();
    const sig = createHmac('sha256', SECRET).update(`${parts[0]}.${parts[1]}`).digest('base64url');
    if (sig !== parts[2]) throw bad();
    const p = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { exp: number; session_id: string; identity: { user: string } };
    if (p.exp * 1000 < Date.now()) throw new ApiError(401, 30, 'Invalid token (Token expired)');
    if (this.revoked.has(p.session_id)) throw new ApiError(401, 30, 'Invalid token (Token revoked)');
    const user = this.users.find((u) => u.id === p.identity.user);
    if (!user) throw bad();
    return { user, exp: p.exp };
  }

  private dispatch(endpoint: string, version: string | null, body: Record<string, unknown>, req: http.IncomingMessage): { data: unknown; headers?: Record<string, string> } {
    if (endpoint === 'auth.login') return this.login(body, req);
    const caller = this.identify(req);
    switch (endpoint) {
      case 'tasks.get_all':
        return { data: { tasks: this.getAllTasks(body) } };
      case 'tasks.get_by_id':
        return { data: { task: structuredClone(this.findTask(body.task)) } };
      case 'tasks.edit':
        return { data: this.editTask(body) };
      case 'tasks.edit_runtime':
        if (!this.editRuntimeEnabled || (version !== null && Number(version) < 2.34)) {
          throw new ApiError(404, 0, `Unable to find endpoint for name tasks.edit_runtime and version ${version ?? this.maxApiVersion}`);
        }
        return { data: this.editRuntime(body) };
      case 'queues.get_all':
        return { data: { queues: this.getAllQueues(body) } };
      case 'users.get_current_user':
        return {
          data: {
            user: { id: caller.id, name: caller.name, given_name: caller.name, family_name: '', role: caller.role, company: { ...caller.company }, preferences: {} },
          },
        };
      case 'auth.validate_token': {
        if (caller.role !== 'system' && caller.role !== 'root') throw new ApiError(403, 20, 'Forbidden (not allowed for role)', { role: caller.role });
        try {
          const { user } = this.verify(String(body.token ?? ''));
          return { data: { valid: true, user: user.id, company: user.company.id } };
        } catch (e) {
          return { data: { valid: false, msg: (e as Error).message } };
        }
      }
      default:
        throw new ApiError(404, 0, `Unable to find endpoint for name ${endpoint} and version ${version ?? this.maxApiVersion}`);
    }
  }

  private login(body: Record<string, unknown>, req: http.IncomingMessage): { data: unknown; headers: Record<string, string> } {
    const auth = req.headers.authorization;
    if (!auth) throw new ApiError(401, 20, 'Unauthorized (missing credentials)');
    const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(auth);
    if (!m) throw new ApiError(401, 21, 'Unauthorized (malformed credentials)');
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i < 0) throw new ApiError(401, 21, 'Unauthorized (malformed credentials)');
    const user = this.users.find((u) => u.accessKey === decoded.slice(0, i) && u.secretKey === decoded.slice(i + 1));
    if (!user) throw new ApiError(401, 22, 'Unauthorized (invalid credentials)');
    const lifetime = typeof body.expiration_sec === 'number' ? body.expiration_sec : this.tokenLifetimeSec;
    const token = this.tokenFor(user, lifetime);
    return { data: { token }, headers: { 'set-cookie': `${this.cookieName}=${token}; HttpOnly; Path=/; SameSite=Lax` } };
  }

  private findTask(id: unknown): FakeTask {
    const t = typeof id === 'string' ? this.tasks.get(id) : undefined;
    if (!t) throw new ApiError(400, 101, 'Invalid task id', { id: id ?? null });
    return t;
  }

  private getAllTasks(body: Record<string, unknown>): Record<string, unknown>[] {
    const byId = body.id !== undefined && body.id !== null;
    const lists = LIST_FIELDS.filter((f) => body[f] !== undefined).map((f) => [f, listFilter(body[f])] as const);
    const runtimeKeys = Object.entries(body).filter(([k]) => k.startsWith('runtime.'));
    let list = [...this.tasks.values()].filter((t) => {
      for (const [f, match] of lists) if (!match(get(t, f))) return false;
      for (const [k, v] of runtimeKeys) if (t.runtime[k.slice(8)] !== v) return false;
      if (!byId && body.search_hidden !== true && t.system_tags.includes('hidden')) return false;
      return true;
    });
    list = this.order(list, body.order_by);
    return this.page(list, body).map((t) => project(t, body.only_fields));
  }

  private order<T>(list: T[], orderBy: unknown): T[] {
    const keys = (Array.isArray(orderBy) ? orderBy : typeof orderBy === 'string' ? [orderBy] : []).filter((k): k is string => typeof k === 'string');
    if (keys.length === 0) return list;
    const specs = keys.map((k) => (k.startsWith('-') ? { path: k.slice(1), sign: -1 } : { path: k, sign: 1 }));
    const rows = list.map((item) => ({ item, values: specs.map((sp) => get(item, sp.path)) }));
    rows.sort((a, b) => {
      for (let i = 0; i < specs.length; i++) {
        const c = compare(a.values[i], b.values[i]);
        if (c !== 0) return c * specs[i]!.sign;
      }
      return 0;
    });
    return rows.map((r) => r.item);
  }

  /** page/page_size with the 500 cap; without paging the answer is silently capped at 500. */
  private page<T>(list: T[], body: Record<string, unknown>): T[] {
    const size = Math.min(typeof body.page_size === 'number' ? body.page_size : MAX_PAGE_SIZE, MAX_PAGE_SIZE);
    const page = typeof body.page === 'number' ? body.page : 0;
    if (page < 0 || size < 1) throw new ApiError(400, 12, 'Validation error (page and page_size must be non-negative)');
    return list.slice(page * size, page * size + size);
  }

  private editTask(body: Record<string, unknown>): unknown {
    const t = this.findTask(body.task);
    if (t.status !== 'created' && body.force !== true) throw new ApiError(400, 110, 'Invalid task status (Invalid status for editing task, use force=True)', { status: t.status });
    const fields: Record<string, unknown> = {};
    for (const k of ['runtime', 'system_tags', 'tags', 'name', 'comment', 'execution']) {
      if (body[k] === undefined) continue;
      if (k === 'runtime' && (typeof body.runtime !== 'object' || body.runtime === null || Array.isArray(body.runtime))) throw new ApiError(400, 12, 'Validation error (runtime must be an object)');
      t[k] = structuredClone(body[k]);
      fields[k] = body[k];
    }
    t.last_update = this.stamp();
    fields.last_update = t.last_update;
    return { updated: 1, fields };
  }

  private editRuntime(body: Record<string, unknown>): unknown {
    const t = this.findTask(body.task);
    if (t.status !== 'created' && body.force !== true) throw new ApiError(400, 110, 'Invalid task status (Invalid status for editing task, use force=True)', { status: t.status });
    const add = body.add_or_update ?? {};
    const remove = body.remove ?? [];
    if (typeof add !== 'object' || add === null || Array.isArray(add) || !Array.isArray(remove)) throw new ApiError(400, 12, 'Validation error (add_or_update must be an object, remove a list)');
    for (const v of Object.values(add)) if (typeof v !== 'string') throw new ApiError(400, 12, 'Validation error (runtime values must be strings)');
    const runtime = { ...t.runtime, ...(add as Record<string, string>) };
    for (const k of remove) delete runtime[String(k)];
    t.runtime = runtime;
    t.last_update = this.stamp();
    return { updated: 1 };
  }

  private getAllQueues(body: Record<string, unknown>): Record<string, unknown>[] {
    let list = [...this.queues.values()];
    if (typeof body.name === 'string') {
      let re: RegExp;
      try {
        re = new RegExp(body.name);
      } catch {
        throw new ApiError(400, 21, 'Malformed regular expression');
      }
      list = list.filter((q) => re.test(q.name));
    }
    if (body.id !== undefined) list = list.filter((q) => listFilter(body.id)(q.id));
    list = this.order(list, body.order_by);
    return this.page(list, body).map((q) => project(q, body.only_fields));
  }
}
