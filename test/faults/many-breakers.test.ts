/**
 * Many breakers on one application client, started and stopped again and again, each
 * busy when it stops (its lease held for idle probes, a success waiting for company, a
 * failure recorded):
 * after every stop nothing of the library is left: no connection in Redis, no timer, no
 * socket, no breaker the heap still holds, no unhandled rejection, and every outcome
 * reached Redis.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, vi } from 'vitest';
import type { CircuitBreaker } from '../../src/index.js';
import { type Instance, failing, instance, uniqueId } from '../support/instances.js';
import { watchHandles } from '../support/handles.js';
import { ownRedis } from '../support/own-redis.js';
import { lostOutcomes } from './load.js';
import { scenario } from './scenario.js';

const own = ownRedis();

const rejections: unknown[] = [];
const onRejection = (reason: unknown) => rejections.push(reason);
process.on('unhandledRejection', onRejection);
afterEach(() => {
  process.off('unhandledRejection', onRejection);
});

/** V8's collector: global.gc, or the one a flag set now gives a new context. */
function collector(): (() => void) | undefined {
  if (typeof globalThis.gc === 'function') return globalThis.gc as () => void;
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return undefined;
  }
}

interface Round {
  /** The breakers of the round, to see whether anything still holds them. */
  readonly refs: WeakRef<CircuitBreaker>[];
  readonly lost: number;
  readonly reports: number;
  readonly startMs: number;
  readonly stopMs: number;
}

/**
 * Starts `count` breakers on `redis`, keeps them busy, stops them all. In a function of
 * its own, so that nothing of the round stays in the caller's frame.
 */
async function round(redis: ReturnType<typeof own.server.client>, count: number): Promise<Round> {
  // Idle probes (an hour apart) are a duty of a closed breaker: each holds its lease.
  const breakers: Instance[] = Array.from({ length: count }, () =>
    instance(own.server.url, { id: uniqueId('many'), instanceId: 'app', idleDuty: true }, redis),
  );
  const startedAt = performance.now();
  await Promise.all(breakers.map((i) => i.breaker.start()));
  const startMs = performance.now() - startedAt;
  // Two connections for all of them.
  expect((await own.zenvarkConnections()).sort()).toEqual(['zenvark:commands', 'zenvark:subscriber']);
  await vi.waitFor(() => expect(breakers.filter((i) => i.breaker.role !== 'leader')).toEqual([]), { timeout: 15_000 });
  // A success waits for company; a failure goes out at once.
  await Promise.all(breakers.map((i) => i.breaker.execute(async () => 'ok')));
  await Promise.all(breakers.map((i) => i.breaker.execute(failing).catch(() => undefined)));
  const stoppedAt = performance.now();
  await Promise.all(breakers.map((i) => i.breaker.stop()));
  const stopMs = performance.now() - stoppedAt;
  // stop() delivered what was pending.
  expect(breakers.filter((i) => i.breaker.stats.recorded !== 2).map((i) => i.breaker.stats)).toEqual([]);
  expect(breakers.map((i) => i.breaker.role)).toEqual(breakers.map(() => 'follower'));
  expect(await own.zenvarkConnections()).toEqual([]);
  return {
    refs: breakers.map((i) => new WeakRef(i.breaker)),
    lost: lostOutcomes(2 * count, breakers.map((i) => i.breaker)),
    reports: Math.max(...breakers.map((i) => i.seen.errors.length)),
    startMs,
    stopMs,
  };
}

describe('many breakers started and stopped', () => {
  scenario('Many breakers started and stopped, nothing leaked', async (size) => {
    const count = size === 'long' ? 200 : 50;
    const rounds = size === 'long' ? 5 : 3;
    const gc = collector();
    // The application's client, connected before anything is watched.
    const redis = own.server.client();
    await redis.ping();
    const handles = watchHandles(['Timeout', 'TCPWRAP']);
    const heapMb: number[] = [];
    const done: Round[] = [];
    for (let n = 0; n < rounds; n += 1) {
      done.push(await round(redis, count));
      if (gc) {
        gc();
        heapMb.push(process.memoryUsage().heapUsed / 2 ** 20);
      }
    }
    expect(await handles.pending()).toEqual([]);
    handles.stop();
    expect(rejections).toEqual([]);
    const refs = done.flatMap((r) => r.refs);
    if (gc) {
      // Nothing holds a stopped breaker.
      await vi.waitFor(
        () => {
          gc();
          expect(refs.filter((r) => r.deref() !== undefined)).toHaveLength(0);
        },
        { timeout: 10_000, interval: 100 },
      );
      // A generous bound: one round's breakers, kept, would be more.
      expect((heapMb.at(-1) as number) - (heapMb[0] as number)).toBeLessThan(8);
    }
    const heap = gc ? `heap after each round (collected): ${heapMb.map((mb) => mb.toFixed(1)).join(', ')} MB` : 'no collector: the heap is not measured';
    return {
      injected: `${rounds} rounds of ${count} breakers on one client started, kept busy and stopped`,
      detectMs: undefined,
      convergeMs: undefined,
      latencyBefore: undefined,
      latencyDuring: undefined,
      transitions: 0,
      outcomesLost: done.reduce((sum, r) => sum + r.lost, 0),
      reportsPerBreaker: Math.max(...done.map((r) => r.reports)),
      note:
        `after every stop: no zenvark connection, timer, socket or breaker left; start() of all took ${done.map((r) => r.startMs.toFixed(0)).join(', ')} ms, ` +
        `stop() of all ${done.map((r) => r.stopMs.toFixed(0)).join(', ')} ms; ${heap}`,
    };
  });
});
