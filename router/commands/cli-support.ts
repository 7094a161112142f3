import type { Command } from 'commander';
import { UserError } from '../errors';
import type { Store } from '../store/store';

/** Where a command writes its output (the root command's configured output). */
export interface Io {
  out(text: string): void;
}

export type StoreHandler = (store: Store, io: Io, args: string[], opts: Record<string, unknown>) => void | Promise<void>;

/** The root of a command tree (whose output configuration and error handling apply). */
export function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

/**
 * Wraps a commander action that works on the store: opens it, writes through the root command's
 * output, closes it, and turns a UserError into one line `appgw: …` with its exit code.
 */
export function storeAction(open: () => Store, handler: StoreHandler) {
  return async (...raw: unknown[]): Promise<void> => {
    const cmd = raw[raw.length - 1] as Command;
    const opts = (raw[raw.length - 2] ?? {}) as Record<string, unknown>;
    const args = raw.slice(0, -2) as string[];
    const root = rootOf(cmd);
    const write = root.configureOutput().writeOut ?? ((s: string) => void process.stdout.write(s));
    const io: Io = { out: (text) => write(text.endsWith('\n') ? text : `${text}\n`) };
    let store: Store | null = null;
    try {
      store = open();
      await handler(store, io, args, opts);
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      store?.close();
      store = null;
      root.error(`appgw: ${err.message.replace(/[\r\n]+/g, ' ')}`, { exitCode: err.exitCode, code: `appgw.${err.code}` });
    } finally {
      store?.close();
    }
  };
}

/** Commander collector for repeatable options. */
export const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

/** Pure. Left-aligned columns separated by two spaces; with no rows, '' or just the header. */
export function table(headers: string[], rows: string[][], headerWhenEmpty = true): string {
  if (rows.length === 0 && !headerWhenEmpty) return '';
  const widths = headers.map((h, i) => Math.max([...h].length, ...rows.map((r) => [...(r[i] ?? '')].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i]! - [...c].length)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}
