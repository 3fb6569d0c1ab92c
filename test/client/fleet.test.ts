import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { CircuitOpenError, CountBreaker, breakerKeys } from '../../src/index.js';
import {
  type Instance,
  fail,
  fleet,
  instance,
  leaderOf,
  sharedState,
  startAll,
  stopAll,
  uniqueId,
  untilAll,
} from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';

const url = inject('redisUrl');
// Counting connections needs a server nobody else uses.
const own = ownRedis();
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

describe('several instances of one breaker', () => {
  it('trip on one instance, open on all, each told once', async () => {
    instances = fleet(url, 4);
    await startAll(instances);
    const [first] = instances as [Instance];
    await fail(first, 3);
    await untilAll(instances, 'open');
    // A fourth call on another instance fails fast without running fn.
    const fn = vi.fn(async () => 'ran');
    await expect((instances[2] as Instance).breaker.execute(fn)).rejects.toBeInstanceOf(CircuitOpenError);
    expect(fn).not.toHaveBeenCalled();
    await vi.waitFor(() => {
      for (const i of instances) {
        expect(i.seen.states.map((s) => s.state)).toEqual(['open']);
      }
    });
    const transition = instances[3]?.seen.states[0]?.transition;
    expect(transition).toMatchObject({
      from: 'closed',
      to: 'open',
      reason: 'consecutive_failures',
      generation: 1,
      failures: '3',
      threshold: '3',
      actor: 'instance-0',
      local: false,
    });
    expect(transition?.id).toMatch(/^\d+-\d+$/);
  });

  it('once it is open, exactly one instance leads, and only the leader probes', async () => {
    instances = fleet(url, 4);
    await startAll(instances);
    await fail(instances[1] as Instance, 3);
    await untilAll(instances, 'open');
    // Closed, the breaker had no duty and no lease holder; open, one instance takes the lease.
    const leader = await leaderOf(instances);
    await vi.waitFor(() => expect(leader.seen.checks.length).toBeGreaterThanOrEqual(3));
    for (const i of instances) {
      if (i !== leader) expect(i.seen.checks).toEqual([]);
      expect(i.seen.roles).toEqual(i === leader ? ['leader'] : []);
    }
    expect(leader.seen.checks.every((c) => c.type === 'recovery')).toBe(true);
  });

  it('a passing recovery check closes the circuit on every instance', async () => {
    instances = fleet(url, 3);
    await startAll(instances);
    await fail(instances[0] as Instance, 3);
    await untilAll(instances, 'open');
    const leader = await leaderOf(instances);
    leader.healthy = true;
    await untilAll(instances, 'closed');
    for (const i of instances) {
      await vi.waitFor(() => expect(i.seen.states.map((s) => s.state)).toEqual(['open', 'closed']));
      expect(i.seen.states[1]?.transition).toMatchObject({
        reason: 'recovery_check_passed',
        actor: leader.breaker.instanceId,
        generation: 2,
      });
    }
    // Calls count from zero again: once Redis has counted two failures, they have not
    // tripped a threshold of three. And calls flow.
    const caller = instances[1] as Instance;
    await fail(caller, 2);
    await vi.waitFor(() => expect(caller.breaker.stats.recorded).toBe(2), { timeout: 5000 });
    expect((await sharedState(caller)).state).toBe('closed');
    expect(instances.map((i) => i.breaker.state)).toEqual(['closed', 'closed', 'closed']);
    await expect(caller.breaker.execute(async () => 42)).resolves.toBe(42);
  });

  it('when the leader stops, another instance takes the lease at once and goes on probing', async () => {
    instances = fleet(url, 3, { leaseTtlMs: 30_000 });
    const [first, ...rest] = instances as [Instance, Instance, Instance];
    // Open, the breaker has a duty (recovery checks); alone, the first instance takes the lease.
    await first.breaker.start();
    await fail(first, 3);
    await untilAll([first], 'open');
    await vi.waitFor(() => expect(first.breaker.role).toBe('leader'), { timeout: 5_000 });
    // The others start while it holds the lease, and read that it does, for 30 s more.
    await startAll(rest);
    await untilAll(instances, 'open');
    const leader = await leaderOf(instances);
    expect(leader).toBe(first);
    await leader.breaker.stop();
    // Only the announced release can explain a fast takeover.
    const next = await leaderOf(rest, 5_000);
    const checksBefore = next.seen.checks.length;
    await vi.waitFor(() => expect(next.seen.checks.length).toBeGreaterThan(checksBefore), { timeout: 5_000 });
    expect(leader.breaker.role).toBe('follower');
    expect(leader.seen.roles).toEqual(['leader', 'follower']);
  });

  it('instances sharing one client share its connections and still trip together', async () => {
    // Two instances of one breaker and two other breakers, all on one application client.
    const redis = new Redis(own.server.url);
    const id = uniqueId();
    const [a0, a1, b, c] = (instances = [
      instance(own.server.url, { id, instanceId: 'a-0' }, redis),
      instance(own.server.url, { id, instanceId: 'a-1' }, redis),
      instance(own.server.url, { id: uniqueId(), instanceId: 'b-0' }, redis),
      instance(own.server.url, { id: uniqueId(), instanceId: 'c-0' }, redis),
    ]) as [Instance, Instance, Instance, Instance];
    const library = async () => (await own.zenvarkConnections()).sort();
    const shared = ['zenvark:commands', 'zenvark:subscriber'];

    await a0.breaker.start();
    expect(await library()).toEqual(shared);
    await startAll([a1, b, c]);
    expect(await library()).toEqual(shared);
    // The application's client, the admin client, and the library's two.
    expect(await own.clientNames()).toHaveLength(4);

    await fail(a1, 3);
    await untilAll([a0, a1], 'open');
    for (const i of [a0, a1]) {
      await vi.waitFor(() => expect(i.seen.states.map((s) => s.state)).toEqual(['open']));
      expect(i.seen.states[0]?.transition).toMatchObject({ reason: 'consecutive_failures', actor: 'a-1' });
    }
    // The other breakers on the same connections are not affected.
    for (const other of [b, c]) {
      expect(other.breaker.state).toBe('closed');
      expect((await sharedState(other)).state).toBe('closed');
      expect(other.seen.states).toEqual([]);
    }

    // The connections stay while any breaker on the client runs, and go with the last.
    for (const i of [a0, a1, b]) {
      await i.breaker.stop();
      expect(await library()).toEqual(shared);
    }
    await c.breaker.stop();
    expect(await library()).toEqual([]);
  });

  it.each([
    ['spaces and colons', 'payments api: eu-west:1'],
    ['braces', '}{tag}{'],
    ['unicode', 'zahlungsdienst ☃ 支付 🙂'],
    ['1,000 characters', 'x'.repeat(991) + '}'],
  ])('any id works: %s', async (_label, name) => {
    // A random start keeps runs against one server apart.
    const id = `${randomUUID().slice(0, 8)}${name}`;
    instances = fleet(url, 2, { id });
    await startAll(instances);
    await fail(instances[0] as Instance, 3);
    await untilAll(instances, 'open');
    const admin = (instances[1] as Instance).redis;
    expect(await admin.xlen(breakerKeys('zenvark', id).events)).toBeGreaterThanOrEqual(1);
    const entries = await admin.xrange(breakerKeys('zenvark', id).events, '-', '+');
    expect(entries.at(-1)?.[1]).toContain('consecutive_failures');
  });

  it('a count window spans the calls of every instance', async () => {
    instances = fleet(url, 3, { breaker: new CountBreaker({ threshold: 0.5, size: 6 }) });
    await startAll(instances);
    for (const i of instances) {
      await i.breaker.execute(async () => 'ok');
      await fail(i, 1);
    }
    await untilAll(instances, 'open');
    expect(instances[0]?.seen.states[0]?.transition).toMatchObject({ reason: 'failure_rate', calls: '6', failures: '3' });
  });
});
