/**
 * Redis restarted empty (no persistence): the function library is gone with the data.
 * Without auto-load every instance says, once, that the library is missing and how to
 * load it, keeps protecting itself alone, and rejoins as soon as an operator loads it;
 * with auto-load it loads the library itself.
 */
import { afterEach, beforeEach, describe, expect, vi } from 'vitest';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { type Instance, fail, fleet, stopAll, untilAll } from '../support/instances.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import { FaultRun, codes, expectOncePerCause, expectRejoined, reportOf, resyncedOutageMs } from './fault-run.js';
import { scenario } from './scenario.js';

let server: RedisServer;
let instances: Instance[] = [];

beforeEach(async () => {
  server = await startRedis();
  await server.client().call('FUNCTION', 'LOAD', LIBRARY_CODE);
});

afterEach(async () => {
  await stopAll(instances);
  instances = [];
  await disposeRedis(server);
});

const RATE = 100;

/** Some instance has heard of the restart (for vi.waitFor). */
const expectSomeReport = () => expect(instances.some((i) => i.seen.errors.length > 0)).toBe(true);

/** Every instance back on the shared state (closed, told it ended), and a trip there reaching all. */
async function rejoinedAndTripping(run: FaultRun, first: Instance): Promise<void> {
  await run.converged(() => expectRejoined(instances));
  for (const i of instances) await vi.waitFor(() => expect(codes(i)).toContain('ZV_REDIS_RESTORED'), { timeout: 10_000 });
  await untilAll(instances, 'closed');
  await fail(first, 3);
  await untilAll(instances, 'open');
}

describe('Redis restarted empty', () => {
  scenario('Redis restarted empty, library not loaded (loadFunctions off)', async (size) => {
    instances = fleet(server.url, 3, { loadFunctions: false });
    await Promise.all(instances.map((i) => i.breaker.start()));
    const run = await FaultRun.begin(instances, server.client(), size, RATE);
    const outage = size === 'long' ? resyncedOutageMs(size) : 0;
    run.inject();
    await server.restart();
    await run.detected(expectSomeReport);
    for (const i of instances) {
      await vi.waitFor(() => expect(codes(i)).toContain('ZV_LIBRARY_MISSING'), { timeout: 15_000 });
      const report = reportOf(i, 'ZV_LIBRARY_MISSING');
      expect(report?.message).toContain('npx zenvark deploy-functions');
    }
    // Alone, each still protects itself.
    const [first] = instances as [Instance];
    await fail(first, 3);
    await untilAll([first], 'open');
    expect(first.seen.states.at(-1)?.transition).toMatchObject({ reason: 'local_failures', local: true });
    await run.hold(outage);
    for (const i of instances) expect(codes(i).filter((c) => c === 'ZV_LIBRARY_MISSING')).toHaveLength(1);

    run.heal();
    await server.client().call('FUNCTION', 'LOAD', LIBRARY_CODE);
    await rejoinedAndTripping(run, first);
    const figures = await run.finish({
      injected: `redis-server killed and started empty, the library loaded by an operator ${size === 'long' ? `${outage / 1000} s later` : 'at once'}; 3 instances × ${RATE} calls/s`,
      note: 'without loadFunctions each instance says once that the library is missing (naming zenvark deploy-functions) and decides alone; converge counts from the operator loading it',
    });
    for (const i of instances) expectOncePerCause(i, 'ZV_REDIS_UNREACHABLE', 'ZV_LIBRARY_MISSING', 'ZV_REDIS_RESTORED');
    return figures;
  });

  scenario('Redis restarted empty, library loaded again (loadFunctions)', async (size) => {
    instances = fleet(server.url, 2, { loadFunctions: true });
    await Promise.all(instances.map((i) => i.breaker.start()));
    const run = await FaultRun.begin(instances, server.client(), size, RATE);
    const [first] = instances as [Instance];
    await fail(first, 3);
    await untilAll(instances, 'open');
    // The fault is healed by the instances themselves: converge counts from the injection.
    run.inject();
    await server.restart();
    await run.detected(expectSomeReport);
    await vi.waitFor(async () => expect(Number(await server.client().call('FCALL_RO', 'zv1_revision', '0'))).toBeGreaterThan(0), { timeout: 15_000 });
    await rejoinedAndTripping(run, first);
    const figures = await run.finish({
      injected: `redis-server killed and started empty while the breaker was open; 2 instances × ${RATE} calls/s`,
      note: 'the instances load the library themselves and follow the new, closed life (resync), then trip in it; converge counts from the kill',
    });
    for (const i of instances) expectOncePerCause(i, 'ZV_REDIS_UNREACHABLE', 'ZV_REDIS_RESTORED');
    return figures;
  });
});
