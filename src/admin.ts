/**
 * The operator's side of Zenvark: list breakers, read one's status and history, and control
 * it, through any ioredis Redis or Cluster client, with no breaker running. The `zenvark`
 * command (scripts/zenvark.ts) is built on it. Every call is bounded by `timeoutMs`
 * (default 5 s): an operator's client may have no command timeout of its own.
 *
 * A breaker exists when Redis has its state hash (written by its first recorded outcome);
 * for any other id the calls throw ZV_UNKNOWN_BREAKER and write nothing.
 */
import { hostname, userInfo } from 'node:os';
import type { Cluster, Redis } from 'ioredis';
import { type CircuitState, ControlAction, TransitionScope } from './constants.js';
import type { Connection } from './connections.js';
import { ZenvarkError } from './errors.js';
import { duration } from './describe.js';
import { type Explanation, type ExplainOptions, OPERATOR_TIMEOUT_MS, explainBreaker } from './explain.js';
import { controlArguments } from './controls.js';
import { control, readAudit, readInstanceAudit, readReporters, readSnapshot } from './functions.js';
import { type BreakerKeys, breakerIdOf, breakerKeys, feedChannel, stateKeyPattern } from './keys.js';
import { ask, primaries } from './library.js';
import { MAX_ACTOR_BYTES, MAX_DELAY_MS } from './limits.js';
import { DEFAULTS, keyPrefix, redisClient } from './options.js';
import { answeredWithin } from './redis-failure.js';
import { type Transition, instanceTransition } from './transition.js';
import { bytesIn, durationIn, integerIn, nonEmptyString, onlyKnownKeys, requiredObject, show } from './validate.js';
import { badReply } from './wire.js';

/** Options every admin call takes. */
export interface AdminOptions {
  /** Prefix of the breakers' keys, as the breakers have it. Default: 'zenvark'. */
  prefix?: string;
  /** Longest wait for Redis's answers to the whole call, in ms. Default: 5000. */
  timeoutMs?: number;
}

/** Options of breakerHistory(). Times select entries by their stream id: the time Redis appended them, within a ms of their `time` field. */
export interface HistoryOptions extends AdminOptions {
  /** Only transitions at or after this time (a Date, or ms since the epoch). Default: the oldest the stream holds. */
  since?: Date | number;
  /** Only transitions at or before this time. Default: now. */
  until?: Date | number;
  /** Only transitions of this reason (`forced_open`, `failure_rate`, ...). Default: every reason. */
  reason?: string;
  /** At most this many transitions, the newest ones. Default: all that match. */
  limit?: number;
}

const ADMIN_KEYS = { prefix: true, timeoutMs: true } as const satisfies Record<keyof AdminOptions, true>;
const HISTORY_KEYS = { ...ADMIN_KEYS, since: true, until: true, reason: true, limit: true } as const satisfies Record<keyof HistoryOptions, true>;

/** Keys one SCAN call looks at: large enough that a big keyspace takes few round trips, small enough not to block Redis. */
const SCAN_COUNT = 1000;
/** Audit entries read per round trip while filtering a history. */
const HISTORY_PAGE = 1000;

/** What every call checked of its arguments. */
interface Call {
  readonly client: Connection;
  readonly prefix: string;
  readonly timeoutMs: number;
}

function checked(fn: string, redis: Redis | Cluster, options: object | undefined, known: Record<string, true>): Call & { o: Record<string, unknown> } {
  const client = redisClient(`${fn} redis`, redis);
  const o = options === undefined ? {} : requiredObject(`${fn} options`, options);
  onlyKnownKeys(`${fn} options`, o, known);
  const prefix = keyPrefix(`${fn} options.prefix`, o.prefix, DEFAULTS.prefix);
  const timeoutMs = o.timeoutMs === undefined ? OPERATOR_TIMEOUT_MS : durationIn(`${fn} options.timeoutMs`, o.timeoutMs, 1, MAX_DELAY_MS);
  return { client, prefix, timeoutMs, o };
}

/**
 * The ids of every breaker under the prefix, sorted: the state hashes found by SCAN (MATCH
 * `<prefix>:{*}:state`, TYPE hash) on every primary, never KEYS, which blocks Redis for the
 * whole keyspace. There is no index of breakers to read instead: a function may write only
 * keys of its own breaker's slot, so on a Cluster no function could keep an index key
 * (in one slot) right, and a client-maintained one would drift from what the functions wrote.
 */
export async function listBreakers(redis: Redis | Cluster, options?: AdminOptions): Promise<string[]> {
  const { client, prefix, timeoutMs } = checked('listBreakers()', redis, options, ADMIN_KEYS);
  const pattern = stateKeyPattern(prefix);
  const scans = primaries(client).map((node) => scanAll(node, pattern));
  const keys = (await answeredWithin(timeoutMs, client, 'SCAN', Promise.all(scans))).flat();
  const ids = new Set<string>();
  for (const key of keys) {
    const id = breakerIdOf(prefix, key);
    if (id !== undefined) ids.add(id);
  }
  return [...ids].sort();
}

