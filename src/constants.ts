/**
 * Values that cross into Lua, the audit stream or the public API. Each object's values
 * are the exact strings used on both sides.
 */

/** State of a circuit. */
export const CircuitState = {
  CLOSED: 'closed',
  OPEN: 'open',
  /** Recovering: a limited number of trial calls, across the fleet, decide. */
  HALF_OPEN: 'half_open',
  /**
   * This instance only: its own outcomes reached the strategy's rule while the fleet's
   * instance rule (minimumInstances, minimumInstanceShare) kept the fleet closed. Its calls
   * fail fast until its own recovery checks pass; never a state of the fleet.
   */
  ISOLATED: 'isolated',
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
  /** Counted as neither (see `isFailure` and `isResultFailure`). */
  IGNORED: 'ignored',
} as const;
export type CallResult = (typeof CallResult)[keyof typeof CallResult];
/** How a health check went: a check is never ignored. */
export type CheckResult = Exclude<CallResult, 'ignored'>;

/** Why a transition happened, as written to the `reason` field of the audit stream. */
export const TransitionReason = {
  /** ConsecutiveBreaker: `threshold` failures in a row. */
  CONSECUTIVE_FAILURES: 'consecutive_failures',
  /** CountBreaker or SamplingBreaker: the failure rate reached the threshold. */
  FAILURE_RATE: 'failure_rate',
  /** The share of slow calls in the window reached `slowCallRateThreshold`. */
  SLOW_CALL_RATE: 'slow_call_rate',
  /** The lease holder's recovery checks succeeded (`health.successThreshold` in a row). */
  RECOVERY_CHECK_PASSED: 'recovery_check_passed',
  /** Half-open without a health check: the open wait (the backoff) elapsed. */
  OPEN_WAIT_ELAPSED: 'open_wait_elapsed',
  /** Half-open: `halfOpen.successThreshold` trial calls succeeded. */
  TRIAL_CALLS_PASSED: 'trial_calls_passed',
  /** Half-open: a trial call failed. */
  TRIAL_CALL_FAILED: 'trial_call_failed',
  /** The lease holder's idle probe failed. */
  IDLE_PROBE_FAILED: 'idle_probe_failed',
  /** An operator forced the circuit open (mode `forced_open`). */
  FORCED_OPEN: 'forced_open',
  /** An operator forced the circuit closed (mode `forced_closed`). */
  FORCED_CLOSED: 'forced_closed',
  /** An operator put the breaker in monitor mode: closed, trips only audited. */
  MONITORED: 'monitored',
  /** Monitor mode: a rule was reached (named in `rule`); the circuit stayed closed. */
  WOULD_OPEN: 'would_open',
  /** An operator ended the mode; the window decided the state. */
  RELEASED: 'released',
  /** The mode's expiry passed; the window decided the state. */
  EXPIRED: 'expired',
  /** An operator reset the breaker: closed, window and recovery progress cleared. */
  RESET: 'reset',
  // Instance-level (scope 'instance', the instance-events stream; RejoinReason and
  // InstanceReason name them for zv1_isolate). An isolation's start names the rule its own
  // window reached (consecutive_failures, failure_rate, slow_call_rate).
  /** Monitor mode: this instance's own outcomes reached a rule (named in `rule`); it stayed in. */
  WOULD_ISOLATE: 'would_isolate',
  /** The isolated instance's own recovery checks passed (`health.successThreshold` in a row). */
  RECOVERED: 'recovered',
  /** The fleet opened while the instance was isolated: it follows the fleet. */
  FLEET_OPENED: 'fleet_opened',
  /** The instance stopped while isolated. */
  STOPPED: 'stopped',
  /** The fleet moved to another generation while the instance was isolated, and stayed
   * closed (an operator's control, or transitions this instance did not see): it follows. */
  FLEET_MOVED: 'fleet_moved',
} as const;
export type TransitionReason = (typeof TransitionReason)[keyof typeof TransitionReason];

/** Whom a transition concerns: the fleet's shared state, or one instance's isolation. */
export const TransitionScope = {
  FLEET: 'fleet',
  INSTANCE: 'instance',
} as const;
export type TransitionScope = (typeof TransitionScope)[keyof typeof TransitionScope];

/** What an operator set beside the state (zv1_control), or normal operation (''). */
export const BreakerMode = {
  NORMAL: '',
  /** Open for every instance; recovery checks pause. */
  FORCED_OPEN: 'forced_open',
  /** Closed for every instance; outcomes count, nothing trips it. */
  FORCED_CLOSED: 'forced_closed',
  /** Closed; a rule reached is written as a would_open entry instead of opening. */
  MONITOR: 'monitor',
} as const;
export type BreakerMode = (typeof BreakerMode)[keyof typeof BreakerMode];

/** An operator's control of a breaker (zv1_control). */
export const ControlAction = {
  OPEN: 'open',
  CLOSE: 'close',
  MONITOR: 'monitor',
  RELEASE: 'release',
  RESET: 'reset',
} as const;
export type ControlAction = (typeof ControlAction)[keyof typeof ControlAction];

/** What an instance asks of zv1_isolate. */
export const IsolationAction = {
  /** Its own window reached a rule that the fleet's instance rule held back: it stops calling. */
  ISOLATE: 'isolate',
  /** It comes back (a RejoinReason says why). */
  REJOIN: 'rejoin',
} as const;
export type IsolationAction = (typeof IsolationAction)[keyof typeof IsolationAction];

/** Why an isolated instance rejoined the fleet, as its instance-level entry writes it. */
export const RejoinReason = {
  /** Its own recovery checks passed. */
  RECOVERED: TransitionReason.RECOVERED,
  /** The fleet opened: the instance follows it. */
  FLEET_OPENED: TransitionReason.FLEET_OPENED,
  /** The breaker was stopped while isolated. */
  STOPPED: TransitionReason.STOPPED,
  /** The fleet moved on, closed (an operator's control, a gap in what it saw). */
  FLEET_MOVED: TransitionReason.FLEET_MOVED,
} as const;
export type RejoinReason = (typeof RejoinReason)[keyof typeof RejoinReason];

/** Why an instance-level entry was written, besides the rule reached (an isolation) and a RejoinReason. */
export const InstanceReason = {
  /** Monitor mode: the instance's own window reached the rule named in `rule`; it stayed in. */
  WOULD_ISOLATE: TransitionReason.WOULD_ISOLATE,
} as const;
export type InstanceReason = (typeof InstanceReason)[keyof typeof InstanceReason];

/** Strategy kinds as the Lua library names them. */
export const StrategyKind = {
  CONSECUTIVE: 'consecutive',
  COUNT: 'count',
  TIME: 'time',
} as const;
export type StrategyKind = (typeof StrategyKind)[keyof typeof StrategyKind];
