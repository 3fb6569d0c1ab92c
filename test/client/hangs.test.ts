/**
 * Hang detection against real Redis: with the slow-call rule configured, a call still
 * running past slowCallDurationMs counts as a slow call while it runs, once.
 */
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { type CallEvent, ConsecutiveBreaker, ConstantBackoff, CountBreaker, SamplingBreaker, type ZenvarkError } from '../../src/index.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import { DEFAULTS, breakerKeys } from '../../src/index.js';
import { watchHandles } from '../support/handles.js';
import { type Instance, type InstanceOptions, fail, fleet, stopAll, untilAll } from '../support/instances.js';

const url = inject('redisUrl');
let instances: Instance[] = [];
let server: RedisServer | undefined;

afterEach(async () => {
  // Calls a test left hanging end first: nothing of them is left to the next test.
  for (const end of hanging.splice(0)) end();
  await stopAll(instances);
  instances = [];
  if (server) await disposeRedis(server);
  server = undefined;
});

/** Ends of the calls made with hang(): each settles its call (with `failure`, it rejects). */
const hanging: ((failure?: Error) => void)[] = [];

/** A call of a dependency that does not answer until the test ends it (hanging.at(-1)). */
function hang(): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    hanging.push((failure) => (failure ? reject(failure) : resolve('late')));
  });
}

/**
 * Starts calls from a stack of their own, as a request handler would (the handle watch
 * leaves out the test runner's stack); their promises, not waited for.
 */
function fresh<T>(start: () => Promise<T>[]): Promise<Promise<T>[]> {
  return new Promise((resolve) => setImmediate(() => resolve(start())));
}

/** Breaker `id`'s audit stream, oldest first: each entry's fields. */
async function audit(i: Instance): Promise<Record<string, string>[]> {
  const entries = (await i.redis.xrange(breakerKeys(DEFAULTS.prefix, i.breaker.id).events, '-', '+')) as [string, string[]][];
  return entries.map(([, list]) => {
    const fields: Record<string, string> = {};
    for (let n = 0; n + 1 < list.length; n += 2) fields[list[n] as string] = list[n + 1] as string;
    return fields;
  });
}

/** One started instance of a new breaker, with `options`, on `redisUrl` (default: the shared server). */
async function started(options: InstanceOptions, redisUrl = url): Promise<Instance> {
  const [i] = fleet(redisUrl, 1, options) as [Instance];
  instances.push(i);
  await i.breaker.start();
  return i;
}

/** Waits until Redis has recorded `n` outcomes of `i`. */
async function recorded(i: Instance, n: number): Promise<void> {
  await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(n), { timeout: 10_000 });
}

const hangWatchTimers = (stacks: string[]) => stacks.filter((stack) => stack.includes('hang-watch'));

