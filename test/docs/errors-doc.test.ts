import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES } from '../../router/errors';

const ROOT = join(__dirname, '..', '..');
const doc = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');

/** Error codes the edge's Lua can answer with, read from the sources. */
function luaCodes(): string[] {
  const codes = new Set<string>();
  for (const f of readdirSync(join(ROOT, 'lua', 'appgw'))) {
    const src = readFileSync(join(ROOT, 'lua', 'appgw', f), 'utf8');
    const patterns = [/respond\.error\(\d+, "([a-z_]+)"/g, /deny\(\d+, "([a-z_]+)"/g, /return nil, (?:\d+, )?"([a-z_]+)"/g, /return false, "([a-z_]+)"/g, /error = "([a-z_]+)"/g];
    for (const p of patterns) for (const m of src.matchAll(p)) codes.add(m[1]!);
  }
  // unknown_token is answered as bad_token, so a caller cannot probe which ids exist
  codes.delete('unknown_token');
  return [...codes].sort();
}

describe('docs/errors.md documents every user-facing code', () => {
  test.each(Object.keys(ERROR_CODES))('router code %s', (code) => {
    expect(doc).toContain(`\`${code}\``);
  });
  test('the scan finds the edge codes', () => {
    expect(luaCodes().length).toBeGreaterThan(10);
  });
  test.each(luaCodes())('edge code %s', (code) => {
    expect(doc).toContain(`\`${code}\``);
  });
});
