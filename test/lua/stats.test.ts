import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { memoryLogger } from '../../router/log';
import { LocalNginx } from '../../router/proxy/local-nginx';
import { req } from '../support/http';
import { freePort, waitFor } from '../support/net';

/**
 * lua/appgw/stats.lua's token last-use notes, run inside a real nginx worker: a token's first
 * request is written to the shared dict at the next flush, its further requests within a minute
 * are not (with 10,000 tokens in use, writing each of them every second stalled the worker).
 */
describe('stats.lua last-use notes in a real nginx worker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'appgw-stats-'));
  let nginx: LocalNginx;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
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
    lua_shared_dict appgw_stats 1m;
    server {
        listen 127.0.0.1:${port};
        location = /up { return 200; }
        location = /stats {
            default_type application/json;
            content_by_lua_block {
                local stats = require "appgw.stats"
                local dict = ngx.shared.appgw_stats
                local function lu()
                    local out = {}
                    for _, k in ipairs(dict:get_keys(0)) do
                        if k:sub(1, 3) == "lu:" then out[#out + 1] = k:sub(4); dict:delete(k) end
                    end
                    table.sort(out)
                    return out
                end
                local out = {}
                for _ = 1, 3 do stats.count("e:r1", "tokA") end
                stats.count("e:r1", "tokB")
                stats.count("e:r1", nil)
                stats.flush()
                out.first = lu()
                -- the same tokens again within the minute: counted, not written again
                for _ = 1, 5 do stats.count("e:r1", "tokA"); stats.count("e:r2", "tokB") end
                stats.count("e:r2", "tokC")
                stats.flush()
                out.again = lu()
                out.requests = { dict:get("req:e:r1"), dict:get("req:e:r2") }
                ngx.say(require("cjson.safe").encode(out))
            }
        }
    }
}
`,
    );
    nginx = new LocalNginx('nginx', dir, join(dir, 'nginx.conf'), join(dir, 'nginx.pid'), memoryLogger());
    await nginx.start();
    await waitFor(async () => (await req(`http://127.0.0.1:${port}/up`).catch(() => ({ status: 0 }))).status === 200, 5000, 'nginx up');
  });

  afterAll(async () => {
    await nginx?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a token's first use is written at the next flush, its further uses within a minute are not; every request is counted", async () => {
    const r = await req(`http://127.0.0.1:${port}/stats`);
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({
      first: ['tokA', 'tokB'],
      again: ['tokC'],
      requests: [5 + 5, 6],
    });
  });
});
