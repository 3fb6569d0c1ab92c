import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { sleep } from '../../harness/clock.js';
import {
  CircuitOpenError,
  ConsecutiveBreaker,
  CountBreaker,
  SamplingBreaker,
  TimeoutError,
  type ZenvarkError,
} from '../../src/index.js';
import { type Instance, fail, fleet, sharedState, stopAll, untilAll } from '../support/instances.js';

const url = inject('redisUrl');
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

class HttpError extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

describe('failure classification', () => {
  it('isFailure decides what a rejection counts as: a failure, a success, or neither', async () => {
    instances = fleet(url, 1, {
      breaker: new ConsecutiveBreaker({ threshold: 2 }),
      isFailure: (error) => {
        if (error instanceof HttpError && error.status === 404) return false;
        if (error instanceof HttpError && error.status === 400) return 'ignore';
        return true;
      },
    });
    const [i] = instances as [Instance];
    await i.breaker.start();
    const reject = (status: number) => () => Promise.reject(new HttpError(status));
    // A 404 is a success: it resets the run.
    await expect(i.breaker.execute(reject(503))).rejects.toThrow('HTTP 503');
    await expect(i.breaker.execute(reject(404))).rejects.toThrow('HTTP 404');
    await expect(i.breaker.execute(reject(503))).rejects.toThrow('HTTP 503');
    // A 400 is neither: the run of one failure goes on.
    await expect(i.breaker.execute(reject(400))).rejects.toThrow('HTTP 400');
    // Once Redis has counted the other three, it has decided on them.
    await vi.waitFor(() => expect(i.breaker.stats).toMatchObject({ ignored: 1, recorded: 3 }), { timeout: 5000 });
    expect(i.breaker.state).toBe('closed');
    expect((await sharedState(i)).state).toBe('closed');
    await expect(i.breaker.execute(reject(503))).rejects.toThrow('HTTP 503');
    await untilAll(instances, 'open');
    await vi.waitFor(() => expect(i.breaker.stats).toMatchObject({ ignored: 1, recorded: 4 }));
  });

  it('isResultFailure counts a resolved value as a failure, and execute() still returns it', async () => {
    instances = fleet(url, 1, {
      breaker: new ConsecutiveBreaker({ threshold: 2 }),
      isResultFailure: (response) => (response as { status: number }).status >= 500,
    });
    const [i] = instances as [Instance];
    await i.breaker.start();
    const response = { status: 503 };
    await expect(i.breaker.execute(async () => response)).resolves.toBe(response);
    await expect(i.breaker.execute(async () => ({ status: 200 }))).resolves.toEqual({ status: 200 });
    await expect(i.breaker.execute(async () => response)).resolves.toBe(response);
    await expect(i.breaker.execute(async () => response)).resolves.toBe(response);
    await untilAll(instances, 'open');
    expect(i.seen.states[0]?.transition).toMatchObject({ reason: 'consecutive_failures', failures: '2' });
  });

  it('a classifier that throws is reported, and the outcome counts as it would without it', async () => {
    instances = fleet(url, 1, {
      breaker: new ConsecutiveBreaker({ threshold: 1 }),
      isFailure: () => {
        throw new Error('classifier bug');
      },
    });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await fail(i, 1);
    await untilAll(instances, 'open');
    expect(i.seen.errors.map((e) => (e.cause as Error)?.message)).toContain('classifier bug');
  });
});

