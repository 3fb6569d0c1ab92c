/**
 * A rolling upgrade from library revision 6 to 7 (issue 13): clients of the package as
 * released at revision 6 (releasedZenvark(6) of test/support/previous-client.ts) and of
 * this one on one Redis, on one breaker, the library upgraded under the old ones by
 * deploy-functions. Revision 7 is additive: an old client records as before (two keys, no
 * instance rule), and what only clients of this release write, the reporter set
 * (`:instances`) and instance-level entries (`:instance-events`), never reaches old ones:
 * it is not published, and not in the audit stream their catch-ups read.
 *
 * The instance rule in a mixed fleet: only reports that carry it (a new client's, with
 * minimumInstances) are held by it. An old client's report trips by the strategy alone, on
 * the window all share (a run the rule held back for a new instance included); its entry
 * names no rule and no instances, and it is not in the reporter set, so an old client
 * counts neither as a failing instance nor as a reporting one for the share. A trip by an
 * old client does not clear the reporter set (its call does not name the key); the trip
 * moves the generation on, and entries of another generation are not counted. The
 * reporters' positions move only with reports that carry the rule, so in a count window an
 * old client's outcomes push a new instance's failure out of the window but not out of the
 * positions: it still counts as failing, and the rule errs toward tripping while old
 * clients report.
 */
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { IsolationAction } from '../../src/constants.js';
import {
  ConsecutiveBreaker,
  CountBreaker,
  DEFAULTS,
  LIBRARY_NAME,
  LIBRARY_REVISION,
  breakerKeys,
  explainBreaker,
  feedChannel,
  installedRevision,
} from '../../src/index.js';
import { isolationKeyList, keyList, ruleKeyList } from '../../src/keys.js';
import { instanceRuleSpec, strategySpec } from '../../src/strategy-spec.js';
import { summary } from '../lua/harness.js';
import { deploy } from '../support/deploy-functions.js';
import { type Instance, errorCodes, fail, startAll, stopAll, uniqueId, untilAll } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';
import { type ReleasedZenvark, releasedZenvark } from '../support/previous-client.js';
import { type MixedOptions, type Release, alternatingCalls, countedOnce, mixedFleet, streamEntries, tripStopAndRecover } from '../support/rolling-upgrade.js';

const own = ownRedis({ library: true });
let revision6: ReleasedZenvark;
let instances: Instance[] = [];

beforeAll(async () => {
  revision6 = await releasedZenvark(6);
});

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

/** Instances of breaker `id`, each of the release named (`old-0`, `new-0`, ...). */
function mixed(id: string, releases: Release[], options: MixedOptions = {}): Instance[] {
  const made = mixedFleet(own.server.url, id, releases, revision6, options);
  instances.push(...made);
  return made;
}

const statesSeen = (i: Instance) => i.seen.states.map((s) => s.state);

/** The library as a revision-6 deployment has it: loaded by that release's own deploy. */
async function revision6Library(): Promise<void> {
  await own.admin.call('FUNCTION', 'DELETE', LIBRARY_NAME);
  await revision6.deployLibrary(own.admin);
  expect(await installedRevision(own.admin)).toBe(6);
}

/** The library upgraded as an operator upgrades it: deploy-functions of this package. */
async function upgrade(): Promise<void> {
  expect(await deploy(['--url', own.server.url])).toMatchObject({ code: 0 });
  expect(await installedRevision(own.admin)).toBe(LIBRARY_REVISION);
}

const PREFIX = DEFAULTS.prefix;
const RETENTION = String(DEFAULTS.auditRetention);
/** The strategy of the test instances (instance() builds them with it). */
const THREE_IN_A_ROW = strategySpec(new ConsecutiveBreaker({ threshold: 3 }));

type Command = [string, ...string[]];

const keysOf = (id: string) => breakerKeys(PREFIX, id);

/** The instance rule of a client of this release with minimumInstances 2. */
const TWO_INSTANCES = instanceRuleSpec(2, undefined) as string;

/**
 * zv1_record as a client of this release with minimumInstances 2 sends it: with the
 * reporter set's key, and no lease wanted ('0').
 */
function ruleRecord(id: string, actor: string, gen: number, outcomes: Parameters<typeof summary>[0], spec = THREE_IN_A_ROW): Command {
  const keys = ruleKeyList(keysOf(id));
  return ['FCALL', 'zv1_record', String(keys.length), ...keys, feedChannel(PREFIX), actor, RETENTION, String(gen), ...summary(outcomes), spec, '0', TWO_INSTANCES];
}

