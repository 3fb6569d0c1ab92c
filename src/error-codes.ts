/**
 * Every code a Zenvark error carries (`code` on ZenvarkError and its subclasses). Codes
 * are stable: match on them, not on messages. README.md ("Error codes") says for each
 * where it comes from, what it means and what to do; test/unit/error-codes.test.ts checks
 * that this list, the code and the README agree.
 */
export const ErrorCode = {
  // Raised by the function library (lua/zenvark_v1.lua); a RedisFunctionError carries them.
  /** A function refused an argument: missing, malformed or out of range. */
  BADARG: 'ZV_BADARG',
  /** A breaker key holds a value of another type. */
  WRONGTYPE: 'ZV_WRONGTYPE',
  /** A breaker key holds a value the library did not write. */
  CORRUPT: 'ZV_CORRUPT',
  /** The user's ACL does not allow a command a function needs, or (RedisRefusedError, from
   * start()) one the client sends itself; the message names it. */
  NOPERM: 'ZV_NOPERM',
  /** Redis refused a command inside a function for another reason (named, with Redis's words). */
  REFUSED: 'ZV_REFUSED',

  // Thrown to the caller of execute().
  /** CircuitOpenError: the circuit is open, or half-open with no trial permit free. */
  CIRCUIT_OPEN: 'ZV_CIRCUIT_OPEN',
  /** TimeoutError: a call outlived its timeoutMs. */
  TIMEOUT: 'ZV_TIMEOUT',

  // Thrown by a breaker's methods.
  /** explain() or a control (forceOpen(), ...) on a breaker that is not running: they work through the breaker's connections. */
  NOT_STARTED: 'ZV_NOT_STARTED',

  // Thrown by the admin API (src/admin.ts) and the zenvark command.
  /** No breaker of that id under the prefix: it has no state hash (never recorded a call, or deleted). Nothing was written. */
  UNKNOWN_BREAKER: 'ZV_UNKNOWN_BREAKER',

  // Thrown by start(), or reported when the library is reloaded.
  /** RedisAuthError: Redis refused the credentials (WRONGPASS, NOAUTH, AUTH refused). */
  AUTH_FAILED: 'ZV_AUTH_FAILED',
  /** FunctionsUnsupportedError: the server has no Redis Functions (before Redis 7.0, or without FUNCTION/FCALL). */
  FUNCTIONS_UNSUPPORTED: 'ZV_FUNCTIONS_UNSUPPORTED',
  /** LibraryMissingError: the function library is not loaded on a server. */
  LIBRARY_MISSING: 'ZV_LIBRARY_MISSING',
  /** LibraryOutdatedError: the loaded library is older than this package needs. */
  LIBRARY_OUTDATED: 'ZV_LIBRARY_OUTDATED',

  // What the client could not read.
  /** A function answered with a reply this client does not understand. */
  BAD_REPLY: 'ZV_BAD_REPLY',
  /** A message on the feed channel that the library did not publish. */
  BAD_MESSAGE: 'ZV_BAD_MESSAGE',
  /** Redis no longer has a state of the breaker it wrote (a failover lost writes): the instance follows Redis again. */
  STATE_LOST: 'ZV_STATE_LOST',

  // Background errors, handed to onError (most as BackgroundError).
  /** No answer from Redis (RedisUnreachableError): start() gave up, or in the background
   * the instance goes on under its cached state. */
  REDIS_UNREACHABLE: 'ZV_REDIS_UNREACHABLE',
  /** Redis answered but refused the breaker's call (out of memory, read-only, ACL, ...):
   * start() fails (RedisRefusedError), or the instance goes on under its cached state. */
  REDIS_REFUSED: 'ZV_REDIS_REFUSED',
  /** Redis accepts the breaker's calls again: the shared state replaced the local one. */
  REDIS_RESTORED: 'ZV_REDIS_RESTORED',
  /** One of the application's callbacks or metrics methods threw, or answered nonsense. */
  CALLBACK_FAILED: 'ZV_CALLBACK_FAILED',
  /** A health check failed (the dependency is still down), or the health-check loop did. */
  HEALTH_CHECK_FAILED: 'ZV_HEALTH_CHECK_FAILED',
  /** A health check did not settle within health.timeoutMs (the cause of a failed check). */
  HEALTH_CHECK_TIMEOUT: 'ZV_HEALTH_CHECK_TIMEOUT',
  /** The lease could not be released at stop(). */
  LEASE_FAILED: 'ZV_LEASE_FAILED',
  /** Subscribing to the state feed, or reading missed transitions, failed. */
  FEED_FAILED: 'ZV_FEED_FAILED',
  /** A trial call's result reached Redis after its permit was reclaimed: it was not counted. */
  TRIAL_LOST: 'ZV_TRIAL_LOST',
  /** Instances of one breaker use windows of different shapes: the stored one was reset. */
  WINDOW_RESHAPED: 'ZV_WINDOW_RESHAPED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The codes the function library raises, the first word of its error replies. */
export const SERVER_ERROR_CODES = [ErrorCode.BADARG, ErrorCode.WRONGTYPE, ErrorCode.CORRUPT, ErrorCode.NOPERM, ErrorCode.REFUSED] as const;
export type ServerErrorCode = (typeof SERVER_ERROR_CODES)[number];
