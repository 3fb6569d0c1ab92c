/**
 * What a failed call to Redis means. The driver's errors are turned into ours, in words
 * that say what happened and what to do, with the driver's error kept as a redacted
 * cause; and for a breaker, each failure is one cause: no answer at all, Redis refusing
 * (out of memory, read-only, an ACL, a script busy, ...), or the library refusing (its own
 * ZV_ codes, a missing library). Told apart by error classes and by the first word of
 * Redis's error reply (a code, like OOM or READONLY, that Redis and Valkey share), never by
 * the words after it.
 */
import { Cluster, ReplyError, type Redis } from 'ioredis';
import { isClusterSubscriber } from './cluster-subscriber.js';
import type { Connection } from './connections.js';
import type { ErrorCode } from './error-codes.js';
import { RedisAuthError, RedisRefusedError, RedisUnreachableError, ZenvarkError } from './errors.js';
import { redactError, redactText, secretsOf } from './redact.js';

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
  NOPERM: 'its ACL does not allow the command, or one of its keys or channels (see the README, "Least privilege")',
  LOADING: 'Redis is loading its data set',
  BUSY: 'Redis is busy running a script',
  MASTERDOWN: 'the replica has lost its primary',
  CLUSTERDOWN: 'the cluster is down',
  TRYAGAIN: 'the cluster is moving the slot of this breaker',
};

/** Why a connection could not be made, by the `code` of Node's socket errors. */
const SOCKET_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ETIMEDOUT: 'connecting timed out',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
};

/** The reply codes that mean the credentials were refused. */
const AUTH_REFUSALS = new Set(['WRONGPASS', 'NOAUTH']);

/** The driver's own error classes (redis-errors) for a command that got no answer. */
const DRIVER_FAILURES = new Set(['RedisError', 'AbortError', 'InterruptError', 'MaxRetriesPerRequestError']);

const NO_ANSWER: RedisFailure = { key: 'unreachable', code: 'ZV_REDIS_UNREACHABLE', summary: 'no answer from Redis' };

export function redisFailure(error: unknown): RedisFailure {
  if (error instanceof RedisUnreachableError) return NO_ANSWER;
  // A command refused by Redis itself: one cause per reply code. Its message says what the code means.
  if (error instanceof RedisRefusedError) return { key: error.reply, code: error.code, summary: '' };
  if (error instanceof ZenvarkError) return { key: error.code, code: error.code, summary: '' };
  const word = replyCode(error);
  if (word === undefined) return NO_ANSWER;
  // An ACL refusal has one code wherever it is met: inside a function, at start(), or here.
  const code = word === 'NOPERM' ? 'ZV_NOPERM' : 'ZV_REDIS_REFUSED';
  return { key: word, code, summary: REFUSALS[word] ?? `Redis refused the call (${word})` };
}

/**
 * What went wrong, for an error a connection emitted: a cluster that could reach no node
 * says why through the last node's error (a refused CLUSTER SLOTS, refused credentials).
 */
export function underlying(error: Error): Error {
  return (error as { lastNodeError?: Error }).lastNodeError ?? error;
}

/** What names a connection's server in messages: host:port, never the URL it came from. */
export function serverAddress(connection: Connection): string {
  if (connection instanceof Cluster) return 'the Redis Cluster';
  const options = (connection as Redis).options;
  // Where the server is not in the options, the socket says which one it reached.
  const stream = (connection as Redis).stream;
  const reached = stream?.remoteAddress ? ` (${stream.remoteAddress}:${stream.remotePort})` : '';
  if (options.sentinels) return `the primary of sentinel group '${options.name ?? ''}'${reached}`;
  if (isClusterSubscriber(connection)) return `a node of the Redis Cluster${reached}`;
  if ('path' in options && options.path) return String(options.path);
  return `${options.host ?? 'localhost'}:${options.port ?? 6379}`;
}

/**
 * The code of an error reply, its first word ('OOM command not allowed ...' is OOM), or
 * undefined for an error that is not a reply (a closed connection, a timeout). The one place
 * that reads an error's words.
 */
export function replyCode(error: unknown): string | undefined {
  if (!(error instanceof ReplyError)) return undefined;
  return /^([A-Z][A-Z_]*)(?:\s|$)/.exec((error as Error).message)?.[1] ?? 'ERR';
}

/** Why a connection could not be made, from a socket error's code; undefined for other errors. */
export function socketFailure(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string' || !(error as { syscall?: unknown }).syscall) return undefined;
  return SOCKET_ERRORS[code] ?? code;
}

