import http from 'node:http';
import { chmodSync, rmSync } from 'node:fs';
import type { Logger } from '../log';

/** A ClearML session as the edge needs it; `null` when the cookie is not a valid session. */
export interface SessionIdentity {
  user: string;
  company: string | null;
  role: string | null;
  name: string | null;
}

/** Validates a ClearML web session cookie; throws when ClearML cannot be asked (fail closed). */
export type SessionValidator = (cookie: string) => Promise<SessionIdentity | null>;

/** Handles the admin API (`/_gateway/api/...`); `user` is the admin the edge authenticated. */
export type ApiHandler = (req: http.IncomingMessage, body: string, user: string) => Promise<{ status: number; body: unknown }>;

const MAX_BODY = 1 << 20;

/**
 * The router's own HTTP server, on a unix socket in the run dir (never a TCP port). Only the
 * proxy talks to it: the ClearML session check (a subrequest from Lua) and the admin API, whose
 * callers the edge has already authenticated as admins.
 */
export function startRouterSocket(path: string, log: Logger, opts: { sessions?: SessionValidator; api?: ApiHandler }): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const send = (status: number, payload: unknown) => {
        const text = JSON.stringify(payload);
        res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(text);
      };
      const url = req.url ?? '/';
      if (url === '/_router/clearml-session' && req.method === 'POST') {
        if (!opts.sessions) return send(401, { error: 'clearml_sessions_disabled' });
        opts.sessions(body.trim()).then(
          (id) => (id ? send(200, id) : send(401, { error: 'invalid_session' })),
          (e) => {
            log.warn('ClearML session check failed; refusing (fail closed)', { component: 'sessions', error: (e as Error).message });
            send(503, { error: 'session_check_unavailable' });
          },
        );
        return;
      }
      if (url.startsWith('/_gateway/api/') && opts.api) {
        const user = String(req.headers['x-forwarded-user'] ?? '');
        if (!user) return send(401, { error: 'credentials_required' });
        opts.api(req, body, user).then(
          (r) => send(r.status, r.body),
          (e) => {
            log.error('admin API error', { component: 'api', error: (e as Error).message });
            send(500, { error: 'internal_error', message: 'the router failed to handle this request; see its log' });
          },
        );
        return;
      }
      send(404, { error: 'not_found', message: `no such endpoint: ${req.method} ${url.split('?')[0]}` });
    });
  });
  rmSync(path, { force: true });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      // nginx workers may run as another user (docker: nobody); the run dir is private to the
      // router and the proxy
      chmodSync(path, 0o666);
      resolve(server);
    });
  });
}
