/**
 * Messages on the feed channel that the library did not publish (anyone with PUBLISH
 * rights can send them, or a buggy client): a forged next transition is taken for one
 * round trip at most, then the instance goes back to Redis's state and says so; a forged
 * jump is never taken.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { breakerKeys, feedChannel } from '../../src/index.js';
import { sleep } from '../../harness/clock.js';
import { type Instance, fail, fleet, stopAll, untilAll } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';

const own = ownRedis();
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

const codes = (i: Instance) => i.seen.errors.map((e) => (e as { code?: string }).code);

/** A transition message as the library would publish it, for a generation Redis never reached. */
async function forge(i: Instance, to: string, generationsAhead: number): Promise<void> {
  const keys = breakerKeys('zenvark', i.breaker.id);
  const [state, gen, epoch] = (await own.admin.hmget(keys.state, 'state', 'gen', 'epoch')) as [string, string, string];
  const message = {
    kind: 'transition', key: keys.state, epoch, id: `${Date.now()}-0`, hcf: '0',
    from: state, to, reason: 'consecutive_failures', gen: String(Number(gen) + generationsAhead),
    failures: '3', calls: '3', slow: '', rate: '', threshold: '3', window: 'consecutive', actor: 'forger', token: '', time: String(Date.now()),
  };
  await own.admin.publish(feedChannel('zenvark'), JSON.stringify(message));
}

describe('forged feed messages', () => {
  it('a forged open of the next generation is undone within a round trip and reported', async () => {
    instances = fleet(own.server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    await i.breaker.execute(async () => 'creates the state hash');
    await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(1), { timeout: 5000 });
    await forge(i, 'open', 1);
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_BAD_MESSAGE'));
    await untilAll([i], 'closed');
    await expect(i.breaker.execute(async () => 'served')).resolves.toBe('served');
    // Failures count in Redis again: three trip it there.
    await fail(i, 3);
    await untilAll([i], 'open');
    await vi.waitFor(() => expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'consecutive_failures', local: false, actor: i.breaker.instanceId }));
  });

  it('a forged close of an open breaker is undone, and the breaker stays open', async () => {
    instances = fleet(own.server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    await fail(i, 3);
    await untilAll([i], 'open');
    await forge(i, 'closed', 1);
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_BAD_MESSAGE'));
    await untilAll([i], 'open');
    expect(await own.admin.hget(breakerKeys('zenvark', i.breaker.id).state, 'state')).toBe('open');
  });

  it('a forged jump of many generations is never taken', async () => {
    instances = fleet(own.server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    await i.breaker.execute(async () => 'creates the state hash');
    await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(1), { timeout: 5000 });
    for (const to of ['open', 'closed', 'open']) await forge(i, to, 1_000_000);
    // Each one only makes the instance ask Redis, which says closed.
    await sleep(300);
    expect(i.breaker.state).toBe('closed');
    expect(i.seen.states).toEqual([]);
    await fail(i, 3);
    await untilAll([i], 'open');
    await vi.waitFor(() => expect(i.seen.states.map((s) => s.transition.generation)).toEqual([1]));
  });
});