/** The connection's role in messages: the library's own connections are named zenvark:<role>. */
function connectionRole(connection: Connection): string {
  const name = (connection as Redis).options?.connectionName;
  if (name === 'zenvark:commands') return 'the command connection';
  if (name === 'zenvark:subscriber') return 'the subscriber connection';
  return 'the connection';
}

/** The user a connection authenticates as ('default' when none is named). */
function userOf(connection: Connection): string {
  const options = connection.options as { username?: string; redisOptions?: { username?: string } };
  return options.username || options.redisOptions?.username || 'default';
}

/** Whether the driver's error is the credentials being refused (by the reply's code, or the command that was refused). */
function isAuthRefusal(error: Error, word: string): boolean {
  if (AUTH_REFUSALS.has(word)) return true;
  const command = (error as { command?: { name?: unknown; args?: unknown[] } }).command;
  const name = String(command?.name ?? '').toLowerCase();
  return name === 'auth' || (name === 'hello' && (command?.args ?? []).some((arg) => String(arg).toUpperCase() === 'AUTH'));
}

/**
 * The driver's error as one of ours, naming the server and saying what happened, with the
 * driver's error as a redacted cause: credentials refused (RedisAuthError), a command
 * refused (RedisRefusedError), no answer (RedisUnreachableError). Errors that are not the
 * driver's (ours, a bug) are returned as they are.
 */
export function driverError(error: unknown, connection: Connection): unknown {
  if (!(error instanceof Error) || error instanceof ZenvarkError) return error;
  const server = serverAddress(connection);
  const secrets = secretsOf(connection);
  const cause = redactError(error, secrets);
  const word = replyCode(error);
  if (word !== undefined) {
    const user = userOf(connection);
    if (isAuthRefusal(error, word)) {
      const why =
        word === 'NOAUTH'
          ? 'the server requires a password and the client sent none'
          : word === 'WRONGPASS'
            ? `the server refused user '${user}' with the password given`
            : 'the server refused the AUTH command';
      return new RedisAuthError(
        server,
        word,
        `authentication to Redis at ${server} failed (${word}): ${why}; check the username and password in the client's URL or options`,
        cause,
      );
    }
    const command = String((error as { command?: { name?: unknown } }).command?.name ?? 'a command').toUpperCase();
    const words = redactText(error.message, secrets);
    const meaning = REFUSALS[word];
    return new RedisRefusedError(
      server,
      command,
      word,
      `Redis at ${server} refused ${command}${word === 'NOPERM' ? ` for user '${user}'` : ''} (${words})${meaning ? `: ${meaning}` : ''}`,
      cause,
    );
  }
  const socket = socketFailure(error);
  if (socket !== undefined) return new RedisUnreachableError(server, `Redis at ${server} is not reachable (${socket})`, cause);
  if (!isDriverFailure(error)) return error;
  if (error.name === 'AbortError' || error.name === 'InterruptError') {
    return new RedisUnreachableError(server, `${connectionRole(connection)} to ${server} closed before Redis answered`, cause);
  }
  if (!isUp(connection)) return new RedisUnreachableError(server, `${connectionRole(connection)} to ${server} is down`, cause);
  const timeout = (connection as Redis).options?.commandTimeout;
  return new RedisUnreachableError(server, `Redis at ${server} did not answer${timeout ? ` within ${timeout} ms` : ''}`, cause);
}

/** Whether the connection can send a command now: ready, and its socket writable (a socket can end before the driver notices). */
function isUp(connection: Connection): boolean {
  if (connection.status !== 'ready') return false;
  const stream = connection instanceof Cluster ? undefined : (connection as Redis).stream;
  return stream === undefined || stream.writable;
}

/**
 * The driver's own failures, by class: plain Errors (a full or disabled offline queue, a
 * command timeout, a closed connection) and its abort errors (a connection closed with
 * the command in flight, retries exhausted).
 */
function isDriverFailure(error: Error): boolean {
  return Object.getPrototypeOf(error) === Error.prototype || DRIVER_FAILURES.has(error.name);
}

/**
 * `sent`, or a RedisUnreachableError once `timeoutMs` passed without its answer: for the
 * reads and controls of operators, whose client may have no command timeout of its own.
 * `what` names the call in the message.
 */
export async function answeredWithin<T>(timeoutMs: number, connection: Connection, what: string, sent: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const server = serverAddress(connection);
      reject(new RedisUnreachableError(server, `Redis at ${server} did not answer ${what} within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([sent, late]);
  } finally {
    clearTimeout(timer);
  }
}
