/**
 * Values that cross into Lua, the audit stream or the public API. Each object's values
 * are the exact strings used on both sides.
 */

/** State of a circuit. */
export const CircuitState = {
  CLOSED: 'closed',
  OPEN: 'open',
} as const;
export type CircuitState = (typeof CircuitState)[keyof typeof CircuitState];

/** Role of this instance for one breaker: the lease holder runs the health checks. */
export const CircuitRole = {
  LEADER: 'leader',
  FOLLOWER: 'follower',
} as const;
export type CircuitRole = (typeof CircuitRole)[keyof typeof CircuitRole];

/** Why a health check runs: to close an open circuit, or to probe a closed, unused one. */
export const HealthCheckType = {
  RECOVERY: 'recovery',
  IDLE: 'idle',
} as const;
export type HealthCheckType = (typeof HealthCheckType)[keyof typeof HealthCheckType];

/** Outcome of a protected call or a health check. */
export const CallResult = {
  SUCCESS: 'success',
  FAILURE: 'failure',
} as const;
export type CallResult = (typeof CallResult)[keyof typeof CallResult];

/** Why a transition happened, as written to the `reason` field of the audit stream. */
export const TransitionReason = {
  /** ConsecutiveBreaker: `threshold` failures in a row. */
  CONSECUTIVE_FAILURES: 'consecutive_failures',
  /** CountBreaker or SamplingBreaker: the failure rate reached the threshold. */
  FAILURE_RATE: 'failure_rate',
  /** The lease holder's recovery check succeeded. */
  RECOVERY_CHECK_PASSED: 'recovery_check_passed',
  /** The lease holder's idle probe failed. */
  IDLE_PROBE_FAILED: 'idle_probe_failed',
} as const;
export type TransitionReason = (typeof TransitionReason)[keyof typeof TransitionReason];

/** Strategy kinds as the Lua library names them. */
export const StrategyKind = {
  CONSECUTIVE: 'consecutive',
  COUNT: 'count',
  TIME: 'time',
} as const;
export type StrategyKind = (typeof StrategyKind)[keyof typeof StrategyKind];
