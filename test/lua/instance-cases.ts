/**
 * The Lua case table of revision 7's instance rule (zv1_record's ARGV 14 and the instances
 * hash) and of zv1_isolate: each strategy with the rule met and not met, the share, the
 * bound of MAX_INSTANCES reporters, stale entries, monitor and forced-closed modes, and
 * every status, bad argument and wrong key type of zv1_isolate. cases.ts spreads these
 * into CASES, so that they run against the shipped library and, compared, the source.
 */
import { expect } from 'vitest';
import type { Redis } from 'ioredis';
import type { BreakerKeys } from '../../src/keys.js';
import { MAX_INSTANCES } from '../../src/limits.js';
import {
  type CallStep,
  type LuaCase,
  type Step,
  NEW_TOKEN,
  consecutive,
  control,
  count,
  existingKeys,
  header,
  isolate,
  pairs,
  record,
  recordWithRule,
  rejoin,
  time,
} from './harness.js';

const error = (pattern: RegExp) => ({ error: expect.stringMatching(pattern) });

/** The reporter entries of the instances hash, by actor. */
const reporters = (redis: Redis, keys: BreakerKeys) => redis.hgetall(keys.instances);

/** The instance-level entries, oldest first, as objects. */
async function instanceLog(redis: Redis, keys: BreakerKeys): Promise<Record<string, string>[]> {
  return (await redis.xrange(keys.instanceEvents, '-', '+')).map(([, fields]) => pairs(fields) as Record<string, string>);
}

const fleetEntries = (n: number): Step => ({ check: async (redis, keys) => expect(await redis.xlen(keys.events)).toBe(n) });
const instanceEntries = (n: number): Step => ({ check: async (redis, keys) => expect(await redis.xlen(keys.instanceEvents)).toBe(n) });

/** The reporter entry of `actor` matches `pattern` ('gen:last_pos:last_ms:fail_pos:fail_ms:iso_ms'). */
const reporterEntry = (actor: string, pattern: RegExp | null): Step => ({
  check: async (redis, keys) => {
    const value = await redis.hget(keys.instances, actor);
    if (pattern === null) expect(value).toBeNull();
    else expect(value).toMatch(pattern);
  },
});

/** The instance-level entries match these, oldest first. */
const logged = (...expected: Record<string, unknown>[]): Step => ({
  check: async (redis, keys) => expect(await instanceLog(redis, keys)).toEqual(expected.map((e) => expect.objectContaining(e))),
});

const held = (instances: number, reporting: number, gen = 0) => ({ status: 'held', state: 'closed', gen, transition: undefined, token: 0, instances, reporters: reporting });
const openedByRule = (gen: number, reason: string, rule: string, instances: number, reporting: number) => ({
  status: 'opened',
  state: 'open',
  gen,
  instances,
  reporters: reporting,
  transition: expect.objectContaining({ from: 'closed', to: 'open', reason, rule, instances: String(instances), reporters: String(reporting) }),
});

/** `steps`, then a check that none of the breaker's four keys changed. */
function changingNothing(steps: readonly Step[]): Step[] {
  let before: unknown[] = [];
  const dump = async (redis: Redis, keys: BreakerKeys) =>
    Promise.all([keys.state, keys.events, keys.instances, keys.instanceEvents].map(async (k) => [await redis.type(k), await redis.dump(k)]));
  return [
    { setup: async (redis, keys) => (before = await dump(redis, keys)) },
    ...steps,
    { check: async (redis, keys) => expect(await dump(redis, keys)).toEqual(before) },
  ];
}

const TWO = '2:0';

