/**
 * The only module that calls the function library. It builds KEYS and ARGV, calls Redis
 * and turns replies into typed objects; nothing else sees a raw reply.
 */
import type { Cluster, Redis } from 'ioredis';
import { CircuitState, StrategyKind } from './constants.js';
import { LibraryMissingError, RedisFunctionError, ZenvarkError } from './errors.js';
import { type BreakerKeys, keyList } from './keys.js';
import { LIBRARY_REVISION } from './shipped-library.js';
import type { BreakerStrategy } from './strategies.js';
import type { Transition } from './transition.js';

export type Connection = Redis | Cluster;

/** What a breaker's cache holds of the shared state. */
export interface SharedView {
  readonly state: CircuitState;
  readonly generation: number;
  /** Names one life of the state hash; '' before it exists. A new epoch resets ordering. */
  readonly epoch: string;
}

/**
 * Whether `candidate` is a later state of the breaker than `current`: a higher generation
 * of the same life of the state hash, or another life altogether (the hash was recreated).
 * A breaker never written (epoch '') is generation 0 of whatever life comes first.
 */
export function isNewer(candidate: SharedView, current: SharedView): boolean {
  if (current.epoch === '') return candidate.epoch !== '' || candidate.generation > current.generation;
  if (candidate.epoch !== current.epoch) return true;
  return candidate.generation > current.generation;
}


/** Everything zv1_state reports. Durations are computed on server time. */
export interface Snapshot extends SharedView {
  readonly ageMs: number;
  /** Current lease holder, '' when the lease is free or expired. */
  readonly holder: string;
  /** Last fencing token granted. */
  readonly token: number;
  readonly leaseMs: number;
  /** Failed recovery checks (or failed half-open periods) since the circuit opened. */
  readonly recoveryFailures: number;
  /** Successful recovery checks in a row. */
  readonly recoverySuccesses: number;
  readonly recoveryAgeMs: number;
  /** Successful trial calls in this half-open period. */
  readonly trialSuccesses: number;
  /** Since the last recorded call; -1 when none was recorded. */
  readonly idleMs: number;
  readonly revision: number;
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

/** A transition as published, with what a client needs to go on. */
export interface Published {
  readonly transition: Transition;
  /** Failed recovery checks (or half-open periods) so far: sets the next backoff delay. */
  readonly recoveryFailures: number;
}

export interface RecordReply {
  readonly status: 'ok' | 'opened' | 'stale_gen' | 'not_closed' | 'reshaped';
  readonly view: SharedView;
  readonly published: Published | undefined;
}

export interface AcquireReply {
  readonly status: 'granted' | 'held';
  readonly token: number;
  readonly holder: string;
  readonly leaseMs: number;
  readonly snapshot: Snapshot;
}

export interface RenewReply {
  readonly status: 'renewed' | 'lost';
  readonly token: number;
  readonly holder: string;
  readonly leaseMs: number;
}

export interface HealthReply {
  readonly status: 'closed' | 'half_open' | 'opened' | 'counted' | 'ignored' | 'stale_token' | 'stale_gen';
  readonly view: SharedView;
  readonly recoveryFailures: number;
  readonly published: Published | undefined;
}

export interface PermitReply {
  readonly status: 'granted' | 'exhausted' | 'not_half_open' | 'stale_gen';
  readonly view: SharedView;
  /** The permit, when granted. */
  readonly permit: string;
  /** Granted: how long the permit is valid; exhausted: when one may be freed (0: unknown). */
  readonly ms: number;
}

export interface TrialReply {
  readonly status: 'counted' | 'released' | 'closed' | 'opened' | 'unknown_permit' | 'not_half_open' | 'stale_gen';
  readonly view: SharedView;
  readonly published: Published | undefined;
}

/** How a health check or trial call went, as the library takes it. */
export type ReportedResult = 'success' | 'failure';
/** How a trial call went: an ignored outcome gives its permit back. */
export type TrialResult = ReportedResult | 'ignored';

/** The half-open settings every trial call carries. */
export interface TrialSettings {
  readonly permittedCalls: number;
  readonly successThreshold: number;
  readonly permitTimeoutMs: number;
}

/** A message of the feed channel. */
export type FeedMessage =
  | ({ readonly kind: 'transition'; readonly key: string; readonly epoch: string } & Published)
  | { readonly kind: 'released'; readonly key: string; readonly token: number };

export interface CallHeader {
  readonly channel: string;
  readonly actor: string;
  readonly retention: number;
}

function describe(connection: Connection): string {
  const options = (connection as Redis).options;
  if (options && 'port' in options && options.port !== undefined) {
    return `${options.host ?? 'localhost'}:${options.port}`;
  }
  return 'the Redis cluster';
}

/** Maps a Redis error to ours: ZV_ codes and a missing library get their own classes. */
export function functionError(error: unknown, functionName: string, connection: Connection): unknown {
  if (!(error instanceof Error)) return error;
  const coded = /^(ZV_[A-Z]+) ([\s\S]*)$/.exec(error.message);
  if (coded?.[1] && coded[2] !== undefined) {
    return new RedisFunctionError(coded[1], functionName, coded[2]);
  }
  if (/function not found/i.test(error.message)) {
    return new LibraryMissingError(describe(connection), LIBRARY_REVISION);
  }
  return error;
}

async function call(
  connection: Connection,
  name: string,
  keys: BreakerKeys,
  args: (string | number)[],
  readOnly = false,
): Promise<unknown[]> {
  let reply: unknown;
  try {
    reply = readOnly
      ? await connection.fcall_ro(name, 2, ...keyList(keys), ...args)
      : await connection.fcall(name, 2, ...keyList(keys), ...args);
  } catch (error) {
    throw functionError(error, name, connection);
  }
  if (!Array.isArray(reply)) throw badReply(name, reply);
  return reply;
}

function badReply(functionName: string, reply: unknown): ZenvarkError {
  return new ZenvarkError('ZV_BAD_REPLY', `${functionName} answered ${JSON.stringify(reply)?.slice(0, 200)}`);
}

function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString();
  if (typeof value === 'number') return String(value);
  throw new ZenvarkError('ZV_BAD_REPLY', `expected a string, got ${typeof value}`);
}

