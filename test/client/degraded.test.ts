import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConsecutiveBreaker, ConstantBackoff, type ZenvarkError } from '../../src/index.js';
import { sleep } from '../../harness/clock.js';
import { type Instance, fail, fleet, leaderOf, sharedState, stopAll, untilAll } from '../support/instances.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';

let server: RedisServer;
let instances: Instance[] = [];

beforeEach(async () => {
  server = await startRedis();
});

afterEach(async () => {
  await stopAll(instances);
  instances = [];
  await disposeRedis(server);
});

const source = readFileSync(new URL('../../lua/zenvark_v1.lua', import.meta.url), 'utf8');
const codes = (i: Instance) => i.seen.errors.map((e) => (e as ZenvarkError).code);

describe('while Redis is unreachable', () => {
  it('keeps serving, evaluates the strategy locally, recovers locally, and reports the outage once', async () => {
    // Idle probes (an hour apart) are a duty of the closed breaker: the instance holds the
    // lease, and has renewals to fail while Redis is away.
    instances = fleet(server.url, 1, { idleDuty: true });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await leaderOf(instances);
    await server.stop({ kill: true });
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_REDIS_UNREACHABLE'));

    await expect(i.breaker.execute(async () => 'still served')).resolves.toBe('still served');
    await fail(i, 3);
    await untilAll(instances, 'open');
    await vi.waitFor(() => expect(i.seen.states.at(-1)?.transition).toMatchObject({ to: 'open', reason: 'local_failures', local: true, failures: '3' }));

    // Every instance probes for itself while it cannot reach the others.
    i.healthy = true;
    await untilAll(instances, 'closed');
    expect(i.seen.states.at(-1)?.transition).toMatchObject({ from: 'open', to: 'closed', reason: 'local_recovery', local: true });
    // The lease lapses on the instance's own clock; then it goes on trying Redis for a while.
    await vi.waitFor(() => expect(i.seen.roles).toEqual(['leader', 'follower']), { timeout: 5000 });
    await sleep(1500);
    expect(codes(i).filter((c) => c === 'ZV_REDIS_UNREACHABLE')).toHaveLength(1);
    expect(codes(i)).not.toContain('ZV_LEASE_FAILED');
  });

  it('when Redis returns, its shared state wins and the local window is dropped', async () => {
    instances = fleet(server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    await server.stop({ kill: true });
    await fail(i, 3);
    // The first failure may still be on its way to the dead server: it counts once its
    // report fails.
    await untilAll(instances, 'open');

    // Back, empty: no function library either; loadFunctions lets the breaker reload it.
    await server.restart();
    await untilAll(instances, 'closed', 20_000);
    expect(i.seen.states.at(-1)?.transition).toMatchObject({ from: 'open', to: 'closed', reason: 'resync', local: true });

    // The local failures are gone: once Redis has counted two more, they have not tripped
    // a threshold of three.
    const recorded = i.breaker.stats.recorded;
    await fail(i, 2);
    await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(recorded + 2), { timeout: 5000 });
    expect(i.breaker.state).toBe('closed');
    expect((await sharedState(i)).state).toBe('closed');
    await fail(i, 1);
    await untilAll(instances, 'open');
    expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'consecutive_failures', local: false, generation: 1 });
  });

  it('a library flushed while running is loaded again when the application allows it', async () => {
    instances = fleet(server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    const admin = server.client();
    await admin.function('FLUSH');
    await fail(i, 1);
    await vi.waitFor(async () => expect(Number(await admin.call('FCALL_RO', 'zv1_revision', '0'))).toBeGreaterThan(0), { timeout: 10_000 });
    // The cause is named: the library is missing (and was loaded again).
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_LIBRARY_MISSING'));
    // Back on the shared state: three failures trip it in Redis.
    await vi.waitFor(async () => {
      await fail(i, 3);
      expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'consecutive_failures', local: false });
    }, { timeout: 20_000, interval: 500 });
  });

  it('a plain ERR reply from a library that is there is not a missing library', async () => {
    // A defect stands in for any failure the server words its own way: zv1_record raises.
    const admin = server.client();
    await admin.function('LOAD', source.replace('local function record(keys, args)\n', "$&  error('a defect')\n"));
    instances = fleet(server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    await fail(i, 1);
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_REDIS_REFUSED'));
    expect(codes(i)).not.toContain('ZV_LIBRARY_MISSING');
    // Not taken for a missing library, so not replaced by the shipped one either.
    expect(String(await admin.call('FUNCTION', 'LIST', 'WITHCODE'))).toContain('a defect');
  });

  it('half-open when Redis goes away: open alone, then closed alone after the wait', async () => {
    instances = fleet(server.url, 1, {
      breaker: new ConsecutiveBreaker({ threshold: 1 }),
      health: { backoff: new ConstantBackoff({ delayMs: 200 }) },
      halfOpen: { permittedCalls: 1 },
    });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await fail(i, 1);
    await untilAll(instances, 'half_open');
    await server.stop({ kill: true });
    // The permit held cannot be reported any more: a trial call reveals the outage.
    await i.breaker.execute(async () => 'trial').catch(() => undefined);
    await vi.waitFor(() => expect(i.seen.states.map((s) => s.transition.reason)).toContain('redis_unreachable'), { timeout: 10_000 });
    expect(i.seen.states.find((s) => s.transition.reason === 'redis_unreachable')?.transition).toMatchObject({
      from: 'half_open',
      to: 'open',
      local: true,
    });
    await vi.waitFor(() => expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'local_recovery', to: 'closed' }), {
      timeout: 10_000,
    });
  });

  it('with localFallback off, keeps the last known state', async () => {
    instances = fleet(server.url, 1, { localFallback: false });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await server.stop({ kill: true });
    await fail(i, 10);
    // No local window takes the outcomes: all ten are counted as undelivered.
    await vi.waitFor(() => expect(i.breaker.stats.undelivered).toBe(10), { timeout: 5000 });
    expect(i.breaker.state).toBe('closed');
    expect(i.seen.states).toEqual([]);
  });

  it('a frozen Redis while the circuit is open: the instance notices, recovers locally, then follows Redis again', async () => {
    instances = fleet(server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    await fail(i, 3);
    await untilAll(instances, 'open');
    await vi.waitFor(() => expect(i.breaker.role).toBe('leader'));
    // Open: no outcomes to report; only the lease and the health checks talk to Redis.
    server.pause();
    i.healthy = true;
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_REDIS_UNREACHABLE'), { timeout: 10_000 });
    await untilAll(instances, 'closed', 10_000);
    expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'local_recovery', local: true });
    // Back: Redis still says open (resync), then the holder's check closes it for everyone.
    server.resume();
    await vi.waitFor(
      () => expect(i.seen.states.map((s) => s.transition.reason).slice(-2)).toEqual(['resync', 'recovery_check_passed']),
      { timeout: 20_000 },
    );
    expect(i.breaker.state).toBe('closed');
  });

  it('a frozen Redis (commands time out) is treated like an unreachable one', async () => {
    instances = fleet(server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    server.pause();
    await fail(i, 1);
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_REDIS_UNREACHABLE'), { timeout: 10_000 });
    await fail(i, 3);
    await untilAll(instances, 'open');
    server.resume();
    await untilAll(instances, 'closed', 20_000);
  });
});
