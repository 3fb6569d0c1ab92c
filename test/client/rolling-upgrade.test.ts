/**
 * A rolling upgrade: clients of the previous release (library revision 5, the package as
 * released before issue 12: releasedZenvark(5) of test/support/previous-client.ts) and of
 * this one on one Redis, on one breaker. Old clients must neither crash nor misbehave on a
 * library and states they were not written for, and the library must be upgradable under
 * them.
 */
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ControlAction } from '../../src/constants.js';
import { type ControlReply, control } from '../../src/functions.js';
import { DEFAULTS, LIBRARY_REVISION, type Transition, breakerKeys, explainBreaker, feedChannel, installedRevision } from '../../src/index.js';
import { parseAuditEntry } from '../../src/transition.js';
import { deploy } from '../support/deploy-functions.js';
import { type Instance, type InstanceOptions, fail, failing, leaderOf, stateOf, startAll, stopAll, uniqueId, untilAll } from '../support/instances.js';
import { type Monitor, monitor } from '../support/monitor.js';
import { ownRedis } from '../support/own-redis.js';
import { type ReleasedZenvark, releasedZenvark } from '../support/previous-client.js';
import { type Release, alternatingCalls, countedOnce, mixedFleet, streamEntries, tripStopAndRecover } from '../support/rolling-upgrade.js';

const own = ownRedis({ library: true });
let previous: ReleasedZenvark;
let instances: Instance[] = [];
let commands: Monitor | undefined;

beforeAll(async () => {
  previous = await releasedZenvark(5);
});

beforeEach(async () => {
  commands = await monitor(own.server);
});

afterEach(async () => {
  commands?.stop();
  await stopAll(instances);
  instances = [];
});

/** Instances of breaker `id`, each of the release named (`old-0`, `new-0`, ...). */
function mixed(id: string, releases: Release[], options: InstanceOptions = {}): Instance[] {
  const made = mixedFleet(own.server.url, id, releases, previous, { both: options });
  instances.push(...made);
  return made;
}

const statesSeen = (i: Instance) => i.seen.states.map((s) => s.state);

/** An operator's control of breaker `id`, sent as the library takes it. */
function operator(id: string, action: ControlAction, forMs = 0): Promise<ControlReply> {
  const header = { channel: feedChannel(DEFAULTS.prefix), actor: 'operator', retention: 0 };
  return control(own.admin, breakerKeys(DEFAULTS.prefix, id), header, { action, note: `rolling upgrade test: ${action}`, forMs, create: true });
}

/** Breaker `id`'s audit stream, oldest first. */
async function audit(id: string): Promise<Transition[]> {
  const entries = await streamEntries(own.admin, breakerKeys(DEFAULTS.prefix, id).events);
  return entries.map((e) => parseAuditEntry(e.fields, e.id));
}

const reasons = async (id: string) => (await audit(id)).map((t) => `${t.from}>${t.to} ${t.reason}`);

describe('old and new clients on one breaker', () => {
  it('the previous release is revision 5', () => {
    expect(previous.LIBRARY_REVISION).toBe(5);
    expect(LIBRARY_REVISION).toBeGreaterThan(5);
  });

  it.each<[Release, Release]>([
    ['old', 'new'],
    ['new', 'old'],
  ])('a trip reported by an %s client opens every client; when it stops, a %s client takes the lease and recovers the breaker', async (tripping, other) => {
    const [tripper, ...others] = mixed(uniqueId(), [tripping, other, other], { leaseTtlMs: 30_000 }) as [Instance, Instance, Instance];
    await startAll(instances);
    await tripStopAndRecover(tripper, others);
  });
});

describe('the library upgraded under old clients', () => {
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
    const made = Promise.all(old.map((i) => alternatingCalls(i, traffic)));
    const recorded = () => old.map((i) => i.breaker.stats.recorded);
    await vi.waitFor(() => expect(recorded().every((n) => n >= 20)).toBe(true), { timeout: 10_000 });

    expect(await deploy(['--url', own.server.url])).toMatchObject({ code: 0 });
    expect(await installedRevision(own.admin)).toBe(LIBRARY_REVISION);
    // Each old client's reports reach the new library too before the calls end.
    const atUpgrade = recorded();
    await vi.waitFor(() => expect(recorded().every((n, k) => n >= (atUpgrade[k] as number) + 20)).toBe(true), { timeout: 10_000 });
    traffic.done = true;
    const totals = await made;

    await countedOnce(own.admin, id, old, totals);
  });
});

