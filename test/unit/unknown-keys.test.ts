import { describe, expect, it } from 'vitest';
import {
  CircuitBreaker,
  type CircuitBreakerOptions,
  ConsecutiveBreaker,
  ConstantBackoff,
  CountBreaker,
  type ExecuteOptions,
  ExponentialBackoff,
  type HalfOpenOptions,
  type HealthOptions,
  SamplingBreaker,
} from '../../src/index.js';
import {
  CONSTANT_BACKOFF_KEYS,
  type ConstantBackoffOptions,
  EXPONENTIAL_BACKOFF_KEYS,
  type ExponentialBackoffOptions,
} from '../../src/backoff.js';
import { CIRCUIT_BREAKER_KEYS, EXECUTE_KEYS, HALF_OPEN_KEYS, HEALTH_KEYS, validateExecuteOptions } from '../../src/options.js';
import {
  CONSECUTIVE_BREAKER_KEYS,
  COUNT_BREAKER_KEYS,
  type ConsecutiveBreakerOptions,
  type CountBreakerOptions,
  SAMPLING_BREAKER_KEYS,
  type SamplingBreakerOptions,
} from '../../src/strategies.js';
import { validOptions as valid } from './valid-options.js';

const breakerKnown =
  'id, redis, breaker, health, onError, onStateChange, isFailure, isResultFailure, slowCallDurationMs, ' +
  'slowCallRateThreshold, timeoutMs, halfOpen, minimumInstances, minimumInstanceShare, onRoleChange, metrics, prefix, leaseTtlMs, auditRetention, ' +
  'instanceId, loadFunctions, localFallback';

const breaker = (change: (o: CircuitBreakerOptions) => object) => () => new CircuitBreaker(change(valid()) as CircuitBreakerOptions);
const withHealth = (extra: object) => breaker((o) => ({ ...o, health: { ...o.health, ...extra } }));
const withHalfOpen = (extra: object) => breaker((o) => ({ ...o, halfOpen: { permittedCalls: 2, ...extra } }));
const execute = (extra: object) => () => validateExecuteOptions(extra as ExecuteOptions<unknown>);

