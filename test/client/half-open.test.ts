import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { sleep } from '../../harness/clock.js';
import {
  CircuitOpenError,
  ConsecutiveBreaker,
  ConstantBackoff,
  DEFAULTS,
  ExponentialBackoff,
  TimeoutError,
  type Transition,
  breakerKeys,
} from '../../src/index.js';
import { type Instance, fail, fleet, leaderOf, stopAll, untilAll } from '../support/instances.js';

const url = inject('redisUrl');
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

/** A trial call that stays open until released. */
function gate() {
  let release: (ok: boolean) => void = () => undefined;
  const settled = new Promise<string>((resolve, reject) => {
    release = (ok) => (ok ? resolve('trial ok') : reject(new Error('trial failed')));
  });
  return { settled, release };
}

interface Tries {
  /** Calls that ran fn: trial calls. */
  ran: number;
  /** Calls refused with CircuitOpenError while half-open. */
  refused: number;
}

/**
 * Every instance makes a call every 20 ms (one that runs does `trial`) until `enough`
 * holds, then `rounds` rounds more; returns what the calls met.
 */
async function tryCalls(list: Instance[], trial: () => Promise<string>, enough: (t: Tries) => boolean, rounds = 0): Promise<Tries> {
  const tries: Tries = { ran: 0, refused: 0 };
  const round = async () => {
    for (const i of list) {
      i.breaker
        .execute(() => {
          tries.ran += 1;
          return trial();
        })
        .catch((error: unknown) => {
          if (error instanceof CircuitOpenError) {
            tries.refused += 1;
            expect(error.state).toBe('half_open');
          }
        });
    }
    await sleep(20);
  };
  await vi.waitFor(
    async () => {
      await round();
      expect(enough(tries)).toBe(true);
    },
    { timeout: 10_000, interval: 0 },
  );
  for (let n = 0; n < rounds; n += 1) await round();
  return tries;
}

/** The trial permits out in Redis, as [id, expiry in server ms] pairs. */
async function permitsOut(i: Instance): Promise<[string, number][]> {
  const text = (await i.redis.hget(breakerKeys(DEFAULTS.prefix, i.breaker.id).state, 'tp')) ?? '';
  return text === '' ? [] : text.split(',').map((p) => p.split(':')).map(([id, expiry]) => [id as string, Number(expiry)]);
}

/** The last transition `i` was told of, once it has the reason `reason`. */
async function lastTransition(i: Instance, reason: string): Promise<Transition> {
  return vi.waitFor(
    () => {
      const t = i.seen.states.at(-1)?.transition;
      expect(t?.reason).toBe(reason);
      return t as Transition;
    },
    { timeout: 10_000 },
  );
}

/** `n` started instances, one failure away from open, with one trial permit; returned once half-open. */
async function halfOpenFleet(n: number, permitTimeoutMs: number): Promise<Instance[]> {
  instances = fleet(url, n, {
    breaker: new ConsecutiveBreaker({ threshold: 1 }),
    health: { backoff: new ConstantBackoff({ delayMs: 50 }) },
    halfOpen: { permittedCalls: 1, permitTimeoutMs },
  });
  await Promise.all(instances.map((i) => i.breaker.start()));
  await fail(instances[0] as Instance, 1);
  await untilAll(instances, 'half_open');
  return instances;
}

/** Calls through `i` until one of its calls gets a permit and its success closes the circuit. */
async function closeByTrial(i: Instance): Promise<void> {
  await vi.waitFor(
    async () => {
      await i.breaker.execute(async () => 'trial').catch(() => undefined);
      expect(i.breaker.state).toBe('closed');
    },
    { timeout: 10_000, interval: 50 },
  );
}

