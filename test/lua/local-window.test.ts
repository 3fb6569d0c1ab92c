/**
 * While Redis is unreachable, each instance evaluates its strategy with LocalWindow. Fed
 * the same outcomes one at a time, it must trip exactly where the Lua library trips.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { strategyArgs } from '../../src/functions.js';
import { keyList } from '../../src/keys.js';
import { LocalWindow } from '../../src/local-window.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { type BreakerStrategy, ConsecutiveBreaker, CountBreaker, SamplingBreaker } from '../../src/strategies.js';
import { freshKeys, header, loadLibrary, summary } from './harness.js';

let redis: Redis;

beforeAll(async () => {
  redis = new Redis(inject('redisUrl'));
  await loadLibrary(redis, LIBRARY_CODE);
});

afterAll(() => redis.disconnect());

/** A small deterministic generator, so a failing sequence can be replayed. */
function outcomes(seed: number, length: number, failureRate: number): boolean[] {
  let x = seed;
  return Array.from({ length }, () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648 < failureRate;
  });
}

async function luaTripIndex(strategy: BreakerStrategy, sequence: boolean[]): Promise<number> {
  const keys = freshKeys();
  for (const [index, failure] of sequence.entries()) {
    const reply = (await redis.call(
      'FCALL', 'zv1_record', '3', ...keyList(keys), ...header(), '0',
      ...summary(failure ? { fail: 1 } : { ok: 1 }), ...strategyArgs(strategy),
    )) as string[];
    if (reply[0] === 'opened') return index;
  }
  return -1;
}

function localTripIndex(strategy: BreakerStrategy, sequence: boolean[]): number {
  const window = new LocalWindow(strategy);
  return sequence.findIndex((failure) => window.add(failure) !== undefined);
}

const strategies: BreakerStrategy[] = [
  new ConsecutiveBreaker({ threshold: 1 }),
  new ConsecutiveBreaker({ threshold: 4 }),
  new CountBreaker({ threshold: 0.5, size: 10 }),
  new CountBreaker({ threshold: 0.3, size: 20, minimumNumberOfCalls: 5 }),
  new CountBreaker({ threshold: 1, size: 3 }),
  new SamplingBreaker({ threshold: 0.4, duration: 60_000, minimumNumberOfCalls: 8 }),
];

it('LocalWindow trips on the same call as the library', async () => {
  let compared = 0;
  for (const strategy of strategies) {
    for (let seed = 1; seed <= 12; seed += 1) {
      const sequence = outcomes(seed * 7919, 200, [0.1, 0.25, 0.4, 0.6][seed % 4] as number);
      const expected = await luaTripIndex(strategy, sequence);
      expect(localTripIndex(strategy, sequence), `${JSON.stringify(strategy)} seed ${seed}`).toBe(expected);
      if (expected >= 0) compared += 1;
    }
  }
  // The sequences must actually trip, or the comparison proves little.
  expect(compared).toBeGreaterThan(40);
});
