import { StrategyKind } from './constants.js';
import { MAX_COUNT, MAX_COUNT_WINDOW, MAX_DURATION_MS, MIN_DURATION_MS } from './limits.js';
import { integerIn, onlyKnownKeys, rate, requiredObject } from './validate.js';

/**
 * Breaker strategies are declarative: Redis evaluates them in the function library, on
 * server time, for every instance at once. Custom JavaScript strategies cannot run there.
 */

export interface ConsecutiveBreakerOptions {
  /** Failures in a row that open the circuit; an integer >= 1. */
  threshold: number;
}

/** The keys of ConsecutiveBreakerOptions; `satisfies` makes tsc fail when the two differ. */
export const CONSECUTIVE_BREAKER_KEYS = { threshold: true } as const satisfies Record<keyof ConsecutiveBreakerOptions, true>;

/** Opens the circuit after `threshold` failures in a row; any success resets the run. */
export class ConsecutiveBreaker {
  readonly kind = StrategyKind.CONSECUTIVE;
  readonly threshold: number;

  constructor(options: ConsecutiveBreakerOptions) {
    const o = requiredObject('ConsecutiveBreaker options', options);
    onlyKnownKeys('ConsecutiveBreaker options', o, CONSECUTIVE_BREAKER_KEYS);
    this.threshold = integerIn('ConsecutiveBreaker.threshold', o.threshold, 1, MAX_COUNT);
  }
}

export interface CountBreakerOptions {
  /** Failure rate in (0, 1] at which the circuit opens. */
  threshold: number;
  /** Number of most recent calls the rate is computed over; 1 to 10,000. */
  size: number;
  /** Calls the window must hold before the rate counts; 1 to `size`. Default: `size`. */
  minimumNumberOfCalls?: number;
}

/** The keys of CountBreakerOptions, checked against it by tsc. */
export const COUNT_BREAKER_KEYS = { threshold: true, size: true, minimumNumberOfCalls: true } as const satisfies Record<
  keyof CountBreakerOptions,
  true
>;

/** Opens the circuit when the failure rate over the last `size` calls reaches `threshold`. */
export class CountBreaker {
  readonly kind = StrategyKind.COUNT;
  readonly threshold: number;
  readonly size: number;
  readonly minimumNumberOfCalls: number;

  constructor(options: CountBreakerOptions) {
    const o = requiredObject('CountBreaker options', options);
    onlyKnownKeys('CountBreaker options', o, COUNT_BREAKER_KEYS);
    this.threshold = rate('CountBreaker.threshold', o.threshold);
    this.size = integerIn('CountBreaker.size', o.size, 1, MAX_COUNT_WINDOW);
    this.minimumNumberOfCalls =
      o.minimumNumberOfCalls === undefined
        ? this.size
        : integerIn('CountBreaker.minimumNumberOfCalls', o.minimumNumberOfCalls, 1, this.size);
  }
}

export interface SamplingBreakerOptions {
  /** Failure rate in (0, 1] at which the circuit opens. */
  threshold: number;
  /** Length of the time window in milliseconds, 10 ms to one day. */
  duration: number;
  /** Calls the window must hold before the rate counts; >= 1. Default: 10. */
  minimumNumberOfCalls?: number;
}

/** The keys of SamplingBreakerOptions, checked against it by tsc. */
export const SAMPLING_BREAKER_KEYS = { threshold: true, duration: true, minimumNumberOfCalls: true } as const satisfies Record<
  keyof SamplingBreakerOptions,
  true
>;

/**
 * Opens the circuit when the failure rate over the last `duration` ms of server time
 * reaches `threshold`. The window slides in steps of duration / 20.
 */
export class SamplingBreaker {
  readonly kind = StrategyKind.TIME;
  readonly threshold: number;
  readonly duration: number;
  readonly minimumNumberOfCalls: number;

  constructor(options: SamplingBreakerOptions) {
    const o = requiredObject('SamplingBreaker options', options);
    onlyKnownKeys('SamplingBreaker options', o, SAMPLING_BREAKER_KEYS);
    this.threshold = rate('SamplingBreaker.threshold', o.threshold);
    this.duration = integerIn('SamplingBreaker.duration', o.duration, MIN_DURATION_MS, MAX_DURATION_MS);
    this.minimumNumberOfCalls =
      o.minimumNumberOfCalls === undefined
        ? 10
        : integerIn('SamplingBreaker.minimumNumberOfCalls', o.minimumNumberOfCalls, 1, MAX_COUNT);
  }
}

export type BreakerStrategy = ConsecutiveBreaker | CountBreaker | SamplingBreaker;

export function validateStrategy(value: unknown): BreakerStrategy {
  if (value instanceof ConsecutiveBreaker || value instanceof CountBreaker || value instanceof SamplingBreaker) {
    return value;
  }
  throw new TypeError(
    'breaker must be a ConsecutiveBreaker, CountBreaker or SamplingBreaker: strategies are evaluated ' +
      'inside Redis, so custom JavaScript strategies are not supported',
  );
}
