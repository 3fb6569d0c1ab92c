import { atLeast, durationIn, requiredObject } from './validate.js';

/** Longest delay any backoff returns, in milliseconds: what setTimeout can wait. */
export const MAX_DELAY_MS = 2_147_483_647;

/** Delays between recovery checks. Implement it for a custom schedule. */
export interface BackoffStrategy {
  /**
   * Milliseconds to wait before recovery check number `attempt` (1 for the first check
   * after the circuit opened; the first check is delayed too).
   */
  getDelayMs(attempt: number): number;
}

export interface ConstantBackoffOptions {
  /** Delay before every check, in milliseconds. */
  delayMs: number;
}

/** The same delay before every check. */
export class ConstantBackoff implements BackoffStrategy {
  readonly delayMs: number;

  constructor(options: ConstantBackoffOptions) {
    const o = requiredObject('ConstantBackoff options', options);
    this.delayMs = durationIn('ConstantBackoff.delayMs', o.delayMs, 0, MAX_DELAY_MS);
  }

  getDelayMs(_attempt: number): number {
    return this.delayMs;
  }
}

export interface ExponentialBackoffOptions {
  /** Delay before the first check, in milliseconds. */
  initialDelayMs: number;
  /** Factor applied for every further attempt; >= 1. */
  multiplier: number;
  /** Cap on the delay, in milliseconds. Default: no cap (up to ~24.8 days). */
  maxDelayMs?: number;
}

/** initialDelayMs * multiplier^(attempt - 1), capped at maxDelayMs. */
export class ExponentialBackoff implements BackoffStrategy {
  readonly initialDelayMs: number;
  readonly multiplier: number;
  readonly maxDelayMs: number;

  constructor(options: ExponentialBackoffOptions) {
    const o = requiredObject('ExponentialBackoff options', options);
    this.initialDelayMs = durationIn('ExponentialBackoff.initialDelayMs', o.initialDelayMs, 0, MAX_DELAY_MS);
    this.multiplier = atLeast('ExponentialBackoff.multiplier', o.multiplier, 1);
    this.maxDelayMs =
      o.maxDelayMs === undefined
        ? MAX_DELAY_MS
        : durationIn('ExponentialBackoff.maxDelayMs', o.maxDelayMs, this.initialDelayMs, MAX_DELAY_MS);
  }

  getDelayMs(attempt: number): number {
    return Math.min(this.initialDelayMs * this.multiplier ** (Math.max(1, attempt) - 1), this.maxDelayMs);
  }
}
