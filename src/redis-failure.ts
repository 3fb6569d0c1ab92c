/**
 * What a failed call to Redis means for a breaker, as one cause: no answer at all, Redis
 * refusing (out of memory, read-only, an ACL, a script busy, ...), or the library refusing
 * (its own ZV_ codes, a missing library). Told apart by error classes and by the first
 * word of Redis's error reply (a code, like OOM or READONLY, that Redis and Valkey share),
 * never by the words after it.
 */
import type { ErrorCode } from './error-codes.js';
import { ZenvarkError } from './errors.js';

export interface RedisFailure {
  /** Names the cause: the same cause twice is one report. */
  readonly key: string;
  readonly code: ErrorCode;
  /** What Redis's refusal means, for people; '' where the error says it itself. */
  readonly summary: string;
}

/** What the error-reply codes Redis (and Valkey) use mean for a breaker. */
const REFUSALS: Record<string, string> = {
  OOM: 'Redis is out of memory and its eviction policy refuses writes (maxmemory-policy noeviction)',
  READONLY: 'this server is a read-only replica: point the client at the primary',
  NOPERM: "the user's ACL does not allow a command the breaker needs (see the README, \"Least privilege\")",
  NOAUTH: 'the connection is not authenticated',
  WRONGPASS: 'the username or password is wrong',
  LOADING: 'Redis is loading its data set',
  BUSY: 'Redis is busy running a script',
  MASTERDOWN: 'the replica has lost its primary',
  CLUSTERDOWN: 'the cluster is down',
  TRYAGAIN: 'the cluster is moving the slot of this breaker',
};

const NO_ANSWER: RedisFailure = { key: 'unreachable', code: 'ZV_REDIS_UNREACHABLE', summary: 'no answer from Redis' };

/**
 * The code of an error reply, its first word ('OOM command not allowed ...' is OOM), or
 * undefined for an error that is not a reply (a closed connection, a timeout).
 */
export function replyCode(error: unknown): string | undefined {
  return error instanceof Error ? /^([A-Z][A-Z_]{2,})(?: |$)/.exec(error.message)?.[1] : undefined;
}

export function redisFailure(error: unknown): RedisFailure {
  if (error instanceof ZenvarkError) return { key: error.code, code: error.code, summary: '' };
  const word = replyCode(error);
  if (word === undefined) return NO_ANSWER;
  return { key: word, code: 'ZV_REDIS_REFUSED', summary: REFUSALS[word] ?? `Redis refused the call (${word})` };
}
