/**
 * The instance rule and isolation (issue 13) against real Redis: with minimumInstances or
 * minimumInstanceShare, one instance failing alone does not open the fleet but isolates
 * itself (state 'isolated', its calls fail fast, an instance-level entry with its actor),
 * the others keep calling; its own recovery checks bring it back ('recovered'); failures
 * from enough instances open the fleet (the entry names the rule and counts the
 * instances) and the isolated one follows; an operator's modes (forced closed, monitor),
 * stop() while isolated, and the metrics' state gauge.
 */
import type { Cluster, Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { CircuitOpenError, ConsecutiveBreaker, CountBreaker, DEFAULTS, breakerHistory, breakerKeys, breakerStatus } from '../../src/index.js';
import { type MetricsRegistration, registerMetrics } from '../../src/prometheus.js';
import { type Instance, type InstanceOptions, fail, fleet, sharedState, startAll, stopAll, uniqueId } from '../support/instances.js';
import { figure, scrape } from '../support/metrics.js';

const url = inject('redisUrl');
let instances: Instance[] = [];
let registration: MetricsRegistration | undefined;

afterEach(async () => {
  registration?.dispose();
  registration = undefined;
  await stopAll(instances);
  instances = [];
});

/** A fleet of `size` instances of one fresh breaker with the instance rule, started. */
async function started(size: number, options: InstanceOptions = {}): Promise<Instance[]> {
  const made = fleet(url, size, { id: uniqueId('instances'), minimumInstances: 2, ...options });
  instances.push(...made);
  await startAll(made);
  return made;
}

type Entry = Record<string, string> & { id: string };

async function entries(redis: Redis | Cluster, key: string): Promise<Entry[]> {
  const list = (await redis.xrange(key, '-', '+')) as [string, string[]][];
  return list.map(([id, fields]) => {
    const entry: Entry = { id };
    for (let n = 0; n + 1 < fields.length; n += 2) entry[fields[n] as string] = fields[n + 1] as string;
    return entry;
  });
}

/** The fleet's audit entries and the instance-level ones of `i`'s breaker, oldest first. */
const fleetEntries = (i: Instance) => entries(i.redis, breakerKeys(DEFAULTS.prefix, i.breaker.id).events);
const instanceEntries = (i: Instance) => entries(i.redis, breakerKeys(DEFAULTS.prefix, i.breaker.id).instanceEvents);

const succeeding = async () => 'ok';

async function until(check: () => unknown | Promise<unknown>, timeout = 10_000): Promise<void> {
  await vi.waitFor(async () => {
    await check();
  }, { timeout, interval: 20 });
}

describe('one instance failing alone', () => {
  it('isolates itself, the fleet stays closed and the others keep calling; its own checks bring it back', async () => {
    const [a, b, c] = (await started(3)) as [Instance, Instance, Instance];
    await fail(a, 3);
    await until(() => expect(a.breaker.state).toBe('isolated'));

    expect((await sharedState(a)).state).toBe('closed');
    expect(b.breaker.state).toBe('closed');
    await expect(a.breaker.execute(succeeding)).rejects.toBeInstanceOf(CircuitOpenError);
    await expect(b.breaker.execute(succeeding)).resolves.toBe('ok');
    await expect(c.breaker.execute(succeeding)).resolves.toBe('ok');

    await until(() => expect(a.seen.states.at(-1)?.state).toBe('isolated'));
    const isolation = a.seen.states.at(-1);
    expect(isolation?.transition).toMatchObject({
      scope: 'instance',
      from: 'closed',
      to: 'isolated',
      reason: 'consecutive_failures',
      actor: a.breaker.instanceId,
      failures: '3',
      local: false,
    });
    // Only the isolated instance hears of its isolation.
    expect(b.seen.states).toEqual([]);
    const [entry] = await instanceEntries(a);
    expect(entry).toMatchObject({ id: isolation?.transition.id, from: 'closed', to: 'isolated', reason: 'consecutive_failures', actor: a.breaker.instanceId });
    expect(await fleetEntries(a)).toEqual([]);

    const explained = await a.breaker.explain();
    expect(explained.instance?.state).toBe('isolated');
    expect(explained.text).toContain('isolated: its own calls reached consecutive failures');

    a.healthy = true;
    await until(() => expect(a.breaker.state).toBe('closed'));
    await until(async () => expect((await instanceEntries(a)).map((e) => e.reason)).toEqual(['consecutive_failures', 'recovered']));
    await until(() => expect(a.seen.states.at(-1)?.transition).toMatchObject({ scope: 'instance', from: 'isolated', to: 'closed', reason: 'recovered' }));
    await expect(a.breaker.execute(succeeding)).resolves.toBe('ok');
    expect(await fleetEntries(a)).toEqual([]);
  });

  it('an isolated instance still counts as failing: the next instance that fails opens the fleet, once, naming the rule; the isolated one follows', async () => {
    const [a, , c] = (await started(3)) as [Instance, Instance, Instance];
    await fail(c, 3);
    await until(() => expect(c.breaker.state).toBe('isolated'));
    expect(await fleetEntries(a)).toEqual([]);
    // c still fails, alone: a's first failure makes two failing instances, and the run (c's
    // three and a's one) reaches the threshold.
    await fail(a, 1);
    await until(() => expect(instances.map((i) => i.breaker.state)).toEqual(['open', 'open', 'open']));

    const opened = (await fleetEntries(a)).filter((e) => e.to === 'open');
    expect(opened).toHaveLength(1);
    expect(opened[0]).toMatchObject({ reason: 'consecutive_failures', instances: '2', reporters: '2', rule: 'minimum_instances:2' });
    // The isolated instance follows the fleet, and its rejoin is audited.
    await until(async () => expect((await instanceEntries(c)).at(-1)).toMatchObject({ from: 'isolated', to: 'open', reason: 'fleet_opened', actor: c.breaker.instanceId }));
    await until(() => expect(c.seen.states.at(-1)?.transition).toMatchObject({ scope: 'instance', from: 'isolated', to: 'open', reason: 'fleet_opened' }));
  });

  it('an operator forcing the fleet open: the isolated instance follows and its rejoin entry says fleet_opened', async () => {
    const [a, b] = (await started(2)) as [Instance, Instance];
    await fail(a, 3);
    await until(() => expect(a.breaker.state).toBe('isolated'));
    await b.breaker.forceOpen({ reason: 'maintenance' });
    await until(() => expect(a.breaker.state).toBe('open'));
    await until(async () => expect((await instanceEntries(a)).at(-1)).toMatchObject({ from: 'isolated', to: 'open', reason: 'fleet_opened', actor: a.breaker.instanceId }));
  });

  it('an operator forcing a closed fleet closed moves it on: the isolated instance follows, its rejoin entry says fleet_moved', async () => {
    const [a, b] = (await started(2)) as [Instance, Instance];
    await fail(a, 3);
    await until(() => expect(a.breaker.state).toBe('isolated'));
    await b.breaker.forceClose({ reason: 'the dependency is fine' });
    await until(() => expect(a.breaker.state).toBe('closed'));
    await until(async () => expect((await instanceEntries(a)).at(-1)).toMatchObject({ from: 'isolated', to: 'closed', reason: 'fleet_moved', actor: a.breaker.instanceId }));
    await until(() => expect(a.seen.states.at(-1)?.transition).toMatchObject({ scope: 'instance', from: 'isolated', to: 'closed', reason: 'fleet_moved' }));
  });

  it('with minimumInstanceShare: one of three failing is below the share; isolated, it still counts, and a second failing instance reaches it', async () => {
    const breaker = new CountBreaker({ threshold: 0.5, size: 20, minimumNumberOfCalls: 4 });
    const [a, b, c] = (await started(3, { minimumInstances: undefined, minimumInstanceShare: 0.5, breaker })) as [Instance, Instance, Instance];
    // Every instance reports in the window first; then the failures of one (3 of its own 4
    // calls) reach the rate, in its window and in the fleet's (3 of 6), from 1 of 3 instances.
    await Promise.all([a, b, c].map((i) => i.breaker.execute(succeeding)));
    await until(() => expect([a, b, c].map((i) => i.breaker.stats.recorded)).toEqual([1, 1, 1]));
    await fail(a, 3);
    await until(() => expect(a.breaker.state).toBe('isolated'));
    expect(await fleetEntries(a)).toEqual([]);
    await until(() => expect(a.seen.states.at(-1)?.transition).toMatchObject({ scope: 'instance', reason: 'failure_rate', failures: '3', calls: '4', rate: '0.7500' }));

    await fail(b, 1);
    await until(() => expect(c.breaker.state).toBe('open'));
    const opened = (await fleetEntries(a)).filter((e) => e.to === 'open');
    expect(opened).toHaveLength(1);
    expect(opened[0]).toMatchObject({ reason: 'failure_rate', instances: '2', reporters: '3', rule: 'instance_share:0.5' });
  });
});

describe('the admin API', () => {
  it('breakerStatus lists the isolated instances; breakerHistory merges both streams by id, with the scope', async () => {
    const [a, b] = (await started(3)) as [Instance, Instance, Instance];
    await Promise.all(instances.map((i) => i.breaker.execute(succeeding)));
    await until(() => expect(instances.map((i) => i.breaker.stats.recorded)).toEqual([1, 1, 1]));
    await fail(a, 3);
    await until(() => expect(a.breaker.state).toBe('isolated'));

    const status = await breakerStatus(b.redis, a.breaker.id);
    expect(status.reporters).toBe(3);
    expect(status.isolated).toEqual([{ instanceId: a.breaker.instanceId, since: expect.any(Number) }]);
    expect(status.text).toContain(`instances: 3 reported in this generation; isolated (their own calls failed, they fail fast until their own checks pass): ${a.breaker.instanceId} (for `);

    a.healthy = true;
    await until(() => expect(a.breaker.state).toBe('closed'));
    await until(async () => expect((await breakerHistory(b.redis, a.breaker.id)).length).toBe(2));
    await fail(a, 2);
    await until(() => expect(a.breaker.stats.recorded).toBe(6));
    await fail(b, 2);
    await until(() => expect(b.breaker.state).toBe('open'));
    const history = await breakerHistory(b.redis, a.breaker.id);
    expect(history.map((t) => `${t.scope}:${t.from}>${t.to}:${t.reason}`)).toEqual([
      'instance:closed>isolated:consecutive_failures',
      'instance:isolated>closed:recovered',
      'fleet:closed>open:consecutive_failures',
    ]);
    // Consecutive failures: the reporters in the window are those of the failure run.
    expect(history.at(-1)).toMatchObject({ instances: '2', reporters: '2', rule: 'minimum_instances:2' });
    expect((await breakerHistory(b.redis, a.breaker.id, { limit: 2 })).map((t) => t.scope)).toEqual(['instance', 'fleet']);
    // The trip ended every isolation: none is listed.
    expect((await breakerStatus(b.redis, a.breaker.id)).isolated).toEqual([]);
  });
});

describe("an operator's modes", () => {
  it('forced closed: an instance failing alone stays in', async () => {
    const [a] = (await started(2)) as [Instance, Instance];
    await a.breaker.forceClose({ reason: 'keep calling' });
    await fail(a, 6);
    await until(() => expect(a.breaker.stats.recorded).toBe(6));
    expect(a.breaker.state).toBe('closed');
    expect(await instanceEntries(a)).toEqual([]);
  });

  it('monitor: an instance failing alone is audited as would_isolate and stays in', async () => {
    const [a] = (await started(2)) as [Instance, Instance];
    await a.breaker.monitor({ reason: 'dry run' });
    await fail(a, 3);
    await until(async () => expect(await instanceEntries(a)).toMatchObject([{ from: 'closed', to: 'closed', reason: 'would_isolate', actor: a.breaker.instanceId }]));
    expect(a.breaker.state).toBe('closed');
    await expect(a.breaker.execute(succeeding)).resolves.toBe('ok');
    // Told once the reply is read: the entry may be in Redis before.
    await until(() => expect(a.seen.states.at(-1)?.transition).toMatchObject({ scope: 'instance', reason: 'would_isolate' }));
  });
});

describe('an isolated instance', () => {
  it('writes a stopped entry when it stops', async () => {
    const [a] = (await started(2)) as [Instance, Instance];
    await fail(a, 3);
    await until(() => expect(a.breaker.state).toBe('isolated'));
    await a.breaker.stop();
    expect((await instanceEntries(a)).map((e) => e.reason)).toEqual(['consecutive_failures', 'stopped']);
    expect((await instanceEntries(a)).at(-1)).toMatchObject({ from: 'isolated', to: 'closed', actor: a.breaker.instanceId });
  });

  it('shows as isolated on the state gauge, and its refused calls as rejected', async () => {
    const registry = new Registry();
    registration = registerMetrics({ registry });
    const [a] = (await started(2)) as [Instance, Instance];
    const metrics = scrape(registry);
    await fail(a, 3);
    await until(() => expect(a.breaker.state).toBe('isolated'));
    expect(await figure(metrics, 'state', { breaker: a.breaker.id, state: 'isolated' })).toBe(1);
    expect(await figure(metrics, 'state', { breaker: a.breaker.id, state: 'closed' })).toBe(1);
    await a.breaker.execute(succeeding).catch(() => undefined);
    expect(await figure(metrics, 'callsRejected', { breaker: a.breaker.id })).toBe(1);
  });

  it('a breaker without the instance rule opens the fleet as before', async () => {
    const [a, b] = (await started(2, { minimumInstances: undefined, breaker: new ConsecutiveBreaker({ threshold: 3 }) })) as [Instance, Instance];
    await fail(a, 3);
    await until(() => expect(b.breaker.state).toBe('open'));
    expect(a.breaker.state).toBe('open');
    expect(await instanceEntries(a)).toEqual([]);
  });
});
