/**
 * The only module that calls the function library. It builds KEYS and ARGV, calls Redis
 * and turns replies into typed objects; nothing else sees a raw reply. The contract of
 * each function is the block above it in lua/zenvark_v1.lua.
 */
import { type BreakerMode, type CallResult, type CheckResult, type ControlAction, IsolationAction, type RejoinReason } from './constants.js';
import type { Connection } from './connections.js';
import { SERVER_ERROR_CODES, type ServerErrorCode } from './error-codes.js';
import { ProcessStalledError, RedisFunctionError, RedisUnreachableError } from './errors.js';
import { type Published, parsePublished } from './feed-message.js';
import { type BreakerKeys, isolationKeyList, keyList, ruleKeyList } from './keys.js';
import { libraryNotCurrent } from './library.js';
import { driverError, replyCode } from './redis-failure.js';
import type { SharedView } from './shared-view.js';
import { stallWatch } from './stall-watch.js';
import { type InstanceEntry, type ReporterEntry, type Transition, parseAuditEntry, parseInstanceEntry, parseReporterEntry } from './transition.js';
import { badReply, breakerMode, circuitState, int, oneOf, text } from './wire.js';

// Each reply's statuses, in one list: the type is derived from it and replies are checked against it.
const RECORD = ['ok', 'opened', 'stale_gen', 'not_closed', 'reshaped', 'held'] as const;
const ISOLATE = ['isolated', 'monitored', 'not_reached', 'stale_gen', 'not_closed', 'mode'] as const;
const REJOIN = ['rejoined', 'not_isolated'] as const;
const ACQUIRE = ['granted', 'held'] as const;
const RENEW = ['renewed', 'lost'] as const;
const RELEASE = ['released', 'not_holder'] as const;
const HEALTH = ['closed', 'half_open', 'opened', 'counted', 'ignored', 'stale_token', 'stale_gen'] as const;
const PERMIT = ['granted', 'exhausted', 'not_half_open', 'stale_gen'] as const;
const TRIAL = ['counted', 'released', 'closed', 'opened', 'unknown_permit', 'not_half_open', 'stale_gen'] as const;
const CONTROL = ['applied', 'unknown', 'no_mode', 'not_due'] as const;

/** A breaker's mode as zv1_state reports it (revision 6; a reply of an earlier one reads as normal). */
export interface ModeInfo {
  /** '' for normal operation; as stored, so a mode whose expiry passed shows until its `expired` entry is written. */
  readonly mode: BreakerMode;
  /** Who set it, and why ('' when none). */
  readonly actor: string;
  readonly note: string;
  /** Since it was set, ms (0 when none). */
  readonly sinceMs: number;
  /** When it ends, server time in ms; 0 for never (or no mode). */
  readonly until: number;
  /** Left until then, ms: 0 with `until` > 0 means it is over and its entry not yet written. */
  readonly leftMs: number;
}

/** What zv1_state reports that a breaker uses. Durations are computed on server time. */
export interface Snapshot extends SharedView {
  /** Time in the current state. */
  readonly ageMs: number;
  /** Failed recovery checks (or failed half-open periods) since the circuit opened. */
  readonly recoveryFailures: number;
  /** Successful recovery checks in a row. */
  readonly recoverySuccesses: number;
  /** Since the last recovery check, or the transition. */
  readonly recoveryAgeMs: number;
  /** Since the last recorded call; -1 when none was recorded. */
  readonly idleMs: number;
  /** The instance holding a valid lease, '' for none. */
  readonly holder: string;
  /** What is left of that lease, ms (0: none). */
  readonly leaseMs: number;
  readonly mode: ModeInfo;
}

/** A coalesced summary of outcomes, see recorder.ts. */
export interface OutcomeSummary {
  readonly ok: number;
  readonly fail: number;
  readonly slowOk: number;
  readonly slowFail: number;
  readonly head: number;
  readonly maxRun: number;
  readonly tail: number;
}

/** A reply that tells the breaker's shared state, and the transition the call made, if any. */
export interface StateReply<S extends string> {
  readonly status: S;
  readonly view: SharedView;
  readonly published: Published | undefined;
}