async function scanAll(node: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = (await ask(node, 'SCAN', cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT, 'TYPE', 'hash')) as [string, string[]];
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0');
  return keys;
}

/** The keys of breaker `id`, or ZV_UNKNOWN_BREAKER when Redis has no state hash for it. */
async function knownBreaker(call: Call, id: string): Promise<BreakerKeys> {
  const keys = breakerKeys(call.prefix, id);
  if ((await readSnapshot(call.client, keys)).epoch === '') throw unknownBreaker(id, call.prefix);
  return keys;
}

function unknownBreaker(id: string, prefix: string): ZenvarkError {
  return new ZenvarkError('ZV_UNKNOWN_BREAKER', `no breaker '${id}' under prefix '${prefix}': Redis has no state for it (${breakerKeys(prefix, id).state})`);
}

/** An instance isolated from its breaker's fleet (see CircuitBreakerOptions.minimumInstances). */
export interface IsolatedInstance {
  readonly instanceId: string;
  /** When it isolated itself: server time, ms since the epoch. */
  readonly since: number;
}

/** A breaker's status: its explanation, and the instances of the instance rule. */
export interface BreakerStatus extends Explanation {
  /** Instances that reported in the current generation (the instance rule's reporter set); 0 without the rule. */
  readonly reporters: number;
  /** Those isolated now, the longest isolated first. */
  readonly isolated: readonly IsolatedInstance[];
}

/**
 * Breaker `id`'s status: its explanation (state, generation, lease, window, recovery; see
 * explainBreaker()) and the instances isolated from it, read through any client, a
 * replica's too.
 */
export async function breakerStatus(redis: Redis | Cluster, id: string, options?: ExplainOptions): Promise<BreakerStatus> {
  const status = await explainBreaker(redis, id, options);
  const prefix = options?.prefix ?? DEFAULTS.prefix;
  if (status.epoch === '') throw unknownBreaker(status.breakerId, prefix);
  const timeoutMs = options?.timeoutMs ?? OPERATOR_TIMEOUT_MS;
  const client = redis as Connection;
  const all = await answeredWithin(timeoutMs, client, 'HGETALL', readReporters(client, breakerKeys(prefix, status.breakerId)));
  // Entries of another generation are the fleet's past: they no longer count.
  const current = [...all].filter(([, r]) => r.generation === status.generation);
  const isolated = current
    .filter(([, r]) => r.isolatedAtMs > 0)
    .sort(([, a], [, b]) => a.isolatedAtMs - b.isolatedAtMs)
    .map(([instanceId, r]) => ({ instanceId, since: r.isolatedAtMs }));
  const line = instancesLine(current.length, isolated);
  const lines = line === undefined ? status.lines : [...status.lines, line];
  return { ...status, reporters: current.length, isolated, lines, text: lines.join('\n') };
}

/** The reporter set in words; undefined without one (no instance rule). */
function instancesLine(reporters: number, isolated: readonly IsolatedInstance[], now = Date.now()): string | undefined {
  if (reporters === 0) return undefined;
  const reported = `instances: ${reporters} reported in this generation`;
  if (isolated.length === 0) return `${reported}, none isolated`;
  const each = isolated.map((i) => `${i.instanceId} (for ${duration(Math.max(0, now - i.since))})`);
  return `${reported}; isolated (their own calls failed, they fail fast until their own checks pass): ${each.join(', ')}`;
}

/**
 * Breaker `id`'s transitions from its audit streams, oldest first: those between `since`
 * and `until`, of `reason`, the newest `limit` of them. The fleet's transitions (scope
 * 'fleet') and its instances' isolations (scope 'instance', from the instance-events
 * stream) are merged in the order Redis appended them. Retention bounds what the streams
 * still hold.
 */
export async function breakerHistory(redis: Redis | Cluster, id: string, options?: HistoryOptions): Promise<Transition[]> {
  const fn = 'breakerHistory()';
  const call = checked(fn, redis, options, HISTORY_KEYS);
  const breakerId = nonEmptyString(`${fn} id`, id);
  const { o } = call;
  const since = o.since === undefined ? '-' : String(time(`${fn} options.since`, o.since));
  const until = o.until === undefined ? '+' : String(time(`${fn} options.until`, o.until));
  const reason = o.reason === undefined ? undefined : nonEmptyString(`${fn} options.reason`, o.reason);
  const limit = o.limit === undefined ? Number.POSITIVE_INFINITY : integerIn(`${fn} options.limit`, o.limit, 1, Number.MAX_SAFE_INTEGER);
  const read = async () => {
    const keys = await knownBreaker(call, breakerId);
    const f = { since, until, reason, limit };
    const read = (scope: TransitionScope) => (end: string, count: number) =>
      scope === TransitionScope.FLEET
        ? readAudit(call.client, keys, end, f.since, count)
        : readInstanceAudit(call.client, keys, end, f.since, count).then((entries) => entries.map(instanceTransition));
    const [fleet, instances] = await Promise.all([matching(read(TransitionScope.FLEET), f), matching(read(TransitionScope.INSTANCE), f)]);
    const merged = [...fleet, ...instances].sort((a, b) => compareIds(a.id, b.id));
    return merged.slice(Math.max(0, merged.length - limit));
  };
  return answeredWithin(call.timeoutMs, call.client, 'the history', read());
}

