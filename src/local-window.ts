/**
 * The strategies evaluated in this process, for the time Redis is unreachable (DESIGN §9).
 * The same rules as the Lua library, on the local monotonic clock; outcomes arrive one at
 * a time, or as the summaries that could not be sent when Redis went away. When Redis
 * returns, its shared state wins and this window is dropped.
 */
import { StrategyKind } from './constants.js';
import type { OutcomeSummary } from './functions.js';
import { type BreakerStrategy, TIME_BUCKETS } from './strategies.js';

const RATE_EPSILON = 1e-9;

export interface WindowFacts {
  failures: number;
  calls: number;
}

export class LocalWindow {
  private run = 0;
  private readonly ring: Uint8Array;
  private ringPos = 0;
  private ringFilled = 0;
  private ringFailures = 0;
  private readonly buckets: { index: number; calls: number; failures: number }[] = [];

  constructor(
    private readonly strategy: BreakerStrategy,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.ring = new Uint8Array(strategy.kind === StrategyKind.COUNT ? strategy.size : 0);
  }

  /** Adds one outcome; returns the facts behind a trip, or undefined when it does not trip. */
  add(failure: boolean): WindowFacts | undefined {
    const s = this.strategy;
    switch (s.kind) {
      case StrategyKind.CONSECUTIVE:
        this.run = failure ? this.run + 1 : 0;
        return this.run >= s.threshold ? { failures: this.run, calls: this.run } : undefined;
      case StrategyKind.COUNT:
        this.push(failure);
        return this.judge(this.ringFailures, this.ringFilled);
      case StrategyKind.TIME:
        return this.addToBucket(1, failure ? 1 : 0);
    }
  }

  /**
   * Adds a summary as the library does: the runs decide for consecutive failures; in a
   * count window successes are laid down before failures.
   */
  fold(summary: OutcomeSummary): WindowFacts | undefined {
    const s = this.strategy;
    const successes = summary.ok + summary.slowOk;
    const failures = summary.fail + summary.slowFail;
    switch (s.kind) {
      case StrategyKind.CONSECUTIVE: {
        const peak = successes === 0 ? this.run + failures : Math.max(this.run + summary.head, summary.maxRun);
        this.run = successes === 0 ? this.run + failures : summary.tail;
        return peak >= s.threshold ? { failures: peak, calls: peak } : undefined;
      }
      case StrategyKind.COUNT:
        for (let n = 0; n < Math.min(successes, s.size); n += 1) this.push(false);
        for (let n = 0; n < Math.min(failures, s.size); n += 1) this.push(true);
        return this.judge(this.ringFailures, this.ringFilled);
      case StrategyKind.TIME:
        return this.addToBucket(successes + failures, failures);
    }
  }

  private push(failure: boolean): void {
    const size = this.ring.length;
    if (this.ringFilled === size) this.ringFailures -= this.ring[this.ringPos] as number;
    else this.ringFilled += 1;
    this.ring[this.ringPos] = failure ? 1 : 0;
    this.ringFailures += failure ? 1 : 0;
    this.ringPos = (this.ringPos + 1) % size;
  }

  private addToBucket(calls: number, failures: number): WindowFacts | undefined {
    const s = this.strategy;
    if (s.kind !== StrategyKind.TIME) return undefined;
    const index = Math.floor(this.now() / (s.duration / TIME_BUCKETS));
    while (this.buckets.length > 0 && (this.buckets[0]?.index as number) <= index - TIME_BUCKETS) this.buckets.shift();
    let last = this.buckets.at(-1);
    if (!last || last.index !== index) {
      last = { index, calls: 0, failures: 0 };
      this.buckets.push(last);
    }
    last.calls += calls;
    last.failures += failures;
    let total = 0;
    let failed = 0;
    for (const b of this.buckets) {
      total += b.calls;
      failed += b.failures;
    }
    return this.judge(failed, total);
  }

  private judge(failures: number, calls: number): WindowFacts | undefined {
    const s = this.strategy;
    if (s.kind === StrategyKind.CONSECUTIVE) return undefined;
    return calls >= s.minimumNumberOfCalls && failures / calls >= s.threshold - RATE_EPSILON ? { failures, calls } : undefined;
  }
}
