/**
 * Redis answering reads but refusing the breaker's writes: out of memory under
 * noeviction, clients paused for writes, an events key of another type. The instance
 * stays in degraded mode, protecting itself on its local window, reports the cause once,
 * and rejoins the shared state when writes are accepted again: it never flaps between
 * its local state and the shared one.
 */
import { afterEach, beforeEach, describe, expect, vi } from 'vitest';
import { breakerKeys } from '../../src/index.js';
import { sleep } from '../../harness/clock.js';
import { type Instance, fail, fleet, sharedState, stopAll, untilAll } from '../support/instances.js';
import { FaultRun, codes, reportOf, resyncedOutageMs } from './fault-run.js';
import { type Size, scenario } from './scenario.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';

let server: RedisServer;
let instances: Instance[] = [];

beforeEach(async () => {
  server = await startRedis({ args: ['--maxmemory-policy', 'noeviction'] });
});

afterEach(async () => {
  await stopAll(instances);
  instances = [];
  await disposeRedis(server);
});

const RATE = 200;
/** How long writes stay refused after the instance opened alone. */
const outageOf = resyncedOutageMs;

/** Leaves the server well over its memory limit, so that it refuses every write. */
async function exhaustMemory(): Promise<void> {
  const admin = server.client();
  await admin.set('fill', 'x'.repeat(16 << 20));
  const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1]);
  await admin.config('SET', 'maxmemory', String(Math.floor(used / 2)));
}

/** One started instance, and a steady load through it that has been measured for a while. */
async function loadedInstance(size: Size): Promise<{ i: Instance; run: FaultRun }> {
  instances = fleet(server.url, 1);
  const [i] = instances as [Instance];
  await i.breaker.start();
  return { i, run: await FaultRun.begin(instances, server.client(), size, RATE) };
}

/**
 * Opens the instance alone under a fault that refuses writes (the dependency failing
 * from then on), checks that it stays open and reports the cause once for a while, then
 * heals the fault and checks that it rejoins the shared state and can trip there.
 */
async function refusedThenHealed(run: FaultRun, i: Instance, size: Size, code: string, heal: () => Promise<unknown>): Promise<void> {
  run.down = true;
  await fail(i, 1);
  await run.detected(() => expect(codes(i)).toContain(code), 10_000);
  await fail(i, 3);
  await untilAll([i], 'open');
  expect(i.seen.states.at(-1)?.transition).toMatchObject({ to: 'open', reason: 'local_failures', local: true });
  // Resync periods go by: the shared state (closed) must not take over while writes are refused.
  await sleep(outageOf(size));
  expect(i.breaker.state).toBe('open');
  expect(i.seen.states.map((s) => s.transition.reason)).toEqual(['local_failures']);
  expect(codes(i).filter((c) => c === code)).toHaveLength(1);

  // The dependency is back first; alone and open, the instance does not notice it.
  run.down = false;
  run.heal();
  await heal();
  await run.converged(() => expect(codes(i)).toContain('ZV_REDIS_RESTORED'), 10_000);
  await untilAll([i], 'closed');
  expect(i.seen.states.at(-1)?.transition).toMatchObject({ to: 'closed', reason: 'resync', local: true });
  await fail(i, 3);
  await untilAll([i], 'open');
  await vi.waitFor(() => expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'consecutive_failures', local: false }));
}

describe('Redis refusing writes but answering reads', () => {
  scenario('Redis out of memory (noeviction)', async (size) => {
    const { i, run } = await loadedInstance(size);
    run.inject();
    await exhaustMemory();
    // The dependency fails from the moment Redis refuses writes.
    run.down = true;
    await run.detected(() => expect(codes(i)).toContain('ZV_REDIS_REFUSED'), 10_000);
    await untilAll([i], 'open');
    expect(i.seen.states.at(-1)?.transition).toMatchObject({ to: 'open', reason: 'local_failures', local: true });
    // Resync periods go by: the shared state (closed) must not take over while writes are refused.
    await sleep(outageOf(size));
    expect(i.breaker.state).toBe('open');
    expect(i.seen.states.map((s) => s.transition.reason)).toEqual(['local_failures']);
    expect(reportOf(i, 'ZV_REDIS_REFUSED')?.message).toContain('out of memory');

    run.heal();
    await server.client().config('SET', 'maxmemory', '0');
    await run.converged(() => expect(codes(i)).toContain('ZV_REDIS_RESTORED'), 10_000);
    const figures = await run.finish({
      injected: `used memory over maxmemory (noeviction) for ${outageOf(size) / 1000} s, the dependency failing meanwhile`,
      note: 'the instance opens on its local window and stays open; it rejoins (ZV_REDIS_RESTORED) within a resync period of the memory being freed',
    });
    expect(codes(i).filter((c) => c === 'ZV_REDIS_REFUSED')).toHaveLength(1);
    return figures;
  });

  scenario('Redis clients paused for writes (CLIENT PAUSE WRITE)', async (size) => {
    const { i, run } = await loadedInstance(size);
    const admin = server.client();
    run.inject();
    await admin.call('CLIENT', 'PAUSE', '60000', 'WRITE');
    // Reads go on meanwhile: only what writes is held.
    expect((await sharedState(i)).state).toBe('closed');
    await refusedThenHealed(run, i, size, 'ZV_REDIS_UNREACHABLE', () => admin.call('CLIENT', 'UNPAUSE'));
    return run.finish({
      injected: `CLIENT PAUSE WRITE for ${outageOf(size) / 1000} s, the dependency failing meanwhile`,
      note:
        'writes are held, not refused: the held calls time out (ZV_REDIS_UNREACHABLE) and run when the pause ends, so the ' +
        'outcomes of the record call in flight were counted twice (locally and by Redis)',
    });
  });

  scenario('An events key of another type (ZV_WRONGTYPE)', async (size) => {
    instances = fleet(server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    const admin = server.client();
    const keys = breakerKeys('zenvark', i.breaker.id);
    await admin.set(keys.events, 'not a stream');
    // Outcomes still count: the events key is only written by a transition.
    await fail(i, 2);
    await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(2));
    const run = await FaultRun.begin(instances, admin, size, RATE);
    // The key is in the way from the first trip on.
    run.inject();
    await refusedThenHealed(run, i, size, 'ZV_WRONGTYPE', () => admin.del(keys.events));
    return run.finish({
      injected: `the events key a string, from the first trip on for ${outageOf(size) / 1000} s, the dependency failing meanwhile`,
      note: 'the trip is refused with ZV_WRONGTYPE (told once) and decided locally; detect counts from the dependency failing, since the key is only read at a trip',
    });
  });
});