describe("old clients under an operator's controls", () => {
  it('forced open: they fail fast, their lease holder checks and is ignored, nothing is reported', async () => {
    const id = uniqueId();
    const old = mixed(id, ['old', 'old', 'old']);
    await startAll(old);
    // Their checks would pass: only the mode keeps the breaker open.
    for (const i of old) i.healthy = true;
    expect((await operator(id, 'open')).status).toBe('applied');
    await untilAll(old, 'open');

    const fn = vi.fn(async () => 'ran');
    for (const i of old) await expect(i.breaker.execute(fn)).rejects.toBeInstanceOf(previous.CircuitOpenError);
    expect(fn).not.toHaveBeenCalled();
    // An open breaker has a duty: one of them takes the lease, checks, and reports a pass.
    const leader = await leaderOf(old);
    await vi.waitFor(() => expect(commands?.callsOf(id)).toContain('zv1_health'), { timeout: 10_000 });
    expect(leader.seen.checks.length).toBeGreaterThanOrEqual(1);
    expect(await stateOf(own.admin, id)).toMatchObject({ state: 'open', mode: 'forced_open' });
    expect(await reasons(id)).toEqual(['closed>open forced_open']);
    for (const i of old) {
      expect(i.breaker.state).toBe('open');
      expect(i.seen.states.map((s) => [s.state, s.transition.reason])).toEqual([['open', 'forced_open']]);
      expect(i.seen.errors).toEqual([]);
    }
  });

  it('forced open with an expiry, old clients alone: their lease holder ends it at a renewal, and they close', async () => {
    const id = uniqueId();
    const old = mixed(id, ['old', 'old', 'old']);
    await startAll(old);
    for (const i of old) i.healthy = true;
    expect((await operator(id, 'open', 1_000)).status).toBe('applied');
    await untilAll(old, 'open');
    // No instance of revision 5 calls zv1_control, their calls fail fast, and their holder's
    // one check was ignored: its renewal is the writing call that finds the expiry past.
    await untilAll(old, 'closed', 30_000);
    expect(await reasons(id)).toEqual(['closed>open forced_open', 'open>closed expired']);
    expect((await audit(id))[1]).toMatchObject({ mode: '', until: expect.stringMatching(/^\d+$/) });
    for (const i of old) expect(i.seen.errors).toEqual([]);
  });

  it('forced closed: their failures are counted and never trip', async () => {
    const id = uniqueId();
    // No recovery check within the test: the lease holder's, failing, would be told to onError.
    const health = { backoff: new previous.ConstantBackoff({ delayMs: 3_600_000 }), check: failing };
    const old = mixed(id, ['old', 'old', 'old'], { health });
    await startAll(old);
    // Open by a trip first: forcing closed closes it on every old client.
    await fail(old[0] as Instance, 3);
    await untilAll(old, 'open');
    expect((await operator(id, 'close')).status).toBe('applied');
    await untilAll(old, 'closed');

    const before = old.map((i) => i.breaker.stats.recorded);
    for (const i of old) await fail(i, 4);
    await vi.waitFor(() => expect(old.map((i, k) => i.breaker.stats.recorded - (before[k] as number))).toEqual([4, 4, 4]));
    expect((await explainBreaker(own.admin, id)).window.failures).toBe(12);
    expect(await stateOf(own.admin, id)).toMatchObject({ state: 'closed', mode: 'forced_closed' });
    expect(await reasons(id)).toEqual(['closed>open consecutive_failures', 'open>closed forced_closed']);
    for (const i of old) {
      expect(i.breaker.state).toBe('closed');
      expect(i.breaker.stats.rejected).toBe(0);
      expect(i.seen.states.map((s) => s.state)).toEqual(['open', 'closed']);
      expect(i.seen.errors).toEqual([]);
    }
  });

  it('monitor: their calls pass, each rule reached is a would_open entry, and their calls go on passing', async () => {
    const id = uniqueId();
    const old = mixed(id, ['old', 'old', 'old']);
    await startAll(old);
    expect((await operator(id, 'monitor')).status).toBe('applied');
    const heard = (count: number) => vi.waitFor(() => expect(old.map((i) => i.seen.states.length)).toEqual([count, count, count]));
    await heard(1);

    const [first, second] = old as [Instance, Instance, Instance];
    await fail(first, 3);
    await vi.waitFor(async () => expect(await reasons(id)).toEqual(['closed>closed monitored', 'closed>closed would_open']));
    expect((await audit(id))[1]).toMatchObject({ rule: 'consecutive_failures', failures: '3', actor: first.breaker.instanceId, mode: 'monitor' });
    // Every old client hears of it as a transition from closed to closed; the window starts
    // over, and the next run of failures is audited again.
    await heard(2);
    await fail(second, 3);
    await vi.waitFor(async () => expect((await reasons(id)).slice(2)).toEqual(['closed>closed would_open']));
    await heard(3);
    for (const i of old) await expect(i.breaker.execute(async () => 'ran')).resolves.toBe('ran');
    expect(await stateOf(own.admin, id)).toMatchObject({ state: 'closed', mode: 'monitor' });
    for (const i of old) {
      expect(i.breaker.state).toBe('closed');
      expect(i.breaker.stats.rejected).toBe(0);
      expect(i.seen.states.map((s) => [s.state, s.transition.reason])).toEqual([
        ['closed', 'monitored'],
        ['closed', 'would_open'],
        ['closed', 'would_open'],
      ]);
      expect(i.seen.errors).toEqual([]);
    }
  });

  /**
   * Three old clients of a new breaker, forced closed, with three failures in a row counted:
   * a window that reaches the rule, and did not trip.
   */
  async function forcedClosedAtRule(): Promise<{ id: string; old: Instance[] }> {
    const id = uniqueId();
    const old = mixed(id, ['old', 'old', 'old']);
    await startAll(old);
    expect((await operator(id, 'close')).status).toBe('applied');
    // Outcomes of calls made before a client hears of a transition are stale, as after any.
    await vi.waitFor(() => expect(old.map((i) => i.seen.states.length)).toEqual([1, 1, 1]));
    await fail(old[0] as Instance, 3);
    await vi.waitFor(() => expect((old[0] as Instance).breaker.stats.recorded).toBe(3));
    return { id, old };
  }

  it('release of a forced close whose window reached a rule: open, and an old lease holder recovers it', async () => {
    const { id, old } = await forcedClosedAtRule();
    // Their checks pass (a failed one is told to onError): the lease holder's first recovers it.
    for (const i of old) i.healthy = true;
    expect((await operator(id, 'release')).status).toBe('applied');
    for (const i of old) await vi.waitFor(() => expect(i.seen.states.map((t) => t.state)).toEqual(['closed', 'open', 'closed']));
    expect((await audit(id)).at(-2)).toMatchObject({ from: 'closed', to: 'open', reason: 'released', rule: 'consecutive_failures', mode: '' });
    expect((await reasons(id)).at(-1)).toBe('open>closed recovery_check_passed');
    for (const i of old) expect(i.seen.errors).toEqual([]);
  });

  it('release of a forced open whose window reaches no rule: closed on every old client', async () => {
    const id = uniqueId();
    const old = mixed(id, ['old', 'old', 'old']);
    await startAll(old);
    // Their lease holder's checks pass (a failed one is told to onError) and are ignored.
    for (const i of old) i.healthy = true;
    // A recorded call stores the strategy: the window, not its absence, decides.
    await old[0]?.breaker.execute(async () => 'ok');
    await vi.waitFor(() => expect(old[0]?.breaker.stats.recorded).toBe(1), { timeout: 5_000 });
    expect((await operator(id, 'open')).status).toBe('applied');
    await untilAll(old, 'open');
    await leaderOf(old);
    expect((await operator(id, 'release')).status).toBe('applied');
    await untilAll(old, 'closed');
    expect(await reasons(id)).toEqual(['closed>open forced_open', 'open>closed released']);
    await vi.waitFor(() => expect(old.map((i) => i.breaker.role)).toEqual(['follower', 'follower', 'follower']));
    for (const i of old) {
      await expect(i.breaker.execute(async () => 'ran')).resolves.toBe('ran');
      expect(i.seen.errors).toEqual([]);
    }
  });

  it('reset of a forced open whose window reached a rule: closed on every old client, the window cleared', async () => {
    const { id, old } = await forcedClosedAtRule();
    // Their lease holder's checks pass (a failed one is told to onError) and are ignored.
    for (const i of old) i.healthy = true;
    expect((await operator(id, 'open')).status).toBe('applied');
    await untilAll(old, 'open');
    expect((await operator(id, 'reset')).status).toBe('applied');
    await untilAll(old, 'closed');
    expect(await reasons(id)).toEqual(['closed>closed forced_closed', 'closed>open forced_open', 'open>closed reset']);
    expect((await explainBreaker(own.admin, id)).window).toMatchObject({ failures: 0, calls: 0 });
    for (const i of old) {
      await expect(i.breaker.execute(async () => 'ran')).resolves.toBe('ran');
      expect(i.seen.errors).toEqual([]);
    }
  });
});
