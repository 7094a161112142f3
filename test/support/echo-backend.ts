import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

/** What an echo backend saw of one request. */
export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface EchoBackend {
  name: string;
  port: number;
  seen: Seen[];
  /** The status `/health` answers (default 200, the usual echo); set it to fail health checks. */
  healthStatus: number;
  close(): Promise<void>;
}

/**
 * An echo backend on 127.0.0.1: answers JSON {backend, method, url, headers, body}; `/sse`
 * streams `n` events `gap` ms apart; `/status/<code>` answers that status; `/sleep/<ms>` answers
 * after that many milliseconds (at most 10 s); `/health` answers `healthStatus` (200 unless a
 * test sets it); WebSocket upgrades echo every message back prefixed with the backend name.
 */
export function startEcho(name: string, port = 0): Promise<EchoBackend> {
  const seen: Seen[] = [];
  const self = { healthStatus: 200 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const u = new URL(req.url ?? '/', 'http://x');
      if (u.pathname.endsWith('/sse')) {
        const n = Number(u.searchParams.get('n') ?? 5);
        const gap = Number(u.searchParams.get('gap') ?? 200);
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        let i = 0;
        const t = setInterval(() => {
          res.write(`data: ${JSON.stringify({ i, t: Date.now() })}\n\n`);
          i += 1;
          if (i >= n) {
            clearInterval(t);
            res.end();
          }
        }, gap);
        res.on('close', () => clearInterval(t));
        return;
      }
      const m = /\/status\/(\d{3})$/.exec(u.pathname);
      const status = m ? Number(m[1]) : u.pathname === '/health' ? self.healthStatus : 200;
      const sleep = /\/sleep\/(\d{1,5})$/.exec(u.pathname);
      const answer = () => {
        res.writeHead(status, { 'content-type': 'application/json', 'x-backend': name });
        res.end(JSON.stringify({ backend: name, method: req.method, url: req.url, headers: req.headers, body }));
      };
      if (sleep) setTimeout(answer, Math.min(Number(sleep[1]), 10_000));
      else answer();
    });
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    seen.push({ method: 'WS', url: req.url ?? '', headers: req.headers, body: '' });
    ws.on('message', (data) => ws.send(`${name}:${data.toString()}`));
  });
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      resolve(Object.assign(self, {
        name,
        port: (server.address() as AddressInfo).port,
        seen,
        close: () =>
          new Promise<void>((r) => {
            for (const c of wss.clients) c.terminate();
            wss.close();
            server.closeAllConnections();
            server.close(() => r());
          }),
      }));
    });
  });
}
