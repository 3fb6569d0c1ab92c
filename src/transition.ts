import type { CircuitState, TransitionReason } from './constants.js';

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
