import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { sleep } from '../../harness/clock.js';
import { ExponentialBackoff } from '../../src/index.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import { type Instance, fail, fleet, leaderOf, stopAll, untilAll } from '../support/instances.js';

const url = inject('redisUrl');
let instances: Instance[] = [];
let server: RedisServer | undefined;

afterEach(async () => {
  server?.resume();
  await stopAll(instances);
  instances = [];
  if (server) await disposeRedis(server);
  server = undefined;
});

describe('recovery checks', () => {
  it('are spaced by the backoff, the first one delayed too', async () => {
    const backoff = new ExponentialBackoff({ initialDelayMs: 100, multiplier: 2, maxDelayMs: 400 });
    instances = fleet(url, 2, {
      health: {
        backoff,
        check: async () => {
          checks.push(performance.now());
          throw new Error('down');
        },
      },
    });
    const checks: number[] = [];
    await Promise.all(instances.map((i) => i.breaker.start()));
    const openedAt = performance.now();
    await fail(instances[0] as Instance, 3);
    await vi.waitFor(() => expect(checks.length).toBeGreaterThanOrEqual(4), { timeout: 10_000 });
    const gaps = checks.map((t, n) => t - (n === 0 ? openedAt : (checks[n - 1] as number)));
    // Timers never fire early (give or take a millisecond); they may fire late on a busy machine.
    expect(gaps[0]).toBeGreaterThanOrEqual(99);
    expect(gaps[1]).toBeGreaterThanOrEqual(199);
    expect(gaps[2]).toBeGreaterThanOrEqual(399);
    expect(gaps[3]).toBeGreaterThanOrEqual(399);
  });

  it('get an AbortSignal that aborts on stop(), and stop() does not wait for a hanging check', async () => {
    let signal: AbortSignal | undefined;
    instances = fleet(url, 1, {
      health: {
        backoff: { getDelayMs: () => 10 },
        check: (_type, s) => {
          signal = s;
          return new Promise<void>(() => undefined);
        },
      },
    });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await fail(i, 3);
    await vi.waitFor(() => expect(signal).toBeDefined());
    expect(signal?.aborted).toBe(false);
    await i.breaker.stop();
    expect(signal?.aborted).toBe(true);
  });

  it('abort when the lease lapses on the holder\'s own clock', async () => {
    server = await startRedis();
    const signals: AbortSignal[] = [];
    instances = fleet(server.url, 1, {
      leaseTtlMs: 500,
      health: {
        backoff: { getDelayMs: () => 10 },
        check: (_type, s) => {
          signals.push(s);
          return new Promise<void>(() => undefined);
        },
      },
    });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await fail(i, 3);
    await vi.waitFor(() => expect(signals).toHaveLength(1));
    // Frozen Redis: renewals fail, the lease lapses on this instance's own clock.
    server.pause();
    await vi.waitFor(() => expect(i.breaker.role).toBe('follower'), { timeout: 5_000 });
    expect(signals[0]?.aborted).toBe(true);
    expect(i.seen.roles).toEqual(['leader', 'follower']);
  });
});

describe('a check that never settles', () => {
  it('is aborted after health.timeoutMs and counts as failed, and the next one runs', async () => {
    const signals: AbortSignal[] = [];
    instances = fleet(url, 1, {
      health: {
        backoff: { getDelayMs: () => 10 },
        timeoutMs: 100,
        check: (_type, signal) => {
          signals.push(signal);
          return new Promise<void>(() => undefined);
        },
      },
    });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await fail(i, 3);
    await vi.waitFor(() => expect(signals.length).toBeGreaterThanOrEqual(3));
    expect(signals[0]?.aborted).toBe(true);
    // Checks keep failing: one report while it lasts.
    const timeouts = i.seen.errors.filter((e) => (e.cause as { code?: string })?.code === 'ZV_HEALTH_CHECK_TIMEOUT');
    expect(timeouts).toHaveLength(1);
    expect(timeouts[0]?.message).toContain('the recovery health check did not settle within 100 ms');
  });
});

describe('idle probes', () => {
  it('run on the leader only, while the circuit is closed and unused', async () => {
    // A long lease: the leader stays the leader while the test watches.
    instances = fleet(url, 3, {
      leaseTtlMs: 30_000,
      health: { backoff: { getDelayMs: () => 50 }, idleProbeIntervalMs: 150, check: async () => undefined },
    });
    await Promise.all(instances.map((i) => i.breaker.start()));
    // Idle probes are a duty of the closed breaker: one instance takes the lease for them.
    const leader = await leaderOf(instances);
    // Each instance records the checks it ran itself (see test/support/instances.ts).
    await vi.waitFor(() => expect(leader.seen.checks.length).toBeGreaterThanOrEqual(2), { timeout: 10_000 });
    expect(new Set(leader.seen.checks.map((c) => c.type))).toEqual(new Set(['idle']));
    for (const i of instances) {
      if (i !== leader) expect(i.seen.checks).toEqual([]);
      expect(i.seen.roles).toEqual(i === leader ? ['leader'] : []);
    }
    expect(instances.map((i) => i.breaker.state)).toEqual(['closed', 'closed', 'closed']);
  });

  it('wait while any instance is using the breaker', async () => {
    const probes: number[] = [];
    instances = fleet(url, 2, {
      health: {
        backoff: { getDelayMs: () => 50 },
        idleProbeIntervalMs: 1000,
        check: async () => {
          probes.push(Date.now());
        },
      },
    });
    await Promise.all(instances.map((i) => i.breaker.start()));
    const leader = await leaderOf(instances);
    const user = instances.find((i) => i !== leader) as Instance;
    // The follower keeps the breaker busy for 2.5 s: each failure reaches Redis (and takes
    // the success before it along) before the next call.
    const until = Date.now() + 2500;
    while (Date.now() < until) {
      const recorded = user.breaker.stats.recorded;
      await fail(user, 1);
      await vi.waitFor(() => expect(user.breaker.stats.recorded).toBeGreaterThan(recorded), { timeout: 5000, interval: 5 });
      await user.breaker.execute(async () => 'ok');
      await sleep(50);
    }
    expect(probes).toEqual([]);
    await vi.waitFor(() => expect(probes.length).toBeGreaterThanOrEqual(1), { timeout: 10_000 });
  });

  it('a failed idle probe opens the circuit on every instance, then recovery takes over', async () => {
    const seen: string[] = [];
    let healthy = false;
    instances = fleet(url, 2, {
      health: {
        backoff: { getDelayMs: () => 50 },
        idleProbeIntervalMs: 100,
        check: async (type) => {
          seen.push(type);
          if (!healthy) throw new Error('down');
        },
      },
    });
    await Promise.all(instances.map((i) => i.breaker.start()));
    await untilAll(instances, 'open');
    for (const i of instances) {
      await vi.waitFor(() => expect(i.seen.states[0]?.transition).toMatchObject({ reason: 'idle_probe_failed', token: expect.stringMatching(/^\d+$/) }));
    }
    await vi.waitFor(() => expect(seen).toContain('recovery'));
    healthy = true;
    await untilAll(instances, 'closed');
  });
});
