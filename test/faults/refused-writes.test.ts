/**
 * Redis answering reads but refusing the breaker's writes: out of memory under
 * noeviction, clients paused for writes, an events key of another type. The instance
 * stays in degraded mode, protecting itself on its local window, reports the cause once,
 * and rejoins the shared state when writes are accepted again: it never flaps between
 * its local state and the shared one.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { breakerKeys } from '../../src/index.js';
import { sleep } from '../../harness/clock.js';
import { type Instance, fail, failing, fleet, stopAll, untilAll } from '../support/instances.js';
import { lostOutcomes, startLoad } from './load.js';
import { scenario } from './scenario.js';
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

const codes = (i: Instance) => i.seen.errors.map((e) => (e as { code?: string }).code);

/** Leaves the server well over its memory limit, so that it refuses every write. */
async function exhaustMemory(): Promise<void> {
  const admin = server.client();
  await admin.set('fill', 'x'.repeat(16 << 20));
  const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1]);
  await admin.config('SET', 'maxmemory', String(Math.floor(used / 2)));
}

/**
 * Opens the instance alone under a fault that refuses writes, checks that it stays open
 * and reports the cause once for a while, then heals the fault and checks that it rejoins
 * the shared state and can trip there.
 */
async function refusedThenHealed(i: Instance, code: string, heal: () => Promise<unknown>): Promise<void> {
  await fail(i, 1);
  await vi.waitFor(() => expect(codes(i)).toContain(code), { timeout: 10_000 });
  await fail(i, 3);
  await untilAll([i], 'open');
  expect(i.seen.states.at(-1)?.transition).toMatchObject({ to: 'open', reason: 'local_failures', local: true });
  // Three resync periods: the shared state (closed) must not take over while writes are refused.
  await sleep(3500);
  expect(i.breaker.state).toBe('open');
  expect(i.seen.states.map((s) => s.transition.reason)).toEqual(['local_failures']);
  expect(codes(i).filter((c) => c === code)).toHaveLength(1);

  await heal();
  await vi.waitFor(() => expect(codes(i)).toContain('ZV_REDIS_RESTORED'), { timeout: 10_000 });
  await untilAll([i], 'closed');
  expect(i.seen.states.at(-1)?.transition).toMatchObject({ to: 'closed', reason: 'resync', local: true });
  await fail(i, 3);
  await untilAll([i], 'open');
  await vi.waitFor(() => expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'consecutive_failures', local: false }));
}

describe('Redis refusing writes but answering reads', () => {
  scenario('Redis out of memory (noeviction)', async (size) => {
    instances = fleet(server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    // The dependency fails from the moment Redis refuses writes.
    let down = false;
    const load = startLoad([i.breaker], 200, () => (down ? failing() : Promise.resolve('ok')));
    await sleep(size === 'long' ? 5000 : 500);
    load.phase('during');
    const injectedAt = performance.now();
    await exhaustMemory();
    down = true;
    const outage = size === 'long' ? 20_000 : 3500;
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_REDIS_REFUSED'), { timeout: 10_000 });
    const detectMs = performance.now() - injectedAt;
    await untilAll([i], 'open');
    expect(i.seen.states.at(-1)?.transition).toMatchObject({ to: 'open', reason: 'local_failures', local: true });
    // Resync periods go by: the shared state (closed) must not take over while writes are refused.
    await sleep(outage);
    expect(i.breaker.state).toBe('open');
    expect(i.seen.states.map((s) => s.transition.reason)).toEqual(['local_failures']);
    const report = i.seen.errors.find((e) => (e as { code?: string }).code === 'ZV_REDIS_REFUSED');
    expect(report?.message).toContain('out of memory');

    const healedAt = performance.now();
    await server.client().config('SET', 'maxmemory', '0');
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_REDIS_RESTORED'), { timeout: 10_000 });
    const convergeMs = performance.now() - healedAt;
    const result = await load.stop();
    await i.breaker.stop();
    expect(codes(i).filter((c) => c === 'ZV_REDIS_REFUSED')).toHaveLength(1);
    return {
      injected: `used memory over maxmemory (noeviction) for ${outage / 1000} s, the dependency failing meanwhile`,
      detectMs,
      convergeMs,
      latencyBefore: result.phases.get('before'),
      latencyDuring: result.phases.get('during'),
      transitions: await server.client().xlen(breakerKeys('zenvark', i.breaker.id).events),
      outcomesLost: lostOutcomes(result.executed, [i.breaker]),
      reportsPerBreaker: i.seen.errors.length,
      note: 'the instance opens on its local window and stays open; it rejoins (ZV_REDIS_RESTORED) within a resync period of the memory being freed',
    };
  });

  it('clients paused for writes: the same, and reads go on meanwhile', async () => {
    instances = fleet(server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    const admin = server.client();
    await admin.call('CLIENT', 'PAUSE', '60000', 'WRITE');
    await refusedThenHealed(i, 'ZV_REDIS_UNREACHABLE', () => admin.call('CLIENT', 'UNPAUSE'));
  });

  it('an events key of another type: the trip is refused with ZV_WRONGTYPE, once, until the key is ours again', async () => {
    instances = fleet(server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    const admin = server.client();
    const keys = breakerKeys('zenvark', i.breaker.id);
    await admin.set(keys.events, 'not a stream');
    await fail(i, 2);
    await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(2));
    await refusedThenHealed(i, 'ZV_WRONGTYPE', () => admin.del(keys.events));
  });
});
