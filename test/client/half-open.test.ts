import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { CircuitOpenError, ConsecutiveBreaker, ConstantBackoff, ExponentialBackoff, TimeoutError } from '../../src/index.js';
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

/** Every instance tries `attempts` calls; returns the trial calls that actually ran. */
async function tryCalls(list: Instance[], attempts: number, trial: () => Promise<string>): Promise<{ ran: number; refused: number }> {
  let ran = 0;
  let refused = 0;
  for (let n = 0; n < attempts; n += 1) {
    for (const i of list) {
      i.breaker
        .execute(() => {
          ran += 1;
          return trial();
        })
        .catch((error: unknown) => {
          if (error instanceof CircuitOpenError) {
            refused += 1;
            expect(error.state).toBe('half_open');
          }
        });
    }
    await sleep(20);
  }
  return { ran, refused };
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
    const { ran, refused } = await tryCalls(instances, 15, () => trial.settled);
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
    await tryCalls(instances, 10, () => trial.settled);
    trial.release(false);
    await untilAll(instances, 'open');
    const reopenedAt = performance.now();
    expect(a.seen.states.at(-1)?.transition.reason).toBe('trial_call_failed');
    await untilAll(instances, 'half_open');
    // The first wait was 100 ms; after one failed period the next is 400 ms.
    expect(performance.now() - reopenedAt).toBeGreaterThanOrEqual(390);
  });

  it('with a health check, a passing check leads to half-open, not straight to closed', async () => {
    instances = fleet(url, 2, {
      breaker: new ConsecutiveBreaker({ threshold: 1 }),
      halfOpen: { permittedCalls: 1 },
    });
    await Promise.all(instances.map((i) => i.breaker.start()));
    const leader = await leaderOf(instances);
    await fail(leader, 1);
    await untilAll(instances, 'open');
    leader.healthy = true;
    await untilAll(instances, 'half_open');
    expect(leader.seen.states.at(-1)?.transition.reason).toBe('recovery_check_passed');
    await tryCalls(instances, 10, async () => 'fine');
    await untilAll(instances, 'closed');
  });

  it('a trial call ends before its permit lapses: one without a timeout is cut short, fails, and reopens the circuit', async () => {
    const [i] = (await halfOpenFleet(1, 400)) as [Instance];
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
    expect((error as TimeoutError).timeoutMs).toBeLessThanOrEqual(360);
    expect(signal?.aborted).toBe(true);
    await vi.waitFor(() => expect(i.seen.states.map((s) => s.transition.reason)).toContain('trial_call_failed'));
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
    await leaving.breaker.stop();
    const stoppedAt = performance.now();
    await closeByTrial(other);
    expect(performance.now() - stoppedAt).toBeGreaterThanOrEqual(300);
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
    // a and b have no calls: they hold nothing, and c gets the permit on its second try.
    await sleep(200);
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
    await vi.waitFor(() => expect((b.breaker as unknown as { trials?: { held?: unknown } }).trials?.held).toBeDefined());
    await b.breaker.stop();
    // Given back at once: c need not wait the 60 s permitTimeoutMs.
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
    await leaderOf(instances);
    await fail(i, 1);
    await vi.waitFor(() => expect(i.seen.states.map((s) => s.state)).toEqual(['open', 'closed']), { timeout: 10_000 });
    expect(checks).toHaveLength(3);
    expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'recovery_check_passed', failures: '0', calls: '3' });
  });
});