export const INSTANCE_CASES: LuaCase[] = [
  // ---- zv1_record with an instance rule ----
  {
    name: 'instance rule, consecutive: one instance failing is held (no entry); a second one failing opens the fleet; the reporters stay, of the old generation',
    steps: [
      { ...recordWithRule(0, { fail: 3 }, consecutive(3), TWO, 'a'), expect: held(1, 1) },
      fleetEntries(0),
      reporterEntry('a', /^0:3:\d+:3:\d+:0$/),
      { ...recordWithRule(0, { fail: 1 }, consecutive(3), TWO, 'b'), expect: openedByRule(1, 'consecutive_failures', 'minimum_instances:2', 2, 2) },
      reporterEntry('a', /^0:3:\d+:3:\d+:0$/),
      { check: async (redis, keys) => expect(await redis.hget(keys.state, 'rn')).toBe('4') },
    ],
  },
  {
    name: 'instance rule, consecutive: a success breaks the run, and a reporter whose failures are before the run is not counted',
    steps: [
      { ...recordWithRule(0, { fail: 2 }, consecutive(3), TWO, 'a'), expect: { status: 'ok' } },
      { ...recordWithRule(0, { ok: 1 }, consecutive(3), TWO, 'b'), expect: { status: 'ok' } },
      { ...recordWithRule(0, { fail: 3 }, consecutive(3), TWO, 'c'), expect: held(1, 1) },
      reporterEntry('b', /^0:3:\d+:0:0:0$/),
    ],
  },
  {
    name: 'instance rule, count: failures of two instances in the window open; failures that slid out of it are not counted',
    steps: [
      { ...recordWithRule(0, { fail: 4 }, count(0.5, 4), TWO, 'a'), expect: held(1, 1) },
      { ...recordWithRule(0, { ok: 4 }, count(0.5, 4), TWO, 'b'), expect: { status: 'ok' } },
      // The window is b's two successes and b's two failures: a's failures slid out.
      { ...recordWithRule(0, { fail: 2 }, count(0.5, 4), TWO, 'b'), expect: held(1, 1) },
      { ...recordWithRule(0, { fail: 1 }, count(0.5, 4), TWO, 'a'), expect: openedByRule(1, 'failure_rate', 'minimum_instances:2', 2, 2) },
    ],
  },
  {
    name: 'instance rule, count: a success of another instance in the window makes it a reporter, not a failing instance',
    steps: [
      { ...recordWithRule(0, { fail: 2 }, count(0.5, 4), TWO, 'a'), expect: { status: 'ok' } },
      { ...recordWithRule(0, { ok: 2 }, count(0.5, 4), TWO, 'b'), expect: held(1, 2) },
      reporterEntry('b', /^0:4:\d+:0:0:0$/),
      { ...recordWithRule(0, { fail: 1 }, count(0.5, 4), TWO, 'b'), expect: openedByRule(1, 'failure_rate', 'minimum_instances:2', 2, 2) },
    ],
  },
  {
    name: 'instance rule, time: failures of two instances in the window open',
    steps: [
      { ...recordWithRule(0, { fail: 2 }, time(0.5, 60_000, 2), TWO, 'a'), expect: held(1, 1) },
      { ...recordWithRule(0, { fail: 1 }, time(0.5, 60_000, 2), TWO, 'b'), expect: openedByRule(1, 'failure_rate', 'minimum_instances:2', 2, 2) },
    ],
  },
  {
    name: 'instance rule, time: failures of an instance whose buckets expired are not counted',
    steps: [
      { ...recordWithRule(0, { fail: 2 }, time(0.5, 500, 2), TWO, 'a'), expect: held(1, 1) },
      { sleepMs: 650 },
      { ...recordWithRule(0, { fail: 2 }, time(0.5, 500, 2), TWO, 'b'), expect: held(1, 1) },
    ],
  },
  {
    name: 'instance rule, share: failing instances over reporting ones must reach it',
    steps: [
      { ...recordWithRule(0, { ok: 2 }, count(0.5, 10, 4), '0:0.5', 'a'), expect: { status: 'ok' } },
      { ...recordWithRule(0, { ok: 2 }, count(0.5, 10, 4), '0:0.5', 'b'), expect: { status: 'ok' } },
      { ...recordWithRule(0, { fail: 4 }, count(0.5, 10, 4), '0:0.5', 'c'), expect: held(1, 3) },
      // Two of a's outcomes slide out: b, c and d report, c and d fail.
      { ...recordWithRule(0, { fail: 4 }, count(0.5, 10, 4), '0:0.5', 'd'), expect: openedByRule(1, 'failure_rate', 'instance_share:0.5', 2, 3) },
    ],
  },
  {
    name: 'instance rule, both parts: each must be met; the rule names both',
    steps: [
      { ...recordWithRule(0, { ok: 3 }, count(0.5, 10, 2), '3:0.6', 'a'), expect: { status: 'ok' } },
      { ...recordWithRule(0, { fail: 2 }, count(0.5, 10, 2), '3:0.6', 'b'), expect: { status: 'ok' } },
      { ...recordWithRule(0, { fail: 2 }, count(0.5, 10, 2), '3:0.6', 'c'), expect: held(2, 3) },
      { ...recordWithRule(0, { fail: 2 }, count(0.5, 10, 2), '2:0.6', 'c'), expect: openedByRule(1, 'failure_rate', 'minimum_instances:2,instance_share:0.6', 2, 3) },
    ],
  },
  {
    name: 'instance rule: a trip grants the lease when a ttl is given; ARGV 13 0 grants none',
    steps: [
      { ...recordWithRule(0, { fail: 1 }, consecutive(1), '1:0', 'a', 10_000), expect: { status: 'opened', token: NEW_TOKEN, instances: 1, reporters: 1 } },
    ],
  },
  {
    name: 'lease ttl 0 without an instance rule: a trip grants no lease',
    steps: [{ ...record(0, { fail: 1 }, consecutive(1), 'i1', 100, 0), expect: { status: 'opened', token: 0 } }],
  },
  {
    name: 'instance rule: a report without failures keeps the reporter entry of its last failure; a call without the rule touches neither rn nor the hash',
    steps: [
      { ...recordWithRule(0, { fail: 1 }, consecutive(5), TWO, 'a'), expect: { status: 'ok' } },
      { ...recordWithRule(0, { ok: 2 }, consecutive(5), TWO, 'a'), expect: { status: 'ok' } },
      reporterEntry('a', /^0:3:\d+:1:\d+:0$/),
      ...changingNothingButState([{ ...record(0, { ok: 1 }, consecutive(5), 'a'), expect: { status: 'ok' } }]),
      { check: async (redis, keys) => expect(await redis.hget(keys.state, 'rn')).toBe('3') },
    ],
  },
  {
    name: 'instance rule: entries of another generation are ignored',
    steps: [
      { setup: (redis, keys) => redis.hset(keys.instances, 'old', `7:3:${Date.now()}:3:${Date.now()}:0`) },
      { ...recordWithRule(0, { fail: 3 }, consecutive(3), TWO, 'a'), expect: held(1, 1) },
    ],
  },
  {
    name: 'instance rule: a reporter entry zenvark did not write is ZV_CORRUPT when the reporters are counted',
    steps: [
      { setup: (redis, keys) => redis.hset(keys.instances, 'bad', 'nonsense') },
      { ...recordWithRule(0, { ok: 1 }, consecutive(3), TWO, 'a'), expect: { status: 'ok' } },
      { ...recordWithRule(0, { fail: 3 }, consecutive(3), TWO, 'a'), expect: error(/^ZV_CORRUPT .*:instances field bad holds 'nonsense'/) },
      { setup: (redis, keys) => redis.hset(keys.instances, 'a', '0:x') },
      { ...recordWithRule(0, { ok: 1 }, consecutive(3), TWO, 'a'), expect: error(/^ZV_CORRUPT .*:instances field a holds '0:x'/) },
    ],
  },
  {
    name: `instance rule: at most ${MAX_INSTANCES} reporter entries; entries of another generation go first, then the least recently active`,
    steps: [
      { setup: (redis, keys) => redis.hset(keys.instances, 'ghost', '9:1:1:1:1:0') },
      ...Array.from({ length: MAX_INSTANCES }, (_, i) => ({
        ...recordWithRule(0, { ok: 1 }, count(0.5, 100, 100), TWO, `r${String(i).padStart(2, '0')}`),
        expect: { status: 'ok' },
      })),
      {
        check: async (redis, keys) => {
          const all = await reporters(redis, keys);
          expect(Object.keys(all)).toHaveLength(MAX_INSTANCES);
          expect(all.ghost).toBeUndefined();
        },
      },
      { ...recordWithRule(0, { ok: 1 }, count(0.5, 100, 100), TWO, 'z-late'), expect: { status: 'ok' } },
      {
        check: async (redis, keys) => {
          const all = await reporters(redis, keys);
          expect(Object.keys(all)).toHaveLength(MAX_INSTANCES);
          expect(all.r00).toBeUndefined();
          expect(all.r01).toBeDefined();
          expect(all['z-late']).toBeDefined();
        },
      },
    ],
  },
  {
    name: 'instance rule under monitor: not met is held; met is a would_open entry with the counts and both rules, the hash kept',
    steps: [
      { ...control('monitor', 'by hand', 0, { create: 1 }), expect: { status: 'applied', gen: 1 } },
      { ...recordWithRule(1, { fail: 3 }, consecutive(3), TWO, 'a'), expect: held(1, 1, 1) },
      {
        ...recordWithRule(1, { fail: 1 }, consecutive(3), TWO, 'b'),
        expect: {
          status: 'ok',
          state: 'closed',
          gen: 2,
          transition: expect.objectContaining({
            from: 'closed', to: 'closed', reason: 'would_open', rule: 'consecutive_failures,minimum_instances:2', instances: '2', reporters: '2',
          }),
        },
      },
      reporterEntry('a', /^1:3:/),
    ],
  },
  {
    name: 'instance rule under forced closed: counted, never held nor tripped',
    steps: [
      { ...control('close', 'by hand', 0, { create: 1 }), expect: { status: 'applied', gen: 1 } },
      { ...recordWithRule(1, { fail: 5 }, consecutive(3), TWO, 'a'), expect: { status: 'ok', state: 'closed', gen: 1 } },
      reporterEntry('a', /^1:5:\d+:5:\d+:0$/),
    ],
  },
  {
    name: 'instance rule: stale generations and a breaker not closed are not counted, and write no reporter entry',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(1)), expect: { status: 'opened' } },
      { ...recordWithRule(0, { fail: 1 }, consecutive(1), TWO, 'a'), expect: { status: 'stale_gen' } },
      { ...recordWithRule(1, { fail: 1 }, consecutive(1), TWO, 'a'), expect: { status: 'not_closed' } },
      { check: async (redis, keys) => expect(await redis.exists(keys.instances)).toBe(0) },
    ],
  },
  {
    name: 'instance rule: an instances key of another type is refused before anything is written',
    steps: [
      { setup: (redis, keys) => redis.rpush(keys.instances, 'x') },
      { ...recordWithRule(0, { fail: 1 }, consecutive(1), TWO, 'a'), expect: error(/^ZV_WRONGTYPE .*:instances is a list, expected a hash/) },
      { check: async (redis, keys) => expect(await existingKeys(redis, keys)).toEqual([keys.instances]) },
    ],
  },

  // ---- zv1_isolate ----
  {
    name: 'isolate: before any recorded call there is no strategy: not_reached, nothing written',
    steps: [
      { ...isolate('a', 0, 5, 5), expect: { status: 'not_reached', state: 'closed', gen: 0, epoch: '', entry: '' } },
      { check: async (redis, keys) => expect(await existingKeys(redis, keys)).toEqual([]) },
    ],
  },
  {
    name: 'isolate: the server judges the figures by the stored strategy; isolated writes an instance entry and iso_ms; again is idempotent; rejoin ends it',
    steps: [
      { ...record(0, { ok: 1 }, consecutive(3)), expect: { status: 'ok' } },
      ...changingNothing([{ ...isolate('a', 0, 2, 2), expect: { status: 'not_reached', entry: '' } }]),
      { ...isolate('a', 0, 3, 3), expect: { status: 'isolated', state: 'closed', gen: 0, entry: '<id>' } },
      logged({
        from: 'closed', to: 'isolated', reason: 'consecutive_failures', failures: '3', calls: '3', slow: '', rate: '', threshold: '3',
        window: 'consecutive', actor: 'a', time: expect.stringMatching(/^\d+$/), gen: '0', state: 'closed', mode: '', rule: '',
      }),
      reporterEntry('a', /^0:0:0:0:0:[1-9]\d*$/),
      fleetEntries(0),
      ...changingNothing([{ ...isolate('a', 0, 3, 3), expect: { status: 'isolated', entry: '' } }]),
      { ...rejoin('a', 0), expect: { status: 'rejoined', state: 'closed', gen: 0, entry: '<id>' } },
      reporterEntry('a', /^0:0:0:0:0:0$/),
      ...changingNothing([{ ...rejoin('a', 0), expect: { status: 'not_isolated', entry: '' } }]),
      {
        check: async (redis, keys) =>
          expect((await instanceLog(redis, keys))[1]).toMatchObject({ from: 'isolated', to: 'closed', reason: 'recovered', actor: 'a', gen: '0', state: 'closed', failures: '' }),
      },
    ],
  },
  {
    name: 'isolate: an isolated instance counts while its failures are in the window; one more failing instance opens the fleet; the trip keeps the reporters',
    steps: [
      { ...recordWithRule(0, { fail: 2 }, consecutive(3), TWO, 'a'), expect: { status: 'ok' } },
      { ...isolate('a', 0, 3, 3), expect: { status: 'isolated' } },
      reporterEntry('a', /^0:2:\d+:2:\d+:[1-9]\d*$/),
      { ...recordWithRule(0, { fail: 1 }, consecutive(3), TWO, 'b'), expect: openedByRule(1, 'consecutive_failures', 'minimum_instances:2', 2, 2) },
      // The trip leaves the reporters; a's rejoin finds its isolation and writes its entry.
      { ...rejoin('a', 1, 'fleet_opened'), expect: { status: 'rejoined', state: 'open', gen: 1 } },
      reporterEntry('a', /^0:2:\d+:0:0:0$/),
    ],
  },
  {
    name: 'isolate: an isolated instance whose failures left the window counts no more (one that died isolated does not hold the rule down)',
    steps: [
      { ...recordWithRule(0, { fail: 2 }, consecutive(3), TWO, 'a'), expect: { status: 'ok' } },
      { ...isolate('a', 0, 3, 3), expect: { status: 'isolated' } },
      // A success breaks the run: a's failures are out of it.
      { ...recordWithRule(0, { ok: 1 }, consecutive(3), TWO, 'c'), expect: { status: 'ok' } },
      { ...recordWithRule(0, { fail: 3 }, consecutive(3), TWO, 'b'), expect: held(1, 1) },
      // A control moved the fleet on, closed: the isolated instance follows (fleet_moved).
      { ...rejoin('a', 0, 'fleet_moved'), expect: { status: 'rejoined', state: 'closed', gen: 0 } },
    ],
  },
  {
    name: 'isolate: a rejoin clears the failures of the instance, which stay in the window without naming it',
    steps: [
      { ...recordWithRule(0, { fail: 2 }, consecutive(3), TWO, 'a'), expect: { status: 'ok' } },
      { ...isolate('a', 0, 3, 3), expect: { status: 'isolated' } },
      { ...rejoin('a', 0), expect: { status: 'rejoined' } },
      reporterEntry('a', /^0:2:\d+:0:0:0$/),
      // The run is 3 with a's failures; a reported in it, and failed in it no more.
      { ...recordWithRule(0, { fail: 1 }, consecutive(3), TWO, 'b'), expect: { status: 'held', state: 'closed', gen: 0, instances: 1, reporters: 2 } },
      { ...recordWithRule(0, { fail: 1 }, consecutive(3), TWO, 'c'), expect: openedByRule(1, 'consecutive_failures', 'minimum_instances:2', 2, 3) },
    ],
  },
  {
    name: 'isolate: failure rate and slow-call rate of a count window',
    steps: [
      { ...record(0, { ok: 1 }, 'count:0.5:10:4:0.5'), expect: { status: 'ok' } },
      { ...isolate('a', 0, 1, 4), expect: { status: 'not_reached' } },
      { ...isolate('a', 0, 2, 3), expect: { status: 'not_reached' } },
      { ...isolate('a', 0, 2, 4), expect: { status: 'isolated' } },
      { ...isolate('b', 0, 0, 4, 2), expect: { status: 'isolated' } },
      logged(
        { reason: 'failure_rate', failures: '2', calls: '4', slow: '0', rate: '0.5000', threshold: '0.5', window: 'count:10', actor: 'a' },
        { reason: 'slow_call_rate', failures: '0', calls: '4', slow: '2', rate: '0.5000', threshold: '0.5', window: 'count:10', actor: 'b' },
      ),
    ],
  },
  {
    name: 'isolate: a stale generation, a breaker not closed, forced closed: nothing written',
    steps: [
      { ...record(0, { ok: 1 }, consecutive(3)), expect: { status: 'ok' } },
      ...changingNothing([{ ...isolate('a', 5, 3, 3), expect: { status: 'stale_gen', state: 'closed', gen: 0 } }]),
      { ...control('close'), expect: { status: 'applied', gen: 1 } },
      ...changingNothing([{ ...isolate('a', 1, 3, 3), expect: { status: 'mode', state: 'closed', gen: 1 } }]),
      { ...control('open'), expect: { status: 'applied', gen: 2 } },
      ...changingNothing([{ ...isolate('a', 2, 3, 3), expect: { status: 'not_closed', state: 'open', gen: 2 } }]),
    ],
  },
  {
    name: 'isolate under monitor: a would_isolate entry, the rule named; the instance is not isolated',
    steps: [
      { ...record(0, { ok: 1 }, consecutive(3)), expect: { status: 'ok' } },
      { ...control('monitor'), expect: { status: 'applied', gen: 1 } },
      { ...isolate('a', 1, 3, 3), expect: { status: 'monitored', state: 'closed', gen: 1, entry: '<id>' } },
      logged({ from: 'closed', to: 'closed', reason: 'would_isolate', rule: 'consecutive_failures', mode: 'monitor', gen: '1', actor: 'a' }),
      { check: async (redis, keys) => expect(await redis.exists(keys.instances)).toBe(0) },
      { ...rejoin('a', 1), expect: { status: 'not_isolated' } },
    ],
  },
  {
    name: 'rejoin after the fleet opened by another way: an entry from isolated to the fleet state, whatever the generation',
    steps: [
      { ...record(0, { ok: 1 }, consecutive(3)), expect: { status: 'ok' } },
      { ...isolate('a', 0, 3, 3), expect: { status: 'isolated' } },
      { ...record(0, { fail: 3 }, consecutive(3), 'b'), expect: { status: 'opened', gen: 1 } },
      { ...rejoin('a', 1, 'fleet_opened'), expect: { status: 'rejoined', state: 'open', gen: 1, entry: '<id>' } },
      logged({ to: 'isolated' }, { from: 'isolated', to: 'open', reason: 'fleet_opened', gen: '1', state: 'open', actor: 'a' }),
    ],
  },
  {
    name: 'isolate: a mode whose expiry passed is ended first (its entry on the fleet stream)',
    steps: [
      { ...record(0, { ok: 1 }, consecutive(3)), expect: { status: 'ok' } },
      { ...control('close', 'why', 100), expect: { status: 'applied', gen: 1 } },
      { sleepMs: 150 },
      { ...isolate('a', 1, 3, 3), expect: { status: 'stale_gen', state: 'closed', gen: 2 } },
      fleetEntries(2),
      { ...isolate('a', 2, 3, 3), expect: { status: 'isolated', gen: 2 } },
      { ...rejoin('a', 2, 'stopped'), expect: { status: 'rejoined' } },
      logged({ to: 'isolated', gen: '2' }, { from: 'isolated', to: 'closed', reason: 'stopped' }),
    ],
  },
  {
    name: 'isolate: retention 0 trims nothing of the instance-events stream',
    steps: [
      { ...record(0, { ok: 1 }, consecutive(1)), expect: { status: 'ok' } },
      ...Array.from({ length: 120 }, (_, i): CallStep => ({ ...isolate(`a${i}`, 0, 1, 1, 0, 0), expect: { status: 'isolated' } })),
      instanceEntries(120),
    ],
  },
  {
    name: 'isolate: keys of another type are refused before anything is written',
    steps: [
      { setup: (redis, keys) => redis.set(keys.instanceEvents, 'x') },
      { ...isolate('a', 0, 3, 3), expect: error(/^ZV_WRONGTYPE .*:instance-events is a string, expected a stream/) },
      { ...rejoin('a', 0), expect: error(/^ZV_WRONGTYPE .*:instance-events is a string, expected a stream/) },
      { setup: (redis, keys) => redis.del(keys.instanceEvents) },
      { setup: (redis, keys) => redis.set(keys.instances, 'x') },
      { ...isolate('a', 0, 3, 3), expect: error(/^ZV_WRONGTYPE .*:instances is a string, expected a hash/) },
      { setup: (redis, keys) => redis.del(keys.instances) },
      { setup: (redis, keys) => redis.set(keys.events, 'x') },
      { ...isolate('a', 0, 3, 3), expect: error(/^ZV_WRONGTYPE .*:events is a string, expected a stream/) },
      { check: async (redis, keys) => expect(await existingKeys(redis, keys)).toEqual([keys.events]) },
    ],
  },
];

