/**
 * Option validation at each bound of src/limits.ts: the bound is accepted, one beyond it
 * is refused with a RangeError that names the option. test/lua/limits.test.ts checks the
 * library at the same bounds.
 */
import { describe, expect, it } from 'vitest';
import {
  type CircuitBreakerOptions,
  ConsecutiveBreaker,
  ConstantBackoff,
  CountBreaker,
  ExponentialBackoff,
  SamplingBreaker,
  feedChannel,
} from '../../src/index.js';
import {
  MAX_ACTOR_BYTES,
  MAX_CHANNEL_BYTES,
  MAX_COUNT,
  MAX_COUNT_WINDOW,
  MAX_DELAY_MS,
  MAX_DURATION_MS,
  MAX_HEALTH_SUCCESS_THRESHOLD,
  MAX_INSTANCES,
  MAX_PREFIX_LENGTH,
  MAX_RETENTION,
  MAX_TRIAL_PERMITS,
  MAX_TTL_MS,
  MIN_DURATION_MS,
  MIN_LEASE_TTL_MS,
  PERMIT_TIMEOUTS,
} from '../../src/limits.js';
import { resolveOptions, validateExecuteOptions } from '../../src/options.js';
import { validOptions as base } from './valid-options.js';

const options = (change: Partial<CircuitBreakerOptions>) => () => resolveOptions({ ...base(), ...change });
const health = (change: Partial<CircuitBreakerOptions['health']>) => options({ health: { ...base().health, ...change } });

interface Bound {
  /** The option as the message names it. */
  readonly option: string;
  /** Validates a configuration with the option set to `value`. */
  readonly validate: (value: number) => () => unknown;
  readonly max: number;
  /** A lower bound to check too, when refusing one below it is a RangeError. */
  readonly min?: number;
}

const window = new CountBreaker({ threshold: 0.5, size: 10 });