describe('unknown option keys', () => {
  it.each([
    [
      'CircuitBreaker: a strategy option at the top level',
      breaker((o) => ({ ...o, treshold: 3 })),
      "CircuitBreaker options has no option 'treshold' (did you mean the strategy's 'threshold', as in breaker: " +
        `new ConsecutiveBreaker({ threshold })? known: ${breakerKnown})`,
    ],
    [
      'CircuitBreaker',
      breaker((o) => ({ ...o, leaseTTL: 3000 })),
      `CircuitBreaker options has no option 'leaseTTL' (did you mean 'leaseTtlMs'? known: ${breakerKnown})`,
    ],
    [
      'health',
      withHealth({ timeout: 1000 }),
      "CircuitBreaker.health has no option 'timeout' (did you mean 'timeoutMs'? known: backoff, check, successThreshold, idleProbeIntervalMs, timeoutMs)",
    ],
    [
      'halfOpen',
      withHalfOpen({ permitTimeout: 5 }),
      "CircuitBreaker.halfOpen has no option 'permitTimeout' (did you mean 'permitTimeoutMs'? known: permittedCalls, successThreshold, permitTimeoutMs)",
    ],
    [
      'CountBreaker',
      () => new CountBreaker({ threshold: 0.5, size: 10, minimumCalls: 5 } as CountBreakerOptions),
      "CountBreaker options has no option 'minimumCalls' (did you mean 'minimumNumberOfCalls'? known: threshold, size, minimumNumberOfCalls)",
    ],
    [
      'ConsecutiveBreaker',
      () => new ConsecutiveBreaker({ threshold: 3, size: 10 } as ConsecutiveBreakerOptions),
      "ConsecutiveBreaker options has no option 'size' (known: threshold)",
    ],
    [
      'SamplingBreaker',
      () => new SamplingBreaker({ threshold: 0.5, duration: 1000, size: 10 } as SamplingBreakerOptions),
      "SamplingBreaker options has no option 'size' (known: threshold, duration, minimumNumberOfCalls)",
    ],
    [
      'ConstantBackoff',
      () => new ConstantBackoff({ delayMs: 100, jitter: 'full' } as ConstantBackoffOptions),
      "ConstantBackoff options has no option 'jitter' (known: delayMs)",
    ],
    [
      'ExponentialBackoff',
      () => new ExponentialBackoff({ initialDelayMs: 100, multiplier: 2, factor: 3 } as ExponentialBackoffOptions),
      "ExponentialBackoff options has no option 'factor' (known: initialDelayMs, multiplier, maxDelayMs, jitter)",
    ],
    ['execute()', execute({ retries: 3 }), "execute() options has no option 'retries' (known: signal, timeoutMs, fallback)"],
  ])('%s', (_name, make, message) => {
    expect(make).toThrow(TypeError);
    expect(make).toThrow(message);
  });

  it.each([
    ['a misspelling', withHealth({ sucessThreshold: 2 }), "'successThreshold'"],
    ['a transposition in a short key', () => new CountBreaker({ threshold: 0.5, szie: 10 } as never), "'size'"],
    ['another case', breaker((o) => ({ ...o, ISFAILURE: () => true })), "'isFailure'"],
    ['snake case', breaker((o) => ({ ...o, lease_ttl_ms: 3000 })), "'leaseTtlMs'"],
    ['a missing unit', () => new ConstantBackoff({ delay: 100 } as never), "'delayMs'"],
    ['a missing unit', () => new ExponentialBackoff({ initialDelayMs: 1, multiplier: 2, maxDelay: 9 } as never), "'maxDelayMs'"],
    ['an extra unit', () => new SamplingBreaker({ threshold: 0.5, durationMs: 1000 } as never), "'duration'"],
    ['a misspelling', () => new ExponentialBackoff({ initialDelayMs: 1, multiplyer: 2 } as never), "'multiplier'"],
    ['an extra word', () => new ExponentialBackoff({ initialDelayMs: 1, multiplier: 2, jitterMode: 'full' } as never), "'jitter'"],
    ['an extra word', breaker((o) => ({ ...o, breakerStrategy: o.breaker })), "'breaker'"],
    ['a per-call option', execute({ timeout: 100 }), "'timeoutMs'"],
    ['a per-call option', execute({ fallBack: () => 1 }), "'fallback'"],
    ['a health option at the top level', breaker((o) => ({ ...o, check: async () => {} })), "'health.check'"],
    ['an option of two objects', breaker((o) => ({ ...o, successThreshold: 2 })), "'health.successThreshold' or 'halfOpen.successThreshold'"],
    ['a half-open option at the top level', breaker((o) => ({ ...o, permittedCalls: 2 })), "'halfOpen.permittedCalls'"],
    ['a strategy option', breaker((o) => ({ ...o, size: 10 })), "the strategy's 'size', as in breaker: new CountBreaker({ size })"],
  ])('suggests the nearest key: %s', (_name, make, hint) => {
    expect(make).toThrow(`(did you mean ${hint}? known: `);
  });

  it.each([
    ['nothing alike', breaker((o) => ({ ...o, colour: 'red' })), 'colour'],
    ['a short key', breaker((o) => ({ ...o, ix: 'x' })), 'ix'],
    ['a word that is only part of a key', withHalfOpen({ permits: 2 }), 'permits'],
  ])('suggests nothing when nothing is near: %s', (_name, make, key) => {
    expect(make).toThrow(`has no option '${key}' (known: `);
  });

  it('an unknown key set to undefined is still unknown', () => {
    expect(breaker((o) => ({ ...o, treshold: undefined }))).toThrow("has no option 'treshold'");
    expect(execute({ fallback: undefined, signals: undefined })).toThrow("execute() options has no option 'signals'");
  });

  it('symbol keys and inherited properties are not options', () => {
    const inherited = Object.assign(Object.create({ treshold: 3, colour: 'red' }) as object, { threshold: 3 });
    expect(new ConsecutiveBreaker(inherited as ConsecutiveBreakerOptions).threshold).toBe(3);
    expect(new ConsecutiveBreaker({ threshold: 3, [Symbol('tag')]: 1 }).threshold).toBe(3);
    expect(() => validateExecuteOptions({ timeoutMs: 5, [Symbol('tag')]: 1 })).not.toThrow();
  });

  it('an unknown key is reported before the other options are checked', () => {
    expect(() => new CountBreaker({ threshold: 0.5, siz: 10 } as never)).toThrow("CountBreaker options has no option 'siz'");
  });

  it('rejects an execute() call with an unknown key without calling fn', async () => {
    const b = new CircuitBreaker(valid());
    let called = false;
    const run = async () => {
      called = true;
    };
    await expect(b.execute(run, { timeout: 100 } as never)).rejects.toThrow("execute() options has no option 'timeout'");
    expect(called).toBe(false);
  });
});

