/**
 * A process that stalls (a long GC pause, a blocked event loop, SIGSTOP, a paused VM) with
 * a call to Redis in flight. When it resumes, Node runs the timers that came due before it
 * reads its sockets, so the driver's command timeout fires while Redis's answer is waiting
 * unread: that says nothing about Redis. Here Redis holds the call back (CLIENT PAUSE
 * WRITE) until the process is stalled, so that its answer arrives during the stall, always.
 */
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { stall } from '../../harness/clock.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import { type Instance, errorCodes, fail, fleet, leaderOf, sharedState, stopAll, untilAll } from '../support/instances.js';

let server: RedisServer;
let admin: Redis;
let instances: Instance[] = [];

beforeEach(async () => {
  server = await startRedis();
  admin = server.client();
});

afterEach(async () => {
  await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
  await stopAll(instances);
  instances = [];
  await disposeRedis(server);
});

/**
 * Redis holds a call back HELD_MS; the process stalls for STALL_FOR_MS from a moment when
 * one is held: Redis answers during the stall, and the stall outlasts the 1 s timeout.
 */
const HELD_MS = 1500;
const STALL_FOR_MS = 2500;

/** Redis holds every writing call back for `ms`. */
async function holdWrites(ms: number): Promise<void> {
  await admin.call('CLIENT', 'PAUSE', String(ms), 'WRITE');
}

/** Waits until Redis holds one of the breaker's calls: sent, and answered only when the pause ends. */
async function untilHeld(): Promise<void> {
  await vi.waitFor(
    async () => {
      const list = String(await admin.call('CLIENT', 'LIST'));
      const held = list.split('\n').filter((line) => / name=zenvark:commands /.test(line) && / flags=\w*b/.test(line));
      expect(held).toHaveLength(1);
    },
    // Well before the pause ends: the answer must come during the stall.
    { timeout: HELD_MS - 500, interval: 1 },
  );
}

const local = (i: Instance) => i.seen.states.filter((s) => s.transition.local);

describe('a process stalled with a call to Redis in flight', () => {
  it('asks Redis again instead of taking it for unreachable; a lease that lapsed meanwhile is given up', async () => {
    // Idle probes (an hour apart) are a duty of the closed breaker: the instance holds the lease.
    instances = fleet(server.url, 1, { leaseTtlMs: 1000, idleDuty: true });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await leaderOf(instances);

    // A failure's report goes out at once; Redis answers it while the process is stalled.
    await holdWrites(HELD_MS);
    await fail(i, 1);
    await untilHeld();
    stall(STALL_FOR_MS);

    // Once resumed, the breaker goes on with Redis: the next outcomes are counted there.
    await fail(i, 2);
    await vi.waitFor(() => expect(i.breaker.stats.recorded + i.breaker.stats.local).toBeGreaterThanOrEqual(2), { timeout: 10_000 });
    await untilAll(instances, 'open');
    expect(i.breaker.stats.local).toBe(0);
    expect(local(i)).toEqual([]);
    expect(errorCodes(i)).not.toContain('ZV_REDIS_UNREACHABLE');
    // The lease lapsed on the process's own clock during the stall: it stepped down.
    expect(i.seen.roles.slice(0, 2)).toEqual(['leader', 'follower']);
  });

  it('the lease holder of an open breaker resumed while its check passes closes it through Redis, not locally', async () => {
    instances = fleet(server.url, 1, { leaseTtlMs: 1000 });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await fail(i, 3);
    await untilAll(instances, 'open');
    await leaderOf(instances);

    // Its failing checks' reports and renewals are in flight; one is held back during the stall.
    await holdWrites(HELD_MS);
    await untilHeld();
    i.healthy = true;
    stall(STALL_FOR_MS);

    await untilAll(instances, 'closed');
    await vi.waitFor(async () => expect((await sharedState(i)).state).toBe('closed'));
    expect(i.seen.states.map((s) => `${s.state}:${s.transition.reason}`)).toEqual(['open:consecutive_failures', 'closed:recovery_check_passed']);
    expect(errorCodes(i)).not.toContain('ZV_REDIS_UNREACHABLE');
  });

  it('still takes Redis for unreachable when it does not answer after the stall either', async () => {
    instances = fleet(server.url, 1, { leaseTtlMs: 1000 });
    const [i] = instances as [Instance];
    await i.breaker.start();

    // Redis holds every writing call for 20 s: the stall explains the first timeout, not the next.
    await holdWrites(20_000);
    await fail(i, 1);
    await untilHeld();
    stall(STALL_FOR_MS);

    await vi.waitFor(() => expect(errorCodes(i)).toContain('ZV_REDIS_UNREACHABLE'), { timeout: 10_000 });
    await fail(i, 3);
    await untilAll(instances, 'open');
    expect(local(i).map((s) => s.transition.reason)).toEqual(['local_failures']);
    await admin.call('CLIENT', 'UNPAUSE');
    await vi.waitFor(() => expect(errorCodes(i)).toContain('ZV_REDIS_RESTORED'), { timeout: 10_000 });
    expect(errorCodes(i).filter((c) => c === 'ZV_REDIS_UNREACHABLE')).toHaveLength(1);
  });
});
