import { UserError } from '../../router/errors';

/** The UserError `fn` throws; fails when it throws something else or nothing. */
export function thrown(fn: () => unknown): UserError {
  try {
    fn();
  } catch (e) {
    if (e instanceof UserError) return e;
    throw e;
  }
  throw new Error('expected a UserError');
}
