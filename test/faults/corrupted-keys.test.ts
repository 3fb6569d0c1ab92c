/**
 * Breaker keys holding what Zenvark did not write: the state key of another type, the
 * events key of another type, state-hash fields with foreign values; and feed messages
 * that are not the library's at all. For each, running instances keep serving, report
 * the cause once (naming the key), never crash, never write half a transition, and
 * rejoin the shared state once the key is fixed (deleted).
 */
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, vi } from 'vitest';
import { type BreakerKeys, type CircuitBreakerOptions, CountBreaker, SamplingBreaker, breakerKeys, feedChannel } from '../../src/index.js';
import { sleep } from '../../harness/clock.js';
import { type Instance, errorCodes, fail, fleet, startAll, stopAll, untilAll } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';
import { type FaultFigures, type Size, scenario } from './scenario.js';

const own = ownRedis();
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

const reportsOf = (i: Instance, code: string) => i.seen.errors.filter((e) => (e as { code?: string }).code === code);

interface Corruption {
  readonly name: string;
  readonly code: 'ZV_WRONGTYPE' | 'ZV_CORRUPT';
  /** The key the fault is in: the report names it. */
  readonly key: keyof BreakerKeys;
  /** What else the report says of it. */
  readonly says: string;
  readonly options?: Partial<CircuitBreakerOptions>;
  /** Failures in a row that trip its strategy (default 3). */
  readonly tripsAfter?: number;
  /** Brings the breaker where the fault bites; by default one failure is recorded (the state hash exists). */
  readonly prepare?: (all: Instance[]) => Promise<void>;
  readonly corrupt: (admin: Redis, keys: BreakerKeys) => Promise<unknown>;
  /** Makes an instance use the key; by default a failing call (lease calls use the state key anyway). */
  readonly provoke?: (i: Instance) => Promise<void>;
}

/** Replaces `key` with a value of another type. */
async function replaceWith(admin: Redis, key: string, type: string): Promise<void> {
  await admin.del(key);
  if (type === 'string') await admin.set(key, 'not ours');
  if (type === 'list') await admin.rpush(key, 'not ours');
  if (type === 'set') await admin.sadd(key, 'not ours');
  if (type === 'zset') await admin.zadd(key, 1, 'not ours');
  if (type === 'hash') await admin.hset(key, 'not', 'ours');
  if (type === 'stream') await admin.xadd(key, '*', 'not', 'ours');
}

/** One failure recorded (by the first instance: together they could trip the breaker): the state hash exists. */
const recordOne = async ([first]: Instance[]) => {
  const i = first as Instance;
  await fail(i, 1);
  await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(1), { timeout: 10_000 });
};

const tripEach = (i: Instance) => fail(i, 3);

/** `key` replaced, in turn, by a value of each of `types`. */
const ofOtherTypes = (key: keyof BreakerKeys, types: string[], expected: string, provoke?: Corruption['provoke']) =>
  types.map(
    (type): Corruption => ({
      name: `the ${key} key as a ${type}`,
      code: 'ZV_WRONGTYPE',
      key,
      says: `is a ${type}, expected a ${expected}`,
      corrupt: (admin, keys) => replaceWith(admin, keys[key], type),
      provoke,
    }),
  );

const OTHER_TYPES: Corruption[] = [
  ...ofOtherTypes('state', ['list', 'string', 'set', 'zset', 'stream'], 'hash'),
  // Only a transition (or a resync) writes to the events key.
  ...ofOtherTypes('events', ['string', 'list', 'hash', 'set', 'zset'], 'stream', tripEach),
];

