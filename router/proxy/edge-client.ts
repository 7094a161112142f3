import http from 'node:http';

/** Minimal HTTP client for the proxy's push socket and health endpoint (node:http, no deps). */
export interface EdgeResponse {
  status: number;
  body: string;
}

/** Sends one request; rejects on connection errors and after `timeoutMs`. */
export function request(
  opts: { socketPath?: string; host?: string; port?: number; path: string; method?: string; body?: string; headers?: Record<string, string> },
  timeoutMs = 5000,
): Promise<EdgeResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath: opts.socketPath,
        host: opts.host,
        port: opts.port,
        path: opts.path,
        method: opts.method ?? 'GET',
        headers: { ...(opts.body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(opts.body) } : {}), ...opts.headers },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** Pushes a data snapshot to the proxy's unix socket; resolves with the version it holds. */
export async function pushData(socketPath: string, body: string): Promise<number> {
  const res = await request({ socketPath, path: '/_internal/push', method: 'POST', body }, 15_000);
  if (res.status !== 200) throw new Error(`proxy refused the push: HTTP ${res.status} ${res.body.slice(0, 200)}`);
  return (JSON.parse(res.body) as { version: number }).version;
}

/**
 * Pushes a delta (router/proxy/push-delta.ts). Resolves 'applied', or 'refused' when the proxy
 * does not hold the delta's base version (409): the caller then pushes the full snapshot.
 */
export async function pushDelta(socketPath: string, body: string): Promise<'applied' | 'refused'> {
  const res = await request({ socketPath, path: '/_internal/push', method: 'POST', body }, 15_000);
  if (res.status === 409) return 'refused';
  if (res.status !== 200) throw new Error(`proxy refused the delta: HTTP ${res.status} ${res.body.slice(0, 200)}`);
  return 'applied';
}

/** What the proxy holds: its data version and epoch. */
export async function proxyDataState(socketPath: string): Promise<{ version: number; epoch: string | null }> {
  const res = await request({ socketPath, path: '/_internal/state' }, 3000);
  if (res.status !== 200) throw new Error(`proxy state: HTTP ${res.status}`);
  const j = JSON.parse(res.body) as { version: number; epoch?: string };
  return { version: j.version, epoch: j.epoch ?? null };
}

/** The generation the edge serves (GET /_gateway/health), or null when it does not answer. */
export async function servedGeneration(host: string, port: number): Promise<string | null> {
  try {
    const res = await request({ host, port, path: '/_gateway/health' }, 2000);
    if (res.status !== 200) return null;
    return (JSON.parse(res.body) as { generation?: string }).generation ?? null;
  } catch {
    return null;
  }
}
