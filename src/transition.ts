import { BreakerMode, type CircuitState, TransitionScope, type TransitionReason } from './constants.js';
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
  /** The rule reached: for `would_open`, and for `released` or `expired` that opened; with
   * the instance rule, the trip's `minimum_instances:K` and/or `instance_share:S`. */
  readonly rule: string;
  /** Instances whose failures were in the window when the instance rule decided ('' otherwise). */
  readonly instances: string;
  /** Instances that reported in the window when the instance rule decided ('' otherwise). */
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

/** Reads one entry of the audit stream (or the same fields of a feed message); `scope`
 * says which stream it came from. */
export function parseAuditEntry(fields: Record<string, string>, id: string, scope: TransitionScope = TransitionScope.FLEET): Transition {
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
    scope,
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