/** zv1_isolate as a client of this release sends it: `isolate` with its window's failures, calls and slow calls, `rejoin` with its reason. */
function isolation(id: string, actor: string, gen: number, action: IsolationAction, rest: string[]): Command {
  const keys = isolationKeyList(keysOf(id));
  return ['FCALL', 'zv1_isolate', String(keys.length), ...keys, feedChannel(PREFIX), actor, RETENTION, action, String(gen), ...rest];
}

/** An operator's control (zv1_control) of breaker `id`. */
function control(id: string, action: string): Command {
  const keys = keyList(keysOf(id));
  return ['FCALL', 'zv1_control', String(keys.length), ...keys, feedChannel(PREFIX), 'operator', '0', action, `rolling upgrade test: ${action}`, '0', '1'];
}

const send = (command: Command) => own.admin.call(...command) as Promise<unknown[]>;

/** The fields of stream `key`'s entries, oldest first. */
const fieldsOf = async (key: string) => (await streamEntries(own.admin, key)).map((e) => e.fields);

/** A recorded call stores the strategy, as on any breaker in use: what zv1_isolate judges a window by. */
async function strategyStored(i: Instance): Promise<void> {
  await i.breaker.execute(async () => 'ok');
  await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(1), { timeout: 5_000 });
}

describe('revision 6 clients on a library upgraded to 7', () => {
  it('the released package is revision 6, this one 7', () => {
    expect(revision6.LIBRARY_REVISION).toBe(6);
    expect(LIBRARY_REVISION).toBe(7);
  });

  it('upgraded by deploy-functions while old clients call, then new clients call with them: every outcome counted once, nothing reported', async () => {
    await revision6Library();
    const id = uniqueId();
    // A window that holds every call of the test and never trips (the minimum is its size).
    const window = { threshold: 0.5, size: 10_000 };
    const all = mixed(id, ['old', 'old', 'old', 'new', 'new'], {
      old: { breaker: new revision6.CountBreaker(window) },
      new: { breaker: new CountBreaker(window), minimumInstances: 2 },
    });
    const old = all.slice(0, 3);
    const fresh = all.slice(3);
    await startAll(old);
    const traffic = { done: false };
    const oldMade = Promise.all(old.map((i) => alternatingCalls(i, traffic)));
    const recorded = (list: Instance[]) => list.map((i) => i.breaker.stats.recorded);
    await vi.waitFor(() => expect(recorded(old).every((n) => n >= 20)).toBe(true), { timeout: 10_000 });

    await upgrade();
    const atUpgrade = recorded(old);
    // Clients of this release start once the library is theirs (revision 6 would refuse them).
    await startAll(fresh);
    const freshMade = Promise.all(fresh.map((i) => alternatingCalls(i, traffic)));
    // Each old client's reports reach the new library too, beside the new clients', before the calls end.
    await vi.waitFor(
      () => {
        expect(recorded(old).every((n, k) => n >= (atUpgrade[k] as number) + 20)).toBe(true);
        expect(recorded(fresh).every((n) => n >= 20)).toBe(true);
      },
      { timeout: 10_000 },
    );
    traffic.done = true;
    const totals = [...(await oldMade), ...(await freshMade)];

    await countedOnce(own.admin, id, all, totals);
    // Only the new clients report with the instance rule.
    expect(Object.keys(await own.admin.hgetall(keysOf(id).instances)).sort()).toEqual(['new-0', 'new-1']);
  });

  it('an old client trips by the strategy and every client opens, new ones with minimumInstances too; when it stops, the next lease holder, of either release, recovers the breaker for all', async () => {
    await revision6Library();
    // A lease of 30 s: only the release the stopping holder announces explains a quick takeover.
    const all = mixed(uniqueId(), ['old', 'old', 'new', 'new'], { both: { leaseTtlMs: 30_000 }, new: { minimumInstances: 2 } });
    const [tripper, ...others] = all as [Instance, ...Instance[]];
    await startAll(all.slice(0, 2));
    await upgrade();
    await startAll(all.slice(2));

    await tripStopAndRecover(tripper, others);
    // Its report carried no instance rule: the entry names none.
    expect((await fieldsOf(keysOf(tripper.breaker.id).events))[0]).toMatchObject({
      reason: 'consecutive_failures',
      failures: '3',
      actor: 'old-0',
      instances: '',
      reporters: '',
      rule: '',
    });
  });

  it('a client of this release with minimumInstances, failing alone, isolates itself: old clients hear nothing of it and keep calling; it recovers alone, and follows the fleet when their catch-up opens it', async () => {
    await revision6Library();
    const id = uniqueId();
    const k = keysOf(id);
    const all = mixed(id, ['old', 'old', 'new'], { new: { minimumInstances: 2 } });
    const old = all.slice(0, 2);
    const fresh = all[2] as Instance;
    await startAll(old);
    await upgrade();
    await startAll([fresh]);
    // Checks pass (a failed one is told to onError): its own first one brings it back.
    for (const i of all) i.healthy = true;

    await fail(fresh, 3);
    await vi.waitFor(() => expect(fresh.seen.states.map((s) => [s.state, s.transition.scope, s.transition.reason])).toEqual([
      ['isolated', 'instance', 'consecutive_failures'],
      ['closed', 'instance', 'recovered'],
    ]));
    expect((await fieldsOf(k.instanceEvents)).map((f) => `${f.from}>${f.to} ${f.reason} ${f.actor}`)).toEqual([
      'closed>isolated consecutive_failures new-0',
      'isolated>closed recovered new-0',
    ]);
    expect(await fieldsOf(k.events)).toEqual([]);

    // Isolated again, and this time it stays so: its checks fail (told to its onError).
    fresh.healthy = false;
    await fail(fresh, 3);
    await vi.waitFor(() => expect(fresh.breaker.state).toBe('isolated'));
    for (const i of old) await expect(i.breaker.execute(async () => 'ran')).resolves.toBe('ran');

    // The fleet forced open while every subscriber is down: each client catches up; the
    // isolated one follows the fleet and rejoins it.
    const sources = old.map((i) => {
      const heard: string[] = [];
      i.breaker.on('stateChange', (e) => heard.push(e.source));
      return heard;
    });
    const results = await own.admin.pipeline().call('CLIENT', 'KILL', 'TYPE', 'pubsub').call(...control(id, 'open')).exec();
    expect(results?.filter(([error]) => error !== null)).toEqual([]);
    await untilAll(all, 'open');
    await vi.waitFor(() => expect(fresh.seen.states.at(-1)?.transition).toMatchObject({ scope: 'instance', from: 'isolated', to: 'open', reason: 'fleet_opened' }));
    await vi.waitFor(async () => expect((await fieldsOf(k.instanceEvents)).map((f) => f.reason)).toEqual(['consecutive_failures', 'recovered', 'consecutive_failures', 'fleet_opened']));
    // An operator's reset closes the fleet for all (a release would open it again: the window holds the failures).
    expect((await send(control(id, 'reset')))[0]).toBe('applied');
    await untilAll(all, 'closed');
    for (const [n, i] of old.entries()) {
      await vi.waitFor(() => expect(i.seen.states.map((s) => [s.state, s.transition.reason])).toEqual([['open', 'forced_open'], ['closed', 'reset']]));
      // The open read back; the reset heard on the feed (or read back after a reply that told the lease holder of it).
      expect(sources[n]?.[0]).toBe('replay');
      expect(i.seen.errors).toEqual([]);
    }
    expect(errorCodes(fresh).filter((code) => code !== 'ZV_HEALTH_CHECK_FAILED')).toEqual([]);
    expect((await fieldsOf(k.events)).map((f) => `${f.from}>${f.to} ${f.reason}`)).toEqual(['closed>open forced_open', 'open>closed reset']);
  });
});

