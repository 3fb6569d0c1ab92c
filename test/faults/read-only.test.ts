/**
 * An application user that may read but not write: the README's application user
 * without the rights the functions write with (HSET, XADD, PUBLISH). The breaker starts
 * (reads work), then every write is refused from inside the function before it writes:
 * each instance says so once, naming the command, decides alone on its local window
 * without ever flapping to the shared state, and rejoins it once the rights are granted.
 */
import { afterEach, describe, expect, vi } from 'vitest';
import { breakerKeys } from '../../src/index.js';
import { createUser } from '../support/acl.js';
import { type Instance, fail, fleet, startAll, stopAll, untilAll } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';
import {
  FaultRun,
  expectEachReported,
  expectOncePerCause,
  expectRejoined,
  expectSomeReported,
  generationsSeen,
  reasonsSeen,
  reportOf,
  reported,
  resyncedOutageMs,
} from './fault-run.js';
import { scenario } from './scenario.js';

// The library is there, as an operator would have loaded it: the application user may not.
const own = ownRedis({ library: true });
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

const RATE = 200;
const WRITES = ['+hset', '+xadd', '+publish'];

describe('a user without write rights', () => {
  scenario('A read-only user (no HSET, XADD, PUBLISH)', async (size) => {
    const url = await createUser(own.admin, own.server, 'app', ...WRITES);
    instances = fleet(url, 2, { loadFunctions: false });
    const keys = breakerKeys('zenvark', (instances[0] as Instance).breaker.id);
    // The fault is there from the start.
    const run = new FaultRun(instances, own.admin, RATE);
    run.inject();
    await startAll(instances);
    run.flow();
    await run.detected(() => expectSomeReported(instances, 'ZV_NOPERM'));
    // The first outcome report is refused in each, naming the command (closed, with no idle
    // probes, the breaker holds no lease and sends nothing else that writes).
    await vi.waitFor(() => expectEachReported(instances, 'ZV_NOPERM'), { timeout: 15_000 });
    for (const i of instances) {
      const report = reportOf(i, 'ZV_NOPERM');
      expect(report?.message).toMatch(/may not run HSET on zenvark:\{.*\}:state/);
      expect(report?.message).not.toMatch(/user_function|:\d+:/);
    }

    // Alone, each protects itself: the dependency fails, each opens on its own window ...
    run.down = true;
    await untilAll(instances, 'open');
    // ... and closes on its own recovery check once the dependency is back.
    run.down = false;
    for (const i of instances) i.healthy = true;
    await untilAll(instances, 'closed');
    // Resync periods go by: never back and forth to the shared state while writes are refused.
    await run.hold(resyncedOutageMs(size));
    for (const i of instances) {
      expect(reasonsSeen(i)).toEqual(['local_failures', 'local_recovery']);
      expect(i.seen.states.every((s) => s.transition.local)).toBe(true);
      expect(reported(i, 'ZV_NOPERM')).toBe(1);
    }
    // Nothing was written, not even half a transition.
    expect(await own.admin.exists(keys.state, keys.events)).toBe(0);

    run.heal();
    await own.admin.call('ACL', 'SETUSER', new URL(url).username, ...WRITES);
    await run.converged(() => expectRejoined(instances));
    // Shared again: a trip in Redis reaches both, and the lease holder's check closes it.
    await fail(instances[0] as Instance, 3);
    await vi.waitFor(() => expect(instances.map(generationsSeen)).toEqual(instances.map(() => [1, 2])), { timeout: 10_000 });
    const figures = await run.finish({
      injected: `the README's application user without ${WRITES.join(' ')}, from start() on, ${resyncedOutageMs(size) / 1000} s; 2 instances × ${RATE} calls/s, the dependency failing for a while`,
      note: 'start() works (it only reads); each instance decides alone (local trip and recovery) and nothing reaches Redis; converge counts from the rights being granted',
    });
    for (const i of instances) {
      expectOncePerCause(i, 'ZV_NOPERM', 'ZV_REDIS_RESTORED');
      expect(reasonsSeen(i)).toEqual(['local_failures', 'local_recovery', 'consecutive_failures', 'recovery_check_passed']);
    }
    return figures;
  });
});
