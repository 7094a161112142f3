import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { memoryLogger } from '../../router/log';
import { LocalNginx } from '../../router/proxy/local-nginx';
import { req } from './http';
import { freePort, waitFor } from './net';

export interface LuaNginx {
  /** http://127.0.0.1:<port> */
  url: string;
  /** Stops nginx and removes its directory. */
  stop(): Promise<void>;
}

/**
 * A real nginx (Debian's, with the Lua module) with the project's lua/ on its package path and one
 * worker, for testing a Lua module inside a worker: `locations` go into its only server, `http`
 * (shared dicts, say) into the http block. Ready when it answers.
 */
export async function startLuaNginx(name: string, opts: { locations: string; http?: string }): Promise<LuaNginx> {
  const dir = mkdtempSync(join(tmpdir(), `appgw-${name}-`));
  const port = await freePort();
  mkdirSync(join(dir, 'logs'));
  const lua = resolve(__dirname, '../../lua');
  writeFileSync(
    join(dir, 'nginx.conf'),
    `load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    lua_package_path "${lua}/?.lua;/usr/share/lua/5.1/?.lua;;";
${opts.http ?? ''}
    server {
        listen 127.0.0.1:${port};
        location = /_up { return 200; }
${opts.locations}
    }
}
`,
  );
  const nginx = new LocalNginx('nginx', dir, join(dir, 'nginx.conf'), join(dir, 'nginx.pid'), memoryLogger());
  const url = `http://127.0.0.1:${port}`;
  try {
    await nginx.start();
    await waitFor(async () => (await req(`${url}/_up`).catch(() => ({ status: 0 }))).status === 200, 5000, `${name} nginx up`);
  } catch (e) {
    await nginx.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    url,
    async stop() {
      await nginx.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