export interface RecordReply extends StateReply<(typeof RECORD)[number]> {
  /** 'opened': the fencing token of the lease granted to this instance with the trip; 0 when none was (another holds it). */
  readonly token: number;
  /**
   * With an instance rule, for 'opened' and 'held' (a rule of the strategy reached, the
   * instance rule not met: no transition): the instances whose failures are in the window,
   * and those that reported in it. Undefined otherwise.
   */
  readonly instances: { readonly failing: number; readonly reporting: number } | undefined;
}

/** The figures of an instance's own window, as zv1_isolate judges them (for consecutive failures, failures = calls = the run). */
export interface OwnWindowFigures {
  readonly failures: number;
  readonly calls: number;
  readonly slow: number;
}

/** zv1_isolate's answer: the fleet's state (unchanged by it) and the instance-level entry written, if any. */
export interface IsolationReply<S extends string> extends SharedView {
  readonly status: S;
  /** The id of the entry written to the instance-events stream; '' when none was. */
  readonly entryId: string;
}
export type IsolateReply = IsolationReply<(typeof ISOLATE)[number]>;
export type RejoinReply = IsolationReply<(typeof REJOIN)[number]>;
export type HealthReply = StateReply<(typeof HEALTH)[number]>;
export type ControlReply = StateReply<(typeof CONTROL)[number]>;
export type TrialReply = StateReply<(typeof TRIAL)[number]>;

export interface AcquireReply {
  readonly status: (typeof ACQUIRE)[number];
  readonly token: number;
  /** Granted: how long the lease is ours; held: how long the holder's lasts. */
  readonly leaseMs: number;
  readonly snapshot: Snapshot;
}

export interface RenewReply {
  readonly status: (typeof RENEW)[number];
  /** Lost: how long the current holder's lease lasts (0: none). */
  readonly leaseMs: number;
}

export interface PermitReply {
  readonly status: (typeof PERMIT)[number];
  readonly view: SharedView;
  /** The permit, when granted. */
  readonly permit: string;
  /** Granted: how long the permit is valid; exhausted: when one may be freed (0: unknown). */
  readonly ms: number;
}

/** What a breaker's window holds, counted as its audit entries count: for consecutive
 * failures, failures and calls are the failure run. */
export interface WindowFigures {
  readonly failures: number;
  readonly calls: number;
  /** Slow calls (0 for consecutive failures). */
  readonly slow: number;
}

/** An entry of the audit stream as stored: its id and fields. */
export interface AuditEntry {
  readonly id: string;
  readonly fields: Readonly<Record<string, string>>;
}

/** What zv1_explain reports: the snapshot, and the figures behind the breaker's state. */
export interface ExplainReply {
  readonly snapshot: Snapshot;
  /** The fencing token last granted (0: never). */
  readonly token: number;
  readonly trialSuccesses: number;
  /** The strategy spec the last recorded call stored; '' before the first. */
  readonly spec: string;
  /** The window now, on server time (expired buckets left out). */
  readonly window: WindowFigures;
  /** The figures reach the failure rule (run or rate), the slow-call rule: the library's judgement. */
  readonly failureReached: boolean;
  readonly slowReached: boolean;
  /** Trial permits out and not expired. */
  readonly permitsOut: number;
  /** Length of the audit stream. */
  readonly auditEntries: number;
  /** Its newest entry, as stored. */
  readonly newest: AuditEntry | undefined;
}

/** The half-open settings every permit and trial call carries. */
export interface TrialSettings {
  readonly permittedCalls: number;
  readonly successThreshold: number;
  readonly permitTimeoutMs: number;
}

/**
 * Maps a Redis error to ours: ZV_ codes and a missing or outdated library get their own
 * classes (naming the primary that lacks it), and the driver's errors say what happened
 * (src/redis-failure.ts). A plain ERR reply is what a missing function gets, but also any
 * other failure the server words its own way: the primaries are asked whether the library
 * is there.
 */
