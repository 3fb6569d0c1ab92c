import { describe, expect, it } from 'vitest';
import {
  CircuitBreaker,
  type CircuitBreakerOptions,
  ConsecutiveBreaker,
  ConstantBackoff,
  CountBreaker,
  ExponentialBackoff,
  SamplingBreaker,
} from '../../src/index.js';
import { resolveOptions } from '../../src/options.js';
import { validOptions as valid } from './valid-options.js';

describe('strategy options', () => {
  it.each([
    [() => new ConsecutiveBreaker({ threshold: 0 }), RangeError, 'ConsecutiveBreaker.threshold must be an integer in [1, 1000000000], got 0'],
    [() => new ConsecutiveBreaker({ threshold: 2.5 }), RangeError, 'ConsecutiveBreaker.threshold must be an integer in [1, 1000000000], got 2.5'],
    [() => new ConsecutiveBreaker({ threshold: '3' as never }), TypeError, 'ConsecutiveBreaker.threshold must be a number, got "3"'],
    [() => new ConsecutiveBreaker(undefined as never), TypeError, 'ConsecutiveBreaker options is required and must be an object, got undefined'],
    [() => new CountBreaker({ threshold: 1.5, size: 10 }), RangeError, 'CountBreaker.threshold must be in (0, 1], got 1.5'],
    [() => new CountBreaker({ threshold: 0, size: 10 }), RangeError, 'CountBreaker.threshold must be in (0, 1], got 0'],
    [() => new CountBreaker({ threshold: Number.NaN, size: 10 }), TypeError, 'CountBreaker.threshold must be a number, got NaN'],
    [() => new CountBreaker({ threshold: 0.5, size: 0 }), RangeError, 'CountBreaker.size must be an integer in [1, 10000], got 0'],
    [() => new CountBreaker({ threshold: 0.5, size: 10, minimumNumberOfCalls: 11 }), RangeError, 'CountBreaker.minimumNumberOfCalls must be an integer in [1, 10], got 11'],
    [() => new SamplingBreaker({ threshold: 0.5, duration: 5 }), RangeError, 'SamplingBreaker.duration must be an integer in [10, 86400000], got 5'],
    [() => new SamplingBreaker({ threshold: 0.5, duration: 1000, minimumNumberOfCalls: 0 }), RangeError, 'SamplingBreaker.minimumNumberOfCalls must be an integer in [1, 1000000000], got 0'],
    [() => new ConstantBackoff({ delayMs: -1 }), RangeError, 'ConstantBackoff.delayMs must be a finite number of milliseconds in [0, 2147483647], got -1'],
    [() => new ConstantBackoff({ delayMs: Number.POSITIVE_INFINITY }), RangeError, 'ConstantBackoff.delayMs must be a finite number of milliseconds in [0, 2147483647], got Infinity'],
    [() => new ExponentialBackoff({ initialDelayMs: 100, multiplier: 0.5 }), RangeError, 'ExponentialBackoff.multiplier must be a finite number >= 1, got 0.5'],
    [() => new ExponentialBackoff({ initialDelayMs: 100, multiplier: 2, maxDelayMs: 50 }), RangeError, 'ExponentialBackoff.maxDelayMs must be a finite number of milliseconds in [100, 2147483647], got 50'],
  ] as const)('%#: %s', (make, type, message) => {
    expect(make).toThrow(type);
    expect(make).toThrow(message);
  });

  it('fills documented defaults', () => {
    expect(new CountBreaker({ threshold: 0.5, size: 20 }).minimumNumberOfCalls).toBe(20);
    expect(new SamplingBreaker({ threshold: 0.5, duration: 1000 }).minimumNumberOfCalls).toBe(10);
  });
});

