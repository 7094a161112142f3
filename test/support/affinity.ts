import http from 'node:http';

/**
 * GET `url` over `agent`; the name of the echo backend that answered (its JSON `backend`), or
 * `status <code>` for anything but a 200.
 */
export function whoAnswers(url: string, headers: Record<string, string>, agent: http.Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = http.get(url, { agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(res.statusCode === 200 ? (JSON.parse(Buffer.concat(chunks).toString()).backend as string) : `status ${res.statusCode}`));
    });
    r.on('error', reject);
  });
}

/**
 * Session `session-<i>` (X-Session-Id, i < `sessions`) → the backend that answered it, asked 8 at
 * a time: below the bounded-load floor (8 in flight per backend), so affinity is exact.
 */
export async function assignSessions(url: string, sessions: number, headers: Record<string, string>, agent: http.Agent): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const ids = Array.from({ length: sessions }, (_, i) => `session-${i}`);
  for (let i = 0; i < ids.length; i += 8) {
    const batch = ids.slice(i, i + 8);
    const got = await Promise.all(batch.map((id) => whoAnswers(url, { ...headers, 'x-session-id': id }, agent)));
    batch.forEach((id, j) => out.set(id, got[j]!));
  }
  return out;
}