async function functionError(error: unknown, functionName: string, connection: Connection): Promise<unknown> {
  if (!(error instanceof Error)) return error;
  const coded = /^(ZV_[A-Z_]+) ([\s\S]*)$/.exec(error.message);
  const code = coded?.[1];
  if (code && coded[2] !== undefined && (SERVER_ERROR_CODES as readonly string[]).includes(code)) {
    const refused = new RedisFunctionError(code as ServerErrorCode, functionName, coded[2]);
    // This client sends only arguments its own revision takes: an argument refused means an
    // older revision on a primary (one added later, or promoted after missing an upgrade).
    if (code === 'ZV_BADARG') return (await libraryNotCurrent(connection).catch(() => undefined)) ?? refused;
    return refused;
  }
  if (replyCode(error) === 'ERR') {
    const notCurrent = await libraryNotCurrent(connection).catch(() => undefined);
    if (notCurrent) return notCurrent;
  }
  return driverError(error, connection);
}

/** {status, state, gen, epoch, entry id}: zv1_isolate's reply. */
function isolationReply<const S extends string>(reply: unknown[], statuses: readonly S[]): IsolationReply<S> {
  return { status: oneOf('zv1_isolate', reply[0], statuses), ...viewAt(reply, 1), entryId: text(reply[4]) };
}

function viewAt(reply: unknown[], at: number): SharedView {
  return { state: circuitState(reply[at]), generation: int(reply[at + 1]), epoch: text(reply[at + 2]) };
}

/** {status, state, gen, epoch, ...}: the shape of every reply that tells the state. */
function stateReply<const S extends string>(name: string, reply: unknown[], statuses: readonly S[], publishedAt: number): StateReply<S> {
  return { status: oneOf(name, reply[0], statuses), view: viewAt(reply, 1), published: parsePublished(reply[publishedAt]) };
}

/** A stream entry's field/value list as an object. */
function entryFields(list: string[]): Record<string, string> {
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < list.length; i += 2) fields[list[i] as string] = list[i + 1] as string;
  return fields;
}

/** A reply of name/value pairs, by name. */
function byName(pairs: unknown[]): Map<string, unknown> {
  const m = new Map<string, unknown>();
  for (let i = 0; i + 1 < pairs.length; i += 2) m.set(text(pairs[i]), pairs[i + 1]);
  return m;
}

function parseSnapshot(pairs: unknown[]): Snapshot {
  return snapshotOf(byName(pairs));
}

function snapshotOf(m: Map<string, unknown>): Snapshot {
  return {
    state: circuitState(m.get('state')),
    generation: int(m.get('gen')),
    epoch: text(m.get('epoch')),
    ageMs: int(m.get('age_ms')),
    recoveryFailures: int(m.get('recovery_failures')),
    // Absent from revision-1 replies.
    recoverySuccesses: int(m.get('recovery_successes') ?? 0),
    recoveryAgeMs: int(m.get('recovery_age_ms')),
    idleMs: int(m.get('idle_ms')),
    holder: text(m.get('holder')),
    leaseMs: int(m.get('lease_ms')),
    // Absent from replies of revisions before 6: normal operation.
    mode: {
      mode: breakerMode(m.get('mode')),
      actor: text(m.get('mode_actor') ?? ''),
      note: text(m.get('mode_note') ?? ''),
      sinceMs: int(m.get('mode_since_ms') ?? 0),
      until: int(m.get('mode_until') ?? 0),
      leftMs: int(m.get('mode_left_ms') ?? 0),
    },
  };
}

function parseExplanation(reply: unknown[]): ExplainReply {
  const m = byName(reply);
  const last = m.get('last');
  const id = text(m.get('last_id'));
  if (!Array.isArray(last)) throw badReply('zv1_explain', last);
  return {
    snapshot: snapshotOf(m),
    token: int(m.get('token')),
    trialSuccesses: int(m.get('trial_successes')),
    spec: text(m.get('cfg')),
    window: { failures: int(m.get('failures')), calls: int(m.get('calls')), slow: int(m.get('slow')) },
    failureReached: int(m.get('failure_reached')) === 1,
    slowReached: int(m.get('slow_reached')) === 1,
    permitsOut: int(m.get('permits_out')),
    auditEntries: int(m.get('entries')),
    newest: id === '' ? undefined : { id, fields: entryFields(last.map(text)) },
  };
}

