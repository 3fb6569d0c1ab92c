import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type BreakerEventMap,
  type BreakerEventName,
  type CircuitBreaker,
  ConsecutiveBreaker,
  ConstantBackoff,
  type ZenvarkError,
} from '../../src/index.js';
import { breakerKeys, feedChannel } from '../../src/keys.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import { type Instance, fail, failing, fleet, instance, leaderOf, startAll, stopAll, uniqueId, untilAll } from '../support/instances.js';

let instances: Instance[] = [];
let server: RedisServer | undefined;

afterEach(async () => {
  await stopAll(instances);
  instances = [];
  if (server) await disposeRedis(server);
  server = undefined;
});

type Heard = { [E in BreakerEventName]: BreakerEventMap[E][] };

/** Listens to every event of `breaker`, in order of arrival. */
function hear(breaker: CircuitBreaker): Heard {
  const heard = { stateChange: [], roleChange: [], call: [], healthCheck: [], degradedChange: [], redisError: [], error: [], stop: [] } as Heard;
  for (const name of Object.keys(heard) as BreakerEventName[]) {
    breaker.on(name, (event) => (heard[name] as unknown[]).push(event));
  }
  return heard;
}

async function ownServer(): Promise<RedisServer> {
  server = await startRedis();
  return server;
}