describe('CircuitBreaker options', () => {
  const cases: [string, (o: CircuitBreakerOptions) => unknown, ErrorConstructor, string][] = [
    ['missing id', (o) => ({ ...o, id: undefined }), TypeError, 'CircuitBreaker.id must be a non-empty string, got undefined'],
    ['empty id', (o) => ({ ...o, id: '' }), TypeError, 'CircuitBreaker.id must be a non-empty string, got ""'],
    ['no redis', (o) => ({ ...o, redis: {} }), TypeError, 'CircuitBreaker.redis must be an ioredis Redis or Cluster client'],
    ['custom strategy', (o) => ({ ...o, breaker: { shouldOpenCircuit: () => false } }), TypeError, 'custom JavaScript strategies are not supported'],
    ['missing health', (o) => ({ ...o, health: undefined }), TypeError, 'CircuitBreaker.health is required and must be an object, got undefined'],
    ['missing check', (o) => ({ ...o, health: { backoff: o.health.backoff } }), TypeError, 'CircuitBreaker.health.check must be a function, got undefined'],
    ['missing backoff', (o) => ({ ...o, health: { check: o.health.check } }), TypeError, 'CircuitBreaker.health.backoff must be a backoff strategy with getDelayMs(attempt)'],
    ['negative idle interval', (o) => ({ ...o, health: { ...o.health, idleProbeIntervalMs: -5 } }), RangeError, 'CircuitBreaker.health.idleProbeIntervalMs must be a finite number of milliseconds in [1, 2147483647], got -5'],
    ['NaN idle interval', (o) => ({ ...o, health: { ...o.health, idleProbeIntervalMs: Number.NaN } }), TypeError, 'CircuitBreaker.health.idleProbeIntervalMs must be a number, got NaN'],
    ['short lease', (o) => ({ ...o, leaseTtlMs: 50 }), RangeError, 'CircuitBreaker.leaseTtlMs must be an integer in [100, 3600000], got 50'],
    ['zero retention', (o) => ({ ...o, auditRetention: 0 }), RangeError, 'CircuitBreaker.auditRetention must be an integer in [1, 1000000], got 0'],
    ['prefix with braces', (o) => ({ ...o, prefix: 'a{b}' }), RangeError, "CircuitBreaker.prefix must not contain '{' or '}'"],
    ['onError not a function', (o) => ({ ...o, onError: 'log' }), TypeError, 'CircuitBreaker.onError must be a function, got "log"'],
    ['metrics without recordCall', (o) => ({ ...o, metrics: { recordBlockedRequest() {}, recordHealthCheck() {} } }), TypeError, 'CircuitBreaker.metrics.recordCall must be a function, got undefined'],
    ['localFallback not a boolean', (o) => ({ ...o, localFallback: 'yes' }), TypeError, 'CircuitBreaker.localFallback must be a boolean, got string'],
    ['isFailure not a function', (o) => ({ ...o, isFailure: true }), TypeError, 'CircuitBreaker.isFailure must be a function, got true'],
    ['isResultFailure not a function', (o) => ({ ...o, isResultFailure: 'yes' }), TypeError, 'CircuitBreaker.isResultFailure must be a function, got "yes"'],
    ['zero timeout', (o) => ({ ...o, timeoutMs: 0 }), RangeError, 'CircuitBreaker.timeoutMs must be a finite number of milliseconds in [1, 2147483647], got 0'],
    ['slow duration without a rate', (o) => ({ ...o, breaker: new CountBreaker({ threshold: 0.5, size: 10 }), slowCallDurationMs: 100 }), TypeError, 'CircuitBreaker.slowCallDurationMs and CircuitBreaker.slowCallRateThreshold go together'],
    ['slow rate above 1', (o) => ({ ...o, slowCallDurationMs: 100, slowCallRateThreshold: 1.2 }), RangeError, 'CircuitBreaker.slowCallRateThreshold must be in (0, 1], got 1.2'],
    ['slow calls with consecutive failures', (o) => ({ ...o, slowCallDurationMs: 100, slowCallRateThreshold: 0.5 }), TypeError, 'CircuitBreaker.slowCallRateThreshold needs a window: use a CountBreaker or SamplingBreaker'],
    ['negative slow duration', (o) => ({ ...o, slowCallDurationMs: -1, slowCallRateThreshold: 0.5 }), RangeError, 'CircuitBreaker.slowCallDurationMs must be a finite number of milliseconds in [0, 2147483647], got -1'],
    ['half-open without permits', (o) => ({ ...o, halfOpen: {} }), TypeError, 'CircuitBreaker.halfOpen.permittedCalls must be a number, got undefined'],
    ['half-open with 0 permits', (o) => ({ ...o, halfOpen: { permittedCalls: 0 } }), RangeError, 'CircuitBreaker.halfOpen.permittedCalls must be an integer in [1, 10000], got 0'],
    ['more successes than permits', (o) => ({ ...o, halfOpen: { permittedCalls: 2, successThreshold: 3 } }), RangeError, 'CircuitBreaker.halfOpen.successThreshold must be an integer in [1, 2], got 3'],
    ['a permit shorter than 3 timeouts', (o) => ({ ...o, timeoutMs: 5000, halfOpen: { permittedCalls: 2, permitTimeoutMs: 14_999 } }), RangeError, 'CircuitBreaker.halfOpen.permitTimeoutMs must be at least 3 × timeoutMs (15000), got 14999'],
    ['recovery success threshold 0', (o) => ({ ...o, health: { ...o.health, successThreshold: 0 } }), RangeError, 'CircuitBreaker.health.successThreshold must be an integer in [1, 100], got 0'],
    ['minimumInstances 0', (o) => ({ ...o, minimumInstances: 0 }), RangeError, 'CircuitBreaker.minimumInstances must be an integer in [1, 64], got 0'],
    ['fractional minimumInstances', (o) => ({ ...o, minimumInstances: 1.5 }), RangeError, 'CircuitBreaker.minimumInstances must be an integer in [1, 64], got 1.5'],
    ['minimumInstances as a string', (o) => ({ ...o, minimumInstances: '2' }), TypeError, 'CircuitBreaker.minimumInstances must be a number, got "2"'],
    ['instance share 0', (o) => ({ ...o, minimumInstanceShare: 0 }), RangeError, 'CircuitBreaker.minimumInstanceShare must be in (0, 1], got 0'],
    ['instance share above 1', (o) => ({ ...o, minimumInstances: 2, minimumInstanceShare: 1.01 }), RangeError, 'CircuitBreaker.minimumInstanceShare must be in (0, 1], got 1.01'],
    ['idle probes without a check', (o) => ({ ...o, halfOpen: { permittedCalls: 1 }, health: { backoff: o.health.backoff, idleProbeIntervalMs: 1000 } }), TypeError, 'CircuitBreaker.health.idleProbeIntervalMs needs CircuitBreaker.health.check'],
  ];

  it.each(cases)('%s', (_name, change, type, message) => {
    const make = () => new CircuitBreaker(change(valid()) as CircuitBreakerOptions);
    expect(make).toThrow(type);
    expect(make).toThrow(message);
  });

  it('permitTimeoutMs defaults to 10 s, or 3 × timeoutMs when that is longer', () => {
    const permitTimeout = (o: Partial<CircuitBreakerOptions>) => resolveOptions({ ...valid(), ...o }).halfOpen?.permitTimeoutMs;
    expect(permitTimeout({ halfOpen: { permittedCalls: 1 } })).toBe(10_000);
    expect(permitTimeout({ halfOpen: { permittedCalls: 1 }, timeoutMs: 2000 })).toBe(10_000);
    expect(permitTimeout({ halfOpen: { permittedCalls: 1 }, timeoutMs: 5000 })).toBe(15_000);
    expect(permitTimeout({ halfOpen: { permittedCalls: 1, permitTimeoutMs: 15_000 }, timeoutMs: 5000 })).toBe(15_000);
  });

  it('the instance rule: either option or both; off when neither is set', () => {
    const rule = (o: Partial<CircuitBreakerOptions>) => resolveOptions({ ...valid(), ...o }).instanceRule;
    expect(rule({})).toBeUndefined();
    expect(rule({ minimumInstances: 2 })).toEqual({ minimumInstances: 2, minimumInstanceShare: 0 });
    const windowed = { breaker: new CountBreaker({ threshold: 0.5, size: 10, minimumNumberOfCalls: 5 }) };
    expect(rule({ ...windowed, minimumInstanceShare: 0.5 })).toEqual({ minimumInstances: 0, minimumInstanceShare: 0.5 });
    expect(rule({ ...windowed, minimumInstances: 64, minimumInstanceShare: 1 })).toEqual({ minimumInstances: 64, minimumInstanceShare: 1 });
  });

  it('a share of instances needs a window: in a run of consecutive failures every reporter failed', () => {
    expect(() => new CircuitBreaker({ ...valid(), minimumInstanceShare: 0.5 })).toThrow(
      'CircuitBreaker.minimumInstanceShare needs a window: use a CountBreaker or SamplingBreaker (minimumInstances works with every strategy)',
    );
  });

  it('a health check is optional when trial calls decide recovery', () => {
    const breaker = new CircuitBreaker({ ...valid(), halfOpen: { permittedCalls: 3 }, health: { backoff: new ConstantBackoff({ delayMs: 1 }) } });
    expect(breaker.state).toBe('closed');
    expect(() => new CircuitBreaker({ ...valid(), health: { backoff: new ConstantBackoff({ delayMs: 1 }) } as never })).toThrow(
      'CircuitBreaker.health.check must be a function, got undefined',
    );
  });

  it('accepts any non-empty id and a minimal configuration', () => {
    const breaker = new CircuitBreaker({ ...valid(), id: ' {x} : ☃ ' });
    expect(breaker.state).toBe('closed');
    expect(breaker.role).toBe('follower');
    expect(breaker.instanceId).toMatch(/^.+:\d+:[0-9a-f]{8}(:\d+)?$/);
  });
});