/** The order of two stream ids ('<ms>-<seq>'): Redis appends in increasing order. */
function compareIds(a: string, b: string): number {
  const [aMs, aSeq] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bMs, bSeq] = b.split('-').map(BigInt) as [bigint, bigint];
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

/** Pages of the stream, newest first, until `limit` entries matched or the range ends; returned oldest first. */
async function matching(
  readPage: (end: string, count: number) => Promise<Transition[]>,
  f: { since: string; until: string; reason: string | undefined; limit: number },
): Promise<Transition[]> {
  const found: Transition[] = [];
  let end = f.until;
  for (;;) {
    const count = f.reason === undefined ? Math.min(HISTORY_PAGE, f.limit - found.length) : HISTORY_PAGE;
    const page = await readPage(end, count);
    for (const t of page) {
      if (f.reason === undefined || t.reason === f.reason) found.push(t);
      if (found.length >= f.limit) return found.reverse();
    }
    const last = page.at(-1);
    if (last === undefined || page.length < HISTORY_PAGE) return found.reverse();
    end = `(${last.id}`;
  }
}

/** A time as ms since the epoch, from a Date or a number of ms. */
function time(name: string, value: unknown): number {
  const ms = value instanceof Date ? value.getTime() : value;
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0) {
    throw new RangeError(`${name} must be a Date or a whole number of ms since the epoch, got ${show(value)}`);
  }
  return ms;
}

/** Options of controlBreaker(). */
export interface ControlOptions extends AdminOptions {
  /** Why: recorded in the audit entry. Required, 1 to 512 bytes. */
  reason: string;
  /** open, close, monitor: the mode ends by itself after this long, in ms (1 to 30 days). Default: until released. */
  forMs?: number;
  /** Who does it, recorded in the audit entry. Default: `<user>@<hostname>` of this process. */
  actor?: string;
}

/** What a control did. */
export interface ControlResult {
  /** 'applied': written (the transition is `transition`); 'no_mode': release with no mode set, nothing written. */
  readonly status: 'applied' | 'no_mode';
  readonly state: CircuitState;
  readonly generation: number;
  /** The transition written; undefined for 'no_mode'. */
  readonly transition: Transition | undefined;
}

const CONTROL_KEYS = { ...ADMIN_KEYS, reason: true, forMs: true, actor: true } as const satisfies Record<keyof ControlOptions, true>;

/** Who a control is recorded as, by default: this process's user and host. */
function defaultActor(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // A uid without a user entry (as in some containers).
  }
  return `${user}@${hostname()}`;
}

/**
 * Applies `action` to breaker `id` on every instance at once: one transition (its audit
 * entry carries the actor, the reason and the expiry), published as any other. Arguments
 * are checked before anything is sent; an unknown id is ZV_UNKNOWN_BREAKER, and the library
 * writes nothing for it.
 */
export async function controlBreaker(redis: Redis | Cluster, id: string, action: ControlAction, options: ControlOptions): Promise<ControlResult> {
  const fn = 'controlBreaker()';
  const call = checked(fn, redis, requiredObject(`${fn} options`, options), CONTROL_KEYS);
  const breakerId = nonEmptyString(`${fn} id`, id);
  if (!Object.values(ControlAction).includes(action)) {
    throw new RangeError(`${fn} action must be one of ${Object.values(ControlAction).join(', ')}, got ${show(action)}`);
  }
  const { o } = call;
  const { reason, forMs } = controlArguments(`${fn} options`, action, o);
  const actor = o.actor === undefined ? defaultActor() : bytesIn(`${fn} options.actor`, o.actor, MAX_ACTOR_BYTES);
  const keys = breakerKeys(call.prefix, breakerId);
  // Retention 0: an operator's control never trims the history the breaker's instances keep.
  const header = { channel: feedChannel(call.prefix), actor, retention: 0 };
  const sent = control(call.client, keys, header, { action, note: reason, forMs, create: false });
  const reply = await answeredWithin(call.timeoutMs, call.client, 'zv1_control', sent);
  if (reply.status === 'unknown') throw unknownBreaker(breakerId, call.prefix);
  // An operator never sends expire, the one action that can answer not_due.
  if (reply.status === 'not_due') throw badReply('zv1_control', reply.status);
  return { status: reply.status, state: reply.view.state, generation: reply.view.generation, transition: reply.published?.transition };
}
