import { startLuaNginx, type LuaNginx } from '../support/lua-nginx';
import { req } from '../support/http';

/**
 * lua/appgw/stats.lua's token last-use notes, run inside a real nginx worker: a token's first
 * request is written to the shared dict at the next flush, its further requests within a minute
 * are not (with 10,000 tokens in use, writing each of them every second stalled the worker).
 */
describe('stats.lua last-use notes in a real nginx worker', () => {
  let nginx: LuaNginx;

  beforeAll(async () => {
    nginx = await startLuaNginx('stats', {
      http: '    lua_shared_dict appgw_stats 1m;',
      locations: `        location = /stats {
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
`,
    });
  });

  afterAll(async () => {
    await nginx?.stop();
  });

  test("a token's first use is written at the next flush, its further uses within a minute are not; every request is counted", async () => {
    const r = await req(`${nginx.url}/stats`);
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({
      first: ['tokA', 'tokB'],
      again: ['tokC'],
      requests: [5 + 5, 6],
    });
  });
});
