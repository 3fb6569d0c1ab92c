/**
 * What the metrics say while breakers trip, refuse, fail over, degrade and recover, against
 * real Redis: the same scenarios, and the same figures, for every backend (prom-client,
 * OpenTelemetry). Each instance gets a registration of its own (`filter`), as separate
 * processes would have.
 */
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import { CircuitOpenError, CircuitState, ConsecutiveBreaker, ConstantBackoff, RedisOperation, TimeoutError } from '../../src/index.js';
import { INSTRUMENTS, type InstrumentName } from '../../src/instruments.js';
import { type Instance, fail, fleet, leaderOf, startAll, stopAll, untilAll } from './instances.js';
import { type Backend, type Registered, type RegisterOptions, figure, only } from './metrics.js';

/** A call that stays pending until released. */
function gate() {
  let release: () => void = () => undefined;
  const settled = new Promise<string>((resolve) => {
    release = () => resolve('released');
  });
  return { settled, release };
}

/** How many stateChange events `i` took from the feed. */
function feedCount(i: Instance): () => number {
  let count = 0;
  i.breaker.on('stateChange', (event) => {
    if (event.source === 'feed') count += 1;
  });
  return () => count;
}

/** The instances, registrations and servers of a test, let go after it. */
function testState() {
  const state = { instances: [] as Instance[], registered: [] as Registered[], servers: [] as RedisServer[] };
  afterEach(async () => {
    await stopAll(state.instances);
    state.instances = [];
    for (const r of state.registered) r.dispose();
    state.registered = [];
    for (const server of state.servers) await disposeRedis(server);
    state.servers = [];
  });
  return state;
}

/**
 * Every scenario but the stopped breaker's. `customPrefix`: a prefix other than the
 * default, in the backend's syntax.
 */
