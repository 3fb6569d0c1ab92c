/**
 * Redis not answering at all while calls flow through three instances: frozen (SIGSTOP),
 * busy in one long command (DEBUG SLEEP), killed and started again empty. Each instance
 * finds out by itself (a call times out or the connection drops), says so once, goes on
 * serving from its cache without execute() waiting on Redis, and rejoins the shared state
 * when Redis answers again, saying so once.
 */
import { afterEach, describe, expect, vi } from 'vitest';
import { type Instance, type InstanceOptions, fail, fleet, leaderOf, sharedState, startAll, stopAll, untilAll } from '../support/instances.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import {
  FaultRun,
  expectEachReported,
  expectOncePerCause,
  expectRejoined,
  expectSomeReported,
  generationsSeen,
  reasonsSeen,
} from './fault-run.js';
import { scenario } from './scenario.js';

const servers: RedisServer[] = [];
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
  for (const server of servers.splice(0)) await disposeRedis(server);
});

const RATE = 200;
const LONG_OUTAGE_MS = 20_000;

/** A server of the test's own and three started instances of one breaker on it. */
async function threeInstances(args: string[] = [], options: InstanceOptions = {}): Promise<RedisServer> {
  const server = await startRedis({ args });
  servers.push(server);
  instances = fleet(server.url, 3, options);
  await startAll(instances);
  return server;
}

/** Each instance says by itself that Redis does not answer, and serves a call at once. */
async function detectedByEach(run: FaultRun): Promise<void> {
  await run.detected(() => expectSomeReported(instances, 'ZV_REDIS_UNREACHABLE'));
  // An outcome report, a lease call or a resync times out in each, within a few seconds.
  await vi.waitFor(() => expectEachReported(instances, 'ZV_REDIS_UNREACHABLE'), { timeout: 15_000 });
  for (const i of instances) await expect(i.breaker.execute(async () => 'served')).resolves.toBe('served');
}

/** What an instance of a scenario where Redis lost nothing must have seen: no transition, each cause once. */
function expectUndisturbed(run: FaultRun): void {
  for (const i of instances) {
    expectOncePerCause(i, 'ZV_REDIS_UNREACHABLE', 'ZV_REDIS_RESTORED');
    expect(i.seen.states).toEqual([]);
  }
  expect(run.refused).toBe(0);
}

const TWICE =
  'record calls that timed out were still executed by Redis when it answered again: those outcomes were counted ' +
  'twice, in the local window and in Redis (successes here, so nothing tripped)';

describe('Redis not answering', () => {
  scenario('Redis frozen (SIGSTOP)', async (size) => {
    // Idle probes (an hour apart, never due while calls flow) are a duty of the closed
    // breaker: one instance holds the lease when Redis freezes.
    const server = await threeInstances([], { idleDuty: true });
    await leaderOf(instances);
    const run = await FaultRun.begin(instances, server.client(), size, RATE);
    const outage = size === 'long' ? LONG_OUTAGE_MS : 3000;
    run.inject();
    server.pause();
    await detectedByEach(run);
    await run.hold(outage);
    run.heal();
    server.resume();
    await run.converged(() => expectRejoined(instances));
    // The lease lapsed on the holder's own clock while Redis was frozen: one instance takes it again.
    await leaderOf(instances);
    const figures = await run.finish({
      injected: `SIGSTOP of redis-server for ${outage / 1000} s, 3 instances × ${RATE} calls/s, dependency healthy`,
      note: `the cached state (closed) served every call; the lease (held for idle probes) lapsed and was taken again after the freeze; ${TWICE}`,
    });
    expectUndisturbed(run);
    // execute() never waits on Redis: the freeze must not show in its latency.
    expect(figures.latencyBefore?.p999).toBeLessThan(50);
    expect(figures.latencyDuring?.p999).toBeLessThan(50);
    return figures;
  });

  scenario('Redis busy (DEBUG SLEEP)', async (size) => {
    const server = await threeInstances(['--enable-debug-command', 'yes']);
    const seconds = size === 'long' ? LONG_OUTAGE_MS / 1000 : 4;
    const sleeper = server.client();
    await sleeper.ping();
    const run = await FaultRun.begin(instances, server.client(), size, RATE);
    run.inject();
    const slept = sleeper.call('DEBUG', 'SLEEP', String(seconds));
    await detectedByEach(run);
    // The sleep ends when Redis answers it.
    await slept;
    run.heal();
    await run.converged(() => expectRejoined(instances));
    const figures = await run.finish({
      injected: `DEBUG SLEEP ${seconds} (every command blocked longer than the 1 s timeout), 3 instances × ${RATE} calls/s`,
      note: `like a frozen server: degraded while it sleeps, rejoined within a resync period of waking; ${TWICE}`,
    });
    expectUndisturbed(run);
    expect(figures.latencyDuring?.p999).toBeLessThan(50);
    return figures;
  });

  scenario('Redis killed (SIGKILL), started again empty', async (size) => {
    const server = await threeInstances();
    const [first] = instances as [Instance];
    // The old life has a history: a trip and a recovery, generation 2.
    for (const i of instances) i.healthy = true;
    await fail(first, 3);
    await vi.waitFor(() => expect(instances.map(generationsSeen)).toEqual(instances.map(() => [1, 2])), { timeout: 10_000 });
    for (const i of instances) i.healthy = false;
    const oldLife = await sharedState(first);
    expect(oldLife).toMatchObject({ state: 'closed', gen: '2' });

    const run = await FaultRun.begin(instances, server.client(), size, RATE);
    const outage = size === 'long' ? LONG_OUTAGE_MS : 2500;
    run.inject();
    await server.stop({ kill: true });
    await detectedByEach(run);
    // The dependency fails while Redis is away: each instance protects itself on its own window.
    run.down = true;
    await untilAll(instances, 'open');
    for (const i of instances) expect(i.seen.states.at(-1)?.transition).toMatchObject({ to: 'open', reason: 'local_failures', local: true });
    await run.hold(outage);
    // The dependency is back first; no recovery check passes, so each stays open alone.
    run.down = false;
    run.heal();
    await server.restart();
    await run.converged(() => expectRejoined(instances));

    // A new life, closed: the library was loaded again and the old generations are gone.
    const newLife = await sharedState(first);
    expect(newLife).toMatchObject({ state: 'closed', gen: '0' });
    expect(newLife.epoch).not.toBe(oldLife.epoch);
    for (const i of instances) expect(i.seen.states.at(-1)?.transition).toMatchObject({ from: 'open', to: 'closed', reason: 'resync', local: true });
    // Every instance follows the new life: its first trip reaches them all.
    await fail(first, 3);
    await untilAll(instances, 'open');
    await vi.waitFor(() => {
      for (const i of instances) expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'consecutive_failures', local: false, generation: 1 });
    });
    const figures = await run.finish({
      injected: `SIGKILL of redis-server, restarted empty ${outage / 1000} s later (loadFunctions), 3 instances × ${RATE} calls/s, dependency failing meanwhile`,
      note: 'each instance opened on its own window while Redis was away; after the restart it loaded the library again and took the new, closed life (resync), whose first trip reached every instance; converge takes a reconnect (attempts up to 1 s apart) and a second resync once the library is back',
    });
    for (const i of instances) {
      expectOncePerCause(i, 'ZV_REDIS_UNREACHABLE', 'ZV_REDIS_RESTORED');
      expect(reasonsSeen(i)).toEqual(['consecutive_failures', 'recovery_check_passed', 'local_failures', 'resync', 'consecutive_failures']);
    }
    expect(figures.latencyDuring?.p999).toBeLessThan(50);
    return figures;
  });
});