describe('hang detection (the slow-call rule configured)', () => {
  it('a dependency that hangs opens the circuit though no call has finished', async () => {
    instances = fleet(url, 2, {
      breaker: new CountBreaker({ threshold: 0.5, size: 10, minimumNumberOfCalls: 5 }),
      slowCallDurationMs: 200,
      slowCallRateThreshold: 0.5,
    });
    await Promise.all(instances.map((i) => i.breaker.start()));
    const [a] = instances as [Instance, Instance];
    const calls: CallEvent[] = [];
    a.breaker.on('call', (event) => calls.push(event));
    let settled = 0;
    const results = Array.from({ length: 5 }, () =>
      a.breaker.execute(hang).finally(() => {
        settled += 1;
      }),
    );
    // Within a generous bound of the slow-call duration, every instance sees it open.
    await untilAll(instances, 'open', 10_000);
    expect(settled).toBe(0);
    expect(calls).toEqual([]);
    const entries = await audit(a);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ from: 'closed', to: 'open', reason: 'slow_call_rate', failures: '0', calls: '5', slow: '5' });
    expect(a.seen.states[0]?.transition).toMatchObject({ reason: 'slow_call_rate', slow: '5' });

    // When the calls end at last, they answer with what the dependency said, and their
    // call events tell their real result and duration.
    for (const end of hanging.splice(0)) end();
    await expect(Promise.all(results)).resolves.toEqual(['late', 'late', 'late', 'late', 'late']);
    expect(calls.map((c) => c.result)).toEqual(['success', 'success', 'success', 'success', 'success']);
    expect(Math.min(...calls.map((c) => c.durationMs))).toBeGreaterThanOrEqual(200);
    // Counted once, when they hung: their end adds nothing, not even as stale.
    await recorded(a, 5);
    expect(a.breaker.stats).toMatchObject({ recorded: 5, stale: 0, ignored: 0 });
  });

  it('a hung call that later ends counts once: as a slow success, whatever its end', async () => {
    const i = await started({
      breaker: new CountBreaker({ threshold: 0.5, size: 10, minimumNumberOfCalls: 10 }),
      slowCallDurationMs: 100,
      slowCallRateThreshold: 1,
    });
    const ok = i.breaker.execute(hang);
    const failed = i.breaker.execute(hang);
    // Counted while they run.
    await recorded(i, 2);
    expect((await i.breaker.explain()).window).toEqual({ failures: 0, calls: 2, slow: 2 });
    const [succeed, reject] = hanging.splice(0) as [(failure?: Error) => void, (failure?: Error) => void];
    succeed();
    reject(new Error('dependency failed late'));
    await expect(ok).resolves.toBe('late');
    await expect(failed).rejects.toThrow('dependency failed late');
    // A fast failure after them: once Redis has counted it, it has counted whatever came before.
    await fail(i, 1);
    await recorded(i, 3);
    expect((await i.breaker.explain()).window).toEqual({ failures: 1, calls: 3, slow: 2 });
    expect(i.breaker.stats).toMatchObject({ recorded: 3, stale: 0, local: 0, ignored: 0 });
    expect(i.breaker.state).toBe('closed');
  });

  it('calls faster than the duration count as before', async () => {
    const i = await started({
      breaker: new SamplingBreaker({ threshold: 0.5, duration: 60_000, minimumNumberOfCalls: 4 }),
      slowCallDurationMs: 5_000,
      slowCallRateThreshold: 0.5,
    });
    for (let n = 0; n < 2; n += 1) await i.breaker.execute(async () => 'fast');
    await recorded(i, 2);
    expect((await i.breaker.explain()).window).toEqual({ failures: 0, calls: 2, slow: 0 });
    await fail(i, 2);
    await untilAll(instances, 'open');
    expect(i.seen.states[0]?.transition).toMatchObject({ reason: 'failure_rate', failures: '2', calls: '4', slow: '0' });
  });

  it('keeps a timer only while calls run, and none after stop()', async () => {
    const slowRule = { breaker: new CountBreaker({ threshold: 0.5, size: 10, minimumNumberOfCalls: 10 }), slowCallRateThreshold: 1 };
    // Calls that cannot hang within the test (a minute), and calls that hang at once.
    const long = await started({ ...slowRule, slowCallDurationMs: 60_000 });
    const short = await started({ ...slowRule, slowCallDurationMs: 100 });
    const timers = watchHandles(['Timeout']);
    try {
      // Two calls that end in time: one timer while they run, none after.
      const quick = await fresh(() => [long.breaker.execute(hang), long.breaker.execute(hang)]);
      expect(hangWatchTimers(await timers.pending())).toHaveLength(1);
      for (const end of hanging.splice(0)) end();
      await Promise.all(quick);
      expect(hangWatchTimers(await timers.pending())).toEqual([]);

      // Two that hang: counted, and then no timer is left although they still run.
      const hung = await fresh(() => [short.breaker.execute(hang), short.breaker.execute(hang)]);
      await recorded(short, 2);
      expect(hangWatchTimers(await timers.pending())).toEqual([]);
      for (const end of hanging.splice(0)) end();
      await Promise.all(hung);

      // stop() while a call runs clears its timer; the call's end counts nothing and arms nothing.
      const [running] = await fresh(() => [long.breaker.execute(hang)]);
      expect(hangWatchTimers(await timers.pending())).toHaveLength(1);
      await long.breaker.stop();
      expect(hangWatchTimers(await timers.pending())).toEqual([]);
      for (const end of hanging.splice(0)) end();
      await expect(running).resolves.toBe('late');
      expect(hangWatchTimers(await timers.pending())).toEqual([]);
      await recorded(long, 2);
      expect(short.breaker.stats.recorded).toBe(2);
    } finally {
      timers.stop();
    }
  });

  it('a trial call is not watched: its permit has a timeout of its own', async () => {
    const i = await started({
      breaker: new CountBreaker({ threshold: 0.5, size: 10, minimumNumberOfCalls: 1 }),
      slowCallDurationMs: 50,
      slowCallRateThreshold: 1,
      health: { backoff: new ConstantBackoff({ delayMs: 50 }) },
      halfOpen: { permittedCalls: 1, permitTimeoutMs: 10_000 },
    });
    await fail(i, 1);
    await untilAll(instances, 'half_open');
    const timers = watchHandles(['Timeout']);
    try {
      // Calls until one gets the permit; the others are refused at once.
      let ran = 0;
      const trial = () => {
        ran += 1;
        return hang();
      };
      const calls: Promise<string>[] = [];
      await vi.waitFor(
        async () => {
          calls.push(...(await fresh(() => [i.breaker.execute(trial).catch(() => 'refused')])));
          expect(ran).toBe(1);
        },
        { timeout: 10_000, interval: 20 },
      );
      expect(hangWatchTimers(await timers.pending())).toEqual([]);
      for (const end of hanging.splice(0)) end();
      await untilAll(instances, 'closed');
      expect(await Promise.all(calls)).toContain('late');
      expect(i.breaker.stats).toMatchObject({ trials: 1, stale: 0 });
    } finally {
      timers.stop();
    }
  });

  it('without the slow-call rule (a consecutive strategy) nothing watches a hanging call', async () => {
    // A timeout far off takes the full path, as the slow-call rule would.
    const i = await started({ breaker: new ConsecutiveBreaker({ threshold: 2 }), timeoutMs: 60_000 });
    const timers = watchHandles(['Timeout']);
    try {
      const [running] = await fresh(() => [i.breaker.execute(hang)]);
      expect(hangWatchTimers(await timers.pending())).toEqual([]);
      // The run of failures is unbroken by the hanging call: two open the circuit.
      await fail(i, 2);
      await untilAll(instances, 'open');
      expect(i.seen.states[0]?.transition).toMatchObject({ reason: 'consecutive_failures', failures: '2' });
      for (const end of hanging.splice(0)) end();
      await expect(running).resolves.toBe('late');
    } finally {
      timers.stop();
    }
  });

  it('while Redis is unreachable, hung calls go to the local window and open the circuit there', async () => {
    server = await startRedis();
    const i = await started(
      {
        breaker: new CountBreaker({ threshold: 0.5, size: 10, minimumNumberOfCalls: 4 }),
        slowCallDurationMs: 100,
        slowCallRateThreshold: 0.5,
      },
      server.url,
    );
    await server.stop({ kill: true });
    // A call that finds Redis gone puts the breaker in degraded mode.
    await fail(i, 1);
    await vi.waitFor(() => expect(i.seen.errors.map((e) => (e as ZenvarkError).code)).toContain('ZV_REDIS_UNREACHABLE'), { timeout: 10_000 });
    for (let n = 0; n < 3; n += 1) void i.breaker.execute(hang).catch(() => undefined);
    await untilAll(instances, 'open', 10_000);
    expect(i.seen.states.at(-1)?.transition).toMatchObject({
      to: 'open',
      reason: 'local_slow_calls',
      local: true,
      failures: '1',
      calls: '4',
      slow: '3',
    });
    expect(hanging).toHaveLength(3);
  });
});