export function metricsScenarios(backend: Backend, customPrefix: string): void {
  const url = inject('redisUrl');
  const t = testState();

  const register = (options: RegisterOptions): Registered => {
    const r = backend.register(options);
    t.registered.push(r);
    return r;
  };

  const states = async (r: Registered) => ({
    closed: await figure(r, 'state', { state: 'closed' }),
    open: await figure(r, 'state', { state: 'open' }),
    half_open: await figure(r, 'state', { state: 'half_open' }),
  });

  describe(`${backend.name}: the figures as breakers run`, () => {
    it('trips, refuses and recovers: calls, refusals, transitions, health checks, feed lag, roles and outcomes, on the instance that tripped it, the other and the leader', async () => {
      t.instances = fleet(url, 2);
      await startAll(t.instances);
      const [tripper, other] = t.instances as [Instance, Instance];
      const rt = register({ filter: only(tripper.breaker) });
      const ro = register({ filter: only(other.breaker) });
      const tripperFeed = feedCount(tripper);
      const otherFeed = feedCount(other);

      expect(await states(rt)).toEqual({ closed: 1, open: 0, half_open: 0 });
      // Closed, with no idle probes, the breaker has no duty: no instance holds its lease.
      for (const r of [rt, ro]) {
        expect(await figure(r, 'role', { role: 'leader' })).toBe(0);
        expect(await figure(r, 'role', { role: 'follower' })).toBe(1);
      }
      expect(await figure(rt, 'degraded')).toBe(0);
      // Counters of a known, small set of labels are there from the start, at 0.
      expect(await figure(rt, 'callsRejected', { state: 'open' })).toBe(0);
      expect(await figure(rt, 'callsRejected', { state: 'half_open' })).toBe(0);
      for (const operation of Object.values(RedisOperation)) expect(await figure(rt, 'redisErrors', { operation })).toBe(0);
      // Every series is the breaker's: its id is the `breaker` label.
      expect((await rt.series('state')).map((s) => s.labels.breaker)).toEqual(Object.values(CircuitState).map(() => tripper.breaker.id));

      // A call that starts now and ends after the trip: its outcome is stale.
      const late = gate();
      const lateCall = tripper.breaker.execute(() => late.settled);
      await tripper.breaker.execute(async () => 'ok');
      await tripper.breaker.execute(async () => 'ok');
      await fail(tripper, 3);
      await untilAll(t.instances, 'open');
      expect(await figure(rt, 'callDuration', { result: 'success' })).toBe(2);
      expect(await figure(rt, 'callDuration', { result: 'failure' })).toBe(3);
      expect(await figure(ro, 'callDuration')).toBeUndefined();

      // Refused calls are counted by the state that refused them, and are not durations.
      for (let n = 0; n < 2; n += 1) await expect(tripper.breaker.execute(async () => 'no')).rejects.toBeInstanceOf(CircuitOpenError);
      expect(await figure(rt, 'callsRejected', { state: 'open' })).toBe(2);
      expect(await figure(rt, 'callsRejected', { state: 'half_open' })).toBe(0);
      expect(await figure(rt, 'callDuration')).toBe(5);

      const opened = { from: 'closed', to: 'open', reason: 'consecutive_failures', origin: 'shared' };
      await vi.waitFor(async () => {
        for (const r of [rt, ro]) {
          expect(await figure(r, 'transitions', opened)).toBe(1);
          expect(await states(r)).toEqual({ closed: 0, open: 1, half_open: 0 });
        }
      });
      // The other instance did not make the transition: it came through the feed, and its
      // lag was observed there; the tripper had it in the answer to its own report.
      expect(otherFeed()).toBeGreaterThanOrEqual(1);
      expect(await figure(ro, 'feedLag')).toBe(otherFeed());
      expect(await figure(rt, 'feedLag')).toBeUndefined();
      expect(tripperFeed()).toBe(0);

      // Open, the breaker has a duty: one of them takes the lease (which one is not the point).
      const leader = await leaderOf(t.instances);
      const [rl, rf, followerFeed] = leader === tripper ? [rt, ro, otherFeed] : [ro, rt, tripperFeed];
      await vi.waitFor(async () => {
        expect(await figure(rl, 'role', { role: 'leader' })).toBe(1);
        expect(await figure(rl, 'role', { role: 'follower' })).toBe(0);
        expect(await figure(rf, 'role', { role: 'leader' })).toBe(0);
        expect(await figure(rf, 'role', { role: 'follower' })).toBe(1);
      });
      // The leader checks, and the dependency is still down.
      await vi.waitFor(async () => expect(await figure(rl, 'healthCheckDuration', { type: 'recovery', result: 'failure' })).toBeGreaterThanOrEqual(1));
      expect(await figure(rf, 'healthCheckDuration')).toBeUndefined();

      late.release();
      await lateCall;
      await vi.waitFor(async () => expect(await figure(rt, 'outcomes', { fate: 'stale' })).toBe(1));
      expect(tripper.breaker.stats.stale).toBe(1);

      for (const i of t.instances) i.healthy = true;
      await untilAll(t.instances, 'closed');
      const closed = { from: 'open', to: 'closed', reason: 'recovery_check_passed', origin: 'shared' };
      await vi.waitFor(async () => {
        for (const r of [rt, ro]) {
          expect(await figure(r, 'transitions', closed)).toBe(1);
          expect(await figure(r, 'transitions')).toBe(2);
          expect(await states(r)).toEqual({ closed: 1, open: 0, half_open: 0 });
        }
      });
      expect(await figure(rl, 'healthCheckDuration', { type: 'recovery', result: 'success' })).toBe(1);
      const checks = await figure(rl, 'healthCheckDuration');
      expect(checks).toBe(leader.seen.checks.length);
      // Seconds: each check took well under one.
      expect(await figure(rl, 'healthCheckDuration', {}, true)).toBeLessThan(checks as number);
      // The follower took the closing from the feed too.
      expect(followerFeed()).toBeGreaterThanOrEqual(1);
      expect(await figure(rf, 'feedLag')).toBe(followerFeed());
      // Closed again, the duty is over: the leader gives the lease back.
      await vi.waitFor(async () => expect(await figure(rl, 'role', { role: 'follower' })).toBe(1));
      expect(await figure(rl, 'role', { role: 'leader' })).toBe(0);

      // Outcomes as breaker.stats has them: the five reported, the late one stale.
      await vi.waitFor(async () => expect(await figure(rt, 'outcomes', { fate: 'recorded' })).toBe(5));
      expect(tripper.breaker.stats).toMatchObject({ recorded: 5, stale: 1, local: 0, overflowed: 0, undelivered: 0 });
      expect(await figure(rt, 'outcomes', { fate: 'local' })).toBe(0);
      expect(await figure(rt, 'outcomes', { fate: 'dropped' })).toBe(0);
      expect(await figure(ro, 'outcomes')).toBe(0);
      expect(await figure(rt, 'redisErrors')).toBe(0);
    });

    it('half-open: a call without a trial permit is refused as half_open; the trial closes the circuit', async () => {
      t.instances = fleet(url, 1, {
        breaker: new ConsecutiveBreaker({ threshold: 1 }),
        health: { backoff: new ConstantBackoff({ delayMs: 50 }) },
        halfOpen: { permittedCalls: 1 },
      });
      const [i] = t.instances as [Instance];
      const r = register({ filter: only(i.breaker) });
      await i.breaker.start();
      await fail(i, 1);
      await untilAll(t.instances, 'half_open');

      const refused = { open: 0, half_open: 0 };
      const count = (error: unknown) => {
        if (error instanceof CircuitOpenError) refused[error.state as 'open' | 'half_open'] += 1;
      };
      const trial = gate();
      let ran = false;
      const trialCall = vi.waitFor(
        async () => {
          await i.breaker
            .execute(() => {
              ran = true;
              return trial.settled;
            })
            .catch(count);
          expect(ran).toBe(true);
        },
        { timeout: 10_000, interval: 20 },
      );
      await vi.waitFor(() => expect(ran).toBe(true), { timeout: 10_000 });
      // The one permit is out: these are refused.
      for (let n = 0; n < 3; n += 1) await i.breaker.execute(async () => 'no').catch(count);
      expect(refused.half_open).toBeGreaterThanOrEqual(3);
      expect(await figure(r, 'callsRejected', { state: 'half_open' })).toBe(refused.half_open);
      expect(await figure(r, 'callsRejected', { state: 'open' })).toBe(refused.open);
      expect(await states(r)).toEqual({ closed: 0, open: 0, half_open: 1 });

      trial.release();
      await trialCall;
      await untilAll(t.instances, 'closed');
      await vi.waitFor(async () => {
        for (const [from, to, reason] of [
          ['closed', 'open', 'consecutive_failures'],
          ['open', 'half_open', 'open_wait_elapsed'],
          ['half_open', 'closed', 'trial_calls_passed'],
        ] as const) {
          expect(await figure(r, 'transitions', { from, to, reason, origin: 'shared' })).toBe(1);
        }
      });
      expect(await figure(r, 'transitions')).toBe(3);
      expect(await states(r)).toEqual({ closed: 1, open: 0, half_open: 0 });
    });

    it('a timed-out call is a result of its own, timeout, and so is an ignored one; durations are in seconds', async () => {
      t.instances = fleet(url, 1, { timeoutMs: 50, isFailure: (error) => (error instanceof RangeError ? 'ignore' : true) });
      const [i] = t.instances as [Instance];
      const r = register({ filter: only(i.breaker) });
      await i.breaker.start();
      const never = (signal: AbortSignal | undefined) =>
        new Promise<never>((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason as Error)));
      await expect(i.breaker.execute(never)).rejects.toBeInstanceOf(TimeoutError);
      await expect(
        i.breaker.execute(async () => {
          throw new RangeError('the caller asked for too much');
        }),
      ).rejects.toBeInstanceOf(RangeError);
      await fail(i, 1);
      await i.breaker.execute(async () => 'ok');
      for (const result of ['timeout', 'ignored', 'failure', 'success']) expect(await figure(r, 'callDuration', { result })).toBe(1);
      // At least the 50 ms timeout, in seconds (50 would be milliseconds).
      const timedOut = (await figure(r, 'callDuration', { result: 'timeout' }, true)) as number;
      expect(timedOut).toBeGreaterThanOrEqual(0.04);
      expect(timedOut).toBeLessThan(10);
    });

    it('idle probes are health checks of type idle', async () => {
      t.instances = fleet(url, 1, {
        health: { backoff: new ConstantBackoff({ delayMs: 50 }), check: async () => undefined, idleProbeIntervalMs: 100 },
      });
      const [i] = t.instances as [Instance];
      const r = register({ filter: only(i.breaker) });
      await i.breaker.start();
      await vi.waitFor(async () => expect(await figure(r, 'healthCheckDuration', { type: 'idle', result: 'success' })).toBeGreaterThanOrEqual(1), {
        timeout: 10_000,
      });
      expect(await figure(r, 'healthCheckDuration', { type: 'recovery' })).toBeUndefined();
      expect(await figure(r, 'transitions')).toBeUndefined();
    });

    it('fails over: the role moves to the other instance when the leader stops', async () => {
      t.instances = fleet(url, 2);
      await startAll(t.instances);
      // Open, the breaker has a duty (recovery checks): one instance takes the lease.
      await fail(t.instances[0] as Instance, 3);
      await untilAll(t.instances, 'open');
      const leader = await leaderOf(t.instances);
      const other = t.instances.find((i) => i !== leader) as Instance;
      const rl = register({ filter: only(leader.breaker) });
      const ro = register({ filter: only(other.breaker) });
      expect(await figure(rl, 'role', { role: 'leader' })).toBe(1);
      expect(await figure(ro, 'role', { role: 'leader' })).toBe(0);
      await leader.breaker.stop();
      await vi.waitFor(async () => {
        expect(await figure(ro, 'role', { role: 'leader' })).toBe(1);
        expect(await figure(ro, 'role', { role: 'follower' })).toBe(0);
      });
    });

    it("the mode an operator set: one series per mode, on every instance; the controls' transitions counted by reason", async () => {
      t.instances = fleet(url, 2);
      await startAll(t.instances);
      const [controller, other] = t.instances as [Instance, Instance];
      const rs = [register({ filter: only(controller.breaker) }), register({ filter: only(other.breaker) })];
      const modes = async (r: Registered) => ({
        normal: await figure(r, 'mode', { mode: 'normal' }),
        forced_open: await figure(r, 'mode', { mode: 'forced_open' }),
        forced_closed: await figure(r, 'mode', { mode: 'forced_closed' }),
        monitor: await figure(r, 'mode', { mode: 'monitor' }),
      });
      for (const r of rs) expect(await modes(r)).toEqual({ normal: 1, forced_open: 0, forced_closed: 0, monitor: 0 });
      await controller.breaker.forceOpen({ reason: 'deploy' });
      for (const r of rs) {
        await vi.waitFor(async () => expect(await modes(r)).toEqual({ normal: 0, forced_open: 1, forced_closed: 0, monitor: 0 }));
        expect(await states(r)).toEqual({ closed: 0, open: 1, half_open: 0 });
        expect(await figure(r, 'transitions', { from: 'closed', to: 'open', reason: 'forced_open', origin: 'shared' })).toBe(1);
      }
      await controller.breaker.release({ reason: 'done' });
      for (const r of rs) await vi.waitFor(async () => expect(await modes(r)).toEqual({ normal: 1, forced_open: 0, forced_closed: 0, monitor: 0 }));
    });

    it('constant labels and a prefix of your own, on every series', async () => {
      t.instances = fleet(url, 1);
      const [i] = t.instances as [Instance];
      const labels = { service: 'checkout', region: 'eu-west' };
      const r = register({ filter: only(i.breaker), prefix: customPrefix, labels });
      await i.breaker.start();
      await i.breaker.execute(async () => 'ok');
      await fail(i, 3);
      await untilAll(t.instances, 'open');
      await i.breaker.execute(async () => 'no').catch(() => undefined);
      await vi.waitFor(async () => expect(await figure(r, 'transitions')).toBe(1));
      let seen = 0;
      for (const name of Object.keys(INSTRUMENTS) as InstrumentName[]) {
        for (const s of await r.series(name)) {
          expect(s.labels, name).toMatchObject({ ...labels, breaker: i.breaker.id });
          seen += 1;
        }
      }
      expect(seen).toBeGreaterThan(15);
      expect(await figure(r, 'state', { state: 'open', service: 'checkout' })).toBe(1);
    });
  });

  describe(`${backend.name}: while Redis is unreachable`, () => {
    async function ownServer(): Promise<RedisServer> {
      const server = await startRedis();
      t.servers.push(server);
      return server;
    }

    it('degraded is 1, transitions are local, Redis errors are counted by operation, outcomes local; back to 0 when Redis returns', async () => {
      const server = await ownServer();
      // Idle probes (an hour apart) are a duty of the closed breaker: the instance holds the
      // lease when Redis goes away, and the lease lapses on its own clock.
      t.instances = fleet(server.url, 1, { idleDuty: true });
      const [i] = t.instances as [Instance];
      const r = register({ filter: only(i.breaker) });
      const errors = new Map<string, number>();
      i.breaker.on('redisError', (event) => errors.set(event.operation, (errors.get(event.operation) ?? 0) + 1));
      await i.breaker.start();
      await leaderOf(t.instances);
      expect(await figure(r, 'role', { role: 'leader' })).toBe(1);

      await server.stop({ kill: true });
      await vi.waitFor(async () => expect(await figure(r, 'degraded')).toBe(1), { timeout: 10_000 });
      await expect(i.breaker.execute(async () => 'still served')).resolves.toBe('still served');
      await fail(i, 3);
      await untilAll(t.instances, 'open');
      await vi.waitFor(async () =>
        expect(await figure(r, 'transitions', { from: 'closed', to: 'open', reason: 'local_failures', origin: 'local' })).toBe(1),
      );
      expect(await figure(r, 'transitions', { origin: 'shared' })).toBeUndefined();
      await vi.waitFor(async () => expect(await figure(r, 'outcomes', { fate: 'local' })).toBe(i.breaker.stats.local));
      expect(i.breaker.stats.local).toBeGreaterThanOrEqual(3);

      // Every failed call to Redis, as the redisError event tells them; the resyncs go on failing.
      await vi.waitFor(async () => expect(await figure(r, 'redisErrors', { operation: 'read' })).toBeGreaterThanOrEqual(1), { timeout: 10_000 });
      await vi.waitFor(async () => {
        for (const operation of Object.values(RedisOperation)) {
          expect(await figure(r, 'redisErrors', { operation }), operation).toBe(errors.get(operation) ?? 0);
        }
      });

      // Alone, the instance probes for itself.
      i.healthy = true;
      await untilAll(t.instances, 'closed');
      await vi.waitFor(async () =>
        expect(await figure(r, 'transitions', { from: 'open', to: 'closed', reason: 'local_recovery', origin: 'local' })).toBe(1),
      );
      expect(await figure(r, 'healthCheckDuration', { type: 'recovery', result: 'success' })).toBeGreaterThanOrEqual(1);
      // The lease lapsed on the instance's own clock.
      await vi.waitFor(async () => expect(await figure(r, 'role', { role: 'follower' })).toBe(1), { timeout: 10_000 });

      await server.restart();
      await vi.waitFor(async () => expect(await figure(r, 'degraded')).toBe(0), { timeout: 20_000 });
      expect(i.breaker.degraded).toBe(false);
    });

    it('with localFallback off, outcomes that reach no window are dropped', async () => {
      const server = await ownServer();
      t.instances = fleet(server.url, 1, { localFallback: false });
      const [i] = t.instances as [Instance];
      const r = register({ filter: only(i.breaker) });
      await i.breaker.start();
      await server.stop({ kill: true });
      await fail(i, 10);
      await vi.waitFor(() => expect(i.breaker.stats.undelivered).toBe(10), { timeout: 10_000 });
      expect(await figure(r, 'outcomes', { fate: 'dropped' })).toBe(10);
      expect(await figure(r, 'outcomes', { fate: 'local' })).toBe(0);
      expect(await figure(r, 'degraded')).toBe(1);
    });
  });
}

