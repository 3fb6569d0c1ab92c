import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Cluster, Redis } from 'ioredis';
import type { BackoffStrategy } from './backoff.js';
import type { CircuitRole, CircuitState, HealthCheckType } from './constants.js';
import type { BreakerMetricsRecorder } from './metrics.js';
import { StrategyKind } from './constants.js';
import {
  MAX_ACTOR_BYTES,
  MAX_DELAY_MS,
  MAX_HEALTH_SUCCESS_THRESHOLD,
  MAX_INSTANCES,
  MAX_PREFIX_LENGTH,
  MAX_RETENTION,
  MAX_TRIAL_PERMITS,
  MAX_TTL_MS,
  MIN_LEASE_TTL_MS,
  PERMIT_TIMEOUTS,
} from './limits.js';
import {
  type BreakerStrategy,
  CONSECUTIVE_BREAKER_KEYS,
  COUNT_BREAKER_KEYS,
  SAMPLING_BREAKER_KEYS,
  validateStrategy,
} from './strategies.js';
import type { Transition } from './transition.js';
import {
  bytesIn,
  durationIn,
  functionOrUndefined,
  integerIn,
  nonEmptyString,
  onlyKnownKeys,
  rate,
  requiredFunction,
  requiredObject,
} from './validate.js';

export interface HealthOptions {
  /** Delays between recovery checks while the circuit is open (with `halfOpen` and no
   * check: the wait before the circuit goes half-open). */
  backoff: BackoffStrategy;
  /**
   * The health check: resolve when the dependency is healthy, throw when it is not.
   * `signal` aborts when the check is no longer wanted (stop(), lease lost, timeout).
   * Optional with `halfOpen`: trial calls then decide alone.
   */
  check?: (type: HealthCheckType, signal: AbortSignal) => Promise<void>;
  /** Recovery checks that must succeed in a row before the circuit recovers; 1 to 100. Default: 1. */
  successThreshold?: number;
  /** Probe a closed circuit that no instance has used for this long, in ms. Default: off. */
  idleProbeIntervalMs?: number;
  /** A check that has not settled after this long is aborted and counts as failed, in ms. Default: 10000. */
  timeoutMs?: number;
}

/** The keys of HealthOptions; `satisfies` makes tsc fail when the two differ. */
export const HEALTH_KEYS = {
  backoff: true,
  check: true,
  successThreshold: true,
  idleProbeIntervalMs: true,
  timeoutMs: true,
} as const satisfies Record<keyof HealthOptions, true>;

/** What a classifier says an outcome counts as: true a failure, false a success, 'ignore' neither. */
export type Classification = boolean | 'ignore';

/** Fleet-wide half-open recovery: a limited number of real calls decide. */
export interface HalfOpenOptions {
  /** Trial calls let through across every instance in one half-open period; 1 to 10,000. */
  permittedCalls: number;
  /** Successful trials that close the circuit; 1 to permittedCalls. Default: permittedCalls. */
  successThreshold?: number;
  /** A trial permit not reported within this long is reclaimed (its instance may have
   * died), in ms; a trial call is cut short before then. At least 3 × `timeoutMs`.
   * Default: 10000, or 3 × `timeoutMs` when that is longer. */
  permitTimeoutMs?: number;
}

/** The keys of HalfOpenOptions, checked against it by tsc. */
export const HALF_OPEN_KEYS = {
  permittedCalls: true,
  successThreshold: true,
  permitTimeoutMs: true,
} as const satisfies Record<keyof HalfOpenOptions, true>;

