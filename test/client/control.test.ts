/**
 * An operator's controls from a running breaker (forceOpen, forceClose, monitor, release,
 * reset) against real Redis: each one's transition and audit entry, every instance
 * following it (those started later too), an expiry ended by Redis's clock with no client
 * connected and by the running instances when it is due, release letting the window
 * decide, monitor mode's would_open entries, health checks paused under a mode, controls
 * racing trips, degraded mode under a mode, and arguments refused before anything is sent.
 */
import { type Cluster, Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { sleep } from '../../harness/clock.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import { CircuitOpenError, DEFAULTS, type Transition, breakerKeys } from '../../src/index.js';
import { MAX_MODE_MS } from '../../src/limits.js';
import { watchHandles } from '../support/handles.js';
import {
  type Instance,
  type InstanceOptions,
  fail,
  fleet,
  instance,
  leaderOf,
  sharedState,
  startAll,
  stateOf,
  stopAll,
  uniqueId,
  untilAll,
} from '../support/instances.js';

const url = inject('redisUrl');
let instances: Instance[] = [];
let servers: RedisServer[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
  for (const server of servers) await disposeRedis(server);
  servers = [];
});

/** A fleet of `size` instances of one fresh breaker, started, kept for afterEach. */
async function started(size: number, options: InstanceOptions = {}, at = url): Promise<Instance[]> {
  const made = fleet(at, size, { id: uniqueId('control'), ...options });
  instances.push(...made);
  await startAll(made);
  return made;
}

/** Breaker `id`'s audit stream, oldest first: each entry's fields. */
async function audit(redis: Redis | Cluster, id: string): Promise<Record<string, string>[]> {
  const entries = (await redis.xrange(breakerKeys(DEFAULTS.prefix, id).events, '-', '+')) as [string, string[]][];
  return entries.map(([, list]) => {
    const fields: Record<string, string> = {};
    for (let n = 0; n + 1 < list.length; n += 2) fields[list[n] as string] = list[n + 1] as string;
    return fields;
  });
}

/** Waits until every instance acts on `state` under `mode`. */
async function untilEvery(group: Instance[], state: string, mode: string, timeout = 10_000): Promise<void> {
  await vi.waitFor(
    () => {
      expect(group.map((i) => [i.breaker.state, i.breaker.mode])).toEqual(group.map(() => [state, mode]));
    },
    { timeout, interval: 10 },
  );
}

/** The reasons of the transitions `i` was told of (onStateChange), in order. */
const reasons = (i: Instance) => i.seen.states.map((s) => s.transition.reason);