/**
 * A stopped breaker's series are gone, of `which` instruments: every one where the backend
 * can remove a series, the counters and gauges where histograms cannot be (they are read
 * at each collection).
 */
export function stoppedScenario(backend: Backend, which: 'every instrument' | 'counters and gauges'): void {
  const url = inject('redisUrl');
  const t = testState();

  it(`${backend.name}: a stopped breaker has no series left (${which}); started again, it has them again`, async () => {
    t.instances = fleet(url, 1, { timeoutMs: 1000 });
    const [i] = t.instances as [Instance];
    const r = backend.register({ filter: only(i.breaker) });
    t.registered.push(r);
    await i.breaker.start();
    await i.breaker.execute(async () => 'ok');
    await fail(i, 3);
    await untilAll(t.instances, 'open');
    await i.breaker.execute(async () => 'no').catch(() => undefined);
    const names = (Object.keys(INSTRUMENTS) as InstrumentName[]).filter((name) => which === 'every instrument' || INSTRUMENTS[name].kind !== 'histogram');
    // One instance alone takes nothing from the feed: every other instrument has series.
    const expected = names.filter((name) => name !== 'feedLag');
    await vi.waitFor(async () => {
      for (const name of expected) expect((await r.series(name)).length, name).toBeGreaterThan(0);
    });

    await i.breaker.stop();
    for (const name of names) expect(await r.series(name), name).toEqual([]);
    await i.breaker.start();
    expect(await figure(r, 'state', { state: 'open' })).toBe(1);
    expect((await r.series('outcomes')).map((s) => s.labels.fate).sort()).toEqual(['dropped', 'local', 'recorded', 'stale']);
  });
}