describe('backoff', () => {
  it('constant', () => {
    const b = new ConstantBackoff({ delayMs: 250 });
    expect([1, 2, 10].map((n) => b.getDelayMs(n))).toEqual([250, 250, 250]);
  });

  it('exponential, capped', () => {
    const b = new ExponentialBackoff({ initialDelayMs: 100, multiplier: 2, maxDelayMs: 700 });
    expect([1, 2, 3, 4, 5, 60].map((n) => b.getDelayMs(n))).toEqual([100, 200, 400, 700, 700, 700]);
  });

  it('rejects an unknown jitter', () => {
    expect(() => new ExponentialBackoff({ initialDelayMs: 100, multiplier: 2, jitter: 'some' as never })).toThrow(
      'ExponentialBackoff.jitter must be one of none, full, decorrelated, got some',
    );
  });

  it('full jitter: between 0 and the nominal delay, and spread out', () => {
    const b = new ExponentialBackoff({ initialDelayMs: 100, multiplier: 2, maxDelayMs: 1000, jitter: 'full' });
    for (const attempt of [1, 2, 3, 4, 8]) {
      const delays = Array.from({ length: 200 }, () => b.getDelayMs(attempt));
      const nominal = b.nominalDelayMs(attempt);
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...delays)).toBeLessThanOrEqual(nominal);
      // Spread over the range, not bunched: the quartiles are far apart.
      const sorted = [...delays].sort((x, y) => x - y);
      expect((sorted[150] as number) - (sorted[50] as number)).toBeGreaterThan(nominal / 4);
    }
  });

  it('decorrelated jitter: between the initial delay and three times the previous nominal one, capped', () => {
    const b = new ExponentialBackoff({ initialDelayMs: 100, multiplier: 2, maxDelayMs: 1000, jitter: 'decorrelated' });
    const bounds: [number, number, number][] = [
      [1, 100, 300],
      [2, 100, 300],
      [3, 100, 600],
      [4, 100, 1000],
      [10, 100, 1000],
    ];
    for (const [attempt, low, high] of bounds) {
      const delays = Array.from({ length: 200 }, () => b.getDelayMs(attempt));
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(low);
      expect(Math.max(...delays)).toBeLessThanOrEqual(high);
      expect(new Set(delays.map(Math.round)).size).toBeGreaterThan(20);
    }
  });

  it('exponential without a cap stops at what a timer can wait', () => {
    const b = new ExponentialBackoff({ initialDelayMs: 1000, multiplier: 10 });
    expect(b.getDelayMs(100)).toBe(2_147_483_647);
  });
});
