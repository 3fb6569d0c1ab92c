/**
 * breaker.explain() and explainBreaker() against real Redis: what they say of a closed
 * breaker's window, of each way to trip, of an open breaker's recovery and half-open
 * trials, after recovery, on a replica, of a breaker never used, and the errors they give.
 * Nothing is asserted on timing beyond generous bounds.
 */
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { sleep } from '../../harness/clock.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import {
  type CircuitBreakerOptions,
  CircuitOpenError,
  ConsecutiveBreaker,
  ConstantBackoff,
  CountBreaker,
  DEFAULTS,
  type Explanation,
  ExponentialBackoff,
  LIBRARY_REVISION,
  LibraryMissingError,
  LibraryOutdatedError,
  RedisFunctionError,
  RedisUnreachableError,
  SamplingBreaker,
  ZenvarkError,
  breakerKeys,
  deployLibrary,
  explainBreaker,
} from '../../src/index.js';
import { type Instance, fail, fleet, instance, leaderOf, startAll, stopAll, uniqueId, untilAll } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';

const url = inject('redisUrl');
const own = ownRedis({ library: true });
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

/** One started instance of a fresh breaker with these options. */
async function started(options: Partial<CircuitBreakerOptions> = {}, at = url): Promise<Instance> {
  const i = instance(at, { id: uniqueId('explain'), instanceId: 'instance-0', ...options });
  instances.push(i);
  await i.breaker.start();
  return i;
}

/** Runs calls through `i`: each entry a failure, a success, or a success that takes `slowMs`. */
async function calls(i: Instance, outcomes: readonly ('fail' | 'ok' | 'slow')[], slowMs = 40): Promise<void> {
  for (const outcome of outcomes) {
    await i.breaker
      .execute(async () => {
        if (outcome === 'slow') await sleep(slowMs);
        if (outcome === 'fail') throw new Error('dependency failed');
        return 'ok';
      })
      .catch(() => undefined);
  }
}

/** Waits until Redis has recorded `n` outcomes of `i` (successes wait up to a second for company). */
async function recorded(i: Instance, n: number): Promise<void> {
  await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(n), { timeout: 10_000 });
}

/** Polls breaker.explain() until `until` holds of it; returns that explanation. */
async function explainedWhen(i: Instance, until: (e: Explanation) => boolean, timeout = 10_000): Promise<Explanation> {
  return vi.waitFor(
    async () => {
      const e = await i.breaker.explain();
      expect(until(e), e.text).toBe(true);
      return e;
    },
    { timeout, interval: 20 },
  );
}

