import type { ErrorCode, ServerErrorCode } from './error-codes.js';
import { redactError } from './redact.js';

/**
 * Base class of every error Zenvark creates; `code` is stable, the message is for people.
 * A `cause` is kept redacted (src/redact.ts): what prints an error prints no password.
 */
export class ZenvarkError extends Error {
  declare readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options && { cause: safeCause(options.cause) });
    this.code = code;
  }
}

/** A cause as an error may keep it: ours are redacted when made, others are redacted now. */
function safeCause(cause: unknown): unknown {
  return cause instanceof ZenvarkError ? cause : redactError(cause);
}

/**
 * ZV_NOT_STARTED: `method` of a breaker works through the breaker's connections, which
 * exist from start() to stop(); `instead` names what works without a running breaker.
 */
export function notStarted(breakerId: string, method: string, instead: string): ZenvarkError {
  return new ZenvarkError('ZV_NOT_STARTED', `breaker '${breakerId}' is not started: ${method} works through its connections; call start() first, or ${instead}`);
}

/**
 * Thrown by `execute()` without calling `fn` while the circuit is open, or half-open with
 * no trial permit free. No stack trace is captured: the error is created on the fast-fail
 * path, where a stack would cost more than everything else and would only point at
 * `execute()`.
 */
export class CircuitOpenError extends ZenvarkError {
  declare readonly breakerId: string;
  /** 'open', 'half_open' when no trial permit was free, or 'isolated' when this instance
   * isolated itself (see CircuitBreakerOptions.minimumInstances). */
  declare readonly state: 'open' | 'half_open' | 'isolated';

  constructor(breakerId: string, state: 'open' | 'half_open' | 'isolated' = 'open') {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(
        'ZV_CIRCUIT_OPEN',
        state === 'open'
          ? `circuit '${breakerId}' is open`
          : state === 'isolated'
            ? `circuit '${breakerId}' is isolated on this instance: its own calls failed while the fleet's stayed closed`
            : `circuit '${breakerId}' is half-open and no trial permit is free`,
      );
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.breakerId = breakerId;
    this.state = state;
  }
}

/** A call did not settle within its timeout; its signal was aborted with this error. */
export class TimeoutError extends ZenvarkError {
  declare readonly breakerId: string;
  declare readonly timeoutMs: number;