describe('controls from a running breaker', () => {
  it('each control is one audited transition with actor, note and until, taken at once here and by every instance', async () => {
    const [a, b] = (await started(2)) as [Instance, Instance];
    const id = a.breaker.id;

    const forced = await a.breaker.forceOpen({ reason: 'deploy 42', forMs: 60_000 });
    expect(forced).toMatchObject({ from: 'closed', to: 'open', reason: 'forced_open', generation: 1, mode: 'forced_open', note: 'deploy 42', actor: 'instance-0', local: false });
    expect(Number(forced.until)).toBe(forced.time + 60_000);
    // This instance acts on it as the promise settles; the other once the feed brings it.
    expect([a.breaker.state, a.breaker.mode]).toEqual(['open', 'forced_open']);
    await untilEvery([b], 'open', 'forced_open');
    const fn = vi.fn(async () => 'ran');
    await expect(b.breaker.execute(fn)).rejects.toBeInstanceOf(CircuitOpenError);
    expect(fn).not.toHaveBeenCalled();

    const closed = await b.breaker.forceClose({ reason: 'fix is out' });
    expect(closed).toMatchObject({ from: 'open', to: 'closed', reason: 'forced_closed', mode: 'forced_closed', note: 'fix is out', until: '', actor: 'instance-1' });
    const monitored = await a.breaker.monitor({ reason: 'new threshold', forMs: 3_600_000 });
    expect(monitored).toMatchObject({ from: 'closed', to: 'closed', reason: 'monitored', mode: 'monitor', note: 'new threshold' });
    await untilEvery([a, b], 'closed', 'monitor');
    const released = await a.breaker.release({ reason: 'looks good' });
    expect(released).toMatchObject({ from: 'closed', to: 'closed', reason: 'released', mode: '', note: 'looks good', until: monitored.until, rule: '' });
    // Nothing to release: nothing written.
    await expect(b.breaker.release({ reason: 'again' })).resolves.toBeUndefined();
    const reset = await b.breaker.reset({ reason: 'start over' });
    expect(reset).toMatchObject({ from: 'closed', to: 'closed', reason: 'reset', mode: '', note: 'start over', generation: 5 });

    const entries = await audit(a.redis, id);
    expect(entries.map((e) => [e.reason, e.actor, e.note, e.until, e.mode, e.gen])).toEqual([
      ['forced_open', 'instance-0', 'deploy 42', forced.until, 'forced_open', '1'],
      ['forced_closed', 'instance-1', 'fix is out', '', 'forced_closed', '2'],
      ['monitored', 'instance-0', 'new threshold', monitored.until, 'monitor', '3'],
      ['released', 'instance-0', 'looks good', monitored.until, '', '4'],
      ['reset', 'instance-1', 'start over', '', '', '5'],
    ]);
    // Every instance was told of each, once, in order.
    const all = ['forced_open', 'forced_closed', 'monitored', 'released', 'reset'];
    await vi.waitFor(() => expect([reasons(a), reasons(b)]).toEqual([all, all]));
    expect(a.seen.errors).toEqual([]);
  });

  it('a breaker forced open stays open on instances that start afterwards, and after every instance restarts', async () => {
    const [first] = (await started(1)) as [Instance];
    const id = first.breaker.id;
    await first.breaker.forceOpen({ reason: 'maintenance' });

    const later = fleet(url, 2, { id });
    instances.push(...later);
    await startAll(later);
    // Read at start(): no feed message needed.
    expect(later.map((i) => [i.breaker.state, i.breaker.mode])).toEqual([
      ['open', 'forced_open'],
      ['open', 'forced_open'],
    ]);

    await stopAll(instances);
    instances = fleet(url, 2, { id });
    await startAll(instances);
    expect(instances.map((i) => [i.breaker.state, i.breaker.mode])).toEqual([
      ['open', 'forced_open'],
      ['open', 'forced_open'],
    ]);
    await expect((instances[0] as Instance).breaker.execute(async () => 'ran')).rejects.toBeInstanceOf(CircuitOpenError);
    // Open, but no health duty: nobody leads.
    await sleep(300);
    expect(instances.map((i) => i.breaker.role)).toEqual(['follower', 'follower']);
  });

  it("an expiry ends a force with no client connected: Redis says it is over, and the first instance to start writes the 'expired' entry", async () => {
    const [i] = (await started(1)) as [Instance];
    const id = i.breaker.id;
    const forced = await i.breaker.forceOpen({ reason: 'short', forMs: 1000 });
    await stopAll(instances);
    instances = [];

    const redis = new Redis(url);
    try {
      await vi.waitFor(async () => expect(await stateOf(redis, id)).toMatchObject({ mode_left_ms: '0' }), { timeout: 10_000, interval: 100 });
      // Over, but nobody wrote its end: the stored mode stays until a writing call.
      expect(await stateOf(redis, id)).toMatchObject({ state: 'open', mode: 'forced_open', mode_until: forced.until, gen: '1' });
      expect((await audit(redis, id)).map((e) => e.reason)).toEqual(['forced_open']);

      const next = instance(url, { id, instanceId: 'next' });
      instances = [next];
      await next.breaker.start();
      await untilEvery([next], 'closed', '');
      const entries = await audit(redis, id);
      expect(entries.map((e) => [e.reason, e.from, e.to, e.actor, e.until, e.mode])).toEqual([
        ['forced_open', 'closed', 'open', 'instance-0', forced.until, 'forced_open'],
        ['expired', 'open', 'closed', 'next', forced.until, ''],
      ]);
      await expect(next.breaker.execute(async () => 'runs')).resolves.toBe('runs');
      expect((await next.breaker.explain()).lines[0]).toMatch(/\(generation 2\): the operator's mode expired; the window reached no rule, reported by next at /);
    } finally {
      redis.disconnect();
    }
  });

  it('running instances end a mode when its expiry is due, and each hears the end once', async () => {
    const group = await started(3);
    const [a] = group as [Instance];
    await a.breaker.forceOpen({ reason: 'brief', forMs: 800 });
    await untilEvery(group, 'open', 'forced_open');
    // Nothing but the instances' own timers can end it: no call is made through it.
    await untilEvery(group, 'closed', '');
    const entries = await audit(a.redis, a.breaker.id);
    expect(entries.map((e) => e.reason)).toEqual(['forced_open', 'expired']);
    expect(group.map((i) => i.breaker.instanceId)).toContain(entries[1]?.actor);
    await vi.waitFor(() => expect(group.map(reasons)).toEqual(group.map(() => ['forced_open', 'expired'])));
  });

  it('stop() leaves no timer for a mode that ends later', async () => {
    const timers = watchHandles(['Timeout']);
    try {
      const group = await started(2);
      const [a, b] = group as [Instance, Instance];
      await a.breaker.monitor({ reason: 'all week', forMs: MAX_MODE_MS });
      await untilEvery([b], 'closed', 'monitor');
      // The other instance's timer, set when the feed brought the mode (the watcher leaves
      // out what a test's own call made, as the test runner's).
      expect((await timers.pending()).filter((stack) => stack.includes('mode.ts'))).toHaveLength(1);
      await stopAll(group);
      expect((await timers.pending()).filter((stack) => stack.includes('mode.ts'))).toEqual([]);
    } finally {
      timers.stop();
    }
  });

  describe('release: the window decides', () => {
    it('a window that reaches a rule opens the circuit, and recovery starts', async () => {
      const group = await started(2);
      const [a, b] = group as [Instance, Instance];
      await a.breaker.forceClose({ reason: 'ride it out' });
      await untilEvery(group, 'closed', 'forced_closed');
      // Three failures in a row reach the rule; forced closed, they do not trip it.
      await fail(b, 3);
      await vi.waitFor(() => expect(b.breaker.stats.recorded).toBe(3));
      expect((await sharedState(a)).state).toBe('closed');

      const released = await a.breaker.release({ reason: 'enforce again' });
      expect(released).toMatchObject({ from: 'closed', to: 'open', reason: 'released', rule: 'consecutive_failures', failures: '3', threshold: '3', mode: '' });
      await untilEvery(group, 'open', '');
      const leader = await leaderOf(group);
      await vi.waitFor(() => expect(leader.seen.checks.length).toBeGreaterThanOrEqual(1));
      leader.healthy = true;
      await untilAll(group, 'closed');
    });

    it('a window short of every rule closes the circuit, keeping its counts', async () => {
      const group = await started(2);
      const [a, b] = group as [Instance, Instance];
      await a.breaker.forceOpen({ reason: 'hold' });
      await a.breaker.forceClose({ reason: 'try it' });
      await untilEvery(group, 'closed', 'forced_closed');
      await fail(b, 2);
      await vi.waitFor(() => expect(b.breaker.stats.recorded).toBe(2));
      const released = await b.breaker.release({ reason: 'normal' });
      expect(released).toMatchObject({ from: 'closed', to: 'closed', reason: 'released', rule: '', failures: '2', mode: '' });
      await untilEvery(group, 'closed', '');
      // The two failures still count: one more trips it.
      await fail(a, 1);
      await untilAll(group, 'open');
    });
  });

  it('monitor mode: a rule reached is a would_open entry seen by every instance, and every call keeps passing', async () => {
    const group = await started(3);
    const [a] = group as [Instance];
    await a.breaker.monitor({ reason: 'dry run' });
    await untilEvery(group, 'closed', 'monitor');
    let ran = 0;
    const failing = async () => {
      ran += 1;
      throw new Error('dependency failed');
    };
    // Each instance in turn reaches the rule (three failures in a row), once every
    // instance has heard of the last would_open (outcomes of an older generation do not count).
    for (const [n, i] of group.entries()) {
      for (let call = 0; call < 3; call += 1) await i.breaker.execute(failing).catch(() => undefined);
      await vi.waitFor(() => expect(group.map((each) => each.seen.states.length)).toEqual(group.map(() => n + 2)));
    }
    expect(ran).toBe(9);
    expect(group.map((i) => i.breaker.stats.rejected)).toEqual([0, 0, 0]);
    await vi.waitFor(() => expect(group.map(reasons)).toEqual(group.map(() => ['monitored', 'would_open', 'would_open', 'would_open'])));
    for (const i of group) {
      for (const s of i.seen.states.slice(1)) expect(s.transition).toMatchObject({ from: 'closed', to: 'closed', rule: 'consecutive_failures', failures: '3', mode: 'monitor' });
    }
    expect(group.map((i) => [i.breaker.state, i.breaker.mode, i.breaker.role])).toEqual(group.map(() => ['closed', 'monitor', 'follower']));
  });

  it('health checks pause under a mode: the leader gives the lease back and passing checks do not close it; they resume when the mode ends', async () => {
    const group = await started(2);
    const [a, b] = group as [Instance, Instance];
    await fail(a, 3);
    await untilAll(group, 'open');
    const leader = await leaderOf(group);
    await vi.waitFor(() => expect(leader.seen.checks.length).toBeGreaterThanOrEqual(2));

    await b.breaker.forceOpen({ reason: 'investigating' });
    await vi.waitFor(() => expect(group.map((i) => i.breaker.role)).toEqual(['follower', 'follower']));
    await vi.waitFor(async () => expect((await sharedState(a)).holder).toBe(''));
    const checks = group.map((i) => i.seen.checks.length);
    for (const i of group) i.healthy = true;
    // Checks 50 ms apart would have closed it many times over.
    await sleep(1000);
    expect(group.map((i) => i.seen.checks.length)).toEqual(checks);
    expect(group.map((i) => [i.breaker.state, i.breaker.role])).toEqual([
      ['open', 'follower'],
      ['open', 'follower'],
    ]);

    // A window that reaches the rule under forced closed, kept by a force open: released, it opens again,
    // and recovery checks run and close it.
    for (const i of group) i.healthy = false;
    await a.breaker.forceClose({ reason: 'count them' });
    await fail(a, 3);
    await vi.waitFor(() => expect(a.breaker.stats.recorded).toBe(6));
    await a.breaker.forceOpen({ reason: 'hold again' });
    await a.breaker.release({ reason: 'resume' });
    const next = await leaderOf(group);
    const before = next.seen.checks.length;
    await vi.waitFor(() => expect(next.seen.checks.length).toBeGreaterThan(before));
    next.healthy = true;
    await untilEvery(group, 'closed', '');
  });

  it('idle probes, the duty of a closed breaker, pause too: nobody holds the lease under a mode', async () => {
    const group = await started(2, { idleDuty: true });
    const [a] = group as [Instance];
    await leaderOf(group);
    await a.breaker.forceClose({ reason: 'quiet' });
    await vi.waitFor(() => expect(group.map((i) => i.breaker.role)).toEqual(['follower', 'follower']));
    await sleep(300);
    expect(group.map((i) => i.breaker.role)).toEqual(['follower', 'follower']);
    await a.breaker.release({ reason: 'probe again' });
    await leaderOf(group);
  });

  it('a force-close racing trips: one consistent audit stream, one entry per control, every instance converges', async () => {
    const group = await started(4);
    const [a] = group as [Instance];
    const id = a.breaker.id;
    for (let round = 1; round <= 4; round += 1) {
      // Every instance reports failures that trip it while the control is on its way.
      await Promise.all([...group.map((i) => fail(i, 4)), a.breaker.forceClose({ reason: `round ${round}` })]);
      await untilEvery(group, 'closed', 'forced_closed');
      await a.breaker.reset({ reason: `after round ${round}` });
      await untilEvery(group, 'closed', '');
    }

    const entries = await audit(a.redis, id);
    entries.forEach((e, n) => {
      expect(Number(e.gen), `entry ${n}`).toBe(n + 1);
      if (n > 0) expect(e.from, `entry ${n}`).toBe(entries[n - 1]?.to);
    });
    for (let round = 1; round <= 4; round += 1) {
      expect(entries.filter((e) => e.note === `round ${round}`).map((e) => e.reason)).toEqual(['forced_closed']);
      expect(entries.filter((e) => e.note === `after round ${round}`).map((e) => e.reason)).toEqual(['reset']);
    }
    const shared = await sharedState(a);
    expect(Number(shared.gen)).toBe(entries.length);
    // Every instance was told of every entry, once, in order.
    const generations = entries.map((_, n) => n + 1);
    await vi.waitFor(() => expect(group.map((i) => i.seen.states.map((s) => s.transition.generation))).toEqual(group.map(() => generations)));
    expect(group.flatMap((i) => i.seen.errors)).toEqual([]);
  });

  it('refuses bad arguments at the call, writing nothing, and needs a started breaker', async () => {
    const [i] = fleet(url, 1, { id: uniqueId('control') }) as [Instance];
    instances = [i];
    await expect(i.breaker.forceOpen({ reason: 'early' })).rejects.toMatchObject({ code: 'ZV_NOT_STARTED', message: expect.stringMatching(/forceOpen\(\) works through its connections; call start\(\) first/) });
    await i.breaker.start();
    const b = i.breaker;
    const refused: [Promise<Transition | undefined>, string][] = [
      [b.forceOpen(undefined as never), 'forceOpen() options is required and must be an object, got undefined'],
      [b.forceOpen({} as never), 'forceOpen() options.reason must be a non-empty string, got undefined'],
      [b.forceClose({ reason: '' }), 'forceClose() options.reason must be a non-empty string, got ""'],
      [b.monitor({ reason: 'é'.repeat(257) }), 'monitor() options.reason must be at most 512 bytes long, got 514'],
      [b.forceOpen({ reason: 'r', forMs: 0 }), 'forceOpen() options.forMs must be an integer in [1, 2592000000], got 0'],
      [b.forceOpen({ reason: 'r', forMs: 1.5 }), 'forceOpen() options.forMs must be an integer in [1, 2592000000], got 1.5'],
      [b.forceOpen({ reason: 'r', forMs: MAX_MODE_MS + 1 }), 'forceOpen() options.forMs must be an integer in [1, 2592000000], got 2592000001'],
      [b.forceOpen({ reason: 'r', forMs: '60000' as never }), 'forceOpen() options.forMs must be a number, got "60000"'],
      [b.release({ reason: 'r', forMs: 1000 } as never), "release() options has no option 'forMs' (known: reason)"],
      [b.reset({ reason: 'r', actor: 'me' } as never), "reset() options has no option 'actor' (known: reason)"],
    ];
    for (const [call, message] of refused) await expect(call).rejects.toThrow(message);
    // At the limits, taken.
    await expect(b.monitor({ reason: 'é'.repeat(256), forMs: MAX_MODE_MS })).resolves.toMatchObject({ reason: 'monitored' });
    expect((await audit(i.redis, b.id)).map((e) => e.reason)).toEqual(['monitored']);
    await b.stop();
    await expect(b.reset({ reason: 'late' })).rejects.toMatchObject({ code: 'ZV_NOT_STARTED' });
  });
});

describe('under a mode while Redis is unreachable', () => {
  async function ownServer(): Promise<RedisServer> {
    const server = await startRedis();
    servers.push(server);
    return server;
  }

  it('a breaker forced open stays open: no local recovery', async () => {
    const server = await ownServer();
    const [i] = (await started(1, {}, server.url)) as [Instance];
    await i.breaker.forceOpen({ reason: 'hold' });
    i.healthy = true;
    await server.stop({ kill: true });
    await vi.waitFor(() => expect(i.breaker.degraded).toBe(true));
    // Checks 50 ms apart would recover it alone many times over.
    await sleep(1000);
    expect([i.breaker.state, i.breaker.mode, i.seen.checks]).toEqual(['open', 'forced_open', []]);
    expect(reasons(i)).toEqual(['forced_open']);
  });

  it('forced closed and monitor never trip locally', async () => {
    for (const control of ['forceClose', 'monitor'] as const) {
      const server = await ownServer();
      const [i] = (await started(1, {}, server.url)) as [Instance];
      await i.breaker[control]({ reason: 'no trips' });
      await server.stop({ kill: true });
      await vi.waitFor(() => expect(i.breaker.degraded).toBe(true));
      await fail(i, 5);
      await vi.waitFor(() => expect(i.breaker.stats.local).toBe(5));
      expect(i.breaker.state, control).toBe('closed');
      expect(reasons(i), control).toHaveLength(1);
    }
  });
});
