import { startLuaNginx, type LuaNginx } from '../support/lua-nginx';
import { req } from '../support/http';

/**
 * lua/appgw/memo.lua (the two-generation memo of verified tokens and static path lookups), run
 * inside a real nginx worker: a location exercises it and answers what it saw.
 */
describe('memo.lua in a real nginx worker', () => {
  let nginx: LuaNginx;

  beforeAll(async () => {
    nginx = await startLuaNginx('memo', {
      locations: `        location = /memo {
            default_type application/json;
            content_by_lua_block {
                local memo = require("appgw.memo").new(3)
                local out = {}
                -- fill one generation
                memo:set("a", 1); memo:set("b", 2); memo:set("c", 3)
                out.first = { memo:get("a"), memo:get("b"), memo:get("c") }
                -- the 4th key turns the generations over: a, b, c move to the older one
                memo:set("d", 4)
                out.after_turn = { memo:get("d"), memo:get("a") }
                -- "a" was promoted back; two more keys turn over again: b and c (never used
                -- since) are dropped, the recently used a and d stay
                memo:set("e", 5); memo:set("f", 6)
                out.kept = { memo:get("a") or false, memo:get("d") or false, memo:get("e") or false, memo:get("f") or false }
                out.dropped = { memo:get("b") or false, memo:get("c") or false }
                -- never more than two generations of 3 entries
                for i = 1, 100 do memo:set("k" .. i, i) end
                local held = 0
                for _ in pairs(memo.cur) do held = held + 1 end
                for _ in pairs(memo.old) do held = held + 1 end
                out.held = held
                out.recent = { memo:get("k100"), memo:get("k98") }
                memo:clear()
                out.cleared = memo:get("k100") or false
                ngx.say(require("cjson.safe").encode(out))
            }
        }
`,
    });
  });

  afterAll(async () => {
    await nginx?.stop();
  });

  test('keeps the most recently used keys across turnovers, drops the least recent, bounded, clearable', async () => {
    const r = await req(`${nginx.url}/memo`);
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({
      first: [1, 2, 3],
      after_turn: [4, 1],
      kept: [1, 4, 5, 6],
      dropped: [false, false],
      held: 6,
      recent: [100, 98],
      cleared: false,
    });
  });
});