export interface CircuitBreakerOptions {
  /** Name of the protected dependency; every instance that shares the breaker uses it. */
  id: string;
  /** The application's ioredis client (Redis or Cluster); the breaker derives its own connections. */
  redis: Redis | Cluster;
  /** When to open the circuit. */
  breaker: BreakerStrategy;
  /** How the lease holder checks whether the dependency recovered. */
  health: HealthOptions;
  /** Receives every background error. Default: console.error. */
  onError?: (error: Error) => void;
  /** Called on every instance, once, for every transition. */
  onStateChange?: (state: CircuitState, transition: Transition) => void;
  /** What a rejection of fn counts as. Default: every rejection is a failure. */
  isFailure?: (error: unknown) => Classification;
  /** What a value fn resolved with counts as (e.g. an HTTP 503 response). Default: a success. */
  isResultFailure?: (result: unknown) => Classification;
  /** A call that takes at least this long counts as slow, in ms. Needs slowCallRateThreshold. */
  slowCallDurationMs?: number;
  /** The share of slow calls in the window, in (0, 1], that opens the circuit; a
   * CountBreaker or SamplingBreaker only. Needs slowCallDurationMs. */
  slowCallRateThreshold?: number;
  /** Time a call may take before it is aborted, rejected with TimeoutError and counted as
   * a failure, in ms; `execute(fn, { timeoutMs })` overrides it. Default: none. */
  timeoutMs?: number;
  /** Recover through trial calls, limited across the fleet. Default: off. */
  halfOpen?: HalfOpenOptions;
  /**
   * The instance rule: the fleet opens only when the strategy's rule is reached and the
   * failures in the window came from at least this many distinct instances, 1 to 64. An
   * instance whose own outcomes reach the strategy's rule while the fleet stays closed
   * isolates itself (state 'isolated') until its own recovery checks pass. Default: off.
   */
  minimumInstances?: number;
  /**
   * The instance rule by share: the fleet opens only when the instances whose failures
   * are in the window make up at least this share, in (0, 1], of the instances that
   * reported in it. With minimumInstances, both must hold. CountBreaker or SamplingBreaker
   * only (in a run of consecutive failures every instance that reported failed). Default: off.
   */
  minimumInstanceShare?: number;
  /** Called when this instance gains or loses the lease. */
  onRoleChange?: (role: CircuitRole) => void;
  /** Receives call, fast-fail and health-check observations. */
  metrics?: BreakerMetricsRecorder;
  /** Prefix of every key and of the feed channel; at most 256 characters, no '{' or '}'. Default: 'zenvark'. */
  prefix?: string;
  /** Lifetime of the health-check lease in ms, 100 to 3,600,000; a dead holder is replaced within it. Default: 5000. */
  leaseTtlMs?: number;
  /** Approximate number of transitions kept in the audit stream (XADD MAXLEN ~), 1 to 1,000,000. Default: 1000. */
  auditRetention?: number;
  /** Name of this instance in leases and audit entries, at most 256 bytes of UTF-8. Default: '<hostname>:<pid>:<random>'. */
  instanceId?: string;
  /** Load or upgrade the function library at start() instead of failing. Default: false. */
  loadFunctions?: boolean;
  /** While Redis is unreachable, evaluate the strategy in this process. Default: true. */
  localFallback?: boolean;
}

/** The keys of CircuitBreakerOptions, checked against it by tsc. */
export const CIRCUIT_BREAKER_KEYS = {
  id: true,
  redis: true,
  breaker: true,
  health: true,
  onError: true,
  onStateChange: true,
  isFailure: true,
  isResultFailure: true,
  slowCallDurationMs: true,
  slowCallRateThreshold: true,
  timeoutMs: true,
  halfOpen: true,
  minimumInstances: true,
  minimumInstanceShare: true,
  onRoleChange: true,
  metrics: true,
  prefix: true,
  leaseTtlMs: true,
  auditRetention: true,
  instanceId: true,
  loadFunctions: true,
  localFallback: true,
} as const satisfies Record<keyof CircuitBreakerOptions, true>;

/** Options of health, halfOpen and the strategies given at the top level: the message says where they go. */
const MISPLACED_KEYS: Readonly<Record<string, string>> = misplacedKeys();

function misplacedKeys(): Record<string, string> {
  const hints: Record<string, string> = {};
  for (const [object, keys] of Object.entries({ health: HEALTH_KEYS, halfOpen: HALF_OPEN_KEYS })) {
    for (const key of Object.keys(keys)) {
      if (Object.hasOwn(CIRCUIT_BREAKER_KEYS, key)) continue;
      const path = `'${object}.${key}'`;
      hints[key] = hints[key] === undefined ? path : `${hints[key]} or ${path}`;
    }
  }
  const strategies = { ConsecutiveBreaker: CONSECUTIVE_BREAKER_KEYS, CountBreaker: COUNT_BREAKER_KEYS, SamplingBreaker: SAMPLING_BREAKER_KEYS };
  for (const [strategy, keys] of Object.entries(strategies)) {
    for (const key of Object.keys(keys)) {
      hints[key] ??= `the strategy's '${key}', as in breaker: new ${strategy}({ ${key} })`;
    }
  }
  return hints;
}

export interface ResolvedHalfOpen {
  readonly permittedCalls: number;
  readonly successThreshold: number;
  readonly permitTimeoutMs: number;
}

/** minimumInstances and minimumInstanceShare, 0 for the one not set (never both). */
export interface InstanceRule {
  readonly minimumInstances: number;
  readonly minimumInstanceShare: number;
}

