import { MAX_DELAY_MS } from './limits.js';
import { atLeast, durationIn, onlyKnownKeys, requiredObject } from './validate.js';

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

/** The keys of ConstantBackoffOptions; `satisfies` makes tsc fail when the two differ. */
export const CONSTANT_BACKOFF_KEYS = { delayMs: true } as const satisfies Record<keyof ConstantBackoffOptions, true>;

/** The same delay before every check. */
export class ConstantBackoff implements BackoffStrategy {
  readonly delayMs: number;

  constructor(options: ConstantBackoffOptions) {
    const o = requiredObject('ConstantBackoff options', options);
    onlyKnownKeys('ConstantBackoff options', o, CONSTANT_BACKOFF_KEYS);
    this.delayMs = durationIn('ConstantBackoff.delayMs', o.delayMs, 0, MAX_DELAY_MS);
  }

  getDelayMs(_attempt: number): number {
    return this.delayMs;
  }
}

/**
 * How ExponentialBackoff randomizes its delays, so that breakers on many dependencies do
 * not probe in lock-step:
 *  - 'none': the nominal delay, initialDelayMs * multiplier^(attempt - 1), capped;
 *  - 'full': a random delay between 0 and the nominal one;
 *  - 'decorrelated': a random delay between initialDelayMs and three times the nominal
 *    delay of the attempt before, capped (a stateless form of "decorrelated jitter").
 */
export type Jitter = 'none' | 'full' | 'decorrelated';

const JITTERS: readonly Jitter[] = ['none', 'full', 'decorrelated'];

export interface ExponentialBackoffOptions {
  /** Delay before the first check, in milliseconds. */
  initialDelayMs: number;
  /** Factor applied for every further attempt; >= 1. */
  multiplier: number;
  /** Cap on the delay, in milliseconds. Default: no cap (up to ~24.8 days). */
  maxDelayMs?: number;
  /** Randomization of the delays. Default: 'none'. */
  jitter?: Jitter;
}

/** The keys of ExponentialBackoffOptions, checked against it by tsc. */
export const EXPONENTIAL_BACKOFF_KEYS = {
  initialDelayMs: true,
  multiplier: true,
  maxDelayMs: true,
  jitter: true,
} as const satisfies Record<keyof ExponentialBackoffOptions, true>;

/** initialDelayMs * multiplier^(attempt - 1), capped at maxDelayMs, optionally jittered. */
export class ExponentialBackoff implements BackoffStrategy {
  readonly initialDelayMs: number;
  readonly multiplier: number;
  readonly maxDelayMs: number;
  readonly jitter: Jitter;

  constructor(options: ExponentialBackoffOptions) {
    const o = requiredObject('ExponentialBackoff options', options);
    onlyKnownKeys('ExponentialBackoff options', o, EXPONENTIAL_BACKOFF_KEYS);
    this.initialDelayMs = durationIn('ExponentialBackoff.initialDelayMs', o.initialDelayMs, 0, MAX_DELAY_MS);
    this.multiplier = atLeast('ExponentialBackoff.multiplier', o.multiplier, 1);
    this.maxDelayMs =
      o.maxDelayMs === undefined
        ? MAX_DELAY_MS
        : durationIn('ExponentialBackoff.maxDelayMs', o.maxDelayMs, this.initialDelayMs, MAX_DELAY_MS);
    const jitter = o.jitter ?? 'none';
    if (!JITTERS.includes(jitter as Jitter)) {
      throw new RangeError(`ExponentialBackoff.jitter must be one of ${JITTERS.join(', ')}, got ${String(jitter)}`);
    }
    this.jitter = jitter as Jitter;
  }

  /** The delay before attempt `attempt` without jitter. */
  nominalDelayMs(attempt: number): number {
    return Math.min(this.initialDelayMs * this.multiplier ** (Math.max(1, attempt) - 1), this.maxDelayMs);
  }

  getDelayMs(attempt: number): number {
    switch (this.jitter) {
      case 'none':
        return this.nominalDelayMs(attempt);
      case 'full':
        return Math.random() * this.nominalDelayMs(attempt);
      case 'decorrelated': {
        const upper = Math.min(this.maxDelayMs, 3 * (attempt <= 1 ? this.initialDelayMs : this.nominalDelayMs(attempt - 1)));
        return this.initialDelayMs + Math.random() * (upper - this.initialDelayMs);
      }
    }
  }
}
