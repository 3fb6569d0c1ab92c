/**
 * What the rolling-upgrade tests share: instances of two releases on one breaker, traffic
 * through them, and a breaker's streams as stored.
 */
import type { Redis } from 'ioredis';
import { expect, vi } from 'vitest';
import { sleep } from '../../harness/clock.js';
import { explainBreaker } from '../../src/index.js';
import { type Instance, type InstanceOptions, type Package, errorCodes, fail, instance, leaderOf, untilAll } from './instances.js';

export type Release = 'old' | 'new';

/** Options of a mixed fleet's instances: of both releases, and of one release only (after those of both). */
export interface MixedOptions {
  readonly both?: InstanceOptions;
  readonly old?: InstanceOptions;
  readonly new?: InstanceOptions;
}

/**
 * Instances of breaker `id` on the server at `url`, each of the release named (`old-0`,
 * `new-0`, `old-1`, ...): the old ones built from the released package `old`, the new ones
 * from this one.
 */
export function mixedFleet(url: string, id: string, releases: readonly Release[], old: Package, options: MixedOptions = {}): Instance[] {
  return releases.map((release, n) =>
    instance(url, {
      ...options.both,
      ...options[release],
      id,
      instanceId: `${release}-${releases.slice(0, n).filter((r) => r === release).length}`,
      ...(release === 'old' ? { zenvark: old } : {}),
    }),
  );
}

const statesSeen = (i: Instance) => i.seen.states.map((s) => s.state);

/**
 * A trip and a recovery in a mixed fleet, as in a fleet of one release: `tripper` reports
 * three failures in a row (the test instances' strategy) and every instance opens, with
 * `tripper` holding the lease; it stops, and the next lease holder among `others` recovers
 * the breaker for them. Give the fleet a lease of 30 s: only the release the stopping holder
 * announces explains a quick takeover.
 */
export async function tripStopAndRecover(tripper: Instance, others: readonly Instance[]): Promise<void> {
  const all = [tripper, ...others];
  await fail(tripper, 3);
  await untilAll(all, 'open');
  expect(await leaderOf(all)).toBe(tripper);
  for (const i of all) {
    await vi.waitFor(() => expect(statesSeen(i)).toEqual(['open']));
    expect(i.seen.states[0]?.transition).toMatchObject({ reason: 'consecutive_failures', actor: tripper.breaker.instanceId, generation: 1 });
  }

  // The others' checks pass; the tripper's fail until it stops (told to its onError, once,
  // when one is due before: a loaded machine may take the 50 ms). The next holder may
  // recover the breaker, and give the lease back, before a poll sees it lead: it is the
  // actor of the recovery, and it led.
  for (const i of others) i.healthy = true;
  await tripper.breaker.stop();
  await untilAll([...others], 'closed');
  const recovery = await vi.waitFor(() => {
    const transition = others[0]?.seen.states[1]?.transition;
    expect(transition).toMatchObject({ reason: 'recovery_check_passed', generation: 2 });
    return transition;
  });
  const next = others.find((i) => i.breaker.instanceId === recovery?.actor);
  expect(others.map((i) => i.breaker.instanceId)).toContain(recovery?.actor);
  expect(next?.seen.roles[0]).toBe('leader');
  for (const i of others) {
    await vi.waitFor(() => expect(statesSeen(i)).toEqual(['open', 'closed']));
    expect(i.seen.states[1]?.transition).toMatchObject({ id: recovery?.id, reason: 'recovery_check_passed', actor: next?.breaker.instanceId, generation: 2 });
  }
  // Calls pass again on every release.
  for (const i of others) await expect(i.breaker.execute(async () => 'ok')).resolves.toBe('ok');
  expect(errorCodes(tripper).filter((code) => code !== 'ZV_HEALTH_CHECK_FAILED')).toEqual([]);
  for (const i of others) expect(i.seen.errors).toEqual([]);
}

/**
 * Calls through `i` until `traffic.done`, a success and a failure in turn, a few ms apart,
 * so that its reports reach Redis before, while and after the library is replaced.
 */
export async function alternatingCalls(i: Instance, traffic: { done: boolean }): Promise<{ calls: number; failures: number }> {
  let made = 0;
  while (!traffic.done) {
    await i.breaker
      .execute(async () => {
        if (made % 2 === 1) throw new Error('dependency failed');
      })
      .catch(() => undefined);
    made += 1;
    await sleep(5);
  }
  return { calls: made, failures: Math.floor(made / 2) };
}

/**
 * After traffic (alternatingCalls) through `made`, whose calls gave `totals` (in the same
 * order), into a window of breaker `id` that holds them all and never trips: each outcome
 * reached Redis, none was counted as stale, locally or twice, and nothing was told.
 */
export async function countedOnce(redis: Redis, id: string, made: readonly Instance[], totals: readonly { calls: number; failures: number }[]): Promise<void> {
  const total = totals.reduce((sum, t) => sum + t.calls, 0);
  expect(total).toBeLessThan(10_000);
  for (const [k, i] of made.entries()) {
    // A last success waits up to a second for company.
    await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(totals[k]?.calls), { timeout: 5_000 });
    expect(i.breaker.stats).toMatchObject({ stale: 0, local: 0, overflowed: 0, undelivered: 0, rejected: 0 });
  }
  const explained = await explainBreaker(redis, id);
  expect(explained).toMatchObject({ state: 'closed', generation: 0 });
  expect(explained.window).toMatchObject({ calls: total, failures: totals.reduce((sum, t) => sum + t.failures, 0) });
  for (const i of made) {
    expect(i.seen.errors).toEqual([]);
    expect(i.seen.states).toEqual([]);
    expect(i.breaker.state).toBe('closed');
  }
}

/** An entry of a stream as stored. */
export interface StreamEntry {
  readonly id: string;
  readonly fields: Record<string, string>;
}

/** The entries of stream `key`, oldest first. */
export async function streamEntries(redis: Redis, key: string): Promise<StreamEntry[]> {
  const entries = await redis.xrange(key, '-', '+');
  return entries.map(([id, list]) => {
    const fields: Record<string, string> = {};
    for (let n = 0; n + 1 < list.length; n += 2) fields[list[n] as string] = list[n + 1] as string;
    return { id, fields };
  });
}
