/**
 * The zenvark command's exit codes (README, "The zenvark command"), and the code for each
 * failure: by the error's class and code, never by its words.
 */
import { ZenvarkError } from '../../src/errors.js';
import { NotClusterNodeError, TlsError, UsageError } from './connect.js';

export const EXIT = {
  DONE: 0,
  /** An unknown breaker; deploy-functions --check: a primary not current; release with nothing to release. */
  NOT_FOUND: 1,
  /** deploy-functions: a newer revision is loaded, not downgraded. */
  REFUSED: 2,
  /** Bad usage: an unknown option, a missing or bad argument. */
  USAGE: 3,
  /** Redis refused the credentials, or the ACL refused a command. */
  DENIED: 4,
  /** The server cannot serve: no Redis Functions, the library missing or outdated, not a cluster node, or it refused otherwise. */
  UNSUITABLE: 5,
  /** Redis unreachable, or it did not answer in time. */
  UNREACHABLE: 6,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit code for what went wrong. */
export function exitCodeOf(error: unknown): ExitCode {
  // The admin API's checks of its arguments, which come from the command line.
  if (error instanceof UsageError || error instanceof TypeError || error instanceof RangeError) return EXIT.USAGE;
  if (error instanceof TlsError) return EXIT.UNREACHABLE;
  if (error instanceof NotClusterNodeError || !(error instanceof ZenvarkError)) return EXIT.UNSUITABLE;
  switch (error.code) {
    case 'ZV_UNKNOWN_BREAKER':
      return EXIT.NOT_FOUND;
    case 'ZV_BADARG':
      return EXIT.USAGE;
    case 'ZV_AUTH_FAILED':
    case 'ZV_NOPERM':
      return EXIT.DENIED;
    case 'ZV_REDIS_UNREACHABLE':
      return EXIT.UNREACHABLE;
    default:
      return EXIT.UNSUITABLE;
  }
}