/**
 * New instances' reports and isolation at the function level, as a client of this release
 * with minimumInstances 2 sends them (ruleRecord and isolation above): what old clients see
 * of each reply and entry, with the interleavings pinned (a pipeline runs them in order).
 */
describe('instance-level decisions beside revision 6 clients', () => {
  it("a new instance's failures alone are held; an old client's one failure then trips by the strategy alone; two new instances failing trip by the rule; old clients follow and recover", async () => {
    await revision6Library();
    const id = uniqueId();
    const k = keysOf(id);
    const old = mixed(id, ['old', 'old']);
    const [first, second] = old as [Instance, Instance];
    await startAll(old);
    await upgrade();
    // Their checks pass (a check that fails is told to onError): a lease holder recovers the breaker at its first.
    for (const i of old) i.healthy = true;
    await strategyStored(first);

    // One instance sees three failures in a row: the strategy's rule, but one failing instance of one reporting.
    expect(await send(ruleRecord(id, 'new-0', 0, { fail: 3 }))).toEqual(['held', 'closed', 0, expect.any(String), '', 0, 1, 1]);
    // Held: nothing audited, nothing published; the window keeps the run, and the reporter set has the new instance alone.
    expect(await fieldsOf(k.events)).toEqual([]);
    expect((await explainBreaker(own.admin, id)).window).toMatchObject({ failures: 3 });
    expect(Object.keys(await own.admin.hgetall(k.instances))).toEqual(['new-0']);

    // An old client's report has no rule to meet: its one failure makes the run four, and
    // trips; the old lease holder recovers the breaker, as before.
    await fail(second, 1);
    for (const i of old) await vi.waitFor(() => expect(statesSeen(i)).toEqual(['open', 'closed']));
    expect(await fieldsOf(k.events)).toEqual([
      expect.objectContaining({ from: 'closed', to: 'open', reason: 'consecutive_failures', failures: '4', actor: 'old-1', gen: '1', instances: '', reporters: '', rule: '' }),
      expect.objectContaining({ from: 'open', to: 'closed', reason: 'recovery_check_passed', gen: '2' }),
    ]);
    // Its call does not name the reporter set: left as it was, of a generation that no longer counts.
    expect(Object.keys(await own.admin.hgetall(k.instances))).toEqual(['new-0']);

    // Two new instances failing: the rule is met, and the trip names it and the instances.
    expect((await send(ruleRecord(id, 'new-0', 2, { fail: 2 }))).slice(0, 3)).toEqual(['ok', 'closed', 2]);
    const opened = await send(ruleRecord(id, 'new-1', 2, { fail: 1 }));
    expect(opened.slice(0, 3)).toEqual(['opened', 'open', 3]);
    expect(opened.slice(-2)).toEqual([2, 2]);
    expect((await fieldsOf(k.events)).at(-1)).toMatchObject({
      reason: 'consecutive_failures',
      failures: '3',
      actor: 'new-1',
      gen: '3',
      instances: '2',
      reporters: '2',
      rule: 'minimum_instances:2',
    });
    // The reporter set stays, of the generation before the trip: counted no more.
    expect(new Set(Object.values(await own.admin.hgetall(k.instances)).map((entry) => entry.split(':')[0]))).toEqual(new Set(['2']));
    // Old clients take it from the feed, fields they do not know included, as any trip; one of them recovers it.
    for (const i of old) {
      await vi.waitFor(() => expect(statesSeen(i)).toEqual(['open', 'closed', 'open', 'closed']));
      expect(i.seen.states[2]?.transition).toMatchObject({ reason: 'consecutive_failures', actor: 'new-1', generation: 3, rule: 'minimum_instances:2' });
      expect(i.seen.errors).toEqual([]);
    }
  });

  it("an old client's outcomes move a count window but not the reporters' positions: a new instance whose failure has left the window still counts as failing", async () => {
    await revision6Library();
    const id = uniqueId();
    const k = keysOf(id);
    const window = { threshold: 0.5, size: 4 };
    const spec = strategySpec(new CountBreaker(window));
    const [old] = mixed(id, ['old'], { old: { breaker: new revision6.CountBreaker(window) } }) as [Instance];
    old.healthy = true;
    await startAll([old]);
    await upgrade();

    // One failure of new-0: too few calls for the rate.
    expect((await send(ruleRecord(id, 'new-0', 0, { fail: 1 }, spec))).slice(0, 3)).toEqual(['ok', 'closed', 0]);
    // Four successes of the old client push it out of the window of four...
    for (let n = 0; n < 4; n += 1) await old.breaker.execute(async () => 'ok');
    await vi.waitFor(() => expect(old.breaker.stats.recorded).toBe(4), { timeout: 5_000 });
    expect((await explainBreaker(own.admin, id)).window).toMatchObject({ calls: 4, failures: 0 });
    // ...but the positions move only with reports that carry the rule (so that zv1_record
    // without it reads and writes nothing more): within the last four of those, new-0's
    // failure still counts. Two failures of new-1 reach the rate (2 of 4), and the rule is
    // met by two failing instances where the window holds the failures of one.
    const opened = await send(ruleRecord(id, 'new-1', 0, { fail: 2 }, spec));
    expect(opened.slice(0, 3)).toEqual(['opened', 'open', 1]);
    expect(opened.slice(-2)).toEqual([2, 2]);
    expect(await fieldsOf(k.events)).toEqual([
      expect.objectContaining({ reason: 'failure_rate', failures: '2', calls: '4', actor: 'new-1', instances: '2', reporters: '2', rule: 'minimum_instances:2' }),
    ]);
    await vi.waitFor(() => expect(statesSeen(old)).toEqual(['open', 'closed']));
    expect(old.seen.errors).toEqual([]);
  });

  it('a new instance isolating itself writes only to :instance-events: old clients hear nothing of it, and their catch-up over it reads the fleet stream without errors', async () => {
    await revision6Library();
    const id = uniqueId();
    const k = keysOf(id);
    const all = mixed(id, ['old', 'old', 'old', 'new']);
    await startAll(all.slice(0, 3));
    await upgrade();
    await startAll(all.slice(3));
    // Their checks pass (a check that fails is told to onError): only forced modes keep the breaker open below.
    for (const i of all) i.healthy = true;
    await strategyStored(all[0] as Instance);

    // Its own window reached the strategy's rule (three failures in a row) while the fleet's did not.
    const isolated = await send(isolation(id, 'new-0', 0, 'isolate', ['3', '3', '0']));
    expect(isolated).toEqual(['isolated', 'closed', 0, expect.any(String), expect.stringMatching(/^\d+-\d+$/)]);
    expect(await fieldsOf(k.instanceEvents)).toEqual([
      expect.objectContaining({ from: 'closed', to: 'isolated', reason: 'consecutive_failures', failures: '3', calls: '3', actor: 'new-0', gen: '0', state: 'closed' }),
    ]);
    expect(await fieldsOf(k.events)).toEqual([]);
    for (const i of all) await expect(i.breaker.execute(async () => 'ran')).resolves.toBe('ran');

    // A fleet transition published after the isolation: a client that heard it heard everything
    // published before it, on the same channel: nothing of the isolation.
    expect((await send(control(id, 'open'))).slice(0, 3)).toEqual(['applied', 'open', 1]);
    await untilAll(all, 'open');
    for (const i of all) await vi.waitFor(() => expect(i.seen.states.map((s) => s.transition.reason)).toEqual(['forced_open']));
    // The instance follows the fleet, and rejoins it.
    expect(await send(isolation(id, 'new-0', 1, 'rejoin', ['fleet_opened']))).toEqual([
      'rejoined',
      'open',
      1,
      expect.any(String),
      expect.stringMatching(/^\d+-\d+$/),
    ]);

    // Catch-ups over an isolation and a rejoin: subscribers dropped, then, before they are
    // back, the fleet closes, the instance isolates itself, the fleet opens, the instance
    // rejoins and the fleet closes. Each client reads the three fleet transitions back from
    // the audit stream.
    const sources = all.map((i) => {
      const heard: string[] = [];
      i.breaker.on('stateChange', (e) => heard.push(e.source));
      return heard;
    });
    const pipeline = own.admin.pipeline().call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    for (const command of [
      control(id, 'release'),
      isolation(id, 'new-0', 2, 'isolate', ['3', '3', '0']),
      control(id, 'open'),
      isolation(id, 'new-0', 3, 'rejoin', ['fleet_opened']),
      control(id, 'release'),
    ]) {
      pipeline.call(...command);
    }
    const results = await pipeline.exec();
    expect(results?.filter(([error]) => error !== null)).toEqual([]);
    expect(results?.slice(1).map(([, reply]) => (reply as unknown[])[0])).toEqual(['applied', 'isolated', 'applied', 'rejoined', 'applied']);

    await untilAll(all, 'closed');
    for (const [n, i] of all.entries()) {
      await vi.waitFor(() => expect(statesSeen(i)).toEqual(['open', 'closed', 'open', 'closed']));
      const [, ...caughtUp] = i.seen.states.map((s) => s.transition);
      expect(caughtUp.map((t) => [t.reason, t.generation, t.id !== ''])).toEqual([
        ['released', 2, true],
        ['forced_open', 3, true],
        ['released', 4, true],
      ]);
      // Read back from the audit stream, not heard on the feed.
      expect(sources[n]).toEqual(['replay', 'replay', 'replay']);
      expect(i.seen.errors).toEqual([]);
    }
    expect((await fieldsOf(k.instanceEvents)).map((f) => `${f.from}>${f.to} ${f.reason} ${f.gen}`)).toEqual([
      'closed>isolated consecutive_failures 0',
      'isolated>open fleet_opened 1',
      'closed>isolated consecutive_failures 2',
      'isolated>open fleet_opened 3',
    ]);
    expect((await fieldsOf(k.events)).map((f) => `${f.from}>${f.to} ${f.reason}`)).toEqual([
      'closed>open forced_open',
      'open>closed released',
      'closed>open forced_open',
      'open>closed released',
    ]);
  });
});