const BOUNDS: readonly Bound[] = [
  { option: 'ConsecutiveBreaker.threshold', validate: (v) => () => new ConsecutiveBreaker({ threshold: v }), min: 1, max: MAX_COUNT },
  { option: 'CountBreaker.size', validate: (v) => () => new CountBreaker({ threshold: 0.5, size: v }), min: 1, max: MAX_COUNT_WINDOW },
  {
    option: 'CountBreaker.minimumNumberOfCalls',
    validate: (v) => () => new CountBreaker({ threshold: 0.5, size: MAX_COUNT_WINDOW, minimumNumberOfCalls: v }),
    min: 1,
    max: MAX_COUNT_WINDOW,
  },
  {
    option: 'SamplingBreaker.duration',
    validate: (v) => () => new SamplingBreaker({ threshold: 0.5, duration: v }),
    min: MIN_DURATION_MS,
    max: MAX_DURATION_MS,
  },
  {
    option: 'SamplingBreaker.minimumNumberOfCalls',
    validate: (v) => () => new SamplingBreaker({ threshold: 0.5, duration: 1000, minimumNumberOfCalls: v }),
    min: 1,
    max: MAX_COUNT,
  },
  { option: 'ConstantBackoff.delayMs', validate: (v) => () => new ConstantBackoff({ delayMs: v }), min: 0, max: MAX_DELAY_MS },
  {
    option: 'ExponentialBackoff.initialDelayMs',
    validate: (v) => () => new ExponentialBackoff({ initialDelayMs: v, multiplier: 2 }),
    min: 0,
    max: MAX_DELAY_MS,
  },
  {
    option: 'ExponentialBackoff.maxDelayMs',
    validate: (v) => () => new ExponentialBackoff({ initialDelayMs: 0, multiplier: 2, maxDelayMs: v }),
    min: 0,
    max: MAX_DELAY_MS,
  },
  { option: 'CircuitBreaker.timeoutMs', validate: (v) => options({ timeoutMs: v }), min: 1, max: MAX_DELAY_MS },
  {
    option: 'CircuitBreaker.slowCallDurationMs',
    validate: (v) => options({ breaker: window, slowCallDurationMs: v, slowCallRateThreshold: 0.5 }),
    min: 0,
    max: MAX_DELAY_MS,
  },
  { option: 'CircuitBreaker.health.idleProbeIntervalMs', validate: (v) => health({ idleProbeIntervalMs: v }), min: 1, max: MAX_DELAY_MS },
  { option: 'CircuitBreaker.health.timeoutMs', validate: (v) => health({ timeoutMs: v }), min: 1, max: MAX_DELAY_MS },
  {
    option: 'CircuitBreaker.health.successThreshold',
    validate: (v) => health({ successThreshold: v }),
    min: 1,
    max: MAX_HEALTH_SUCCESS_THRESHOLD,
  },
  { option: 'CircuitBreaker.minimumInstances', validate: (v) => options({ minimumInstances: v }), min: 1, max: MAX_INSTANCES },
  { option: 'CircuitBreaker.leaseTtlMs', validate: (v) => options({ leaseTtlMs: v }), min: MIN_LEASE_TTL_MS, max: MAX_TTL_MS },
  { option: 'CircuitBreaker.auditRetention', validate: (v) => options({ auditRetention: v }), min: 1, max: MAX_RETENTION },
  {
    option: 'CircuitBreaker.halfOpen.permittedCalls',
    validate: (v) => options({ halfOpen: { permittedCalls: v } }),
    min: 1,
    max: MAX_TRIAL_PERMITS,
  },
  {
    option: 'CircuitBreaker.halfOpen.successThreshold',
    validate: (v) => options({ halfOpen: { permittedCalls: MAX_TRIAL_PERMITS, successThreshold: v } }),
    min: 1,
    max: MAX_TRIAL_PERMITS,
  },
  {
    option: 'CircuitBreaker.halfOpen.permitTimeoutMs',
    validate: (v) => options({ halfOpen: { permittedCalls: 1, permitTimeoutMs: v } }),
    min: 1,
    max: MAX_TTL_MS,
  },
  {
    // A permit outlasts PERMIT_TIMEOUTS call timeouts.
    option: 'CircuitBreaker.halfOpen.permitTimeoutMs',
    validate: (v) => options({ timeoutMs: 1000, halfOpen: { permittedCalls: 1, permitTimeoutMs: v } }),
    min: PERMIT_TIMEOUTS * 1000,
    max: MAX_TTL_MS,
  },
  { option: 'CircuitBreaker.prefix', validate: (v) => options({ prefix: 'p'.repeat(v) }), max: MAX_PREFIX_LENGTH },
  { option: 'CircuitBreaker.instanceId', validate: (v) => options({ instanceId: 'i'.repeat(v) }), max: MAX_ACTOR_BYTES },
  { option: 'execute() options.timeoutMs', validate: (v) => () => validateExecuteOptions({ timeoutMs: v }), min: 1, max: MAX_DELAY_MS },
];

const naming = (option: string) => new RegExp(`^${option.replace(/[.()]/g, '\\$&')} must`);

describe('option validation at each limit', () => {
  it.each(BOUNDS.map((b) => [`${b.option} ≤ ${b.max}`, b] as const))('%s', (_name, b) => {
    expect(b.validate(b.max)).not.toThrow();
    expect(b.validate(b.max + 1)).toThrow(RangeError);
    expect(b.validate(b.max + 1)).toThrow(naming(b.option));
  });

  it.each(BOUNDS.filter((b) => b.min !== undefined).map((b) => [`${b.option} ≥ ${b.min}`, b] as const))('%s', (_name, b) => {
    const min = b.min as number;
    expect(b.validate(min)).not.toThrow();
    expect(b.validate(min - 1)).toThrow(RangeError);
    expect(b.validate(min - 1)).toThrow(naming(b.option));
  });

  it('counts an instance id in bytes of UTF-8, as the library does', () => {
    const snowmen = Math.floor(MAX_ACTOR_BYTES / 3);
    expect(options({ instanceId: '☃'.repeat(snowmen) })).not.toThrow();
    expect(options({ instanceId: '☃'.repeat(snowmen + 1) })).toThrow(
      `CircuitBreaker.instanceId must be at most ${MAX_ACTOR_BYTES} bytes long, got ${3 * (snowmen + 1)}`,
    );
  });

  it('the feed channel of the longest prefix fits the library bound on channels', () => {
    // U+FFFF is one code unit and the most UTF-8 bytes one code unit can take.
    const prefix = '\uffff'.repeat(MAX_PREFIX_LENGTH);
    expect(options({ prefix })).not.toThrow();
    expect(Buffer.byteLength(feedChannel(prefix))).toBeLessThanOrEqual(MAX_CHANNEL_BYTES);
  });
});
