/**
 * Breaker instances for client tests: each with its own application client (as separate
 * processes would have), a controllable health check, and a record of what it observed.
 */
import { randomUUID } from 'node:crypto';
import { type Cluster, Redis } from 'ioredis';
import { expect, vi } from 'vitest';
import * as Zenvark from '../../src/index.js';
import {
  type CircuitBreaker,
  type CircuitBreakerOptions,
  type CircuitRole,
  type CircuitState,
  DEFAULTS,
  type HealthCheckType,
  type HealthOptions,
  type Transition,
  breakerKeys,
} from '../../src/index.js';

export interface Observed {
  states: { state: CircuitState; transition: Transition }[];
  roles: CircuitRole[];
  /** Every health check this instance ran, its own check function's or a test's. */
  checks: { type: HealthCheckType; at: number }[];
  errors: Error[];
}

export interface Instance {
  readonly breaker: CircuitBreaker;
  /** The application's client: one server's, or a cluster's. */
  readonly redis: Redis | Cluster;
  readonly seen: Observed;
  /** What the next health checks answer. */
  healthy: boolean;
}

const quieted = new WeakSet<Redis | Cluster>();

/** The classes an instance is built from: this package's, or a previous release's (previous-client.ts). */
export type Package = Pick<typeof Zenvark, 'CircuitBreaker' | 'ConsecutiveBreaker' | 'ConstantBackoff'>;

/**
 * Options of a test instance: the breaker's; `idleDuty`, which adds idle probes an hour
 * apart to its health options (idle probes are the one duty of a closed breaker, so one
 * instance holds the lease while it is closed, and no probe runs within a test: for tests
 * of a closed breaker's lease holder); and `zenvark`, the package it is built from (default:
 * this one).
 */
export type InstanceOptions = Partial<CircuitBreakerOptions> & { idleDuty?: boolean; zenvark?: Package };

/** The idle probe interval of `idleDuty`, ms: longer than any test. */
export const IDLE_DUTY_INTERVAL_MS = 3_600_000;

export function uniqueId(label = 'b'): string {
  return `${label}-${randomUUID()}`;
}

export function instance(
  url: string,
  { idleDuty, zenvark = Zenvark, ...options }: InstanceOptions & { id: string },
  redis: Redis | Cluster = new Redis(url),
): Instance {
  if (!quieted.has(redis)) {
    quieted.add(redis);
    redis.on('error', () => {});
  }
  const seen: Observed = { states: [], roles: [], checks: [], errors: [] };
  const control = { healthy: false };
  const given: HealthOptions = options.health ?? {
    backoff: new zenvark.ConstantBackoff({ delayMs: 50 }),
    check: async () => {
      if (!control.healthy) throw new Error('dependency still down');
    },
  };
  const health: HealthOptions = idleDuty ? { ...given, idleProbeIntervalMs: IDLE_DUTY_INTERVAL_MS } : given;
  const check = health.check;
  const breaker = new zenvark.CircuitBreaker({
    redis,
    breaker: new zenvark.ConsecutiveBreaker({ threshold: 3 }),
    leaseTtlMs: 1000,
    loadFunctions: true,
    onError: (error) => seen.errors.push(error),
    onStateChange: (state, transition) => seen.states.push({ state, transition }),
    onRoleChange: (role) => seen.roles.push(role),
    ...options,
    // Whatever check a test gives, this instance records that it ran it.
    health: check
      ? {
          ...health,
          check: (type, signal) => {
            seen.checks.push({ type, at: Date.now() });
            return check(type, signal);
          },
        }
      : health,
  });
  return {
    breaker,
    redis,
    seen,
    get healthy() {
      return control.healthy;
    },
    set healthy(value: boolean) {
      control.healthy = value;
    },
  };
}

/** The codes of the errors `i` was told of (onError), in order. */
export function errorCodes(i: Instance): (string | undefined)[] {
  return i.seen.errors.map((e) => (e as { code?: string }).code);
}

/** Breaker `id` as Redis has it (zv1_state: state, gen, holder, token, ...), read through `redis`. */
export async function stateOf(redis: Redis | Cluster, id: string): Promise<Record<string, string>> {
  const keys = breakerKeys(DEFAULTS.prefix, id);
  const reply = (await redis.call('FCALL_RO', 'zv1_state', '2', keys.state, keys.events)) as unknown[];
  const out: Record<string, string> = {};
  for (let n = 0; n + 1 < reply.length; n += 2) out[String(reply[n])] = String(reply[n + 1]);
  return out;
}

/** The breaker as Redis has it, read through `i`'s client. */
export function sharedState(i: Instance): Promise<Record<string, string>> {
  return stateOf(i.redis, i.breaker.id);
}

/** Several instances of one breaker, each on its own client. */
export function fleet(url: string, size: number, options: InstanceOptions = {}): Instance[] {
  const id = options.id ?? uniqueId();
  return Array.from({ length: size }, (_, i) => instance(url, { ...options, id, instanceId: `instance-${i}` }));
}

export async function startAll(instances: Instance[]): Promise<void> {
  await Promise.all(instances.map((i) => i.breaker.start()));
}

export async function stopAll(instances: Instance[]): Promise<void> {
  await Promise.all(instances.map((i) => i.breaker.stop()));
  for (const redis of new Set(instances.map((i) => i.redis))) redis.disconnect();
}

export const failing = async (): Promise<never> => {
  throw new Error('dependency failed');
};

/** Runs `count` failing calls through a breaker, ignoring their errors. */
export async function fail(i: Instance, count: number): Promise<void> {
  for (let n = 0; n < count; n += 1) await i.breaker.execute(failing).catch(() => undefined);
}

/** Waits, with a generous limit, until every instance reports `state`. */
export async function untilAll(instances: Instance[], state: CircuitState, timeout = 10_000): Promise<void> {
  await vi.waitFor(
    () => {
      expect(instances.map((i) => i.breaker.state)).toEqual(instances.map(() => state));
    },
    { timeout, interval: 10 },
  );
}

/** Waits until exactly one instance is the leader and returns it. */
export async function leaderOf(instances: Instance[], timeout = 10_000): Promise<Instance> {
  return vi.waitFor(
    () => {
      const leaders = instances.filter((i) => i.breaker.role === 'leader');
      expect(leaders).toHaveLength(1);
      return leaders[0] as Instance;
    },
    { timeout, interval: 10 },
  );
}
