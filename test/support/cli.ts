import { Command, CommanderError } from 'commander';

/** What one `appgw` run printed and its exit code. */
export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/**
 * Runs `appgw <argv>` on a fresh program (commander keeps option values between parses) with the
 * commands `register` adds; output is captured instead of written and the exit code is returned.
 */
export async function runCli(register: (program: Command) => void, argv: string[]): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command('appgw').exitOverride().configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => err.push(s), outputError: (s, w) => w(s) });
  register(program);
  let code = 0;
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    code = e.exitCode;
  }
  return { code, out: out.join(''), err: err.join('') };
}