function int(value: unknown): number {
  const n = typeof value === 'number' ? value : Number(text(value));
  if (!Number.isSafeInteger(n)) throw new ZenvarkError('ZV_BAD_REPLY', `expected an integer, got ${String(value)}`);
  return n;
}

/** The state as one of our constants: a breaker keeps no copy of the reply's string. */
function circuitState(value: unknown): CircuitState {
  const s = text(value);
  if (s === CircuitState.CLOSED) return CircuitState.CLOSED;
  if (s === CircuitState.OPEN) return CircuitState.OPEN;
  if (s === CircuitState.HALF_OPEN) return CircuitState.HALF_OPEN;
  throw new ZenvarkError('ZV_BAD_REPLY', `unknown circuit state ${JSON.stringify(s)}`);
}

function view(reply: unknown[], at: number): SharedView {
  return { state: circuitState(reply[at]), generation: int(reply[at + 1]), epoch: text(reply[at + 2]) };
}

function parseSnapshot(pairs: unknown[]): Snapshot {
  const m = new Map<string, unknown>();
  for (let i = 0; i + 1 < pairs.length; i += 2) m.set(text(pairs[i]), pairs[i + 1]);
  return {
    state: circuitState(m.get('state')),
    generation: int(m.get('gen')),
    epoch: text(m.get('epoch')),
    ageMs: int(m.get('age_ms')),
    holder: text(m.get('holder')),
    token: int(m.get('token')),
    leaseMs: int(m.get('lease_ms')),
    recoveryFailures: int(m.get('recovery_failures')),
    recoverySuccesses: int(m.get('recovery_successes') ?? 0),
    recoveryAgeMs: int(m.get('recovery_age_ms')),
    trialSuccesses: int(m.get('trial_successes') ?? 0),
    idleMs: int(m.get('idle_ms')),
    revision: int(m.get('revision')),
  };
}

function oneOf<const T extends string>(functionName: string, value: unknown, allowed: readonly T[]): T {
  const s = text(value);
  if (!(allowed as readonly string[]).includes(s)) throw badReply(functionName, s);
  return s as T;
}

