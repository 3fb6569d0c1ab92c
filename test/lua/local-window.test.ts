/**
 * While Redis is unreachable, each instance evaluates its strategy with LocalWindow. Fed
 * the same outcomes one at a time, it must trip exactly where the Lua library trips.
 */
import { expect, it } from 'vitest';
import { strategySpec } from '../../src/strategy-spec.js';
import { keyList } from '../../src/keys.js';
import { LocalWindow } from '../../src/local-window.js';
import { type BreakerStrategy, ConsecutiveBreaker, CountBreaker, SamplingBreaker } from '../../src/strategies.js';
import { Summary } from '../../src/recorder.js';
import { freshKeys, header, shippedLibrary } from './harness.js';

const redis = shippedLibrary();

interface Outcome {
  failure: boolean;
  slow: boolean;
}

/** A small deterministic generator, so a failing sequence can be replayed. */
function outcomes(seed: number, length: number, failureRate: number, slowRate = 0): Outcome[] {
  let x = seed;
  const next = () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648;
  };
  return Array.from({ length }, () => ({ failure: next() < failureRate, slow: next() < slowRate }));
}

/** Cuts a sequence into batches of 1 to `most` outcomes, each folded into a Summary. */
function batches(sequence: Outcome[], most: number, seed: number): Summary[] {
  const out: Summary[] = [];
  let x = seed;
  for (let i = 0; i < sequence.length; ) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const size = 1 + (x % most);
    const s = new Summary();
    for (const o of sequence.slice(i, i + size)) s.add(o.failure, o.slow);
    out.push(s);
    i += size;
  }
  return out;
}

/** Where a window tripped, and the numbers behind it: what the audit entry says. */
interface Trip {
  index: number;
  facts?: { failures: number; calls: number; slow: number | undefined; slowRule: boolean };
}

async function luaTrip(strategy: BreakerStrategy, list: Summary[], slowRate?: number): Promise<Trip> {
  const keys = freshKeys();
  for (const [index, s] of list.entries()) {
    const reply = (await redis().call(
      'FCALL', 'zv1_record', '2', ...keyList(keys), ...header(), '0',
      ...[s.ok, s.fail, s.slowOk, s.slowFail, s.head, s.maxRun, s.tail].map(String), strategySpec(strategy, slowRate),
    )) as string[];
    if (reply[0] === 'opened') {
      const t = JSON.parse(reply.find((r) => typeof r === 'string' && r.startsWith('{')) as string) as Record<string, string>;
      const slow = t.slow === '' ? undefined : Number(t.slow);
      return { index, facts: { failures: Number(t.failures), calls: Number(t.calls), slow, slowRule: t.reason === 'slow_call_rate' } };
    }
  }
  return { index: -1 };
}

function localTrip(strategy: BreakerStrategy, list: Summary[], oneByOne: boolean, slowRate?: number): Trip {
  const window = new LocalWindow(strategy, slowRate);
  for (const [index, s] of list.entries()) {
    const facts = oneByOne ? window.add(s.fail + s.slowFail > 0, s.slowOk + s.slowFail > 0) : window.fold(s);
    if (facts) {
      const slow = strategy.kind === 'consecutive' ? undefined : facts.slow;
      return { index, facts: { failures: facts.failures, calls: facts.calls, slow, slowRule: facts.slowRule } };
    }
  }
  return { index: -1 };
}

const strategies: BreakerStrategy[] = [
  new ConsecutiveBreaker({ threshold: 1 }),
  new ConsecutiveBreaker({ threshold: 4 }),
  new CountBreaker({ threshold: 0.5, size: 10 }),
  new CountBreaker({ threshold: 0.3, size: 20, minimumNumberOfCalls: 5 }),
  new CountBreaker({ threshold: 1, size: 3 }),
  new SamplingBreaker({ threshold: 0.4, duration: 60_000, minimumNumberOfCalls: 8 }),
];

/** Slow-call rules, on windows: the rate and the share of slow outcomes generated. */
const slowRules: [BreakerStrategy, number, number][] = [
  [new CountBreaker({ threshold: 0.6, size: 10 }), 0.4, 0.3],
  [new SamplingBreaker({ threshold: 0.7, duration: 60_000, minimumNumberOfCalls: 8 }), 0.5, 0.35],
];

/** Feeds the same batches to Redis and to LocalWindow; returns how many sequences tripped. */
async function compare(most: number, seedFactor: number, oneByOne: boolean): Promise<number> {
  let tripped = 0;
  const cases: [BreakerStrategy, number | undefined, number][] = [
    ...strategies.map((s): [BreakerStrategy, undefined, number] => [s, undefined, 0]),
    ...slowRules,
  ];
  for (const [strategy, slowRate, slowShare] of cases) {
    for (let seed = 1; seed <= 12; seed += 1) {
      const sequence = outcomes(seed * seedFactor, 200, [0.1, 0.25, 0.4, 0.6][seed % 4] as number, slowShare);
      const list = batches(sequence, most, seed);
      const expected = await luaTrip(strategy, list, slowRate);
      const label = `${JSON.stringify(strategy)} slow ${slowRate} seed ${seed}`;
      expect(localTrip(strategy, list, oneByOne, slowRate), label).toEqual(expected);
      if (expected.index >= 0) tripped += 1;
    }
  }
  return tripped;
}

it('LocalWindow trips on the same call as the library, by the same rule and numbers, one outcome at a time', async () => {
  // The sequences must actually trip, or the comparison proves little.
  expect(await compare(1, 7919, true)).toBeGreaterThan(40);
});

it('LocalWindow folds summaries as the library does', async () => {
  expect(await compare(7, 104729, false)).toBeGreaterThan(40);
});
