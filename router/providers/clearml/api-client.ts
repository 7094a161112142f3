import axios, { type AxiosInstance, type AxiosResponse } from 'axios';
import type { Config } from '../../config';
import { UserError } from '../../errors';

/**
 * A small client of the ClearML REST API (clearml-protocol.md §2): `auth.login` with the access
 * key and secret, bearer calls to `/v<version>/<service>.<action>` with a JSON body, the
 * `{meta, data}` envelope turned into errors with a stable code. The only module importing axios.
 */

/** An error of a ClearML call: CLEARML_UNREACHABLE (no answer, timeout, gateway error) or CLEARML_API (an error envelope). */
export class ClearmlError extends UserError {
  constructor(
    code: 'CLEARML_API' | 'CLEARML_UNREACHABLE',
    message: string,
    /** The service.action called, e.g. `tasks.get_all`. */
    readonly endpoint: string,
    /** HTTP status (= meta.result_code), null when there was no answer. */
    readonly status: number | null,
    /** meta.result_subcode, null when there was no envelope. */
    readonly subcode: number | null,
  ) {
    super(code, message);
    this.name = 'ClearmlError';
  }
}

export interface ClearmlClientOptions {
  host: string;
  accessKey: string;
  secretKey: string;
  /** API version put in the path; default 2.26 (clearml-server ≥ 1.9). */
  apiVersion?: string;
  /** Per-request timeout; default 10 s. */
  timeoutMs?: number;
  /** Token lifetime asked of auth.login (`expiration_sec`); the server's default when absent. */
  tokenLifetimeSec?: number;
  /** Clock, for token refresh. */
  now?: () => number;
}

/** A ClearML object as returned by the API: untrusted JSON. */
export type ApiObject = Record<string, unknown>;

/** The claims of the login token that matter here (decoded, not verified). */
export interface TokenClaims {
  exp: number | null;
  iat: number | null;
  identity: { user?: string; company?: string; role?: string } | null;
  apiVersion: string | null;
  serverVersion: string | null;
  featureSet: string | null;
}

/** `tasks.edit_runtime` appeared in API 2.34 (clearml-server 2.3); a lower path version answers 404. */
const EDIT_RUNTIME_VERSION = '2.34';
/** The server's cap on one page (clearml-protocol.md §2.3). */
export const MAX_PAGE_SIZE = 500;
const MAX_PAGES = 10_000;

/** Pure. Decodes a JWT's payload without verifying it; null when it is not a JWT. */
export function decodeToken(token: string): TokenClaims | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const p = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    const str = (v: unknown) => (typeof v === 'string' ? v : null);
    const id = p.identity && typeof p.identity === 'object' ? (p.identity as TokenClaims['identity']) : null;
    return { exp: num(p.exp), iat: num(p.iat), identity: id, apiVersion: str(p.api_version), serverVersion: str(p.server_version), featureSet: str(p.feature_set) };
  } catch {
    return null;
  }
}

/** Pure. An untrusted server message made safe for one log line: control characters out, 200 characters at most. */
function clean(msg: unknown): string {
  const s = typeof msg === 'string' ? msg : JSON.stringify(msg) ?? '';
  const t = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return t.length > 200 ? `${t.slice(0, 200)}…` : t;
}

interface Envelope {
  meta?: { result_code?: unknown; result_subcode?: unknown; result_msg?: unknown };
  data?: unknown;
}

/** A ClearML API client. Methods throw ClearmlError; secrets never appear in messages. */
export class ClearmlClient {
  private readonly http: AxiosInstance;
  private readonly host: string;
  private readonly basic: string;
  private readonly apiVersion: string;
  private readonly tokenLifetimeSec: number | null;
  private readonly now: () => number;
  private token: string | null = null;
  private claims: TokenClaims | null = null;
  private loggingIn: Promise<TokenClaims | null> | null = null;
  /** Whether `tasks.edit_runtime` exists on this server: null until the first attempt tells. */
  editRuntimeSupported: boolean | null = null;

  constructor(options: ClearmlClientOptions) {
    this.host = options.host.replace(/\/+$/, '');
    this.apiVersion = options.apiVersion ?? '2.26';
    this.tokenLifetimeSec = options.tokenLifetimeSec ?? null;
    this.now = options.now ?? Date.now;
    this.basic = `Basic ${Buffer.from(`${options.accessKey}:${options.secretKey}`).toString('base64')}`;
    this.http = axios.create({
      baseURL: this.host,
      timeout: options.timeoutMs ?? 10_000,
      validateStatus: () => true,
      maxContentLength: 256 * 1024 * 1024,
      headers: { 'content-type': 'application/json', 'x-clearml-client': 'appgw' },
      transitional: { clarifyTimeoutError: true, silentJSONParsing: true, forcedJSONParsing: true },
    });
  }

