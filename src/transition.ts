import { BreakerMode, CircuitState, type InstanceReason, type RejoinReason, TransitionScope, type TransitionReason } from './constants.js';
import { ZenvarkError } from './errors.js';
import { breakerMode, circuitState, int } from './wire.js';

/**
 * One transition, as written to the breaker's audit stream (`XRANGE <prefix>:{<id>}:events - +`)
 * and handed to `onStateChange`. Fields that do not apply to a reason are ''.
 */
export interface Transition {
  /** Stream entry id, e.g. '1732699912345-0'; '' for a local transition. */
  readonly id: string;
  readonly from: CircuitState;
  readonly to: CircuitState;
  readonly reason: TransitionReason | LocalReason;
  /**
   * 'fleet' for a transition of the shared state (the `:events` stream); 'instance' for
   * one instance isolating itself or rejoining (the `:instance-events` stream): `actor`
   * is that instance, and `generation` the fleet's, unchanged by it.
   */
  readonly scope: TransitionScope;
  /** Generation the breaker entered; outcomes observed under older ones never count. */
  readonly generation: number;
  /** Failures behind the decision (the run, or the failures in the window). */
  readonly failures: string;
  /** Calls behind the decision. */
  readonly calls: string;
  /** Slow calls in the window (rate strategies). */
  readonly slow: string;
  /** The rate that reached the threshold (failures or slow calls per call), 4 decimals. */
  readonly rate: string;
  /** The threshold that was reached. */
  readonly threshold: string;
  /** The window: 'consecutive', 'count:<size>' or 'time:<duration ms>'. */
  readonly window: string;
  /** Instance id (or operator) whose report caused it. */
  readonly actor: string;
  /** Lease token of the actor for health-check transitions, else ''. */
  readonly token: string;
  /** Server time in ms (local clock for a local transition). */
  readonly time: number;
  /** The breaker's mode after this transition: '' (normal), or what an operator set. */
  readonly mode: BreakerMode;
  /** The operator's reason, for a control ('' otherwise). */
  readonly note: string;
  /** When the mode set by this control ends, or when the mode it ends ended (`expired`):
   * server time in ms; '' for none. */
  readonly until: string;
  /** The rule reached: for `would_open` (followed by the instance rule, after a comma, when
   * one is configured), for `released` or `expired` that opened; for a trip the instance
   * rule met ('minimum_instances:K', 'instance_share:S' or both, comma-separated). */
  readonly rule: string;
  /** With an instance rule: the instances whose failures are in the window (a trip, a
   * `would_open`); '' otherwise and in entries of revisions before 7. */
  readonly instances: string;
  /** With an instance rule: the instances that reported in the window; '' otherwise. */
  readonly reporters: string;
  /** True when decided in this process while Redis was unreachable; never audited. */
  readonly local: boolean;
}

/** Reasons of transitions decided in this process while Redis is unreachable. */
export const LocalReason = {
  /** The strategy, evaluated locally, reached its threshold. */
  LOCAL_FAILURES: 'local_failures',
  /** The slow-call rule, evaluated locally, reached its threshold. */
  LOCAL_SLOW_CALLS: 'local_slow_calls',
  /** A local recovery check succeeded. */
  LOCAL_RECOVERY: 'local_recovery',
  /** Redis came back: its shared state replaced the local one. */
  RESYNC: 'resync',
  /** Half-open when Redis became unreachable: trial calls need it, so the circuit is open. */
  REDIS_UNREACHABLE: 'redis_unreachable',
} as const;
export type LocalReason = (typeof LocalReason)[keyof typeof LocalReason];

/** The numbers behind a decision, as the audit entry gives them ('' where they do not apply). */
export interface DecisionNumbers {
  readonly failures: string;
  readonly calls: string;
  readonly slow: string;
  readonly rate: string;
  readonly threshold: string;
}

const NO_NUMBERS: DecisionNumbers = { failures: '', calls: '', slow: '', rate: '', threshold: '' };

/** A transition decided in this process: it has no audit entry, and its time is the local clock's. */
export function localTransition(
  from: CircuitState,
  to: CircuitState,
  reason: LocalReason | TransitionReason,
  generation: number,
  actor: string,
  numbers: DecisionNumbers = NO_NUMBERS,
  scope: TransitionScope = TransitionScope.FLEET,
): Transition {
  return {
    id: '',
    from,
    to,
    reason,
    scope,
    generation,
    ...numbers,
    window: '',
    actor,
    token: '',
    time: Date.now(),
    mode: BreakerMode.NORMAL,
    note: '',
    until: '',
    rule: '',
    instances: '',
    reporters: '',
    local: true,
  };
}

/** The numbers behind a decision and its window, as an entry of either stream gives them. */
function decisionOf(fields: Record<string, string>): DecisionNumbers & { readonly window: string } {
  return {
    failures: fields.failures ?? '',
    calls: fields.calls ?? '',
    slow: fields.slow ?? '',
    rate: fields.rate ?? '',
    threshold: fields.threshold ?? '',
    window: fields.window ?? '',
  };
}

/** A reader of the fields an entry of kind `kind` must have: a missing one is ZV_BAD_MESSAGE. */
function required(fields: Record<string, string>, kind: string): (name: string) => string {
  return (name) => {
    const value = fields[name];
    if (typeof value !== 'string') throw new ZenvarkError('ZV_BAD_MESSAGE', `${kind} entry without '${name}'`);
    return value;
  };
}