describe('breaker.explain() on a closed breaker: each rule of its window against its threshold', () => {
  it('consecutive failures: the run so far', async () => {
    const i = await started({ breaker: new ConsecutiveBreaker({ threshold: 5 }) });
    await fail(i, 3);
    await recorded(i, 3);
    const e = await i.breaker.explain();
    expect(e).toMatchObject({
      breakerId: i.breaker.id,
      state: 'closed',
      generation: 0,
      lastTransition: undefined,
      strategy: { spec: 'consecutive:5:0:0', kind: 'consecutive', window: 'consecutive', threshold: 5 },
      window: { failures: 3, calls: 3, slow: 0 },
      rules: [{ rule: 'consecutive_failures', value: 3, threshold: 5, reached: false }],
      instance: { instanceId: 'instance-0', state: 'closed', degraded: false },
    });
    expect(e.lines[0]).toMatch(/^closed for .+ \(generation 0\): it has never opened$/);
    expect(e.lines[1]).toMatch(/^window \(consecutive\): 3 of 5 consecutive failures; last call recorded .+ ago$/);
    expect(e.text).toBe(e.lines.join('\n'));
  });

  it('a count window: the failure rate, over calls that do not reach the minimum yet', async () => {
    const i = await started({ breaker: new CountBreaker({ threshold: 0.5, size: 10, minimumNumberOfCalls: 10 }) });
    await calls(i, ['fail', 'fail', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
    await recorded(i, 8);
    const e = await i.breaker.explain();
    expect(e.rules).toEqual([{ rule: 'failure_rate', value: 0.25, threshold: 0.5, count: 2, calls: 8, minimumCalls: 10, reached: false }]);
    expect(e.lines[1]).toMatch(/^window \(count:10\): failure rate 0\.25 of 0\.50 over the last 8 calls, needs 10;/);
  });

  it('a time window with slow calls: both rates, and the minimum', async () => {
    const i = await started({
      breaker: new SamplingBreaker({ threshold: 0.5, duration: 60_000, minimumNumberOfCalls: 4 }),
      slowCallDurationMs: 30,
      slowCallRateThreshold: 0.5,
    });
    await calls(i, ['slow', 'ok', 'ok']);
    await recorded(i, 3);
    const e = await i.breaker.explain();
    expect(e.strategy).toMatchObject({ spec: 'time:0.5:60000:4:0.5', window: 'time:60000', minimumCalls: 4, slowCallRateThreshold: 0.5 });
    expect(e.window).toEqual({ failures: 0, calls: 3, slow: 1 });
    expect(e.rules.map((r) => [r.rule, r.count, r.reached])).toEqual([
      ['failure_rate', 0, false],
      ['slow_call_rate', 1, false],
    ]);
    expect(e.lines[1]).toMatch(/^window \(time:60000\): failure rate 0\.00 of 0\.50 over 3 calls in the last 1 min, needs 4; slow-call rate 0\.3333 of 0\.50;/);
  });
});

describe('breaker.explain() after a trip: the rule that fired, with its numbers', () => {
  it('consecutive failures', async () => {
    const i = await started({ breaker: new ConsecutiveBreaker({ threshold: 3 }) });
    await fail(i, 3);
    await untilAll([i], 'open');
    const e = await i.breaker.explain();
    expect(e.lastTransition).toMatchObject({ from: 'closed', to: 'open', reason: 'consecutive_failures', failures: '3', threshold: '3', actor: 'instance-0', generation: 1 });
    expect(e).toMatchObject({ state: 'open', generation: 1, auditEntries: 1, window: { failures: 0, calls: 0 } });
    expect(e.lines[0]).toMatch(/^open for .+ \(generation 1\): 3 consecutive failures reached threshold 3, reported by instance-0 at \d{4}-\d\d-\d\dT/);
  });

  it('the failure rate', async () => {
    const i = await started({ breaker: new CountBreaker({ threshold: 0.5, size: 4, minimumNumberOfCalls: 4 }) });
    await calls(i, ['ok', 'fail', 'ok', 'fail']);
    await untilAll([i], 'open');
    const e = await i.breaker.explain();
    expect(e.lastTransition).toMatchObject({ reason: 'failure_rate', failures: '2', calls: '4', rate: '0.5000', threshold: '0.5', window: 'count:4' });
    expect(e.lines[0]).toMatch(/: failure rate 0\.50 \(2 failures\) reached threshold 0\.50 over the last 4 calls \(count:4, minimum 4\), reported by instance-0 /);
  });

  it('slow calls', async () => {
    const i = await started({
      breaker: new CountBreaker({ threshold: 1, size: 4, minimumNumberOfCalls: 4 }),
      slowCallDurationMs: 20,
      slowCallRateThreshold: 0.5,
    });
    await calls(i, ['slow', 'slow', 'slow', 'slow'], 30);
    await untilAll([i], 'open');
    const e = await i.breaker.explain();
    expect(e.lastTransition).toMatchObject({ reason: 'slow_call_rate', slow: '4', calls: '4', rate: '1.0000', threshold: '0.5' });
    expect(e.lines[0]).toMatch(/: slow-call rate 1\.00 \(4 slow calls\) reached threshold 0\.50 over the last 4 calls \(count:4, minimum 4\)/);
  });
});

describe('breaker.explain() while recovering', () => {
  it('open: the lease holder, the recovery progress, and the next check when the backoff says', async () => {
    // Checks after 100 ms (fails), 2 s more (passes), then 40 s more: the test reads the wait for the third.
    const backoff = new ExponentialBackoff({ initialDelayMs: 100, multiplier: 20 });
    let checks = 0;
    instances = fleet(url, 2, {
      health: {
        backoff,
        successThreshold: 2,
        check: async () => {
          checks += 1;
          if (checks === 1) throw new Error('still down');
        },
      },
    });
    await startAll(instances);
    await fail(instances[0] as Instance, 3);
    await untilAll(instances, 'open');
    // Open, the breaker has a duty: one instance takes the lease for its recovery checks.
    const leader = await leaderOf(instances);
    const e = await explainedWhen(leader, (x) => x.recovery?.successesInARow === 1);
    const recovery = e.recovery as NonNullable<Explanation['recovery']>;
    expect(recovery).toMatchObject({ failedChecks: 1, successesInARow: 1, successThreshold: 2, nextAttempt: 3 });
    // The holder's loop waits backoff.getDelayMs(3) from the last check: so does the explanation.
    expect(recovery.nextCheckInMs).toBe(Math.max(0, backoff.getDelayMs(3) - recovery.sinceLastCheckMs));
    expect(recovery.nextCheckInMs).toBeGreaterThan(0);
    // The lease holder (the leader, unless a late renewal on a loaded machine let the other take over).
    const holder = e.lease.holder;
    expect(instances.map((i) => i.breaker.instanceId)).toContain(holder);
    expect(e.lease.remainingMs).toBeGreaterThan(0);
    expect(e.instance?.role).toBe(holder === leader.breaker.instanceId ? 'leader' : 'follower');
    expect(e.text).toContain('recovery: 1 failed attempt, 1 of 2 passing checks in a row; last check ');
    expect(e.text).toMatch(new RegExp(`next recovery check in \\d+ s \\(attempt 3\\) by leader ${holder} \\(token ${e.lease.token}\\)`));

    // An operator with the same backoff hears the same; without one, that the holder knows.
    const admin = await explainBreaker(leader.redis, leader.breaker.id, { backoff, successThreshold: 2 });
    expect(admin.recovery).toMatchObject({ failedChecks: 1, successesInARow: 1, nextAttempt: 3 });
    expect(admin.recovery?.nextCheckInMs).toBeGreaterThan(0);
    expect(admin.instance).toBeUndefined();
    const blind = await explainBreaker(leader.redis, leader.breaker.id);
    expect(blind.recovery?.nextCheckInMs).toBeUndefined();
    expect(blind.text).toContain('next recovery check (attempt 3) by leader');
    expect(blind.text).toContain('its time is known only to the lease holder');
  });

  it('half-open: the trial calls that succeeded so far', async () => {
    const i = await started({
      health: { backoff: new ConstantBackoff({ delayMs: 100 }) },
      halfOpen: { permittedCalls: 5, successThreshold: 5 },
    });
    await fail(i, 3);
    await untilAll([i], 'half_open');
    const e = await vi.waitFor(
      async () => {
        await i.breaker.execute(async () => 'trial ok').catch((error: unknown) => {
          if (!(error instanceof CircuitOpenError)) throw error;
        });
        const x = await i.breaker.explain();
        expect(x.trials?.successes ?? 0, x.text).toBeGreaterThan(0);
        return x;
      },
      { timeout: 10_000, interval: 20 },
    );
    expect(e.state).toBe('half_open');
    expect(e.lastTransition).toMatchObject({ from: 'open', to: 'half_open', reason: 'open_wait_elapsed' });
    expect(e.trials?.successThreshold).toBe(5);
    expect(e.text).toMatch(/^half-open for .+: the open wait elapsed, reported by leader instance-0 \(token \d+\)/);
    expect(e.text).toMatch(/\ntrials: [1-4] of 5 trial calls succeeded, [01] permits? out\n/);
  });

  it('closed again: the last transition is the passing recovery check, and no lease is held', async () => {
    // A lease of a minute: only a release explains a free lease within the test.
    const i = await started({ leaseTtlMs: 60_000 });
    await fail(i, 3);
    await untilAll([i], 'open');
    i.healthy = true;
    await untilAll([i], 'closed');
    // The recovery was the duty the lease was held for: with it, the holder gives the lease back.
    const e = await explainedWhen(i, (x) => x.lease.holder === '');
    expect(e).toMatchObject({ state: 'closed', generation: 2, auditEntries: 2, lastTransition: { from: 'open', to: 'closed', reason: 'recovery_check_passed' } });
    expect(e.lastTransition?.token).not.toBe('');
    expect(e.lines[0]).toMatch(/^closed for .+ \(generation 2\): a recovery check passed( after \d+ failed attempts?)?, reported by leader instance-0 \(token \d+\)/);
    expect(e.lines[1]).toMatch(/^window \(consecutive\): 0 of 3 consecutive failures/);
    expect(e.lease).toEqual({ holder: '', token: Number(e.lastTransition?.token), remainingMs: 0 });
    expect(e.lines).toContain(`lease: none held (last token ${e.lease.token}); a closed breaker has a lease holder only for idle probes`);
  });
});

describe("breaker.explain() under an operator's mode", () => {
  it('forced open: who set it, why and until when; no recovery check meanwhile', async () => {
    const i = await started();
    await fail(i, 3);
    await untilAll([i], 'open');
    const forced = await i.breaker.forceOpen({ reason: 'deploy 42', forMs: 600_000 });
    const e = await explainedWhen(i, (x) => x.lease.holder === '');
    expect(e.mode).toMatchObject({ mode: 'forced_open', actor: 'instance-0', note: 'deploy 42', until: Number(forced.until) });
    expect(e.mode.leftMs).toBeGreaterThan(590_000);
    expect(e.lastTransition).toMatchObject({ reason: 'forced_open', generation: 2 });
    const until = new Date(Number(forced.until)).toISOString();
    expect(e.lines[0]).toMatch(/^open for .+ \(generation 2\): forced open by an operator: "deploy 42", reported by instance-0 at \d{4}-/);
    expect(e.lines[1]).toMatch(
      new RegExp(`^mode: forced open \\(calls fail fast, recovery checks pause\\), set by instance-0 .+ ago: "deploy 42"; ends in (9|10) min.* \\(at ${until}\\)$`),
    );
    expect(e.lines).toContain('next recovery check: none while forced open; when the mode ends, the window decides');
  });

  it('monitor mode: the would_open the window reached, and the mode; released, normal again', async () => {
    const i = await started();
    await i.breaker.monitor({ reason: 'new threshold' });
    await fail(i, 3);
    const e = await explainedWhen(i, (x) => x.generation === 2);
    expect(e.lastTransition).toMatchObject({ from: 'closed', to: 'closed', reason: 'would_open', rule: 'consecutive_failures', mode: 'monitor' });
    expect(e.lines[0]).toMatch(/^closed for .+ \(generation 2\): monitor mode: consecutive_failures would have opened it \(3 failures of 3 calls, threshold 3\); it stayed closed, reported by instance-0 /);
    expect(e.lines[1]).toMatch(/^mode: monitor \(calls pass; a rule reached is written as would_open instead of opening\), set by instance-0 .+ ago: "new threshold"; until released$/);
    await i.breaker.release({ reason: 'enforce it' });
    const after = await i.breaker.explain();
    expect(after.mode).toEqual({ mode: '', actor: '', note: '', sinceMs: 0, until: 0, leftMs: 0 });
    expect(after.lines[0]).toMatch(/\(generation 3\): released by an operator: "enforce it"; the window reached no rule, reported by instance-0 at /);
    expect(after.lines[1]).toMatch(/^window \(consecutive\): /);
  });
});

describe('breaker.explain() needs a running breaker, and never hangs', () => {
  it('rejects with ZV_NOT_STARTED before start() and after stop()', async () => {
    const i = instance(url, { id: uniqueId('explain') });
    instances.push(i);
    await expect(i.breaker.explain()).rejects.toMatchObject({ code: 'ZV_NOT_STARTED', message: expect.stringMatching(/is not started: .*call start\(\) first/) });
    await i.breaker.start();
    expect((await i.breaker.explain()).state).toBe('closed');
    await i.breaker.stop();
    await expect(i.breaker.explain()).rejects.toBeInstanceOf(ZenvarkError);
  });

  it('rejects with ZV_REDIS_UNREACHABLE, naming the server, when Redis does not answer', async () => {
    const i = await started({}, own.server.url);
    own.server.pause();
    try {
      await expect(i.breaker.explain()).rejects.toMatchObject({
        code: 'ZV_REDIS_UNREACHABLE',
        message: expect.stringContaining(`${own.server.host}:${own.server.port}`),
      });
    } finally {
      own.server.resume();
    }
  });
});

describe('explainBreaker(), without a running breaker', () => {
  it('a breaker never used: closed, generation 0, no transition, and nothing written', async () => {
    const id = uniqueId('never');
    const e = await explainBreaker(own.admin, id);
    expect(e).toMatchObject({
      breakerId: id,
      state: 'closed',
      generation: 0,
      epoch: '',
      lastTransition: undefined,
      auditEntries: 0,
      strategy: undefined,
      rules: [],
      idleMs: -1,
      lease: { holder: '', token: 0, remainingMs: 0 },
      recovery: undefined,
      trials: undefined,
      instance: undefined,
    });
    expect(e.lines).toEqual([
      'closed (generation 0): never used, no call recorded and no transition',
      'window: no call recorded yet',
      'lease: none held (never granted); a closed breaker has a lease holder only for idle probes',
    ]);
    const keys = breakerKeys(DEFAULTS.prefix, id);
    expect(await own.admin.exists(keys.state, keys.events)).toBe(0);
  });

  it('reads a replica of the primary (FCALL_RO), and hears what the primary says', async () => {
    // The primary sends its data set at once instead of waiting for more replicas to join.
    await own.admin.config('SET', 'repl-diskless-sync-delay', '0');
    const replica = await startRedis({ args: ['--replicaof', own.server.host, String(own.server.port)] });
    try {
      const replicaClient = replica.client();
      await expect(replicaClient.set('written-to-a-replica', 'x')).rejects.toThrow(/^READONLY/);
      const i = await started({}, own.server.url);
      await fail(i, 3);
      await untilAll([i], 'open');
      const onReplica = await vi.waitFor(
        async () => {
          const e = await explainBreaker(replicaClient, i.breaker.id);
          expect(e.state).toBe('open');
          return e;
        },
        { timeout: 15_000, interval: 50 },
      );
      const onPrimary = await explainBreaker(own.admin, i.breaker.id);
      expect(onReplica.lastTransition).toEqual(onPrimary.lastTransition);
      expect(onReplica).toMatchObject({ generation: 1, auditEntries: 1, lastTransition: { reason: 'consecutive_failures' } });
      expect(onReplica.lines[0]).toBe(onReplica.text.split('\n')[0]);
    } finally {
      await disposeRedis(replica);
    }
  });

  it('checks its arguments as the constructor does, naming each', async () => {
    const cases: [() => Promise<unknown>, ErrorConstructor, RegExp][] = [
      [() => explainBreaker(undefined as never, 'b'), TypeError, /^explainBreaker\(\) redis must be an ioredis Redis or Cluster client$/],
      [() => explainBreaker(own.admin, ''), TypeError, /^explainBreaker\(\) id must be a non-empty string, got ""$/],
      [() => explainBreaker(own.admin, 'b', 'zenvark' as never), TypeError, /^explainBreaker\(\) options is required and must be an object/],
      [() => explainBreaker(own.admin, 'b', { prefix: 'a{b}' }), RangeError, /^explainBreaker\(\) options\.prefix must not contain '\{' or '\}'/],
      [() => explainBreaker(own.admin, 'b', { successThreshold: 0 }), RangeError, /^explainBreaker\(\) options\.successThreshold must be an integer in \[1, 100\], got 0$/],
      [() => explainBreaker(own.admin, 'b', { backoff: {} as never }), TypeError, /^explainBreaker\(\) options\.backoff must be a backoff strategy with getDelayMs\(attempt\)$/],
      [() => explainBreaker(own.admin, 'b', { timeoutMs: 0 }), RangeError, /^explainBreaker\(\) options\.timeoutMs must be a finite number of milliseconds in \[1, /],
      [() => explainBreaker(own.admin, 'b', { backof: 1 } as never), TypeError, /^explainBreaker\(\) options has no option 'backof' \(did you mean 'backoff'\?/],
    ];
    for (const [call, type, message] of cases) {
      const error = await call().then(() => undefined, (caught: unknown) => caught as Error);
      expect(error, String(message)).toBeInstanceOf(type);
      expect(error?.message).toMatch(message);
    }
  });

  it('a missing library is LibraryMissingError, an older one LibraryOutdatedError', async () => {
    await own.admin.function('FLUSH');
    await expect(explainBreaker(own.admin, 'b')).rejects.toBeInstanceOf(LibraryMissingError);
    // Revision 3 had no zv1_explain (revision 4 added it).
    const source = readFileSync(new URL('../../lua/zenvark_v1.lua', import.meta.url), 'utf8');
    const older = source
      .replace(/^local REVISION = \d+$/m, 'local REVISION = 3')
      .replace(/^redis\.register_function\{ function_name = 'zv1_explain'.*$/m, '');
    await own.admin.function('LOAD', 'REPLACE', older);
    const error = await explainBreaker(own.admin, 'b').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LibraryOutdatedError);
    expect((error as Error).message).toContain(`is at revision 3, this package needs ${LIBRARY_REVISION}`);
    // What deploy-functions does: the older revision is upgraded, and explain works.
    expect(await deployLibrary(own.admin)).toMatchObject([{ action: 'upgraded', installed: 3, shipped: LIBRARY_REVISION }]);
    expect((await explainBreaker(own.admin, 'b')).state).toBe('closed');
  });

  it("data Zenvark did not write is the library's ZV_CORRUPT", async () => {
    const id = uniqueId('corrupt');
    await own.admin.hset(breakerKeys(DEFAULTS.prefix, id).state, 'owner', 'someone else');
    const error = await explainBreaker(own.admin, id).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RedisFunctionError);
    expect(error).toMatchObject({ code: 'ZV_CORRUPT', functionName: 'zv1_explain' });
  });

  it('gives up after timeoutMs when Redis does not answer', async () => {
    const client: Redis = own.server.client();
    await client.ping();
    own.server.pause();
    try {
      const error = await explainBreaker(client, 'b', { timeoutMs: 300 }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(RedisUnreachableError);
      expect((error as Error).message).toBe(`Redis at ${own.server.host}:${own.server.port} did not answer zv1_explain within 300 ms`);
    } finally {
      own.server.resume();
    }
  });
});
