/**
 * Zenvark behind Sentinel: a primary, its replica and three sentinels, started from the
 * server binary (harness/sentinel.ts) once for the file. Each instance has its own
 * application client (an ioredis client that asks the sentinels for the primary), as
 * separate processes would.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CircuitBreakerOptions } from '../../src/index.js';
import { COUNTING, OUTAGE_CODES, checkAfterFailover, span, watchFailover } from '../support/failover.js';
import { type Instance, errorCodes, fail, instance, leaderOf, startAll, stateOf, stopAll, untilAll } from '../support/instances.js';
import { ownSentinel } from '../support/own-topology.js';

const own = ownSentinel({ library: true });

let running: Instance[] = [];
afterEach(async () => {
  await stopAll(running);
  running = [];
});

/** One instance of a fresh breaker per application client. */
function fleetOn(clients: Redis[], options: Partial<CircuitBreakerOptions> = {}): Instance[] {
  const id = `sentinel-${randomUUID()}`;
  const fleet = clients.map((client, n) => instance('', { ...options, id, instanceId: `app-${n}` }, client));
  running.push(...fleet);
  return fleet;
}

const clientsOf = (count: number) => Array.from({ length: count }, () => own.sentinel.client());

describe('behind Sentinel', () => {
  it('breakers trip and recover on every instance', async () => {
    const fleet = fleetOn(clientsOf(3));
    await startAll(fleet);
    await fail(fleet[2] as Instance, 3);
    await untilAll(fleet, 'open');
    expect((await leaderOf(fleet)).breaker.instanceId).toBe('app-2');
    for (const i of fleet) i.healthy = true;
    await untilAll(fleet, 'closed');
    await vi.waitFor(() => expect(fleet.map((i) => i.breaker.role)).toEqual(fleet.map(() => 'follower')), { timeout: 10_000 });
    expect(fleet.flatMap((i) => i.seen.errors)).toEqual([]);
  });

  it('the primary killed and the replica promoted: every instance follows, one holds the lease, and no outcome is lost or counted twice', async () => {
    const clients = clientsOf(3);
    const opened = fleetOn(clients, { leaseTtlMs: 2000 });
    const busy = fleetOn(clients, { breaker: COUNTING });
    const watch = await watchFailover(opened, busy);
    const { sentinel } = own;
    const old = await sentinel.primary();
    const failover = await sentinel.failover();
    const result = await watch.settle();
    await sentinel.rejoin(old);

    expect(watch.restoredAt.size).toBeGreaterThan(0);
    console.log(
      `sentinel failover: the replica was primary ${(failover.promotedAt - failover.killedAt).toFixed(0)} ms after the kill and ` +
        `+switch-master announced ${(failover.switchedAt - failover.killedAt).toFixed(0)} ms after it; the instances (${watch.restoredAt.size}) ` +
        `reported again ${span(watch.restoredAt.values(), failover.switchedAt)} from the announcement ` +
        `(${span(watch.restoredAt.values(), failover.promotedAt)} from the promotion)`,
    );
    await checkAfterFailover(clients[0] as Redis, opened, busy, result);
  });

  it('a failover that loses the last trip and its lease grant: the instances go back to what Redis has, the promoted replica grants a larger token', async () => {
    const clients = clientsOf(2);
    const fleet = fleetOn(clients, { leaseTtlMs: 1000 });
    const [a, b] = fleet as [Instance, Instance];
    await startAll(fleet);
    const id = a.breaker.id;
    // A first trip and recovery, which the replica has: the breaker's life, generation 2.
    await fail(a, 3);
    await untilAll(fleet, 'open');
    a.healthy = true;
    b.healthy = true;
    await untilAll(fleet, 'closed');
    a.healthy = false;
    b.healthy = false;
    const { sentinel } = own;
    const primary = await sentinel.primary();
    let lostToken = 0;
    await sentinel.failover({
      // On the primary only, its replica cut off: a trip that grants a the lease, and b hears of it.
      losing: async () => {
        await fail(a, 3);
        await untilAll(fleet, 'open');
        await vi.waitFor(() => expect(a.breaker.role).toBe('leader'), { timeout: 5000 });
        lostToken = Number((await stateOf(primary.admin, id)).token);
      },
    });
    expect(lostToken).toBeGreaterThan(0);
    // The promoted replica never had the trip: the breaker is closed there, in generation 2.
    expect(await stateOf(clients[1] as Redis, id)).toMatchObject({ state: 'closed', gen: '2' });
    // Both instances go back to Redis's state; a's lease, granted by the lost primary, is gone.
    await untilAll(fleet, 'closed', 15_000);
    await vi.waitFor(() => expect(a.breaker.role).toBe('follower'), { timeout: 10_000 });

    await fail(b, 3);
    await untilAll(fleet, 'open');
    expect((await leaderOf(fleet)).breaker.instanceId).toBe('app-1');
    expect(Number((await stateOf(clients[1] as Redis, id)).token)).toBeGreaterThan(lostToken);
    // What each told, besides the outage and a's failing checks: Redis went back to an earlier state (not a forged message), once.
    const told = (i: Instance) => errorCodes(i).filter((code) => !OUTAGE_CODES.has(code as string) && code !== 'ZV_HEALTH_CHECK_FAILED');
    for (const i of fleet) expect(told(i)).toEqual(['ZV_STATE_LOST']);
  });
});
