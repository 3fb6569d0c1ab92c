import { afterEach, describe, expect, it, vi } from 'vitest';
import { breakerKeys, feedChannel } from '../../src/keys.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { type Instance, fail, fleet, stopAll, untilAll } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';

const own = ownRedis();
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

function fcall(fn: string, id: string, args: string[]): unknown {
  const k = breakerKeys('zenvark', id);
  return ['FCALL', fn, '2', k.state, k.events, feedChannel('zenvark'), 'operator', '1000', ...args];
}

describe('the state feed', () => {
  it('after a lost subscription, the transitions missed meanwhile are read back from the audit log, in order', async () => {
    instances = fleet(own.server.url, 1, { leaseTtlMs: 60_000 });
    const [i] = instances as [Instance];
    const id = i.breaker.id;
    // Another process holds the lease before this instance starts, so this instance
    // stays a follower and the recovery reports below carry the current token.
    await own.admin.function('LOAD', 'REPLACE', LIBRARY_CODE);
    const acquired = (await own.admin.call(...(fcall('zv1_acquire', id, ['60000']) as [string]))) as unknown[];
    expect(acquired.slice(0, 3)).toEqual(['granted', expect.any(Number), 'operator']);
    const token = String(acquired[1]);
    await i.breaker.start();
    // In one pipeline, so Redis runs them before the subscriber can reconnect: drop the
    // subscriber, then open and close the circuit 150 times and open it once more (more
    // than one page of the audit log to read back).
    const trip = (gen: number) => fcall('zv1_record', id, [String(gen), '0', '1', '0', '0', '1', '1', '1', 'consecutive:1:0:0']);
    const close = (gen: number) => fcall('zv1_health', id, [token, String(gen), 'recovery', 'success', '1', '0']);
    const pipeline = own.admin.pipeline().call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    for (let gen = 0; gen < 300; gen += 2) pipeline.call(...(trip(gen) as [string])).call(...(close(gen + 1) as [string]));
    pipeline.call(...(trip(300) as [string]));
    const results = await pipeline.exec();
    expect(results?.filter(([error]) => error !== null)).toEqual([]);
    const statuses = results?.slice(1).map(([, reply]) => (reply as unknown[])[0]);
    expect(statuses).toEqual([...Array.from({ length: 150 }, () => ['opened', 'closed']).flat(), 'opened']);
    await untilAll(instances, 'open');
    await vi.waitFor(() => expect(i.seen.states).toHaveLength(301), { timeout: 10_000 });
    expect(i.seen.states.map((s) => s.transition.generation)).toEqual(Array.from({ length: 301 }, (_, n) => n + 1));
    expect(i.seen.states.slice(0, 2).map((s) => s.transition.reason)).toEqual(['consecutive_failures', 'recovery_check_passed']);
    expect(i.seen.states.every((s) => !s.transition.local && s.transition.id !== '')).toBe(true);
    expect(i.seen.roles).toEqual([]);
  });

  it('foreign messages on the channel are reported once, not crashed on', async () => {
    instances = fleet(own.server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    await own.admin.publish(feedChannel('zenvark'), 'hello');
    await own.admin.publish(feedChannel('zenvark'), JSON.stringify({ kind: 'transition', key: breakerKeys('zenvark', i.breaker.id).state }));
    expect(i.breaker.state).toBe('closed');
    // The trip's own message comes after both on the same connection: once it is seen,
    // both foreign ones were handled.
    await fail(i, 3);
    await vi.waitFor(() => expect(i.seen.states.map((s) => s.state)).toEqual(['open']));
    expect(i.seen.errors.map((e) => (e as { code?: string }).code)).toEqual(['ZV_BAD_MESSAGE']);
  });

  it('corrupted breaker data in Redis is reported, and the instance goes on serving', async () => {
    instances = fleet(own.server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    await own.admin.hset(breakerKeys('zenvark', i.breaker.id).state, 'state', 'banana');
    await i.breaker.execute(async () => Promise.reject(new Error('x'))).catch(() => undefined);
    await vi.waitFor(() => {
      const error = i.seen.errors.find((e) => (e as { code?: string }).code === 'ZV_CORRUPT');
      expect((error?.cause as { code?: string })?.code).toBe('ZV_CORRUPT');
    });
    await expect(i.breaker.execute(async () => 'served')).resolves.toBe('served');
  });
});
