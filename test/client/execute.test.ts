import { afterEach, describe, expect, it, vi } from 'vitest';
import { CircuitOpenError, ConsecutiveBreaker, ZenvarkError } from '../../src/index.js';
import {
  type Instance,
  fail,
  failing,
  fleet,
  instance,
  sharedState,
  stopAll,
  uniqueId,
  untilAll,
} from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';

const own = ownRedis();
let instances: Instance[] = [];

afterEach(async () => {
  own.server.resume();
  await stopAll(instances);
  instances = [];
});

async function recordCalls(): Promise<number> {
  const info = await own.admin.info('commandstats');
  // FCALL is counted once per call of any function (FCALL_RO apart): record calls and
  // lease calls.
  return Number(/cmdstat_fcall:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

describe('execute()', () => {
  it('throws CircuitOpenError without calling fn while open', async () => {
    const [i] = (instances = fleet(own.server.url, 1));
    await i?.breaker.start();
    await fail(i as Instance, 3);
    await untilAll(instances, 'open');
    const fn = vi.fn(async () => 'ran');
    const error = await i?.breaker.execute(fn).catch((e: unknown) => e);
    expect(fn).not.toHaveBeenCalled();
    expect(error).toBeInstanceOf(CircuitOpenError);
    expect(error).toBeInstanceOf(ZenvarkError);
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ name: 'CircuitOpenError', code: 'ZV_CIRCUIT_OPEN', breakerId: i?.breaker.id });
    expect((error as Error).message).toBe(`circuit '${i?.breaker.id}' is open`);
  });

  it('returns what fn returns and rethrows what fn throws, untouched', async () => {
    const [i] = (instances = fleet(own.server.url, 1));
    await i?.breaker.start();
    const value = { answer: 42 };
    await expect(i?.breaker.execute(async () => value)).resolves.toBe(value);
    const thrown = new Error('boom');
    await expect(i?.breaker.execute(async () => Promise.reject(thrown))).rejects.toBe(thrown);
    await expect(i?.breaker.execute(() => Promise.reject('not an error'))).rejects.toBe('not an error');
    await expect(i?.breaker.execute('nope' as never)).rejects.toThrow(TypeError);
  });

  it('never waits for Redis: calls go on at full speed while the server is frozen', async () => {
    const [i] = (instances = fleet(own.server.url, 1));
    await i?.breaker.start();
    own.server.pause();
    const startedAt = performance.now();
    for (let n = 0; n < 100; n += 1) {
      await expect(i?.breaker.execute(async () => n)).resolves.toBe(n);
    }
    await fail(i as Instance, 2);
    // A frozen server answers nothing: a call that waited on it would take at least the
    // 1 s command timeout, 102 of them over 100 s.
    expect(performance.now() - startedAt).toBeLessThan(10_000);
    own.server.resume();
  });

  it('coalesces outcomes: a burst of successes is one record call', async () => {
    // Closed, with no idle probes, the breaker has no duty and holds no lease: every FCALL
    // counted is a record call.
    const [i] = (instances = fleet(own.server.url, 1, { breaker: new ConsecutiveBreaker({ threshold: 1000 }) }));
    await i?.breaker.start();
    const before = await recordCalls();
    for (let n = 0; n < 1000; n += 1) await i?.breaker.execute(async () => n);
    // Once Redis has counted all 1,000 outcomes, no record call is left to come.
    await vi.waitFor(() => expect(i?.breaker.stats.recorded).toBe(1000), { timeout: 5000 });
    // 1,000 calls, one summary.
    expect((await recordCalls()) - before).toBe(1);
  });

  it('sends a lone failure at once, without waiting for the flush timer', async () => {
    const [i] = (instances = fleet(own.server.url, 1, { breaker: new ConsecutiveBreaker({ threshold: 10 }) }));
    await i?.breaker.start();
    const stateKey = `zenvark:{${i?.breaker.id}}:state`;
    await fail(i as Instance, 1);
    // Successes wait up to 1 s to be sent; a failure must be there well before that.
    await vi.waitFor(async () => expect(await own.admin.hget(stateKey, 'run')).toBe('1'), { timeout: 800, interval: 5 });
  });

  it('outcomes of calls started before a transition do not count after it', async () => {
    instances = fleet(own.server.url, 1, { breaker: new ConsecutiveBreaker({ threshold: 1 }) });
    const [i] = instances as [Instance];
    await i.breaker.start();
    let release: () => void = () => undefined;
    const slow = i.breaker.execute(
      () =>
        new Promise<never>((_, reject) => {
          release = () => reject(new Error('late failure'));
        }),
    );
    await fail(i, 1);
    await untilAll(instances, 'open');
    i.healthy = true;
    await untilAll(instances, 'closed');
    release();
    await expect(slow).rejects.toThrow('late failure');
    expect(i.breaker.stats.stale).toBe(1);
    // A success after it: once Redis has counted that, it has seen whatever came before.
    await i.breaker.execute(async () => 'ok');
    await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(2), { timeout: 5000 });
    expect(i.breaker.stats.stale).toBe(1);
    expect(i.breaker.state).toBe('closed');
    expect((await sharedState(i)).state).toBe('closed');
    expect(i.seen.states.map((s) => s.state)).toEqual(['open', 'closed']);
  });

  it('stats account for every outcome: recorded, stale, local, rejected', async () => {
    instances = fleet(own.server.url, 1, { breaker: new ConsecutiveBreaker({ threshold: 3 }) });
    const [i] = instances as [Instance];
    await i.breaker.start();
    for (let n = 0; n < 100; n += 1) await i.breaker.execute(async () => n);
    await fail(i, 3);
    await untilAll(instances, 'open');
    await fail(i, 2);
    await vi.waitFor(() => expect(i.breaker.stats).toMatchObject({ recorded: 103, rejected: 2 }), { timeout: 5000 });
    expect(i.breaker.stats).toEqual({ recorded: 103, stale: 0, local: 0, overflowed: 0, undelivered: 0, rejected: 2, ignored: 0, trials: 0 });
    // A call that started before the trip and settles after it is stale.
    i.healthy = true;
    await untilAll(instances, 'closed');
    let release: () => void = () => undefined;
    const late = i.breaker.execute(() => new Promise<void>((resolve) => (release = resolve)));
    await fail(i, 3);
    await untilAll(instances, 'open');
    release();
    await late;
    await vi.waitFor(() => expect(i.breaker.stats.stale).toBe(1));
    // While Redis is away, outcomes are counted locally.
    await own.server.stop({ kill: true });
    i.healthy = false;
    await vi.waitFor(() => expect(i.seen.errors.map((e) => (e as ZenvarkError).code)).toContain('ZV_REDIS_UNREACHABLE'), { timeout: 10_000 });
    const before = i.breaker.stats;
    await i.breaker.execute(async () => 1).catch(() => undefined);
    const after = i.breaker.stats;
    expect(after.local + after.rejected).toBe(before.local + before.rejected + 1);
    await own.server.restart();
  });

  it('reports metrics for calls, fast-fails and health checks', async () => {
    const recorded: string[] = [];
    const id = uniqueId();
    const metrics = {
      initialize: (breakerId: string) => recorded.push(`init ${breakerId === id}`),
      recordCall: (p: { result: string; durationMs: number }) => recorded.push(`call ${p.result} ${p.durationMs >= 0}`),
      recordBlockedRequest: () => recorded.push('blocked'),
      recordHealthCheck: (p: { type: string; result: string }) => recorded.push(`check ${p.type} ${p.result}`),
    };
    instances = [instance(own.server.url, { id, metrics, breaker: new ConsecutiveBreaker({ threshold: 1 }) })];
    const [i] = instances as [Instance];
    await i.breaker.start();
    await i.breaker.execute(async () => 1);
    await i.breaker.execute(failing).catch(() => undefined);
    await untilAll(instances, 'open');
    await i.breaker.execute(async () => 1).catch(() => undefined);
    await vi.waitFor(() => expect(recorded).toContain('check recovery failure'));
    expect(recorded.slice(0, 4)).toEqual(['init true', 'call success true', 'call failure true', 'blocked']);
  });

  it('a throwing callback or metrics method is reported, never thrown at the caller', async () => {
    const id = uniqueId();
    instances = [
      instance(own.server.url, {
        id,
        breaker: new ConsecutiveBreaker({ threshold: 1 }),
        onStateChange: () => {
          throw new Error('callback bug');
        },
        metrics: {
          recordCall: () => {
            throw new Error('metrics bug');
          },
          recordBlockedRequest: () => undefined,
          recordHealthCheck: () => undefined,
        },
      }),
    ];
    const [i] = instances as [Instance];
    await i.breaker.start();
    await expect(i.breaker.execute(async () => 'fine')).resolves.toBe('fine');
    await fail(i, 1);
    await untilAll(instances, 'open');
    await vi.waitFor(() => {
      const codes = i.seen.errors.map((e) => `${(e as ZenvarkError).code}: ${(e.cause as Error)?.message}`);
      expect(codes).toContain('ZV_CALLBACK_FAILED: callback bug');
      expect(codes).toContain('ZV_CALLBACK_FAILED: metrics bug');
    });
  });
});