  /** Claims of the current token (decoded, unverified), or null before login. */
  tokenClaims(): TokenClaims | null {
    return this.claims;
  }

  /** Logs in with HTTP Basic access key:secret and keeps the bearer token; concurrent callers share one login. */
  login(): Promise<TokenClaims | null> {
    this.loggingIn ??= (async () => {
      try {
        const body = this.tokenLifetimeSec === null ? {} : { expiration_sec: this.tokenLifetimeSec };
        const data = await this.send('auth.login', body, this.basic, this.apiVersion);
        const token = (data as ApiObject | null)?.token;
        if (typeof token !== 'string' || token === '') throw new ClearmlError('CLEARML_API', `ClearML auth.login at ${this.host} answered without a token`, 'auth.login', 200, null);
        this.token = token;
        this.claims = decodeToken(token);
        return this.claims;
      } finally {
        this.loggingIn = null;
      }
    })();
    return this.loggingIn;
  }

  /**
   * Calls `service.action` with `body` and returns `data`. Logs in first when there is no token or
   * it expires soon, and once more on a 401 for a bad or expired token.
   */
  async call<T = ApiObject>(endpoint: string, body: ApiObject = {}, version = this.apiVersion): Promise<T> {
    if (this.token === null || this.expiresSoon()) await this.login();
    const used = this.token;
    try {
      return (await this.send(endpoint, body, `Bearer ${used}`, version)) as T;
    } catch (e) {
      if (!(e instanceof ClearmlError) || e.status !== 401) throw e;
      // another call may have refreshed the token meanwhile; log in again only if not
      if (this.token === used) await this.login();
      return (await this.send(endpoint, body, `Bearer ${this.token}`, version)) as T;
    }
  }

  /**
   * The user behind a ClearML web session token (the browser's cookie value): calls
   * `users.get_current_user` with that token as the bearer. Null when ClearML refuses the token
   * (401/403); throws a ClearmlError when ClearML cannot be asked, so callers can fail closed.
   */
  async sessionUser(sessionToken: string): Promise<{ id: string; name: string | null; role: string | null; company: string | null } | null> {
    if (!/^[A-Za-z0-9._-]{1,8192}$/.test(sessionToken)) return null;
    try {
      const data = (await this.send('users.get_current_user', {}, `Bearer ${sessionToken}`, this.apiVersion)) as ApiObject;
      const u = data.user as ApiObject | undefined;
      if (!u || typeof u.id !== 'string') return null;
      const company = u.company as ApiObject | undefined;
      return {
        id: u.id,
        name: typeof u.name === 'string' ? u.name : null,
        role: typeof u.role === 'string' ? u.role : null,
        company: company && typeof company.id === 'string' ? company.id : null,
      };
    } catch (e) {
      if (e instanceof ClearmlError && (e.status === 401 || e.status === 403)) return null;
      throw e;
    }
  }

  /** All tasks matching `body`, paging with `page_size` 500 until a short page. */
  getAllTasks(body: ApiObject): Promise<ApiObject[]> {
    return this.pages('tasks.get_all', 'tasks', body);
  }

  /** All queues matching `body`, paged like getAllTasks. */
  getAllQueues(body: ApiObject = {}): Promise<ApiObject[]> {
    return this.pages('queues.get_all', 'queues', body);
  }

  /** The full task object (`tasks.get_by_id`); a ClearmlError 400/101 for an unknown id. */
  async getTaskById(taskId: string): Promise<ApiObject> {
    const data = await this.call<{ task?: unknown }>('tasks.get_by_id', { task: taskId });
    if (!data || typeof data.task !== 'object' || data.task === null) {
      throw new ClearmlError('CLEARML_API', `ClearML tasks.get_by_id answered without a task for ${taskId}`, 'tasks.get_by_id', 200, null);
    }
    return data.task as ApiObject;
  }

  /** `tasks.edit`: replaces each field given (a whole `runtime` map, a whole `system_tags` list). */
  async editTask(body: ApiObject): Promise<{ updated: number }> {
    const data = await this.call<{ updated?: unknown }>('tasks.edit', body);
    return { updated: typeof data?.updated === 'number' ? data.updated : 0 };
  }

  /**
   * `tasks.edit_runtime` (atomic per key, values as strings). Returns false without writing when
   * the server does not have it (remembered, so later calls do not ask again).
   */
  async editRuntime(taskId: string, addOrUpdate: Record<string, string>, remove: string[] = []): Promise<boolean> {
    if (this.editRuntimeSupported === false) return false;
    const body: ApiObject = { task: taskId, add_or_update: addOrUpdate, force: true };
    if (remove.length > 0) body.remove = remove;
    try {
      await this.call('tasks.edit_runtime', body, EDIT_RUNTIME_VERSION);
    } catch (e) {
      if (e instanceof ClearmlError && isUnknownEndpoint(e)) {
        this.editRuntimeSupported = false;
        return false;
      }
      throw e;
    }
    this.editRuntimeSupported = true;
    return true;
  }