describe('slow calls', () => {
  it('slow calls alone open the circuit, though every call succeeds', async () => {
    instances = fleet(url, 2, {
      breaker: new CountBreaker({ threshold: 0.5, size: 10 }),
      slowCallDurationMs: 40,
      slowCallRateThreshold: 0.5,
    });
    await Promise.all(instances.map((i) => i.breaker.start()));
    const [a, b] = instances as [Instance, Instance];
    for (let n = 0; n < 5; n += 1) await a.breaker.execute(async () => 'fast');
    for (let n = 0; n < 5; n += 1) {
      await b.breaker.execute(async () => {
        await sleep(60);
        return 'slow';
      });
    }
    await untilAll(instances, 'open');
    expect(a.seen.states[0]?.transition).toMatchObject({
      reason: 'slow_call_rate',
      failures: '0',
      calls: '10',
      slow: '5',
      rate: '0.5000',
      threshold: '0.5',
    });
  });

  it('in a time window, too', async () => {
    instances = fleet(url, 1, {
      breaker: new SamplingBreaker({ threshold: 0.9, duration: 60_000, minimumNumberOfCalls: 3 }),
      slowCallDurationMs: 30,
      slowCallRateThreshold: 0.6,
    });
    const [i] = instances as [Instance];
    await i.breaker.start();
    for (let n = 0; n < 3; n += 1) await i.breaker.execute(() => sleep(50));
    await untilAll(instances, 'open');
    expect(i.seen.states[0]?.transition.reason).toBe('slow_call_rate');
  });
});