/**
 * The reply of `name` (a function, or a read of the audit stream) sent on `connection`:
 * a list; its errors mapped by functionError.
 */
async function answer(connection: Connection, name: string, sent: Promise<unknown>): Promise<unknown[]> {
  const since = stallWatch.begin();
  let reply: unknown;
  try {
    reply = await sent;
  } catch (error) {
    const stalledMs = stallWatch.stalledSince(since);
    const failure = await functionError(error, name, connection);
    // No answer, but this process was not running to read one: Redis is not to blame.
    if (stalledMs > 0 && failure instanceof RedisUnreachableError) throw new ProcessStalledError(failure, stalledMs);
    throw failure;
  } finally {
    stallWatch.end();
  }
  if (!Array.isArray(reply)) throw badReply(name, reply);
  return reply;
}

/**
 * zv1_explain over any connection: a breaker's, an operator's, a replica's (it is
 * read-only). A library too old to have the function is told as LibraryOutdatedError.
 */
export async function readExplanation(connection: Connection, keys: BreakerKeys): Promise<ExplainReply> {
  return parseExplanation(await answer(connection, 'zv1_explain', connection.fcall_ro('zv1_explain', 2, keys.state, keys.events)));
}

/**
 * Up to `count` entries of a breaker's instance-events stream (instances isolating
 * themselves and rejoining), newest first, from id `end` down to `start` (as readAudit).
 */
export function readInstanceAudit(connection: Connection, keys: BreakerKeys, end: string, start: string, count: number): Promise<InstanceEntry[]> {
  return readEntries(connection, keys.instanceEvents, end, start, count, parseInstanceEntry);
}

/** A breaker's reporter entries (the instances hash), by instance id; empty when it has none. */
export async function readReporters(connection: Connection, keys: BreakerKeys): Promise<Map<string, ReporterEntry>> {
  const list = await answer(connection, 'HGETALL', connection.call('HGETALL', keys.instances));
  const reporters = new Map<string, ReporterEntry>();
  for (let i = 0; i + 1 < list.length; i += 2) reporters.set(text(list[i]), parseReporterEntry(text(list[i + 1])));
  return reporters;
}

/** zv1_state over any connection: a breaker's, an operator's, a replica's (it is read-only). */
export async function readSnapshot(connection: Connection, keys: BreakerKeys): Promise<Snapshot> {
  return parseSnapshot(await answer(connection, 'zv1_state', connection.fcall_ro('zv1_state', 2, keys.state, keys.events)));
}

/**
 * Up to `count` transitions of a breaker's audit stream, newest first, from stream id `end`
 * down to `start` (XREVRANGE bounds: '+', '-', an id, '(' an id for an exclusive one).
 */
export function readAudit(connection: Connection, keys: BreakerKeys, end: string, start: string, count: number): Promise<Transition[]> {
  return readEntries(connection, keys.events, end, start, count, parseAuditEntry);
}

/** Up to `count` entries of stream `key`, newest first, from `end` down to `start`, each read by `parse`. */
async function readEntries<T>(
  connection: Connection,
  key: string,
  end: string,
  start: string,
  count: number,
  parse: (fields: Record<string, string>, id: string) => T,
): Promise<T[]> {
  const entries = (await answer(connection, 'XREVRANGE', connection.xrevrange(key, end, start, 'COUNT', count))) as [string, string[]][];
  return entries.map(([id, list]) => parse(entryFields(list), id));
}

/** What a control sends besides the header: see zv1_control. */
export interface ControlRequest {
  /** 'expire' ends a mode whose expiry has passed (an instance's call, not an operator's). */
  readonly action: ControlAction | 'expire';
  /** The operator's reason; '' for 'expire'. */
  readonly note: string;
  /** Expiry of open, close or monitor; 0 for none. */
  readonly forMs: number;
  /** Create a breaker Redis does not know (its own instance's control); else 'unknown'. */
  readonly create: boolean;
}

