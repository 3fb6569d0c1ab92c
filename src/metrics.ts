import type { CallResult, HealthCheckType } from './constants.js';

export interface RecordCallParams {
  breakerId: string;
  result: CallResult;
  durationMs: number;
}

export interface RecordBlockedRequestParams {
  breakerId: string;
}

export interface RecordHealthCheckParams {
  breakerId: string;
  type: HealthCheckType;
  result: CallResult;
  durationMs: number;
}

/**
 * Receives what a breaker observes, for a metrics system. Called synchronously; keep it
 * cheap (recordCall runs on every call). A method that throws is reported to onError.
 */
export interface BreakerMetricsRecorder {
  /** Called once, when the breaker is constructed. */
  initialize?(breakerId: string): void;
  recordCall(params: RecordCallParams): void;
  recordBlockedRequest(params: RecordBlockedRequestParams): void;
  recordHealthCheck(params: RecordHealthCheckParams): void;
}