describe('breaker.on()', () => {
  it('delivers the state read at start(), then every transition with where it came from', async () => {
    const { url } = await ownServer();
    instances = fleet(url, 2);
    const [a, b] = instances as [Instance, Instance];
    const heardA = hear(a.breaker);
    const heardB = hear(b.breaker);
    await startAll(instances);
    await vi.waitFor(() => expect(heardB.stateChange).toHaveLength(1));
    expect(heardA.stateChange).toEqual([{ state: 'closed', previous: undefined, transition: undefined, source: 'start', lagMs: undefined }]);
    // The constructor's onStateChange hears transitions only.
    expect(a.seen.states).toEqual([]);

    await fail(a, 3);
    await untilAll(instances, 'open');
    await vi.waitFor(() => expect(heardB.stateChange).toHaveLength(2));
    const [, tripA] = heardA.stateChange;
    const [, tripB] = heardB.stateChange;
    expect(tripA).toMatchObject({ state: 'open', previous: 'closed', source: 'reply', lagMs: undefined });
    expect(tripA?.transition).toMatchObject({ reason: 'consecutive_failures', generation: 1, local: false });
    expect(tripB).toMatchObject({ state: 'open', previous: 'closed', source: 'feed' });
    expect(tripB?.transition).toEqual(tripA?.transition);
    // Server time to arrival here, on one machine: small and not negative beyond a clock's step.
    expect(tripB?.lagMs).toBeGreaterThan(-50);
    expect(tripB?.lagMs).toBeLessThan(10_000);
    expect(a.seen.states.map((s) => s.transition)).toEqual([tripA?.transition]);

    // Started again: the state read is delivered again.
    await b.breaker.stop();
    expect(heardB.stop).toEqual([{}]);
    await b.breaker.start();
    await vi.waitFor(() => expect(heardB.stateChange.at(-1)).toMatchObject({ state: 'open', source: 'start', transition: undefined }));
  });

  it('replays the transitions missed while the subscription was lost, in order, as replayed', async () => {
    const { url } = await ownServer();
    instances = fleet(url, 1, { leaseTtlMs: 60_000 });
    const [i] = instances as [Instance];
    const heard = hear(i.breaker);
    await i.breaker.start();
    const keys = breakerKeys('zenvark', i.breaker.id);
    const trip = ['FCALL', 'zv1_record', '2', keys.state, keys.events, feedChannel('zenvark'), 'operator', '1000', '0', '0', '1', '0', '0', '1', '1', '1', 'consecutive:1:0:0'];
    // Dropped before the trip, in one pipeline: the subscriber cannot see it published.
    await i.redis.pipeline().call('CLIENT', 'KILL', 'TYPE', 'pubsub').call(...(trip as [string, ...string[]])).exec();
    await untilAll(instances, 'open');
    await vi.waitFor(() => expect(heard.stateChange).toHaveLength(2));
    expect(heard.stateChange[1]).toMatchObject({ state: 'open', previous: 'closed', source: 'replay', lagMs: undefined });
    expect(heard.stateChange[1]?.transition).toMatchObject({ actor: 'operator', generation: 1 });
  });

  it('tells each call as it counted: success, failure, timeout, ignored, refused while open and while half-open, trials', async () => {
    const { url } = await ownServer();
    instances = [
      instance(url, {
        id: uniqueId(),
        breaker: new ConsecutiveBreaker({ threshold: 3 }),
        isFailure: (error) => ((error as Error).message === 'not ours' ? 'ignore' : true),
        halfOpen: { permittedCalls: 1 },
        health: { backoff: new ConstantBackoff({ delayMs: 300 }) },
      }),
    ];
    const [i] = instances as [Instance];
    const heard = hear(i.breaker);
    await i.breaker.start();
    await i.breaker.execute(async () => 'ok');
    await i.breaker.execute(failing).catch(() => undefined);
    await i.breaker.execute(() => new Promise(() => undefined), { timeoutMs: 20 }).catch(() => undefined);
    await i.breaker.execute(() => Promise.reject(new Error('not ours'))).catch(() => undefined);
    expect(heard.call.map((e) => e.result)).toEqual(['success', 'failure', 'timeout', 'ignored']);
    expect(heard.call[2]?.durationMs).toBeGreaterThanOrEqual(19);
    expect(heard.call.every((e) => e.trial === false && e.durationMs >= 0)).toBe(true);

    await fail(i, 1);
    await untilAll(instances, 'open');
    await i.breaker.execute(async () => 'refused').catch(() => undefined);
    expect(heard.call.at(-1)).toEqual({ result: 'rejected_open', durationMs: 0, trial: false });

    // Half-open after the wait: one trial permit; a second call meanwhile is refused.
    await untilAll(instances, 'half_open');
    let release: (value: string) => void = () => undefined;
    let trial: Promise<unknown> = Promise.resolve();
    await vi.waitFor(async () => {
      trial = i.breaker.execute(() => new Promise<string>((resolve) => (release = resolve)));
      await expect(Promise.race([trial.then(() => 'settled', () => 'refused'), new Promise((r) => setTimeout(() => r('running'), 50))])).resolves.toBe('running');
    });
    await i.breaker.execute(async () => 'second').catch(() => undefined);
    expect(heard.call.at(-1)).toEqual({ result: 'rejected_half_open', durationMs: 0, trial: false });
    release('done');
    await trial;
    await untilAll(instances, 'closed');
    expect(heard.call.filter((e) => e.trial)).toEqual([expect.objectContaining({ result: 'success', trial: true })]);
  });

  it('tells health checks, role changes on failover, and the transitions they make', async () => {
    const { url } = await ownServer();
    instances = fleet(url, 2);
    const [a, b] = instances as [Instance, Instance];
    const heardA = hear(a.breaker);
    const heardB = hear(b.breaker);
    await startAll(instances);
    // Open, the breaker has a duty (recovery checks): one instance takes the lease.
    await fail(a, 3);
    await untilAll(instances, 'open');
    const leader = await leaderOf(instances);
    const follower = leader === a ? b : a;
    const [heardLeader, heardFollower] = leader === a ? [heardA, heardB] : [heardB, heardA];
    expect(heardLeader.roleChange).toEqual([{ role: 'leader' }]);
    expect(heardFollower.roleChange).toEqual([]);

    // The leader stops: the other takes the lease over, and checks.
    await leader.breaker.stop();
    expect(heardLeader.roleChange).toEqual([{ role: 'leader' }, { role: 'follower' }]);
    await vi.waitFor(() => expect(heardFollower.roleChange).toEqual([{ role: 'leader' }]));
    await vi.waitFor(() => expect(heardFollower.healthCheck.length).toBeGreaterThanOrEqual(2));
    expect(heardFollower.healthCheck[0]).toMatchObject({ type: 'recovery', result: 'failure', error: expect.any(Error) });
    follower.healthy = true;
    await untilAll([follower], 'closed');
    expect(heardFollower.healthCheck.at(-1)).toMatchObject({ type: 'recovery', result: 'success', error: undefined });
    expect(heardFollower.healthCheck.every((e) => e.durationMs >= 0)).toBe(true);
    expect(heardFollower.stateChange.at(-1)?.transition).toMatchObject({ reason: 'recovery_check_passed' });
    // A lasting cause is one error, however many checks failed.
    expect(heardFollower.error.filter((e) => (e as ZenvarkError).code === 'ZV_HEALTH_CHECK_FAILED')).toHaveLength(1);
    // Closed again, the duty is over: the holder gives the lease back.
    await vi.waitFor(() => expect(heardFollower.roleChange).toEqual([{ role: 'leader' }, { role: 'follower' }]));
  });

  it('tells degraded mode entered and left, every failed Redis call by operation, and the local transitions', async () => {
    const redis = await ownServer();
    instances = fleet(redis.url, 1);
    const [i] = instances as [Instance];
    const heard = hear(i.breaker);
    await i.breaker.start();
    await redis.stop({ kill: true });
    await fail(i, 3);
    await untilAll(instances, 'open');
    await vi.waitFor(() => expect(heard.degradedChange).toEqual([{ degraded: true, durationMs: 0 }]));
    expect(i.breaker.degraded).toBe(true);
    expect(heard.stateChange.at(-1)).toMatchObject({ state: 'open', source: 'local', transition: expect.objectContaining({ reason: 'local_failures', local: true }) });
    // What found Redis gone (the report, or the connection), then the reads that try Redis
    // again, one a second.
    await vi.waitFor(
      () => {
        const operations = new Set(heard.redisError.map((e) => e.operation));
        expect(operations).toContain('read');
        expect(operations.size).toBeGreaterThanOrEqual(2);
      },
      { timeout: 10_000 },
    );
    expect(heard.redisError.every((e) => e.code === 'ZV_REDIS_UNREACHABLE')).toBe(true);
    // Every failure is an event; the error event hears the outage once.
    expect(heard.error.filter((e) => (e as ZenvarkError).code === 'ZV_REDIS_UNREACHABLE')).toHaveLength(1);

    await redis.restart();
    await vi.waitFor(() => expect(heard.degradedChange).toHaveLength(2), { timeout: 20_000 });
    expect(heard.degradedChange[1]?.degraded).toBe(false);
    expect(heard.degradedChange[1]?.durationMs).toBeGreaterThan(0);
    expect(i.breaker.degraded).toBe(false);
    // Redis came back empty: its closed state replaced the local one.
    await untilAll(instances, 'closed', 20_000);
    expect(heard.stateChange.at(-1)).toMatchObject({ state: 'closed', previous: 'open', source: 'local', transition: expect.objectContaining({ reason: 'resync' }) });
  });

  it('listeners are added and removed at any time; one that throws reaches error and the rest still run', async () => {
    const { url } = await ownServer();
    const errors: Error[] = [];
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      instances = [instance(url, { id: uniqueId(), onError: undefined, breaker: new ConsecutiveBreaker({ threshold: 1 }) })];
      const [i] = instances as [Instance];
      i.breaker.on('error', (error) => errors.push(error));
      const order: string[] = [];
      const first = i.breaker.on('call', () => order.push('first'));
      i.breaker.on('call', () => {
        throw new Error('listener bug');
      });
      const third = () => order.push('third');
      i.breaker.on('call', third);
      await i.breaker.start();
      await expect(i.breaker.execute(async () => 'fine')).resolves.toBe('fine');
      expect(order).toEqual(['first', 'third']);
      await vi.waitFor(() => expect(errors.map((e) => `${(e as ZenvarkError).code}: ${(e.cause as Error).message}`)).toEqual(['ZV_CALLBACK_FAILED: listener bug']));

      first.dispose();
      first.dispose();
      expect(i.breaker.off('call', third)).toBe(true);
      expect(i.breaker.off('call', third)).toBe(false);
      await i.breaker.execute(async () => 'fine');
      expect(order).toEqual(['first', 'third']);
      // The trip still happens, listeners or not.
      await i.breaker.execute(failing).catch(() => undefined);
      await untilAll(instances, 'open');
      // An error listener means console.error is not used.
      expect(consoleError).not.toHaveBeenCalled();
      expect(() => i.breaker.on('call', 'nope' as never)).toThrow(new TypeError("on('call', listener): listener must be a function"));
    } finally {
      consoleError.mockRestore();
    }
  });

  it('with no error listener and no onError, errors go to console.error', async () => {
    const { url } = await ownServer();
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      instances = [instance(url, { id: uniqueId(), onError: undefined, onStateChange: () => { throw new Error('callback bug'); } })];
      const [i] = instances as [Instance];
      await i.breaker.start();
      await fail(i, 3);
      await untilAll(instances, 'open');
      await vi.waitFor(() => expect(consoleError).toHaveBeenCalledWith(expect.objectContaining({ code: 'ZV_CALLBACK_FAILED' })));
    } finally {
      consoleError.mockRestore();
    }
  });
});