const FOREIGN_FIELDS: Corruption[] = [
  ...[
    ['state', 'banana'],
    ['gen', 'x'],
    ['epoch', 'abc'],
  ].map(
    ([field, value]): Corruption => ({
      name: `state field ${field} = '${value}'`,
      code: 'ZV_CORRUPT',
      key: 'state',
      says: `field ${field} holds '${value}'`,
      corrupt: (admin, keys) => admin.hset(keys.state, field as string, value as string),
    }),
  ),
  {
    name: 'a count window w longer than the window',
    code: 'ZV_CORRUPT',
    key: 'state',
    says: 'field w holds',
    options: { breaker: new CountBreaker({ threshold: 0.5, size: 10 }) },
    tripsAfter: 10,
    corrupt: (admin, keys) => admin.hset(keys.state, 'w', '0'.repeat(20)),
  },
  {
    name: 'a time window w of a length no window has',
    code: 'ZV_CORRUPT',
    key: 'state',
    says: "field w holds '<33 bytes>'",
    options: { breaker: new SamplingBreaker({ threshold: 0.5, duration: 10_000, minimumNumberOfCalls: 3 }) },
    corrupt: (admin, keys) => admin.hset(keys.state, 'w', 'x'.repeat(33)),
  },
  {
    name: "half-open trial permits tp = 'garbage'",
    code: 'ZV_CORRUPT',
    key: 'state',
    says: "field tp holds 'garbage'",
    options: { halfOpen: { permittedCalls: 2 } },
    async prepare(all) {
      await tripEach(all[0] as Instance);
      for (const i of all) i.healthy = true;
      await untilAll(all, 'half_open');
    },
    corrupt: (admin, keys) => admin.hset(keys.state, 'tp', 'garbage'),
    // A call that finds no permit asks for one.
    provoke: (i) => i.breaker.execute(async () => 'trial').then(() => undefined, () => undefined),
  },
  {
    name: 'a state hash without zenvark fields',
    code: 'ZV_CORRUPT',
    key: 'state',
    says: 'is a hash without zenvark fields',
    corrupt: async (admin, keys) => {
      await admin.del(keys.state);
      await admin.hset(keys.state, 'not', 'ours');
    },
  },
];

/** What must not change while a key is corrupted: a hash's fields but the lease's (renewals go on where they can), or the whole value. */
async function image(admin: Redis, key: string): Promise<unknown> {
  if ((await admin.type(key)) !== 'hash') return admin.dumpBuffer(key);
  const { lh, lt, lu, ...fields } = await admin.hgetall(key);
  return fields;
}

interface Outcome {
  readonly detectMs: number;
  readonly convergeMs: number;
  readonly transitions: number;
  readonly reports: number;
}

/** One corruption of a running breaker of `size` instances, from the fault to the trip after it is fixed. */
async function corrupted(c: Corruption, size: number, faultMs: number): Promise<Outcome> {
  const all = fleet(own.server.url, size, c.options);
  instances.push(...all);
  const keys = breakerKeys('zenvark', (all[0] as Instance).breaker.id);
  const admin = own.admin;
  await startAll(all);
  await (c.prepare ?? recordOne)(all);
  const served = (i: Instance) => i.breaker.execute(async () => 'served').catch((e: { code?: string }) => e.code);
  const shared = (i: Instance) => i.seen.states.filter((s) => !s.transition.local).map((s) => s.transition.reason);
  const sharedBefore = all.map(shared);
  const entries = await admin.xlen(keys.events);

  const corruptedAt = performance.now();
  await c.corrupt(admin, keys);
  const key = keys[c.key];
  const held = await image(admin, key);
  // Half a transition would be a new state or generation without its audit entry.
  const view = () => admin.hmget(keys.state, 'state', 'gen', 'epoch');
  const viewBefore = c.key === 'events' ? await view() : undefined;
  await Promise.all(all.map(c.provoke ?? ((i) => fail(i, 1))));
  await vi.waitFor(() => expect(all.map((i) => reportsOf(i, c.code).length)).toEqual(all.map(() => 1)), { timeout: 10_000 });
  const detectMs = performance.now() - corruptedAt;
  for (const i of all) {
    const report = reportsOf(i, c.code)[0];
    expect(report?.message).toContain(key);
    expect(report?.message).toContain(c.says);
    // Serving: fn's value, or the breaker's own refusal while it protects itself.
    expect(['served', 'ZV_CIRCUIT_OPEN']).toContain(await served(i));
  }

  // Resync periods go by: the cause stays told once, the key as it was, nothing audited.
  await sleep(faultMs);
  for (const i of all) {
    expect(reportsOf(i, c.code)).toHaveLength(1);
    expect(errorCodes(i)).not.toContain('ZV_REDIS_RESTORED');
    // Alone, it may trip and recover locally, but never rejoins the shared state meanwhile.
    expect(i.seen.states.map((s) => s.transition.reason)).not.toContain('resync');
  }
  expect(all.map(shared)).toEqual(sharedBefore);
  expect(await image(admin, key)).toEqual(held);
  if (c.key !== 'events') expect(await admin.xlen(keys.events)).toBe(entries);
  else expect(await view()).toEqual(viewBefore);

  const healedAt = performance.now();
  await admin.del(key);
  await vi.waitFor(() => expect(all.map((i) => errorCodes(i).includes('ZV_REDIS_RESTORED'))).toEqual(all.map(() => true)), { timeout: 10_000 });
  const convergeMs = performance.now() - healedAt;
  await untilAll(all, 'closed');
  for (const i of all) expect(await served(i)).toBe('served');
  // The shared state is written again: failures trip it in Redis, for everyone.
  await fail(all[0] as Instance, c.tripsAfter ?? 3);
  await untilAll(all, 'open');
  await vi.waitFor(() => expect(all[0]?.seen.states.at(-1)?.transition).toMatchObject({ to: 'open', local: false }));
  return {
    detectMs,
    convergeMs,
    transitions: await admin.xlen(keys.events),
    reports: Math.max(...all.map((i) => i.seen.errors.length)),
  };
}