export interface ResolvedOptions {
  readonly id: string;
  readonly redis: Redis | Cluster;
  readonly breaker: BreakerStrategy;
  readonly backoff: BackoffStrategy;
  readonly check: HealthOptions['check'];
  readonly idleProbeIntervalMs: number | undefined;
  readonly healthTimeoutMs: number;
  readonly healthSuccessThreshold: number;
  readonly isFailure: CircuitBreakerOptions['isFailure'];
  readonly isResultFailure: CircuitBreakerOptions['isResultFailure'];
  readonly slowCallDurationMs: number | undefined;
  readonly slowCallRateThreshold: number | undefined;
  readonly timeoutMs: number | undefined;
  readonly halfOpen: ResolvedHalfOpen | undefined;
  /** The instance rule, or undefined when neither option is set (no isolation either). */
  readonly instanceRule: InstanceRule | undefined;
  /** Undefined when not given: errors nobody listens for go to console.error. */
  readonly onError: ((error: Error) => void) | undefined;
  readonly onStateChange: CircuitBreakerOptions['onStateChange'];
  readonly onRoleChange: CircuitBreakerOptions['onRoleChange'];
  readonly metrics: BreakerMetricsRecorder | undefined;
  readonly prefix: string;
  readonly leaseTtlMs: number;
  readonly auditRetention: number;
  readonly instanceId: string;
  readonly loadFunctions: boolean;
  readonly localFallback: boolean;
}

export const DEFAULTS = {
  prefix: 'zenvark',
  leaseTtlMs: 5000,
  auditRetention: 1000,
  loadFunctions: false,
  localFallback: true,
  healthTimeoutMs: 10_000,
  healthSuccessThreshold: 1,
  permitTimeoutMs: 10_000,
} as const;

const processId = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
let instances = 0;

/** '<hostname>:<pid>:<random>', then ':<n>' for the second and later breakers of a process. */
export function defaultInstanceId(): string {
  instances += 1;
  return instances === 1 ? processId : `${processId}:${instances}`;
}

function isRedisClient(value: unknown): value is Redis | Cluster {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { duplicate?: unknown }).duplicate === 'function' &&
    typeof (value as { fcall?: unknown }).fcall === 'function'
  );
}

/** An ioredis Redis or Cluster client, or a TypeError naming the option. */
export function redisClient(name: string, value: unknown): Redis | Cluster {
  if (!isRedisClient(value)) throw new TypeError(`${name} must be an ioredis Redis or Cluster client`);
  return value;
}

/** A key prefix: at most MAX_PREFIX_LENGTH characters, no '{' or '}' (they would end the hash tag); `fallback` when absent. */
export function keyPrefix(name: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  const prefix = nonEmptyString(name, value, MAX_PREFIX_LENGTH);
  if (/[{}]/.test(prefix)) throw new RangeError(`${name} must not contain '{' or '}', got ${JSON.stringify(prefix)}`);
  return prefix;
}

/** A backoff strategy (anything with getDelayMs(attempt)), or a TypeError naming the option. */
export function backoffStrategy(name: string, value: unknown): BackoffStrategy {
  const backoff = value as BackoffStrategy | undefined;
  if (typeof backoff !== 'object' || backoff === null || typeof backoff.getDelayMs !== 'function') {
    throw new TypeError(`${name} must be a backoff strategy with getDelayMs(attempt)`);
  }
  return backoff;
}

/** A health.successThreshold (recovery checks in a row), or undefined when absent. */
export function healthSuccessThreshold(name: string, value: unknown): number | undefined {
  return value === undefined ? undefined : integerIn(name, value, 1, MAX_HEALTH_SUCCESS_THRESHOLD);
}

function optionalBoolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${typeof value}`);
  return value;
}

/** Validates everything at construction; the message names the option and its range. */
export function resolveOptions(options: CircuitBreakerOptions): ResolvedOptions {
  const o = requiredObject('CircuitBreaker options', options);
  onlyKnownKeys('CircuitBreaker options', o, CIRCUIT_BREAKER_KEYS, MISPLACED_KEYS);
  const id = nonEmptyString('CircuitBreaker.id', o.id);
  const redis = redisClient('CircuitBreaker.redis', o.redis);
  const breaker = validateStrategy(o.breaker);
  const health = requiredObject('CircuitBreaker.health', o.health);
  onlyKnownKeys('CircuitBreaker.health', health, HEALTH_KEYS);
  const backoff = backoffStrategy('CircuitBreaker.health.backoff', health.backoff);
  const timeoutMs = o.timeoutMs === undefined ? undefined : durationIn('CircuitBreaker.timeoutMs', o.timeoutMs, 1, MAX_DELAY_MS);
  const halfOpen = o.halfOpen === undefined ? undefined : resolveHalfOpen(o.halfOpen, timeoutMs);
  const check =
    halfOpen && health.check === undefined
      ? undefined
      : requiredFunction('CircuitBreaker.health.check', health.check as HealthOptions['check']);
  const idleProbeIntervalMs =
    health.idleProbeIntervalMs === undefined
      ? undefined
      : durationIn('CircuitBreaker.health.idleProbeIntervalMs', health.idleProbeIntervalMs, 1, MAX_DELAY_MS);
  const healthTimeoutMs =
    health.timeoutMs === undefined
      ? DEFAULTS.healthTimeoutMs
      : durationIn('CircuitBreaker.health.timeoutMs', health.timeoutMs, 1, MAX_DELAY_MS);
  if (idleProbeIntervalMs !== undefined && check === undefined) {
    throw new TypeError('CircuitBreaker.health.idleProbeIntervalMs needs CircuitBreaker.health.check to probe with');
  }
  const successThreshold =
    healthSuccessThreshold('CircuitBreaker.health.successThreshold', health.successThreshold) ?? DEFAULTS.healthSuccessThreshold;
  const slowCallDurationMs =
    o.slowCallDurationMs === undefined ? undefined : durationIn('CircuitBreaker.slowCallDurationMs', o.slowCallDurationMs, 0, MAX_DELAY_MS);
  const slowCallRateThreshold =
    o.slowCallRateThreshold === undefined ? undefined : rate('CircuitBreaker.slowCallRateThreshold', o.slowCallRateThreshold);
  if ((slowCallDurationMs === undefined) !== (slowCallRateThreshold === undefined)) {
    throw new TypeError('CircuitBreaker.slowCallDurationMs and CircuitBreaker.slowCallRateThreshold go together: set both or neither');
  }
  if (slowCallRateThreshold !== undefined && breaker.kind === StrategyKind.CONSECUTIVE) {
    throw new TypeError('CircuitBreaker.slowCallRateThreshold needs a window: use a CountBreaker or SamplingBreaker');
  }
  const instanceRule = resolveInstanceRule(o.minimumInstances, o.minimumInstanceShare);
  if (instanceRule?.minimumInstanceShare && breaker.kind === StrategyKind.CONSECUTIVE) {
    // Every instance that reported in a run of failures failed in it: the share would always be 1.
    throw new TypeError('CircuitBreaker.minimumInstanceShare needs a window: use a CountBreaker or SamplingBreaker (minimumInstances works with every strategy)');
  }
  const metrics = o.metrics as BreakerMetricsRecorder | undefined;
  if (metrics !== undefined) {
    requiredObject('CircuitBreaker.metrics', metrics);
    for (const method of ['recordCall', 'recordBlockedRequest', 'recordHealthCheck'] as const) {
      requiredFunction(`CircuitBreaker.metrics.${method}`, metrics[method]);
    }
  }

  const prefix = keyPrefix('CircuitBreaker.prefix', o.prefix, DEFAULTS.prefix);
  const instanceId = o.instanceId === undefined ? defaultInstanceId() : bytesIn('CircuitBreaker.instanceId', o.instanceId, MAX_ACTOR_BYTES);

  return {
    id,
    redis,
    breaker,
    backoff,
    check,
    idleProbeIntervalMs,
    healthTimeoutMs,
    healthSuccessThreshold: successThreshold,
    isFailure: functionOrUndefined('CircuitBreaker.isFailure', o.isFailure as ResolvedOptions['isFailure']),
    isResultFailure: functionOrUndefined('CircuitBreaker.isResultFailure', o.isResultFailure as ResolvedOptions['isResultFailure']),
    slowCallDurationMs,
    slowCallRateThreshold,
    timeoutMs,
    halfOpen,
    instanceRule,
    onError: functionOrUndefined('CircuitBreaker.onError', o.onError as ResolvedOptions['onError']),
    onStateChange: functionOrUndefined('CircuitBreaker.onStateChange', o.onStateChange as ResolvedOptions['onStateChange']),
    onRoleChange: functionOrUndefined('CircuitBreaker.onRoleChange', o.onRoleChange as ResolvedOptions['onRoleChange']),
    metrics,
    prefix,
    leaseTtlMs: o.leaseTtlMs === undefined ? DEFAULTS.leaseTtlMs : integerIn('CircuitBreaker.leaseTtlMs', o.leaseTtlMs, MIN_LEASE_TTL_MS, MAX_TTL_MS),
    auditRetention:
      o.auditRetention === undefined
        ? DEFAULTS.auditRetention
        : integerIn('CircuitBreaker.auditRetention', o.auditRetention, 1, MAX_RETENTION),
    instanceId,
    loadFunctions: optionalBoolean('CircuitBreaker.loadFunctions', o.loadFunctions, DEFAULTS.loadFunctions),
    localFallback: optionalBoolean('CircuitBreaker.localFallback', o.localFallback, DEFAULTS.localFallback),
  };
}

function resolveInstanceRule(minimumInstances: unknown, share: unknown): InstanceRule | undefined {
  if (minimumInstances === undefined && share === undefined) return undefined;
  return {
    minimumInstances: minimumInstances === undefined ? 0 : integerIn('CircuitBreaker.minimumInstances', minimumInstances, 1, MAX_INSTANCES),
    minimumInstanceShare: share === undefined ? 0 : rate('CircuitBreaker.minimumInstanceShare', share),
  };
}

function resolveHalfOpen(value: unknown, timeoutMs: number | undefined): ResolvedHalfOpen {
  const h = requiredObject('CircuitBreaker.halfOpen', value);
  onlyKnownKeys('CircuitBreaker.halfOpen', h, HALF_OPEN_KEYS);
  const permittedCalls = integerIn('CircuitBreaker.halfOpen.permittedCalls', h.permittedCalls, 1, MAX_TRIAL_PERMITS);
  const successThreshold =
    h.successThreshold === undefined
      ? permittedCalls
      : integerIn('CircuitBreaker.halfOpen.successThreshold', h.successThreshold, 1, permittedCalls);
  const shortest = timeoutMs === undefined ? 1 : Math.ceil(PERMIT_TIMEOUTS * timeoutMs);
  const permitTimeoutMs =
    h.permitTimeoutMs === undefined
      ? Math.min(MAX_TTL_MS, Math.max(DEFAULTS.permitTimeoutMs, shortest))
      : integerIn('CircuitBreaker.halfOpen.permitTimeoutMs', h.permitTimeoutMs, 1, MAX_TTL_MS);
  if (permitTimeoutMs < shortest) {
    throw new RangeError(
      `CircuitBreaker.halfOpen.permitTimeoutMs must be at least ${PERMIT_TIMEOUTS} × timeoutMs (${shortest}), got ${permitTimeoutMs}: ` +
        'a trial call is cut short where its permit lapses',
    );
  }
  return { permittedCalls, successThreshold, permitTimeoutMs };
}

/** Options of one call. */
export interface ExecuteOptions<T> {
  /** Aborts the call: fn's signal aborts, and execute() rejects with the signal's reason
   * at once. The outcome counts as neither success nor failure. */
  signal?: AbortSignal;
  /** Time this call may take, in ms; overrides the breaker's `timeoutMs`. */
  timeoutMs?: number;
  /**
   * Answers instead of rejecting when the circuit is open (CircuitOpenError), the call
   * timed out (TimeoutError), or fn rejected with an error counted as a failure. Errors
   * counted as a success or ignored, and the caller's own abort, are rethrown. What the
   * fallback returns or throws is what execute() returns or throws.
   */
  fallback?: (error: unknown) => T | Promise<T>;
}

/** The keys of ExecuteOptions, checked against it by tsc. */
export const EXECUTE_KEYS = { signal: true, timeoutMs: true, fallback: true } as const satisfies Record<
  keyof ExecuteOptions<unknown>,
  true
>;

/** Checks the options of one execute() call; throws an error naming what is wrong. */
export function validateExecuteOptions(options: ExecuteOptions<unknown>): void {
  const o = requiredObject('execute() options', options);
  onlyKnownKeys('execute() options', o, EXECUTE_KEYS);
  if (o.timeoutMs !== undefined) durationIn('execute() options.timeoutMs', o.timeoutMs, 1, MAX_DELAY_MS);
  functionOrUndefined('execute() options.fallback', o.fallback);
  const signal = o.signal as AbortSignal | undefined;
  if (signal !== undefined && (typeof signal !== 'object' || signal === null || typeof signal.addEventListener !== 'function')) {
    throw new TypeError(`execute() options.signal must be an AbortSignal, got ${typeof signal}`);
  }
}
