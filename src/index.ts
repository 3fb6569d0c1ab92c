// The package's entry. No module it loads may use top-level await: CommonJS applications
// load it with require() (Node's require(esm)), which refuses such a module graph
// (test/package/consumer.test.ts requires it from a CommonJS file).
export { CircuitBreaker } from './circuit-breaker.js';
export type { BreakerStats } from './outcomes.js';
export type { CircuitBreakerOptions, ExecuteOptions, HealthOptions, HalfOpenOptions, Classification } from './options.js';
export { DEFAULTS } from './options.js';
export {
  ConsecutiveBreaker,
  CountBreaker,
  SamplingBreaker,
  type BreakerStrategy,
  type ConsecutiveBreakerOptions,
  type CountBreakerOptions,
  type SamplingBreakerOptions,
} from './strategies.js';
export {
  ConstantBackoff,
  ExponentialBackoff,
  type Jitter,
  type BackoffStrategy,
  type ConstantBackoffOptions,
  type ExponentialBackoffOptions,
} from './backoff.js';
export { CircuitState, CircuitRole, HealthCheckType, CallResult, TransitionReason, TransitionScope, BreakerMode, ControlAction } from './constants.js';
export type { ModeOptions, ReasonOptions } from './controls.js';
export { LocalReason, type Transition } from './transition.js';
export {
  explainBreaker,
  type Explanation,
  type ExplainOptions,
  type StoredStrategy,
  type WindowFigures,
  type RuleFigure,
  type LeaseFigures,
  type RecoveryProgress,
  type TrialProgress,
  type InstanceFigures,
  type ModeInfo,
} from './explain.js';
export {
  listBreakers,
  breakerStatus,
  breakerHistory,
  controlBreaker,
  type AdminOptions,
  type HistoryOptions,
  type ControlOptions,
  type ControlResult,
} from './admin.js';
export {
  CallOutcome,
  StateSource,
  RedisOperation,
  type BreakerEventMap,
  type BreakerEventName,
  type BreakerListener,
  type Subscription,
  type StateChangeEvent,
  type RoleChangeEvent,
  type CallEvent,
  type HealthCheckEvent,
  type DegradedChangeEvent,
  type RedisErrorEvent,
} from './events.js';
export {
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
} from './errors.js';
export { ErrorCode, type ServerErrorCode } from './error-codes.js';
export type {
  BreakerMetricsRecorder,
  RecordCallParams,
  RecordBlockedRequestParams,
  RecordHealthCheckParams,
} from './metrics.js';
export { breakerKeys, feedChannel, type BreakerKeys } from './keys.js';
export {
  deployLibrary,
  installedRevision,
  LIBRARY_NAME,
  LIBRARY_REVISION,
  type DeployResult,
  type DeployAction,
} from './library.js';