function entryToTransition(fields: Record<string, string>, id: string): Transition {
  const need = (name: string): string => {
    const value = fields[name];
    if (typeof value !== 'string') throw new ZenvarkError('ZV_BAD_MESSAGE', `transition entry without '${name}'`);
    return value;
  };
  return {
    id,
    from: circuitState(need('from')),
    to: circuitState(need('to')),
    reason: need('reason') as Transition['reason'],
    generation: int(need('gen')),
    failures: fields.failures ?? '',
    calls: fields.calls ?? '',
    slow: fields.slow ?? '',
    rate: fields.rate ?? '',
    threshold: fields.threshold ?? '',
    window: fields.window ?? '',
    actor: need('actor'),
    token: fields.token ?? '',
    time: int(need('time')),
    local: false,
  };
}

/** Parses a message of the feed channel; throws ZV_BAD_MESSAGE for anything else. */
export function parseFeedMessage(message: string): FeedMessage {
  let fields: unknown;
  try {
    fields = JSON.parse(message);
  } catch {
    throw new ZenvarkError('ZV_BAD_MESSAGE', `feed message is not JSON: ${message.slice(0, 100)}`);
  }
  if (typeof fields !== 'object' || fields === null) {
    throw new ZenvarkError('ZV_BAD_MESSAGE', `feed message is not an object: ${message.slice(0, 100)}`);
  }
  const f = fields as Record<string, string>;
  if (typeof f.key !== 'string') throw new ZenvarkError('ZV_BAD_MESSAGE', 'feed message without key');
  if (f.kind === 'released') return { kind: 'released', key: f.key, token: int(f.token) };
  if (f.kind === 'transition') {
    return {
      kind: 'transition',
      key: f.key,
      epoch: text(f.epoch),
      transition: entryToTransition(f, text(f.id)),
      recoveryFailures: f.hcf === undefined ? 0 : int(f.hcf),
    };
  }
  throw new ZenvarkError('ZV_BAD_MESSAGE', `feed message of unknown kind ${JSON.stringify(f.kind)}`);
}

function publishedOf(value: unknown): Published | undefined {
  const json = text(value ?? '');
  if (json === '') return undefined;
  const message = parseFeedMessage(json);
  return message.kind === 'transition' ? message : undefined;
}

const specs = new WeakMap<BreakerStrategy, string>();

/**
 * The strategy as the library takes it: 'kind:threshold:window:minimum', and ':<rate>'
 * when slow calls count. Shared by every breaker of one strategy object.
 */
export function strategySpec(strategy: BreakerStrategy, slowCallRateThreshold?: number): string {
  let spec = specs.get(strategy);
  if (spec === undefined) {
    spec = buildSpec(strategy);
    specs.set(strategy, spec);
  }
  return slowCallRateThreshold === undefined ? spec : `${spec}:${slowCallRateThreshold}`;
}

function buildSpec(strategy: BreakerStrategy): string {
  switch (strategy.kind) {
    case StrategyKind.CONSECUTIVE:
      return `${strategy.kind}:${strategy.threshold}:0:0`;
    case StrategyKind.COUNT:
      return `${strategy.kind}:${strategy.threshold}:${strategy.size}:${strategy.minimumNumberOfCalls}`;
    case StrategyKind.TIME:
      return `${strategy.kind}:${strategy.threshold}:${strategy.duration}:${strategy.minimumNumberOfCalls}`;
  }
}

/** The library's functions for one breaker, over one connection. */
export class BreakerFunctions {
  private readonly strategy: string;

  constructor(
    private readonly connection: Connection,
    readonly keys: BreakerKeys,
    private readonly header: CallHeader,
    strategy: BreakerStrategy,
    slowCallRateThreshold?: number,
  ) {
    this.strategy = strategySpec(strategy, slowCallRateThreshold);
  }

  async state(): Promise<Snapshot> {
    return parseSnapshot(await call(this.connection, 'zv1_state', this.keys, [], true));
  }

