/**
 * A rolling upgrade: clients of the previous release (library revision 5, the package as
 * released before issue 12: test/support/previous-client.ts) and of this one on one Redis,
 * on one breaker. Old clients must neither crash nor misbehave on a library and states they
 * were not written for, and the library must be upgradable under them.
 */
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { sleep } from '../../harness/clock.js';
import { LIBRARY_REVISION, explainBreaker, installedRevision } from '../../src/index.js';
import { deploy } from '../support/deploy-functions.js';
import { type Instance, type InstanceOptions, fail, instance, leaderOf, startAll, stopAll, uniqueId, untilAll } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';
import { type PreviousZenvark, previousZenvark } from '../support/previous-client.js';

const own = ownRedis({ library: true });
let previous: PreviousZenvark;
let instances: Instance[] = [];

beforeAll(async () => {
  previous = await previousZenvark();
});

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

type Release = 'old' | 'new';

/** Instances of breaker `id`, each of the release named (`old-0`, `new-0`, ...). */
function mixed(id: string, releases: Release[], options: InstanceOptions = {}): Instance[] {
  const made = releases.map((release, n) =>
    instance(own.server.url, {
      ...options,
      id,
      instanceId: `${release}-${releases.slice(0, n).filter((r) => r === release).length}`,
      ...(release === 'old' ? { zenvark: previous } : {}),
    }),
  );
  instances.push(...made);
  return made;
}

const statesSeen = (i: Instance) => i.seen.states.map((s) => s.state);

describe('old and new clients on one breaker', () => {
  it('the previous release is revision 5', () => {
    expect(previous.LIBRARY_REVISION).toBe(5);
    expect(LIBRARY_REVISION).toBeGreaterThan(5);
  });

  it.each<[Release, Release]>([
    ['old', 'new'],
    ['new', 'old'],
  ])('a trip reported by an %s client opens every client; when it stops, a %s client takes the lease and recovers the breaker', async (tripping, other) => {
    // A lease of 30 s: only the release the stopping holder announces explains a quick takeover.
    const [tripper, ...others] = mixed(uniqueId(), [tripping, other, other], { leaseTtlMs: 30_000 }) as [Instance, Instance, Instance];
    await startAll(instances);
    await fail(tripper, 3);
    await untilAll(instances, 'open');
    expect(await leaderOf(instances)).toBe(tripper);
    for (const i of instances) {
      await vi.waitFor(() => expect(statesSeen(i)).toEqual(['open']));
      expect(i.seen.states[0]?.transition).toMatchObject({ reason: 'consecutive_failures', actor: tripper.breaker.instanceId, generation: 1 });
    }

    await tripper.breaker.stop();
    const next = await leaderOf(others);
    for (const i of others) i.healthy = true;
    await untilAll(others, 'closed');
    for (const i of others) {
      await vi.waitFor(() => expect(statesSeen(i)).toEqual(['open', 'closed']));
      expect(i.seen.states[1]?.transition).toMatchObject({ reason: 'recovery_check_passed', actor: next.breaker.instanceId, generation: 2 });
    }
    // Calls pass again on both releases.
    for (const i of others) await expect(i.breaker.execute(async () => 'ok')).resolves.toBe('ok');
    for (const i of instances) expect(i.seen.errors).toEqual([]);
  });
});

describe('the library upgraded under old clients', () => {
  /**
   * Calls through `i` until `traffic.done`, a success and a failure in turn, a few ms apart,
   * so that its reports reach Redis before, while and after the library is replaced.
   */
  async function calls(i: Instance, traffic: { done: boolean }): Promise<{ calls: number; failures: number }> {
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

  it('from revision 5 to this one, by deploy-functions, while they call: every outcome counted once, nothing reported', async () => {
    await own.admin.call('FUNCTION', 'DELETE', 'zenvark_v1');
    // As an operator deployed it for them, with the previous release's own deploy.
    await previous.deployLibrary(own.admin);
    expect(await installedRevision(own.admin)).toBe(5);

    const id = uniqueId();
    // A window that holds every call of the test and never trips (the minimum is its size).
    const old = mixed(id, ['old', 'old', 'old'], { breaker: new previous.CountBreaker({ threshold: 0.5, size: 10_000 }) });
    await startAll(old);
    const traffic = { done: false };
    const made = Promise.all(old.map((i) => calls(i, traffic)));
    const recorded = () => old.map((i) => i.breaker.stats.recorded);
    await vi.waitFor(() => expect(recorded().every((n) => n >= 20)).toBe(true), { timeout: 10_000 });

    expect(await deploy(['--url', own.server.url])).toMatchObject({ code: 0 });
    expect(await installedRevision(own.admin)).toBe(LIBRARY_REVISION);
    // Each old client's reports reach the new library too before the calls end.
    const atUpgrade = recorded();
    await vi.waitFor(() => expect(recorded().every((n, k) => n >= (atUpgrade[k] as number) + 20)).toBe(true), { timeout: 10_000 });
    traffic.done = true;
    const totals = await made;

    const total = totals.reduce((sum, t) => sum + t.calls, 0);
    expect(total).toBeLessThan(10_000);
    // Each outcome reached Redis, and none was counted as stale, locally or twice.
    for (const [k, i] of old.entries()) {
      await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(totals[k]?.calls));
      expect(i.breaker.stats).toMatchObject({ stale: 0, local: 0, overflowed: 0, undelivered: 0, rejected: 0 });
    }
    const explained = await explainBreaker(own.admin, id);
    expect(explained).toMatchObject({ state: 'closed', generation: 0 });
    expect(explained.window).toMatchObject({ calls: total, failures: totals.reduce((sum, t) => sum + t.failures, 0) });
    for (const i of old) {
      expect(i.seen.errors).toEqual([]);
      expect(i.seen.states).toEqual([]);
      expect(i.breaker.state).toBe('closed');
    }
  });
});