describe('fleet-wide half-open', () => {
  it('lets exactly permittedCalls trial calls through across instances, and closes everywhere when they succeed', async () => {
    instances = fleet(url, 4, {
      breaker: new ConsecutiveBreaker({ threshold: 1 }),
      health: { backoff: new ConstantBackoff({ delayMs: 100 }) },
      halfOpen: { permittedCalls: 2, successThreshold: 2 },
    });
    await Promise.all(instances.map((i) => i.breaker.start()));
    await fail(instances[0] as Instance, 1);
    await untilAll(instances, 'half_open');
    expect(instances[1]?.seen.states.map((s) => s.transition.reason)).toEqual(['consecutive_failures', 'open_wait_elapsed']);

    const trial = gate();
    // Until both permits are taken, and then 15 rounds more: no further call runs.
    const { ran, refused } = await tryCalls(instances, () => trial.settled, (t) => t.ran >= 2, 15);
    expect(ran).toBe(2);
    expect(refused).toBeGreaterThan(40);
    trial.release(true);
    await untilAll(instances, 'closed');
    for (const i of instances) {
      await vi.waitFor(() => expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'trial_calls_passed', calls: '2' }));
    }
    await expect(instances[3]?.breaker.execute(async () => 'normal again')).resolves.toBe('normal again');
  });

  it('a failed trial reopens the circuit, and the next half-open waits for the next backoff delay', async () => {
    instances = fleet(url, 2, {
      breaker: new ConsecutiveBreaker({ threshold: 1 }),
      health: { backoff: new ExponentialBackoff({ initialDelayMs: 100, multiplier: 4 }) },
      halfOpen: { permittedCalls: 1 },
    });
    await Promise.all(instances.map((i) => i.breaker.start()));
    const [a] = instances as [Instance];
    await fail(a, 1);
    await untilAll(instances, 'half_open');
    const trial = gate();
    await tryCalls(instances, () => trial.settled, (t) => t.ran >= 1);
    trial.release(false);
    await untilAll(instances, 'open');
    const reopened = await lastTransition(a, 'trial_call_failed');
    await untilAll(instances, 'half_open');
    const halfOpen = await lastTransition(a, 'open_wait_elapsed');
    // The first wait was 100 ms; after one failed period the next is 400 ms (server times).
    expect(halfOpen.time - reopened.time).toBeGreaterThanOrEqual(395);
  });

  it('with a health check, a passing check leads to half-open, not straight to closed', async () => {
    instances = fleet(url, 2, {
      breaker: new ConsecutiveBreaker({ threshold: 1 }),
      halfOpen: { permittedCalls: 1 },
    });
    await Promise.all(instances.map((i) => i.breaker.start()));
    await fail(instances[0] as Instance, 1);
    await untilAll(instances, 'open');
    const leader = await leaderOf(instances);
    leader.healthy = true;
    await untilAll(instances, 'half_open');
    expect(leader.seen.states.at(-1)?.transition.reason).toBe('recovery_check_passed');
    await tryCalls(instances, async () => 'fine', (t) => t.ran >= 1);
    await untilAll(instances, 'closed');
  });

  it('a trial call ends before its permit lapses: one without a timeout is cut short, fails, and reopens the circuit', async () => {
    // The call is cut a tenth of permitTimeoutMs before Redis would reclaim its permit; its
    // report must reach Redis within that tenth (300 ms), even on a loaded machine.
    const [i] = (await halfOpenFleet(1, 3000)) as [Instance];
    let signal: AbortSignal | undefined;
    let outcome: Promise<unknown> | undefined;
    await vi.waitFor(
      () => {
        const call = i.breaker.execute(async (s) => {
          signal = s;
          return new Promise(() => undefined);
        });
        if (signal) outcome = call.catch((error: unknown) => error);
        else call.catch(() => undefined);
        expect(signal).toBeDefined();
      },
      { timeout: 10_000, interval: 20 },
    );
    const error = await outcome;
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).timeoutMs).toBeLessThanOrEqual(2700);
    expect(signal?.aborted).toBe(true);
    await vi.waitFor(() => expect(i.seen.states.map((s) => s.transition.reason)).toContain('trial_call_failed'), { timeout: 10_000 });
  });

  it('the permit of a trial call still running at stop() is reclaimed after permitTimeoutMs', async () => {
    const [leaving, other] = (await halfOpenFleet(2, 600)) as [Instance, Instance];
    // The first call finds no permit and asks for one; a later call takes it.
    let trials = 0;
    await vi.waitFor(
      () => {
        leaving.breaker.execute(() => ((trials += 1), sleep(2000))).catch(() => undefined);
        expect(trials).toBe(1);
      },
      { timeout: 10_000, interval: 20 },
    );
    const [permit] = await permitsOut(leaving);
    expect(permit).toBeDefined();
    await leaving.breaker.stop();
    // Its call still runs: stop() cannot give the permit back, Redis reclaims it at its expiry.
    expect(await permitsOut(other)).toEqual([permit]);
    await closeByTrial(other);
    const closed = await lastTransition(other, 'trial_calls_passed');
    expect(closed.time).toBeGreaterThanOrEqual(permit?.[1] as number);
  });

  it('after stop() and start(), the breaker gets permits again; a call that is not a function gives its permit back', async () => {
    const [i] = (await halfOpenFleet(1, 60_000)) as [Instance];
    await i.breaker.execute(async () => 'asks for a permit').catch(() => undefined);
    await i.breaker.stop();
    await i.breaker.start();
    expect(i.breaker.state).toBe('half_open');
    // Holding the only permit, a bad call must not keep it for the 60 s permitTimeoutMs.
    let badCallSeen = false;
    await vi.waitFor(
      async () => {
        const error = await i.breaker.execute('not a function' as never).catch((e: unknown) => e);
        if (error instanceof TypeError) badCallSeen = true;
        expect(badCallSeen).toBe(true);
      },
      { timeout: 5_000, interval: 20 },
    );
    await closeByTrial(i);
    expect(i.seen.errors).toEqual([]);
  });

  it('permits go to instances with calls to make; stop() gives an unused permit back', async () => {
    const [a, b, c] = (await halfOpenFleet(3, 60_000)) as [Instance, Instance, Instance];
    // Every instance is half-open and none has calls: a while later, none holds a permit.
    await sleep(200);
    expect(await permitsOut(c)).toEqual([]);
    // c gets the permit on its second try.
    const calls: string[] = [];
    await vi.waitFor(
      async () => {
        await c.breaker.execute(async () => calls.push('c')).catch(() => undefined);
        expect(calls).toEqual(['c']);
      },
      { timeout: 5_000, interval: 20 },
    );
    await untilAll(instances, 'closed');
    // Half-open again: b asks and holds the permit, then stops without using it.
    await fail(a, 1);
    await untilAll(instances, 'half_open');
    await b.breaker.execute(async () => 'no permit yet').catch(() => undefined);
    // The only permit out is the one b asked for.
    await vi.waitFor(async () => expect(await permitsOut(c)).toHaveLength(1));
    await b.breaker.stop();
    // Given back by stop(): c need not wait the 60 s permitTimeoutMs.
    expect(await permitsOut(c)).toEqual([]);
    await closeByTrial(c);
  });
});

describe('recovery checks in a row', () => {
  it('health.successThreshold passing checks in a row close the circuit', async () => {
    const checks: string[] = [];
    instances = fleet(url, 1, {
      breaker: new ConsecutiveBreaker({ threshold: 1 }),
      health: {
        backoff: new ConstantBackoff({ delayMs: 30 }),
        successThreshold: 3,
        check: async () => {
          checks.push('check');
        },
      },
    });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await fail(i, 1);
    await vi.waitFor(() => expect(i.seen.states.map((s) => s.state)).toEqual(['open', 'closed']), { timeout: 10_000 });
    expect(checks).toHaveLength(3);
    expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'recovery_check_passed', failures: '0', calls: '3' });
  });
});