  async record(generation: number, s: OutcomeSummary): Promise<RecordReply> {
    const h = this.header;
    const args = [h.channel, h.actor, h.retention, generation, s.ok, s.fail, s.slowOk, s.slowFail, s.head, s.maxRun, s.tail, this.strategy];
    const reply = await call(this.connection, 'zv1_record', this.keys, args);
    return {
      status: oneOf('zv1_record', reply[0], ['ok', 'opened', 'stale_gen', 'not_closed', 'reshaped']),
      view: view(reply, 1),
      published: publishedOf(reply[4]),
    };
  }

  async acquire(ttlMs: number): Promise<AcquireReply> {
    const h = this.header;
    const reply = await call(this.connection, 'zv1_acquire', this.keys, [h.channel, h.actor, h.retention, ttlMs]);
    return {
      status: oneOf('zv1_acquire', reply[0], ['granted', 'held']),
      token: int(reply[1]),
      holder: text(reply[2]),
      leaseMs: int(reply[3]),
      snapshot: parseSnapshot(reply.slice(4)),
    };
  }

  async renew(token: number, ttlMs: number): Promise<RenewReply> {
    const h = this.header;
    const reply = await call(this.connection, 'zv1_renew', this.keys, [h.channel, h.actor, h.retention, token, ttlMs]);
    return {
      status: oneOf('zv1_renew', reply[0], ['renewed', 'lost']),
      token: int(reply[1]),
      holder: text(reply[2]),
      leaseMs: int(reply[3]),
    };
  }

  async release(token: number): Promise<'released' | 'not_holder'> {
    const h = this.header;
    const reply = await call(this.connection, 'zv1_release', this.keys, [h.channel, h.actor, h.retention, token]);
    return oneOf('zv1_release', reply[0], ['released', 'not_holder']);
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
    result: ReportedResult,
    successThreshold: number,
    permits: number,
  ): Promise<HealthReply> {
    const h = this.header;
    const args = [h.channel, h.actor, h.retention, token, generation, type, result, successThreshold, permits];
    const reply = await call(this.connection, 'zv1_health', this.keys, args);
    return {
      status: oneOf('zv1_health', reply[0], ['closed', 'half_open', 'opened', 'counted', 'ignored', 'stale_token', 'stale_gen']),
      view: view(reply, 1),
      recoveryFailures: int(reply[4]),
      published: publishedOf(reply[5]),
    };
  }

  /** Asks for a trial permit of the half-open state of `generation`. */
  async permit(generation: number, t: TrialSettings): Promise<PermitReply> {
    const h = this.header;
    const args = [h.channel, h.actor, h.retention, generation, t.permittedCalls, t.successThreshold, t.permitTimeoutMs];
    const reply = await call(this.connection, 'zv1_permit', this.keys, args);
    return {
      status: oneOf('zv1_permit', reply[0], ['granted', 'exhausted', 'not_half_open', 'stale_gen']),
      view: view(reply, 1),
      permit: text(reply[4]),
      ms: int(reply[5]),
    };
  }

  /** Reports how the trial call made with `permit` went. */
  async trial(generation: number, permit: string, result: TrialResult, t: TrialSettings): Promise<TrialReply> {
    const h = this.header;
    const args = [h.channel, h.actor, h.retention, generation, permit, result, t.permittedCalls, t.successThreshold];
    const reply = await call(this.connection, 'zv1_trial', this.keys, args);
    return {
      status: oneOf('zv1_trial', reply[0], ['counted', 'released', 'closed', 'opened', 'unknown_permit', 'not_half_open', 'stale_gen']),
      view: view(reply, 1),
      published: publishedOf(reply[5]),
    };
  }

  /** Up to `count` transitions of the audit stream, newest first, before entry `before`. */
  async history(count: number, before?: string): Promise<Transition[]> {
    const end = before === undefined ? '+' : `(${before}`;
    const entries = (await this.connection.xrevrange(this.keys.events, end, '-', 'COUNT', count)) as [string, string[]][];
    return entries.map(([id, list]) => {
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < list.length; i += 2) fields[list[i] as string] = list[i + 1] as string;
      return entryToTransition(fields, id);
    });
  }
}