/** Reads one entry of the audit stream (or the same fields of a feed message). */
export function parseAuditEntry(fields: Record<string, string>, id: string): Transition {
  const need = required(fields, 'transition');
  return {
    id,
    from: circuitState(need('from')),
    to: circuitState(need('to')),
    reason: need('reason') as Transition['reason'],
    scope: TransitionScope.FLEET,
    generation: int(need('gen')),
    ...decisionOf(fields),
    actor: need('actor'),
    token: fields.token ?? '',
    time: int(need('time')),
    // Absent from entries of revisions before 6.
    mode: breakerMode(fields.mode),
    note: fields.note ?? '',
    until: fields.until ?? '',
    rule: fields.rule ?? '',
    // Absent from entries of revisions before 7.
    instances: fields.instances ?? '',
    reporters: fields.reporters ?? '',
    local: false,
  };
}

/** Where an instance-level entry moves its instance from and to: out of the fleet's calls, or back to the fleet's state. */
export type InstanceFrom = typeof CircuitState.CLOSED | 'isolated';
export type InstanceTo = CircuitState | 'isolated';

/**
 * One instance-level entry, as zv1_isolate writes it to the breaker's instance-events
 * stream (`XRANGE <prefix>:{<id>}:instance-events - +`): an instance isolating itself
 * (closed to isolated; reason the rule its own window reached), a would_isolate under
 * monitor (closed to closed), or a rejoin (isolated to the fleet's state; reason a
 * RejoinReason). Never published on the feed. Fields that do not apply are ''.
 */
export interface InstanceEntry extends DecisionNumbers {
  readonly id: string;
  readonly from: InstanceFrom;
  readonly to: InstanceTo;
  readonly reason: TransitionReason | InstanceReason | RejoinReason;
  /** With the numbers (the instance's own window behind an isolation, as a trip's entry has them): its window. */
  readonly window: string;
  /** The instance. */
  readonly actor: string;
  /** Server time, ms. */
  readonly time: number;
  /** The fleet's generation (an instance entry does not move it). */
  readonly generation: number;
  /** The fleet's state and mode when the entry was written. */
  readonly state: CircuitState;
  readonly mode: BreakerMode;
  /** For would_isolate: the rule the instance's window reached. */
  readonly rule: string;
}

const ISOLATED = 'isolated';

function instanceSide<T extends string>(value: string, allowed: readonly string[]): T {
  if (!allowed.includes(value)) throw new ZenvarkError('ZV_BAD_MESSAGE', `instance entry with an unknown state ${JSON.stringify(value).slice(0, 40)}`);
  return value as T;
}

/** Reads one entry of the instance-events stream. */
export function parseInstanceEntry(fields: Record<string, string>, id: string): InstanceEntry {
  const need = required(fields, 'instance');
  return {
    id,
    from: instanceSide<InstanceFrom>(need('from'), [CircuitState.CLOSED, ISOLATED]),
    to: instanceSide<InstanceTo>(need('to'), [...Object.values(CircuitState), ISOLATED]),
    reason: need('reason') as InstanceEntry['reason'],
    ...decisionOf(fields),
    actor: need('actor'),
    time: int(need('time')),
    generation: int(need('gen')),
    state: circuitState(need('state')),
    mode: breakerMode(fields.mode),
    rule: fields.rule ?? '',
  };
}

/**
 * One instance's entry of the instances hash (`HGETALL <prefix>:{<id>}:instances`, field:
 * the instance id), as the library keeps it for the instance rule: stored as
 * 'gen:last_pos:last_ms:fail_pos:fail_ms:iso_ms' (see "Reporters" in lua/zenvark_v1.lua).
 * An entry of another generation than the breaker's is stale: the library ignores it.
 */
export interface ReporterEntry {
  /** The fleet generation it was written under. */
  readonly generation: number;
  /** Position (outcomes reported under the rule so far) and server time of its last report. */
  readonly lastPosition: number;
  readonly lastMs: number;
  /** The same for its last report holding a failure; 0 and 0 when none. */
  readonly failurePosition: number;
  readonly failureMs: number;
  /** Server time it isolated itself; 0 when it is not isolated. */
  readonly isolatedAtMs: number;
}

/** Reads one value of the instances hash; ZV_BAD_REPLY for text the library does not write. */
export function parseReporterEntry(value: string): ReporterEntry {
  const m = /^(\d+):(\d+):(\d+):(\d+):(\d+):(\d+)$/.exec(value);
  if (!m) throw new ZenvarkError('ZV_BAD_REPLY', `a reporter entry this client cannot read: ${JSON.stringify(value).slice(0, 80)}`);
  const [generation, lastPosition, lastMs, failurePosition, failureMs, isolatedAtMs] = m.slice(1).map((n) => int(n)) as [
    number, number, number, number, number, number,
  ];
  return { generation, lastPosition, lastMs, failurePosition, failureMs, isolatedAtMs };
}

/** An instance-level entry as a transition (scope 'instance'), for a history of both streams. */
export function instanceTransition(e: InstanceEntry): Transition {
  return {
    id: e.id,
    // 'isolated' is a CircuitState of this client: an instance's own.
    from: e.from as CircuitState,
    to: e.to as CircuitState,
    reason: e.reason,
    scope: TransitionScope.INSTANCE,
    generation: e.generation,
    failures: e.failures,
    calls: e.calls,
    slow: e.slow,
    rate: e.rate,
    threshold: e.threshold,
    window: e.window,
    actor: e.actor,
    token: '',
    time: e.time,
    mode: e.mode,
    note: '',
    until: '',
    rule: e.rule,
    instances: '',
    reporters: '',
    local: false,
  };
}