  constructor(breakerId: string, timeoutMs: number) {
    super('ZV_TIMEOUT', `call through circuit '${breakerId}' timed out after ${timeoutMs} ms`);
    this.breakerId = breakerId;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * How to deploy the library: the command's arguments for the server (`--url redis://host:port`,
 * with `--cluster` for a cluster's node), or for a server whose address is not known
 * `--url <redis-url>`. Never a password: the operator adds the credentials.
 */
function deployHow(deployArgs: string): string {
  return `\`npx zenvark deploy-functions ${deployArgs}\` (in this repository: \`npm run deploy-functions -- ${deployArgs}\`)`;
}

/** The Redis function library is not loaded on a server the breaker uses. */
export class LibraryMissingError extends ZenvarkError {
  /** @param deployArgs the deploy command's arguments for that server (see deployHow) */
  constructor(server: string, expected: number, deployArgs = '--url <redis-url>') {
    super(
      'ZV_LIBRARY_MISSING',
      `the Zenvark function library zenvark_v1 is not loaded on ${server}; load revision ${expected} with ${deployHow(deployArgs)}, ` +
        'or pass `loadFunctions: true` to let the breaker load it',
    );
  }
}

/** The loaded library is older than this package needs. */
export class LibraryOutdatedError extends ZenvarkError {
  /** @param deployArgs the deploy command's arguments for that server (see deployHow) */
  constructor(server: string, installed: number, expected: number, deployArgs = '--url <redis-url>') {
    super(
      'ZV_LIBRARY_OUTDATED',
      `the Zenvark function library on ${server} is at revision ${installed}, this package needs ${expected}; ` +
        `upgrade it with ${deployHow(deployArgs)}, or pass \`loadFunctions: true\` to let the breaker load it`,
    );
  }
}

/**
 * Redis gave no answer: it could not be reached, a connection is down, or a command timed
 * out. The message names the server (host:port) and what happened.
 */
export class RedisUnreachableError extends ZenvarkError {
  /** host:port of the server, or what names it (a cluster, a sentinel group). */
  declare readonly server: string;

  constructor(server: string, message: string, cause?: unknown) {
    super('ZV_REDIS_UNREACHABLE', message, { cause });
    this.server = server;
  }
}

/**
 * A call got no answer while this process had stopped running (a blocked event loop, a
 * long GC pause, SIGSTOP, a paused VM; see src/stall-watch.ts): Redis's answer may be
 * waiting unread. The breaker reads the shared state again before it takes Redis for
 * unreachable (src/coordinator.ts, failed()).
 */
export class ProcessStalledError extends RedisUnreachableError {
  constructor(unanswered: RedisUnreachableError, stalledMs: number) {
    super(
      unanswered.server,
      `${unanswered.message}, but this process had stopped running for more than ${stalledMs.toFixed(0)} ms meanwhile`,
      unanswered.cause,
    );
  }
}

/** Redis refused the client's credentials: a wrong username or password, or none given. */
export class RedisAuthError extends ZenvarkError {
  declare readonly server: string;
  /** The first word of Redis's reply: WRONGPASS, NOAUTH, ... */
  declare readonly reply: string;

  constructor(server: string, reply: string, message: string, cause?: unknown) {
    super('ZV_AUTH_FAILED', message, { cause });
    this.server = server;
    this.reply = reply;
  }
}

/**
 * Redis refused a command the client sent itself (not one a function ran): `ZV_NOPERM`
 * when the user's ACL does not allow it, `ZV_REDIS_REFUSED` for any other refusal.
 */
export class RedisRefusedError extends ZenvarkError {
  declare readonly code: 'ZV_NOPERM' | 'ZV_REDIS_REFUSED';
  declare readonly server: string;
  /** The command Redis refused, in capitals. */
  declare readonly command: string;
  /** The first word of Redis's reply: NOPERM, OOM, READONLY, ... */
  declare readonly reply: string;

  constructor(server: string, command: string, reply: string, message: string, cause?: unknown) {
    super(reply === 'NOPERM' ? 'ZV_NOPERM' : 'ZV_REDIS_REFUSED', message, { cause });
    this.server = server;
    this.command = command;
    this.reply = reply;
  }
}

/** The server has no Redis Functions (Redis before 7.0, or a server without FUNCTION and FCALL). */
export class FunctionsUnsupportedError extends ZenvarkError {
  declare readonly server: string;

  constructor(server: string, message: string) {
    super('ZV_FUNCTIONS_UNSUPPORTED', message);
    this.server = server;
  }
}

/**
 * A Redis function refused a call: ZV_BADARG (bad argument), ZV_WRONGTYPE (a breaker key
 * holds another type) or ZV_CORRUPT (a breaker key holds data Zenvark did not write).
 */
export class RedisFunctionError extends ZenvarkError {
  declare readonly code: ServerErrorCode;
  declare readonly functionName: string;

  /** `code` is the first word of the library's error reply, one of SERVER_ERROR_CODES
   * (test/unit/error-codes.test.ts checks the library raises no other). */
  constructor(code: ServerErrorCode, functionName: string, message: string) {
    super(code, `${functionName}: ${message}`);
    this.functionName = functionName;
  }
}

/**
 * A failure in the background (recording, lease, state feed, health checks, callbacks),
 * handed to `onError` with what was being done and the underlying cause.
 */
export class BackgroundError extends ZenvarkError {
  declare readonly breakerId: string;

  /** `code` is one of ErrorCode; it is typed string while the breaker's report() passes
   * one (test/unit/error-codes.test.ts checks every code written in src/ is listed). */
  constructor(code: ErrorCode, breakerId: string, message: string, cause?: unknown) {
    const safe = safeCause(cause);
    super(code, `breaker '${breakerId}': ${message}${describeCause(safe)}`, { cause: safe });
    this.breakerId = breakerId;
  }
}

// Names live on the prototypes: one property less to create per error.
for (const type of [
  ZenvarkError,
  CircuitOpenError,
  TimeoutError,
  LibraryMissingError,
  LibraryOutdatedError,
  RedisUnreachableError,
  RedisAuthError,
  RedisRefusedError,
  FunctionsUnsupportedError,
  RedisFunctionError,
  BackgroundError,
]) {
  Object.defineProperty(type.prototype, 'name', { value: type.name, writable: true, configurable: true });
}

function describeCause(cause: unknown): string {
  if (cause === undefined) return '';
  if (cause instanceof Error) return `: ${cause.message}`;
  return `: ${String(cause)}`;
}
