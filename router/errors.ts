/**
 * One registry of the error codes a user can see. Every user-facing code is documented in
 * docs/errors.md; a user error prints one clear line and no stack.
 */
export const ERROR_CODES = {
  CONFIG_INVALID: 'a configuration variable has a bad or missing value',
  ENV_FILE_UNREADABLE: 'the --env-file could not be read or parsed',
  ROUTES_FILE_INVALID: 'the routes file could not be parsed',
  ROUTE_INVALID: 'an entry of the routes file, a task or a label failed validation',
  NGINX_NOT_FOUND: 'the nginx binary could not be run',
  NGINX_TEST_FAILED: 'nginx -t rejected a rendered generation',
  RELOAD_FAILED: 'the proxy did not confirm the new generation after a reload',
  PUSH_FAILED: 'the proxy did not accept a data push',
  STORE_UNREADABLE: 'the embedded database could not be opened or is corrupt',
  CLEARML_API: 'the ClearML API answered with an error',
  CLEARML_UNREACHABLE: 'the ClearML API could not be reached',
  USAGE: 'a command was called with bad arguments',
  NOT_FOUND: 'the named object does not exist',
  TOKEN_INVALID: 'a token request was refused',
  TCP_POOL_EXHAUSTED: 'no free port is left in the TCP port pool',
  INVALID_INPUT: 'a value given to a command or the admin API failed validation',
  CONFLICT: 'the change conflicts with what the store holds (a duplicate name, the last admin)',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error caused by the user's input or configuration: printed as one line, never with a stack. */
export class UserError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/** Pure. True when `err` is a UserError. */
export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError;
}

/** Pure. A short message for any thrown value, without a stack. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