/**
 * zv1_control over any connection: an operator's (retention 0, so that a control never
 * trims the history an application keeps) or a breaker's own.
 */
export async function control(
  connection: Connection,
  keys: BreakerKeys,
  header: { readonly channel: string; readonly actor: string; readonly retention: number },
  r: ControlRequest,
): Promise<ControlReply> {
  const sent = connection.fcall(
    'zv1_control',
    2,
    keys.state,
    keys.events,
    header.channel,
    header.actor,
    header.retention,
    r.action,
    r.note,
    r.forMs,
    r.create ? 1 : 0,
  );
  return stateReply('zv1_control', await answer(connection, 'zv1_control', sent), CONTROL, 4);
}

/** The library's functions for one breaker, over one connection. */
export class BreakerFunctions {
  /**
   * @param channel where the library publishes transitions
   * @param actor this instance's name in leases and audit entries
   * @param retention approximate length of the audit stream
   * @param strategy the strategy spec (see strategy-spec.ts)
   * @param leaseTtlMs the lease's life, for grants: a trip grants this instance the lease when it is free
   */
  constructor(
    private readonly connection: Connection,
    private readonly keys: BreakerKeys,
    private readonly channel: string,
    private readonly actor: string,
    private readonly retention: number,
    private readonly strategy: string,
    private readonly leaseTtlMs: number,
  ) {}

  /** Calls a writing function: KEYS (the two, or `keys`), then the ARGV header every one of them takes, then `args`. */
  private call(name: string, args: (string | number)[], keys: readonly string[] = keyList(this.keys)): Promise<unknown[]> {
    return this.reply(name, this.connection.fcall(name, keys.length, ...keys, this.channel, this.actor, this.retention, ...args));
  }

  private reply(name: string, sent: Promise<unknown>): Promise<unknown[]> {
    return answer(this.connection, name, sent);
  }

  state(): Promise<Snapshot> {
    return readSnapshot(this.connection, this.keys);
  }

  /** Why the breaker is in its state (zv1_explain). */
  explain(): Promise<ExplainReply> {
    return readExplanation(this.connection, this.keys);
  }

  /** The state as zv1_state reads it, but refused wherever this instance could not write. */
  async sync(): Promise<Snapshot> {
    return parseSnapshot(await this.call('zv1_sync', [this.strategy]));
  }

  /**
   * Records a summary; with `takeLease`, a trip it makes also grants this instance the
   * lease, when it is free. With `instanceRule` (see instanceRuleSpec; revision 7), the
   * trip needs the instance rule met too (else 'held'), and the call sends the instances key.
   */
  async record(generation: number, s: OutcomeSummary, takeLease: boolean, instanceRule?: string): Promise<RecordReply> {
    const args: (string | number)[] = [generation, s.ok, s.fail, s.slowOk, s.slowFail, s.head, s.maxRun, s.tail, this.strategy];
    if (instanceRule === undefined) {
      if (takeLease) args.push(this.leaseTtlMs);
      const reply = await this.call('zv1_record', args);
      return { ...stateReply('zv1_record', reply, RECORD, 4), token: int(reply[5] ?? 0), instances: undefined };
    }
    // ARGV 13 '0': no lease wanted, so that the rule can follow.
    args.push(takeLease ? this.leaseTtlMs : 0, instanceRule);
    const reply = await this.call('zv1_record', args, ruleKeyList(this.keys));
    const counted = reply.length > 6 ? { failing: int(reply[6]), reporting: int(reply[7]) } : undefined;
    return { ...stateReply('zv1_record', reply, RECORD, 4), token: int(reply[5] ?? 0), instances: counted };
  }