/** Every corruption of `cases` at once, each on a breaker of its own; figures for all. */
async function corruptedAll(cases: Corruption[], size: Size): Promise<FaultFigures> {
  const faultMs = size === 'long' ? 10_000 : 2500;
  const settled = await Promise.allSettled(cases.map((c) => corrupted(c, size === 'long' ? 3 : 1, faultMs)));
  // Every corruption that went wrong, not only the first.
  const failures = settled.flatMap((s, n) => (s.status === 'rejected' ? [`${cases[n]?.name}: ${String((s.reason as Error).message).split('\n')[0]}`] : []));
  expect(failures).toEqual([]);
  const outcomes = settled.map((s) => (s as PromiseFulfilledResult<Outcome>).value);
  return {
    injected: `${cases.map((c) => c.name).join('; ')}: in running breakers (${size === 'long' ? 3 : 1} instance(s) each) for ${faultMs / 1000} s, then the key deleted`,
    detectMs: Math.max(...outcomes.map((o) => o.detectMs)),
    convergeMs: Math.max(...outcomes.map((o) => o.convergeMs)),
    latencyBefore: undefined,
    latencyDuring: undefined,
    transitions: outcomes.reduce((sum, o) => sum + o.transitions, 0),
    outcomesLost: 0,
    reportsPerBreaker: Math.max(...outcomes.map((o) => o.reports)),
    note:
      'each is reported once (ZV_WRONGTYPE or ZV_CORRUPT, naming the key) and the instances serve meanwhile, write nothing of a transition and stay alone ' +
      'until the key is deleted; detect and converge are the slowest breaker (to the report; from the key deleted to ZV_REDIS_RESTORED); no load runs',
  };
}

describe('breaker keys that Zenvark did not write', () => {
  scenario('Breaker keys of another type', (size) => corruptedAll(OTHER_TYPES, size));

  scenario('State-hash fields with foreign values', (size) => corruptedAll(FOREIGN_FIELDS, size));

  scenario('Feed messages not JSON or of an unknown kind', async (size) => {
    instances = fleet(own.server.url, 2);
    await startAll(instances);
    await recordOne(instances);
    const keys = breakerKeys('zenvark', (instances[0] as Instance).breaker.id);
    const channel = feedChannel('zenvark');
    const garbage = ['not json {', '"a string"', 'null', JSON.stringify({ kind: 'bogus', key: keys.state }), JSON.stringify({ kind: 'transition' })];
    const messages = size === 'long' ? 1000 : 50;
    const sentAt = performance.now();
    await own.admin.publish(channel, garbage[0] as string);
    await vi.waitFor(() => expect(instances.map((i) => errorCodes(i).includes('ZV_BAD_MESSAGE'))).toEqual([true, true]), { timeout: 10_000 });
    const detectMs = performance.now() - sentAt;
    for (let n = 1; n < messages; n += 1) await own.admin.publish(channel, garbage[n % garbage.length] as string);
    await sleep(size === 'long' ? 5000 : 300);
    for (const i of instances) {
      expect(reportsOf(i, 'ZV_BAD_MESSAGE')).toHaveLength(1);
      expect(reportsOf(i, 'ZV_BAD_MESSAGE')[0]?.message).toContain(channel);
      expect(i.seen.errors).toHaveLength(1);
      expect(i.seen.states).toEqual([]);
      expect(i.breaker.state).toBe('closed');
    }
    // Ignored: the feed still works.
    await fail(instances[0] as Instance, 3);
    await untilAll(instances, 'open');
    for (const i of instances) expect(i.seen.states.map((s) => s.transition.reason)).toEqual(['consecutive_failures']);
    return {
      injected: `${messages} messages on the feed channel that are not the library's (not JSON, not an object, an unknown kind, no key)`,
      detectMs,
      convergeMs: undefined,
      latencyBefore: undefined,
      latencyDuring: undefined,
      transitions: await own.admin.xlen(keys.events),
      outcomesLost: 0,
      reportsPerBreaker: Math.max(...instances.map((i) => i.seen.errors.length)),
      note: 'every instance reports ZV_BAD_MESSAGE once, ignores them and goes on following the feed; detect: to every instance reporting the first',
    };
  });
});
