/**
 * Messages on the feed channel that the library did not publish (anyone with PUBLISH
 * rights can send them, or a buggy client): a forged next transition is taken for one
 * round trip at most, then the instance goes back to Redis's state and says so; a forged
 * jump is never taken. Long, the forger goes on for 20 s: still one report.
 */
import { afterEach, describe, expect, vi } from 'vitest';
import { breakerKeys, feedChannel } from '../../src/index.js';
import { sleep } from '../../harness/clock.js';
import { type Instance, fail, fleet, stopAll, untilAll } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';
import { FaultRun, codes } from './fault-run.js';
import { type FaultFigures, type Size, scenario } from './scenario.js';

const own = ownRedis();
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

const RATE = 200;
/** Forgeries sent, 0.5 s apart: one short, 20 s of them long. */
const forgeriesOf = (size: Size) => (size === 'long' ? 40 : 1);

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

/**
 * Forges `to` as the next generation, once short and every 0.5 s for 20 s long: each is
 * taken (onStateChange sees it), then undone (a resync back to `back`, Redis's state).
 * Detection and convergence are the first forgery's: the instance says so once.
 */
async function forgedThenUndone(run: FaultRun, i: Instance, size: Size, to: string, back: 'open' | 'closed'): Promise<void> {
  const seen = i.seen.states.length;
  run.inject();
  for (let n = 1; n <= forgeriesOf(size); n += 1) {
    if (n > 1) await sleep(500);
    await forge(i, to, 1);
    if (n === 1) {
      await run.detected(() => expect(codes(i)).toContain('ZV_BAD_MESSAGE'));
      await run.converged(() => expect(i.breaker.state).toBe(back));
    }
    await vi.waitFor(() => expect(i.seen.states.slice(seen).map((s) => s.transition.reason)).toEqual(
      Array.from({ length: n }, () => ['consecutive_failures', 'resync']).flat(),
    ));
  }
  await untilAll([i], back);
}

/** One started instance whose state hash exists, closed, with one outcome recorded. */
async function writtenInstance(): Promise<Instance> {
  instances = fleet(own.server.url, 1);
  const [i] = instances as [Instance];
  await i.breaker.start();
  await i.breaker.execute(async () => 'creates the state hash');
  await vi.waitFor(() => expect(i.breaker.stats.recorded).toBe(1), { timeout: 5000 });
  return i;
}

/** The run's figures, once the instance is known to have told of the forgeries once. */
async function toldOnce(run: FaultRun, i: Instance, what: { injected: string; note: string }): Promise<FaultFigures> {
  const figures = await run.finish(what);
  expect(codes(i).filter((c) => c === 'ZV_BAD_MESSAGE')).toHaveLength(1);
  return figures;
}

const sent = (size: Size, what: string) => `${forgeriesOf(size) === 1 ? 'one forged message' : `${forgeriesOf(size)} forged messages over 20 s`}: ${what}`;

describe('forged feed messages', () => {
  scenario('Forged feed message: the next generation opens', async (size) => {
    const i = await writtenInstance();
    const run = await FaultRun.begin(instances, own.admin, size, RATE);
    await forgedThenUndone(run, i, size, 'open', 'closed');
    await expect(i.breaker.execute(async () => 'served')).resolves.toBe('served');
    // Failures count in Redis again: three trip it there.
    await fail(i, 3);
    await untilAll([i], 'open');
    await vi.waitFor(() => expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'consecutive_failures', local: false, actor: i.breaker.instanceId }));
    return toldOnce(run, i, {
      injected: sent(size, 'an open of the next generation'),
      note: 'each forged open is taken (the next generation is taken at once: onStateChange sees it), found missing from the audit stream and undone within a round trip (a resync back); ZV_BAD_MESSAGE is told at most once a minute; converge counts from the first forgery',
    });
  });

  scenario('Forged feed message: an open breaker closes', async (size) => {
    instances = fleet(own.server.url, 1);
    const [i] = instances as [Instance];
    await i.breaker.start();
    const run = await FaultRun.begin(instances, own.admin, size, RATE);
    await fail(i, 3);
    await untilAll([i], 'open');
    await forgedThenUndone(run, i, size, 'closed', 'open');
    expect(await own.admin.hget(breakerKeys('zenvark', i.breaker.id).state, 'state')).toBe('open');
    return toldOnce(run, i, {
      injected: sent(size, 'a close of the open breaker'),
      note: 'each forged close is undone within a round trip; calls it let through meanwhile count as stale (their generation is not Redis\'s)',
    });
  });

  scenario('Forged feed message: a jump of many generations', async (size) => {
    const i = await writtenInstance();
    const run = await FaultRun.begin(instances, own.admin, size, RATE);
    run.inject();
    for (let n = 0; n < forgeriesOf(size); n += 1) {
      if (n > 0) await sleep(500);
      for (const to of ['open', 'closed', 'open']) await forge(i, to, 1_000_000);
    }
    // Each one only makes the instance ask Redis, which says closed.
    await sleep(300);
    expect(i.breaker.state).toBe('closed');
    expect(i.seen.states).toEqual([]);
    await fail(i, 3);
    await untilAll([i], 'open');
    await vi.waitFor(() => expect(i.seen.states.map((s) => s.transition.generation)).toEqual([1]));
    return run.finish({
      injected: sent(size, 'three jumps of a million generations each'),
      note: 'never taken: no state change and no report (the instance only asks Redis), so there is nothing to detect or converge',
    });
  });
});