/** `steps`, then a check that the instances hash and rn did not change (a call without the rule). */
function changingNothingButState(steps: readonly Step[]): Step[] {
  let before: unknown[] = [];
  const read = async (redis: Redis, keys: BreakerKeys) => [await redis.dump(keys.instances), await redis.hget(keys.state, 'rn')];
  return [
    { setup: async (redis, keys) => (before = await read(redis, keys)) },
    ...steps,
    { check: async (redis, keys) => expect(await read(redis, keys)).toEqual(before) },
  ];
}

const withRule = (rule: string): CallStep => recordWithRule(0, { fail: 1 }, consecutive(1), rule);
const isolation = (...args: string[]): CallStep => ({ fn: 'zv1_isolate', args: [...header(), ...args], keySet: 'isolation' });

/** Calls refused with ZV_BADARG before anything is written (cases.ts checks that nothing was). */
export const INSTANCE_BAD_ARGUMENTS: [string, CallStep, RegExp][] = [
  ['record: an instance rule needs the instances key', { ...withRule(TWO), keySet: undefined }, /^ZV_BADARG expected 3 keys \(state, events, instances\), got 2/],
  ['record: the instances key only with an instance rule', { ...record(0, { fail: 1 }, consecutive(1)), keySet: 'rule' }, /^ZV_BADARG expected 2 keys \(state, events\), got 3/],
  ['record: an instance rule is K:share', withRule('two'), /^ZV_BADARG instance rule must be 'minimum instances:share', got 'two'/],
  ['record: an instance rule has a share', withRule('2'), /^ZV_BADARG instance rule must be 'minimum instances:share', got '2'/],
  ['record: an instance rule has two parts', withRule('2:0.5:1'), /^ZV_BADARG instance rule must be 'minimum instances:share', got '2:0.5:1'/],
  ['record: an instance rule is not empty', withRule(''), /^ZV_BADARG instance rule must be 'minimum instances:share', got ''/],
  ['record: minimum instances is an integer', withRule('x:0.5'), /^ZV_BADARG minimum instances must be an integer, got 'x'/],
  ['record: minimum instances is whole', withRule('1.5:0'), /^ZV_BADARG minimum instances must be an integer, got '1.5'/],
  ['record: minimum instances >= 0', withRule('-1:0.5'), /^ZV_BADARG minimum instances must be in \[0, 64\], got -1/],
  ['record: minimum instances <= MAX_INSTANCES', withRule('65:0'), /^ZV_BADARG minimum instances must be in \[0, 64\], got 65/],
  ['record: an instance share is a number', withRule('2:abc'), /^ZV_BADARG instance share must be a number, got 'abc'/],
  ['record: an instance share <= 1', withRule('2:1.5'), /^ZV_BADARG instance share must be in \(0, 1\], got 1.5/],
  ['record: an instance share > 0', withRule('2:-0.5'), /^ZV_BADARG instance share must be in \(0, 1\], got -0.5/],
  ['record: an instance share of 0 is written 0', withRule('2:0.0'), /^ZV_BADARG instance share must be in \(0, 1\], got 0.0/],
  ['record: an instance rule is not 0:0', withRule('0:0'), /^ZV_BADARG the instance rule needs minimum instances or a share, got '0:0'/],
  ['record: a share of instances needs a window (every reporter in a run of failures failed)', withRule('0:0.5'), /^ZV_BADARG a share of instances needs a count or time window, got strategy 'consecutive:1:0:0' and instance rule '0:0.5'/],
  ['record: a lease ttl >= 0', record(0, { fail: 1 }, consecutive(1), 'i1', 100, -1), /^ZV_BADARG lease ttl must be in \[0, 3600000\], got -1/],
  ['record: a lease ttl >= 0 with a rule', recordWithRule(0, { fail: 1 }, consecutive(1), TWO, 'i1', -1), /^ZV_BADARG lease ttl must be in \[0, 3600000\], got -1/],
  ['extra arguments are refused: record with a rule', { ...withRule(TWO), args: [...withRule(TWO).args, 'more'] }, /^ZV_BADARG expected at most 14 arguments, got 15/],
  ['isolate: four keys', { ...isolate('a', 0, 3, 3), keySet: 'rule' }, /^ZV_BADARG expected 4 keys \(state, events, instances, instance-events\), got 3/],
  ['isolate: an action is required', isolation(), /^ZV_BADARG action is missing \(ARGV\[4\]\)/],
  ['isolate: the action must be known', isolation('leave', '0'), /^ZV_BADARG action must be one of isolate, rejoin, got 'leave'/],
  ['isolate: a generation is required', isolation('isolate'), /^ZV_BADARG generation is missing \(ARGV\[5\]\)/],
  ['isolate: a generation is an integer', isolation('isolate', 'g', '3', '3', '0'), /^ZV_BADARG generation must be an integer, got 'g'/],
  ['isolate: failures are required', isolation('isolate', '0'), /^ZV_BADARG failures is missing \(ARGV\[6\]\)/],
  ['isolate: slow is required', isolation('isolate', '0', '3', '3'), /^ZV_BADARG slow is missing \(ARGV\[8\]\)/],
  ['isolate: failures >= 0', isolation('isolate', '0', '-1', '3', '0'), /^ZV_BADARG failures must be in \[0, 1000000000\], got -1/],
  ['isolate: failures <= calls', isolation('isolate', '0', '4', '3', '0'), /^ZV_BADARG failures and slow calls must not exceed calls, got failures 4, slow 0, calls 3/],
  ['isolate: slow <= calls', isolation('isolate', '0', '0', '3', '4'), /^ZV_BADARG failures and slow calls must not exceed calls, got failures 0, slow 4, calls 3/],
  ['isolate: a reason is required to rejoin', isolation('rejoin', '0'), /^ZV_BADARG reason is missing \(ARGV\[6\]\)/],
  ['isolate: the reason must be known', isolation('rejoin', '0', 'bored'), /^ZV_BADARG reason must be one of fleet_moved, fleet_opened, recovered, stopped, got 'bored'/],
  ['isolate: rejoin takes no figures', isolation('rejoin', '0', 'recovered', '3'), /^ZV_BADARG rejoin takes 6 arguments, got 7/],
  ['extra arguments are refused: isolate', isolation('isolate', '0', '3', '3', '0', 'more'), /^ZV_BADARG expected at most 8 arguments, got 9/],
  ['isolate: retention >= 0', { ...isolate('a', 0, 3, 3, 0, -1) }, /^ZV_BADARG retention must be in \[0, 1000000\], got -1/],
  ['isolate: an actor is required', { ...isolate('', 0, 3, 3) }, /^ZV_BADARG actor must be 1 to 256 bytes long, got 0/],
];