  private expiresSoon(): boolean {
    const exp = this.claims?.exp;
    if (exp === null || exp === undefined) return false;
    const lifetimeMs = this.claims?.iat ? (exp - this.claims.iat) * 1000 : 10 * 60_000;
    // refresh with a tenth of the lifetime left, but not earlier than 5 minutes before expiry
    const margin = Math.min(5 * 60_000, Math.max(1000, lifetimeMs / 10));
    return exp * 1000 - this.now() < margin;
  }

  private async pages(endpoint: string, field: string, body: ApiObject): Promise<ApiObject[]> {
    const out: ApiObject[] = [];
    const seen = new Set<unknown>();
    for (let page = 0; page < MAX_PAGES; page++) {
      const data = await this.call<Record<string, unknown>>(endpoint, { ...body, page, page_size: MAX_PAGE_SIZE });
      const items = data?.[field];
      if (!Array.isArray(items)) throw new ClearmlError('CLEARML_API', `ClearML ${endpoint} answered without a ${field} list`, endpoint, 200, null);
      let fresh = 0;
      for (const item of items) {
        const id = (item as ApiObject | null)?.id;
        if (id !== undefined && seen.has(id)) continue;
        if (id !== undefined) seen.add(id);
        out.push(item as ApiObject);
        fresh++;
      }
      // a short page ends the list; a page of only repeats means the server ignores paging
      if (items.length < MAX_PAGE_SIZE || fresh === 0) return out;
    }
    return out;
  }

  /** One POST; returns `data` of a success envelope, throws a ClearmlError otherwise. */
  private async send(endpoint: string, body: ApiObject, authorization: string, version: string): Promise<unknown> {
    let res: AxiosResponse<unknown>;
    try {
      res = await this.http.post(`/v${version}/${endpoint}`, body, { headers: { authorization } });
    } catch (e) {
      const err = e as { code?: string; message?: string };
      const why = err.code === 'ETIMEDOUT' || err.code === 'ECONNABORTED' ? 'timed out' : clean(err.code ?? err.message ?? String(e));
      throw new ClearmlError('CLEARML_UNREACHABLE', `ClearML API at ${this.host} unreachable (${endpoint}): ${why}`, endpoint, null, null);
    }
    const env = res.data as Envelope | string | null;
    const meta = env && typeof env === 'object' ? env.meta : undefined;
    if (!meta || typeof meta !== 'object') {
      const code = res.status >= 500 || res.status === 429 ? 'CLEARML_UNREACHABLE' : 'CLEARML_API';
      throw new ClearmlError(code, `ClearML API at ${this.host} answered ${res.status} without an API envelope (${endpoint})`, endpoint, res.status, null);
    }
    const status = typeof meta.result_code === 'number' ? meta.result_code : res.status;
    const subcode = typeof meta.result_subcode === 'number' ? meta.result_subcode : 0;
    if (status >= 200 && status < 300 && res.status < 300) return (env as Envelope).data ?? {};
    const msg = clean(meta.result_msg) || 'no message';
    const code = status >= 500 ? 'CLEARML_UNREACHABLE' : 'CLEARML_API';
    throw new ClearmlError(code, `ClearML ${endpoint} failed: ${status}/${subcode} ${msg}`, endpoint, status, subcode);
  }
}

/** Pure. True when the error says the server has no such endpoint (404, 410, 400/1 not supported, 400/2 bad version). */
export function isUnknownEndpoint(e: ClearmlError): boolean {
  if (e.status === 404 || e.status === 410) return true;
  return e.status === 400 && (e.subcode === 1 || e.subcode === 2);
}

/** A client for the configured ClearML API; a UserError (CONFIG_INVALID) when CLEARML_API_HOST or the keys are missing. */
export function createClearmlClient(config: Pick<Config, 'clearml'>, options: Partial<ClearmlClientOptions> = {}): ClearmlClient {
  const c = config.clearml;
  if (!c.apiHost) throw new UserError('CONFIG_INVALID', 'CLEARML_API_HOST is missing; expected an absolute http(s) URL of the ClearML API server');
  if (!c.accessKey) throw new UserError('CONFIG_INVALID', 'CLEARML_API_ACCESS_KEY is missing; expected a ClearML access key');
  if (!c.secretKey) throw new UserError('CONFIG_INVALID', 'CLEARML_API_SECRET_KEY is missing; expected a ClearML secret key');
  return new ClearmlClient({ host: c.apiHost, accessKey: c.accessKey, secretKey: c.secretKey, ...options });
}