describe('every documented option is accepted', () => {
  // Required<...> makes tsc list every option of the interface here too, so an option
  // added to the interface without a test value fails to compile.
  const health: Required<HealthOptions> = {
    backoff: new ConstantBackoff({ delayMs: 100 }),
    check: async () => undefined,
    successThreshold: 2,
    idleProbeIntervalMs: 60_000,
    timeoutMs: 1000,
  };
  const halfOpen: Required<HalfOpenOptions> = { permittedCalls: 4, successThreshold: 2, permitTimeoutMs: 30_000 };
  const everything = (): Required<CircuitBreakerOptions> => ({
    ...valid(),
    breaker: new CountBreaker({ threshold: 0.5, size: 10, minimumNumberOfCalls: 5 }),
    health,
    onError: () => {},
    onStateChange: () => {},
    isFailure: () => true,
    isResultFailure: () => false,
    slowCallDurationMs: 500,
    slowCallRateThreshold: 0.5,
    timeoutMs: 2000,
    halfOpen,
    minimumInstances: 2,
    minimumInstanceShare: 0.5,
    onRoleChange: () => {},
    metrics: { recordCall() {}, recordBlockedRequest() {}, recordHealthCheck() {} },
    prefix: 'zv-test',
    leaseTtlMs: 3000,
    auditRetention: 10,
    instanceId: 'instance-a',
    loadFunctions: true,
    localFallback: false,
  });
  const strategies = {
    consecutive: { threshold: 3 } satisfies Required<ConsecutiveBreakerOptions>,
    count: { threshold: 0.5, size: 10, minimumNumberOfCalls: 5 } satisfies Required<CountBreakerOptions>,
    sampling: { threshold: 0.5, duration: 1000, minimumNumberOfCalls: 5 } satisfies Required<SamplingBreakerOptions>,
  };
  const backoffs = {
    constant: { delayMs: 100 } satisfies Required<ConstantBackoffOptions>,
    exponential: { initialDelayMs: 100, multiplier: 2, maxDelayMs: 1000, jitter: 'full' } satisfies Required<ExponentialBackoffOptions>,
  };
  const call = (): Required<ExecuteOptions<string>> => ({
    signal: new AbortController().signal,
    timeoutMs: 1000,
    fallback: () => 'fallback',
  });

  it('CircuitBreaker with every option, health and halfOpen included', () => {
    expect(new CircuitBreaker(everything()).instanceId).toBe('instance-a');
  });

  it('every strategy and backoff option', () => {
    expect(new ConsecutiveBreaker(strategies.consecutive).threshold).toBe(3);
    expect(new CountBreaker(strategies.count).minimumNumberOfCalls).toBe(5);
    expect(new SamplingBreaker(strategies.sampling).minimumNumberOfCalls).toBe(5);
    expect(new ConstantBackoff(backoffs.constant).delayMs).toBe(100);
    expect(new ExponentialBackoff(backoffs.exponential).jitter).toBe('full');
  });

  it('every execute() option', async () => {
    const b = new CircuitBreaker({ ...valid(), onError: () => {} });
    await expect(b.execute(async () => 'value', call())).resolves.toBe('value');
  });

  it('the known-key lists are the keys of the interfaces', () => {
    // The lists are checked by tsc (below); this ties them to the values above, which
    // Required<...> ties to the interfaces.
    const keys = (o: object) => Object.keys(o).sort();
    expect(keys(CIRCUIT_BREAKER_KEYS)).toEqual(keys(everything()));
    expect(keys(HEALTH_KEYS)).toEqual(keys(health));
    expect(keys(HALF_OPEN_KEYS)).toEqual(keys(halfOpen));
    expect(keys(EXECUTE_KEYS)).toEqual(keys(call()));
    expect(keys(CONSECUTIVE_BREAKER_KEYS)).toEqual(keys(strategies.consecutive));
    expect(keys(COUNT_BREAKER_KEYS)).toEqual(keys(strategies.count));
    expect(keys(SAMPLING_BREAKER_KEYS)).toEqual(keys(strategies.sampling));
    expect(keys(CONSTANT_BACKOFF_KEYS)).toEqual(keys(backoffs.constant));
    expect(keys(EXPONENTIAL_BACKOFF_KEYS)).toEqual(keys(backoffs.exponential));
  });

  it('a list that drifts from its interface does not compile', () => {
    // Each list is declared `{ ... } as const satisfies Record<keyof TheOptions, true>`.
    // Record<keyof TheOptions, true> makes every key of the interface, optional ones
    // included, a required property, so a list that misses an option fails tsc; and
    // `satisfies` checks an object literal for excess properties, so a list with a key
    // the interface lacks fails too. `npm test` runs `tsc --noEmit` first; the two
    // directives below fail it if the trick ever stops catching either case.
    // @ts-expect-error a list without halfOpen's permitTimeoutMs
    const missing = { permittedCalls: true, successThreshold: true } as const satisfies Record<keyof HalfOpenOptions, true>;
    // @ts-expect-error a list with a key HalfOpenOptions lacks
    const extra = { ...HALF_OPEN_KEYS, permitTimeout: true } as const satisfies Record<keyof HalfOpenOptions, true>;
    expect([missing, extra]).toHaveLength(2);
  });
});