describe('timeouts and signals', () => {
  it('aborts the signal given to fn at the deadline, rejects with TimeoutError, and counts a failure', async () => {
    instances = fleet(url, 1, { breaker: new ConsecutiveBreaker({ threshold: 1 }), timeoutMs: 50 });
    const [i] = instances as [Instance];
    await i.breaker.start();
    let seen: AbortSignal | undefined;
    const error = await i.breaker
      .execute((signal) => {
        seen = signal;
        return new Promise(() => undefined);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toMatchObject({ code: 'ZV_TIMEOUT', breakerId: i.breaker.id, timeoutMs: 50 });
    expect(seen?.aborted).toBe(true);
    expect(seen?.reason).toBe(error);
    await untilAll(instances, 'open');
  });

  it('a call that settles in time is not affected, and a per-call timeout overrides the breaker one', async () => {
    instances = fleet(url, 1, { breaker: new ConsecutiveBreaker({ threshold: 1 }), timeoutMs: 30 });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await expect(i.breaker.execute(async () => 'quick')).resolves.toBe('quick');
    await expect(i.breaker.execute(() => sleep(80).then(() => 'slow but allowed'), { timeoutMs: 1000 })).resolves.toBe(
      'slow but allowed',
    );
    await expect(i.breaker.execute(() => sleep(1000), { timeoutMs: 20 })).rejects.toBeInstanceOf(TimeoutError);
  });

  it('no timer is created when no timeout is configured', async () => {
    // A long lease keeps the breaker's own timers (renewals, every ttl/3) out of the way.
    instances = [...fleet(url, 1, { leaseTtlMs: 60_000 }), ...fleet(url, 1, { leaseTtlMs: 60_000, timeoutMs: 123 })];
    const [plain, timed] = instances as [Instance, Instance];
    await Promise.all(instances.map((i) => i.breaker.start()));
    const spy = vi.spyOn(globalThis, 'setTimeout');
    const short = () => spy.mock.calls.filter(([, ms]) => ms === undefined || (ms as number) < 1000).map(([, ms]) => ms);
    try {
      // Nothing could abort these calls: fn gets no signal, and no timer is armed.
      expect(await plain.breaker.execute(async (signal) => signal)).toBeUndefined();
      for (let n = 0; n < 20; n += 1) await plain.breaker.execute((signal) => Promise.resolve(signal?.aborted));
      await plain.breaker.execute(async () => 1, { signal: new AbortController().signal });
      await fail(plain, 1);
      expect(short()).toEqual([]);
      // The control: with a timeout, each call arms one.
      await timed.breaker.execute(async () => 1);
      expect(short()).toEqual([123]);
    } finally {
      spy.mockRestore();
    }
  });

  it("honours the caller's signal: fn's signal aborts, execute() rejects with its reason, the outcome counts as neither", async () => {
    instances = fleet(url, 1, { breaker: new ConsecutiveBreaker({ threshold: 1 }), timeoutMs: 5000 });
    const [i] = instances as [Instance];
    await i.breaker.start();
    const controller = new AbortController();
    let seen: AbortSignal | undefined;
    const call = i.breaker.execute(
      (signal) => {
        seen = signal;
        return new Promise(() => undefined);
      },
      { signal: controller.signal },
    );
    const reason = new Error('the user went away');
    controller.abort(reason);
    await expect(call).rejects.toBe(reason);
    expect(seen?.aborted).toBe(true);
    await expect(i.breaker.execute(async () => 1, { signal: controller.signal })).rejects.toBe(reason);
    // A success after them: once Redis has counted it, it has counted whatever came before.
    await i.breaker.execute(async () => 'ok');
    await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(1), { timeout: 5000 });
    expect(i.breaker.state).toBe('closed');
    expect((await sharedState(i)).state).toBe('closed');
    expect(i.breaker.stats).toMatchObject({ ignored: 1, recorded: 1 });
  });
});

describe('fallback', () => {
  it('answers for an open circuit, a timeout and a counted failure; rethrows what is not a failure', async () => {
    instances = fleet(url, 1, {
      breaker: new ConsecutiveBreaker({ threshold: 3 }),
      timeoutMs: 50,
      isFailure: (error) => !(error instanceof HttpError && error.status < 500),
    });
    const [i] = instances as [Instance];
    await i.breaker.start();
    const seen: string[] = [];
    const fallback = (error: unknown) => {
      seen.push((error as ZenvarkError).code ?? (error as Error).message);
      return 'from the fallback';
    };
    await expect(i.breaker.execute(() => Promise.reject(new HttpError(503)), { fallback })).resolves.toBe('from the fallback');
    await expect(i.breaker.execute(() => new Promise(() => undefined), { fallback })).resolves.toBe('from the fallback');
    // A caller's error is not the dependency's failure: it is rethrown.
    await expect(i.breaker.execute(() => Promise.reject(new HttpError(400)), { fallback })).rejects.toThrow('HTTP 400');
    await expect(i.breaker.execute(async () => 'real', { fallback })).resolves.toBe('real');
    await fail(i, 3);
    await untilAll(instances, 'open');
    const fn = vi.fn(async () => 'never');
    await expect(i.breaker.execute(fn, { fallback })).resolves.toBe('from the fallback');
    expect(fn).not.toHaveBeenCalled();
    expect(seen).toEqual(['HTTP 503', 'ZV_TIMEOUT', 'ZV_CIRCUIT_OPEN']);
    // What the fallback throws is what execute() throws.
    await expect(
      i.breaker.execute(fn, {
        fallback: () => {
          throw new Error('no fallback either');
        },
      }),
    ).rejects.toThrow('no fallback either');
    await expect(i.breaker.execute(fn)).rejects.toBeInstanceOf(CircuitOpenError);
  });

  it('a fallback that throws after a failure or a timeout: execute() rejects with what it threw', async () => {
    instances = fleet(url, 1, { breaker: new ConsecutiveBreaker({ threshold: 100 }) });
    const [i] = instances as [Instance];
    await i.breaker.start();
    const fallback = (error: unknown): string => {
      throw new Error(`fallback saw ${(error as ZenvarkError).code ?? (error as Error).message}`);
    };
    await expect(i.breaker.execute(() => Promise.reject(new Error('down')), { fallback })).rejects.toThrow('fallback saw down');
    await expect(i.breaker.execute(() => new Promise(() => undefined), { fallback, timeoutMs: 20 })).rejects.toThrow(
      'fallback saw ZV_TIMEOUT',
    );
    await expect(i.breaker.execute(() => Promise.reject(new Error('down')), { fallback: async () => 'later' })).resolves.toBe('later');
  });
});

describe('execute() options', () => {
  it('a bad per-call timeoutMs rejects with an error naming it, without calling fn', async () => {
    instances = fleet(url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    const fn = vi.fn(async () => 'never');
    for (const timeoutMs of [0, -1, Number.NaN, 2 ** 31, '5' as unknown as number]) {
      await expect(i.breaker.execute(fn, { timeoutMs })).rejects.toThrow(/execute\(\) options\.timeoutMs/);
    }
    await expect(i.breaker.execute(fn, { signal: 'nope' as unknown as AbortSignal })).rejects.toThrow(/execute\(\) options\.signal/);
    await expect(i.breaker.execute(fn, { fallback: 42 as unknown as () => string })).rejects.toThrow(/execute\(\) options\.fallback/);
    expect(fn).not.toHaveBeenCalled();
  });
});