  /**
   * This instance takes itself out of the fleet's calls: the library judges `own` (its own
   * window's figures) by the fleet's stored strategy. 'isolated' when it may; see
   * zv1_isolate for the other answers. `generation`: the fleet's, as this instance saw it.
   */
  async isolate(generation: number, own: OwnWindowFigures): Promise<IsolateReply> {
    const reply = await this.call('zv1_isolate', [IsolationAction.ISOLATE, generation, own.failures, own.calls, own.slow], isolationKeyList(this.keys));
    return isolationReply(reply, ISOLATE);
  }

  /** This instance comes back ('rejoined'; 'not_isolated' when the library holds no isolation of it: rejoined already, or its entry dropped by the bound of 64). */
  async rejoin(generation: number, reason: RejoinReason): Promise<RejoinReply> {
    const reply = await this.call('zv1_isolate', [IsolationAction.REJOIN, generation, reason], isolationKeyList(this.keys));
    return isolationReply(reply, REJOIN);
  }

  async acquire(): Promise<AcquireReply> {
    const reply = await this.call('zv1_acquire', [this.leaseTtlMs]);
    return {
      status: oneOf('zv1_acquire', reply[0], ACQUIRE),
      token: int(reply[1]),
      leaseMs: int(reply[3]),
      snapshot: parseSnapshot(reply.slice(4)),
    };
  }

  async renew(token: number): Promise<RenewReply> {
    const reply = await this.call('zv1_renew', [token, this.leaseTtlMs]);
    return { status: oneOf('zv1_renew', reply[0], RENEW), leaseMs: int(reply[3]) };
  }

  async release(token: number): Promise<(typeof RELEASE)[number]> {
    return oneOf('zv1_release', (await this.call('zv1_release', [token]))[0], RELEASE);
  }

  /**
   * A lease holder's report: a recovery check, an idle probe, or ('wait') the open wait
   * elapsed with no check to run. `successThreshold` checks in a row recover the circuit;
   * `permits` > 0 makes it recover to half-open.
   */
  async health(
    token: number,
    generation: number,
    type: 'recovery' | 'idle' | 'wait',
    result: CheckResult,
    successThreshold: number,
    permits: number,
  ): Promise<HealthReply> {
    const reply = await this.call('zv1_health', [token, generation, type, result, successThreshold, permits]);
    return stateReply('zv1_health', reply, HEALTH, 5);
  }

  /** Asks for a trial permit of the half-open state of `generation`. */
  async permit(generation: number, t: TrialSettings): Promise<PermitReply> {
    const reply = await this.call('zv1_permit', [generation, t.permittedCalls, t.successThreshold, t.permitTimeoutMs]);
    return {
      status: oneOf('zv1_permit', reply[0], PERMIT),
      view: viewAt(reply, 1),
      permit: text(reply[4]),
      ms: int(reply[5]),
    };
  }

  /** Reports the result of the trial call made with `permit` ('ignored' gives it back). */
  async trial(generation: number, permit: string, result: CallResult, t: TrialSettings): Promise<TrialReply> {
    const reply = await this.call('zv1_trial', [generation, permit, result, t.permittedCalls, t.successThreshold]);
    return stateReply('zv1_trial', reply, TRIAL, 5);
  }

  /** An operator's control of this breaker, or 'expire' (see zv1_control), made by this instance. */
  control(action: ControlAction | 'expire', note: string, forMs: number): Promise<ControlReply> {
    const { channel, actor, retention } = this;
    return control(this.connection, this.keys, { channel, actor, retention }, { action, note, forMs, create: true });
  }

  /** Whether the audit stream holds this transition's entry (retention may have trimmed it). */
  async audited(t: Transition): Promise<boolean> {
    const entries = (await this.reply('XRANGE', this.connection.xrange(this.keys.events, t.id, t.id))) as [string, string[]][];
    const list = entries[0]?.[1];
    if (!list) return false;
    const fields = entryFields(list);
    return fields.gen === String(t.generation) && fields.to === t.to && fields.from === t.from;
  }

  /** Up to `count` transitions of the audit stream, newest first, before entry `before`. */
  history(count: number, before?: string): Promise<Transition[]> {
    return readAudit(this.connection, this.keys, before === undefined ? '+' : `(${before}`, '-', count);
  }
}
