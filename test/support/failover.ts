/**
 * What the failover tests of test/topologies/ share: breakers that watch a failover (one
 * open, its lease held; others busy with failing calls that count but never trip), when
 * each instance reached Redis again, and whether every outcome was counted once.
 */
import type { Cluster, Redis } from 'ioredis';
import { expect, vi } from 'vitest';
import { wallMs } from '../../harness/clock.js';
import { CountBreaker, explainBreaker } from '../../src/index.js';
import { type LoadResult, lostOutcomes, startLoad } from '../faults/load.js';
import { type Instance, errorCodes, fail, failing, leaderOf, startAll, stateOf, untilAll } from './instances.js';

/** A window that counts every failure and never trips: each outcome Redis records stays in it. */
export const COUNTING = new CountBreaker({ threshold: 1, size: 10_000, minimumNumberOfCalls: 10_000 });

/** The causes an instance tells while Redis fails over, which the outage explains. */
export const OUTAGE_CODES: ReadonlySet<string> = new Set(['ZV_REDIS_UNREACHABLE', 'ZV_REDIS_REFUSED', 'ZV_REDIS_RESTORED']);

export interface Watch {
  /** When each busy instance left degraded mode: its first call to Redis that worked again (wallMs()). */
  readonly restoredAt: ReadonlyMap<Instance, number>;
  /** Waits until no busy instance is degraded and stops the calls. */
  settle(): Promise<LoadResult>;
}

/**
 * Starts the instances, trips `opened` (so one instance holds its lease) and keeps every
 * `busy` instance calling, failing, 50 times a second, while the caller fails Redis over.
 */
export async function watchFailover(opened: Instance[], busy: Instance[]): Promise<Watch> {
  await startAll([...opened, ...busy]);
  await fail(opened[0] as Instance, 3);
  await untilAll(opened, 'open');
  await leaderOf(opened);
  const restoredAt = new Map<Instance, number>();
  for (const i of busy) {
    i.breaker.on('degradedChange', ({ degraded }) => {
      if (!degraded) restoredAt.set(i, wallMs());
    });
  }
  const load = startLoad(
    busy.map((i) => i.breaker),
    50,
    failing,
  );
  return {
    restoredAt,
    async settle() {
      await vi.waitFor(() => expect(busy.filter((i) => i.breaker.degraded)).toEqual([]), { timeout: 15_000, interval: 20 });
      return load.stop();
    },
  };
}

/** 'from A to B ms' after `from`, over the instances' times. */
export function span(times: Iterable<number>, from: number): string {
  const after = [...times].map((at) => at - from);
  return `${Math.min(...after).toFixed(0)} to ${Math.max(...after).toFixed(0)} ms`;
}

/**
 * After the failover: one instance holds the open breaker's lease, as Redis says too;
 * every outcome is accounted for, and Redis counted none twice: a busy breaker's window
 * holds at most what Redis answered for (recorded) and what went unanswered (counted
 * locally), since a report lost with its node is never sent again; and from now on each
 * report counts exactly once. Nothing was told but the outage.
 */
export async function checkAfterFailover(client: Redis | Cluster, opened: Instance[], busy: Instance[], result: LoadResult): Promise<void> {
  await untilAll(opened, 'open');
  const holder = await leaderOf(opened, 15_000);
  expect((await stateOf(client, holder.breaker.id)).holder).toBe(holder.breaker.instanceId);

  // Outcomes still pending (a summary waits for the report in flight) are sent within a round trip.
  await vi.waitFor(() => expect(lostOutcomes(result.executed, busy.map((i) => i.breaker))).toBe(0));
  const counted = async (id: string) => (await explainBreaker(client, id)).window.calls;
  for (const id of new Set(busy.map((i) => i.breaker.id))) {
    const stats = busy.filter((i) => i.breaker.id === id).map((i) => i.breaker.stats);
    const calls = await counted(id);
    expect(calls).toBeGreaterThan(0);
    expect(calls).toBeLessThanOrEqual(stats.reduce((sum, s) => sum + s.recorded + s.local + s.undelivered, 0));
  }
  const [first] = busy as [Instance];
  const before = { recorded: first.breaker.stats.recorded, calls: await counted(first.breaker.id) };
  await fail(first, 5);
  await vi.waitFor(() => expect(first.breaker.stats.recorded).toBe(before.recorded + 5));
  expect(await counted(first.breaker.id)).toBe(before.calls + 5);
  expect(busy.flatMap((i) => errorCodes(i)).filter((code) => !OUTAGE_CODES.has(code as string))).toEqual([]);
}
