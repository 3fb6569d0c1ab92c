/**
 * The lease is held only while a duty needs it (docs/architecture.md, "Fenced leases"):
 * idle breakers send Redis nothing, the trip grants the lease to the instance that
 * reported it and the others hear who holds it instead of asking, the holder gives it back
 * when the breaker closes, and idle probes keep a holder while closed. What the instances
 * send is read from Redis itself (MONITOR on a server of the file's own).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { sleep } from '../../harness/clock.js';
import { type Instance, fail, fleet, leaderOf, sharedState, startAll, stopAll, untilAll } from '../support/instances.js';
import { type Monitor, monitor } from '../support/monitor.js';
import { ownRedis } from '../support/own-redis.js';

const own = ownRedis({ library: true });

let instances: Instance[] = [];
let commands: Monitor | undefined;

beforeEach(async () => {
  commands = await monitor(own.server);
});

afterEach(async () => {
  commands?.stop();
  await stopAll(instances);
  instances = [];
});

/** The function calls of breaker `id` seen so far: `zv1_record`, `zv1_acquire`, ... */
const callsOf = (id: string) => commands?.callsOf(id) ?? [];

describe('the lease, held only while a duty needs it', () => {
  it('idle breakers send nothing, and none leads', async () => {
    instances = fleet(own.server.url, 3);
    const id = (instances[0] as Instance).breaker.id;
    await startAll(instances);
    // MONITOR tells what Redis ran a moment later: the three start-up reads, and then nothing.
    await vi.waitFor(() => expect(callsOf(id)).toEqual(['zv1_state', 'zv1_state', 'zv1_state']));
    await sleep(1500);
    expect(callsOf(id)).toEqual(['zv1_state', 'zv1_state', 'zv1_state']);
    expect(instances.map((i) => i.breaker.role)).toEqual(['follower', 'follower', 'follower']);
    // Nothing was ever written for it.
    expect(await own.admin.exists(`zenvark:{${id}}:state`)).toBe(0);
  });

  it('a trip makes the reporting instance the holder in the same call; the others hear it and do not ask until its lease expires', async () => {
    instances = fleet(own.server.url, 3, { leaseTtlMs: 3000 });
    const [tripper, ...others] = instances as [Instance, ...Instance[]];
    const id = tripper.breaker.id;
    await startAll(instances);
    await fail(tripper, 3);
    await untilAll(instances, 'open');
    expect((await leaderOf(instances)).breaker.instanceId).toBe(tripper.breaker.instanceId);
    expect((await sharedState(tripper)).holder).toBe(tripper.breaker.instanceId);
    // Well before the lease expires (3 s; renewed every second), nobody but the holder asked for it.
    await sleep(1500);
    expect(callsOf(id).filter((name) => name === 'zv1_acquire')).toEqual([]);
    expect(others.map((i) => i.seen.roles)).toEqual(others.map(() => []));
  });

  it('the holder gives the lease back when the breaker closes; all follow again', async () => {
    instances = fleet(own.server.url, 2);
    const [tripper] = instances as [Instance, Instance];
    await startAll(instances);
    await fail(tripper, 3);
    await untilAll(instances, 'open');
    await leaderOf(instances);
    for (const i of instances) i.healthy = true;
    await untilAll(instances, 'closed');
    await vi.waitFor(() => expect(instances.map((i) => i.breaker.role)).toEqual(['follower', 'follower']));
    expect(await sharedState(tripper)).toMatchObject({ holder: '', lease_ms: '0' });
    // MONITOR tells what a server ran a little after: waited for, as anything it reports.
    await vi.waitFor(() => expect(callsOf(tripper.breaker.id)).toContain('zv1_release'));
    expect(tripper.seen.roles).toEqual(['leader', 'follower']);
  });

  it('a trip on its way when stop() begins: the lease it granted is given back, and another instance takes over at once', async () => {
    // A lease of a minute: only a release lets the other instance lead within the test.
    instances = fleet(own.server.url, 2, { leaseTtlMs: 60_000 });
    const [stopping, staying] = instances as [Instance, Instance];
    await startAll(instances);
    await fail(stopping, 2);
    await vi.waitFor(() => expect(stopping.breaker.stats.recorded).toBe(2));
    // The third failure trips it; its report, taking the lease, is on its way when stop() begins.
    await fail(stopping, 1);
    await stopping.breaker.stop();
    expect(await sharedState(staying)).toMatchObject({ state: 'open', holder: expect.not.stringMatching(stopping.breaker.instanceId) });
    await vi.waitFor(() => expect(staying.breaker.role).toBe('leader'), { timeout: 10_000 });
    expect(stopping.breaker.role).toBe('follower');
  });

  it('idle probes are a duty of a closed breaker: one instance holds the lease while it is closed', async () => {
    instances = fleet(own.server.url, 3, { idleDuty: true });
    await startAll(instances);
    const holder = await leaderOf(instances);
    expect((await sharedState(holder)).holder).toBe(holder.breaker.instanceId);
  });
});
