/**
 * The strategies evaluated in this process, for the time Redis is unreachable (docs/architecture.md, "Degrade, never fail the caller").
 * The same rules as the Lua library, on the local monotonic clock; outcomes arrive one at
 * a time, or as the summaries that could not be sent when Redis went away. When Redis
 * returns, its shared state wins and this window is dropped.
 */
import { StrategyKind } from './constants.js';
import type { OutcomeSummary } from './functions.js';
import { TIME_BUCKETS } from './limits.js';
import type { BreakerStrategy } from './strategies.js';

const RATE_EPSILON = 1e-9;
// Codes of the count window, as in the Lua library: bit 0 failure, bit 1 slow.
const FAILED = 1;
const SLOW = 2;

/** The numbers behind a local trip, as the library's audit entry would give them. */
export interface WindowFacts {
  failures: number;
  calls: number;
  /** Slow calls in the window (0 for ConsecutiveBreaker). */
  slow: number;
  /** The slow-call rule tripped, not the failure rule. */
  slowRule: boolean;
}

export class LocalWindow {
  private run = 0;
  private readonly ring: Uint8Array;
  private ringPos = 0;
  private ringFilled = 0;
  private ringFailures = 0;
  private ringSlow = 0;
  private readonly buckets: { index: number; calls: number; failures: number; slow: number }[] = [];

  /** @param slowCallRateThreshold the share of slow calls that trips, if slow calls count */
  constructor(
    private readonly strategy: BreakerStrategy,
    private readonly slowCallRateThreshold?: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.ring = new Uint8Array(strategy.kind === StrategyKind.COUNT ? strategy.size : 0);
  }

  /** Adds one outcome; returns the facts behind a trip, or undefined when it does not trip. */
  add(failure: boolean, slow = false): WindowFacts | undefined {
    const s = this.strategy;
    switch (s.kind) {
      case StrategyKind.CONSECUTIVE:
        this.run = failure ? this.run + 1 : 0;
        return this.run >= s.threshold ? { failures: this.run, calls: this.run, slow: 0, slowRule: false } : undefined;
      case StrategyKind.COUNT:
        this.push(failure, slow);
        return this.judge(this.ringFailures, this.ringFilled, this.ringSlow);
      case StrategyKind.TIME:
        return this.addToBucket(1, failure ? 1 : 0, slow ? 1 : 0);
    }
  }

  /**
   * Adds a summary as the library does: the runs decide for consecutive failures; in a
   * count window successes are laid down before failures, slow ones first in each.
   */
  fold(summary: OutcomeSummary): WindowFacts | undefined {
    const s = this.strategy;
    const successes = summary.ok + summary.slowOk;
    const failures = summary.fail + summary.slowFail;
    switch (s.kind) {
      case StrategyKind.CONSECUTIVE: {
        const peak = successes === 0 ? this.run + failures : Math.max(this.run + summary.head, summary.maxRun);
        this.run = successes === 0 ? this.run + failures : summary.tail;
        return peak >= s.threshold ? { failures: peak, calls: peak, slow: 0, slowRule: false } : undefined;
      }
      case StrategyKind.COUNT:
        for (let n = 0; n < Math.min(summary.slowOk, s.size); n += 1) this.push(false, true);
        for (let n = 0; n < Math.min(summary.ok, s.size); n += 1) this.push(false, false);
        for (let n = 0; n < Math.min(summary.slowFail, s.size); n += 1) this.push(true, true);
        for (let n = 0; n < Math.min(summary.fail, s.size); n += 1) this.push(true, false);
        return this.judge(this.ringFailures, this.ringFilled, this.ringSlow);
      case StrategyKind.TIME:
        return this.addToBucket(successes + failures, failures, summary.slowOk + summary.slowFail);
    }
  }

  private push(failure: boolean, slow: boolean): void {
    const size = this.ring.length;
    if (this.ringFilled === size) {
      const old = this.ring[this.ringPos] as number;
      this.ringFailures -= old & FAILED;
      this.ringSlow -= (old & SLOW) >> 1;
    } else {
      this.ringFilled += 1;
    }
    this.ring[this.ringPos] = (failure ? FAILED : 0) | (slow ? SLOW : 0);
    this.ringFailures += failure ? 1 : 0;
    this.ringSlow += slow ? 1 : 0;
    this.ringPos = (this.ringPos + 1) % size;
  }

  private addToBucket(calls: number, failures: number, slow: number): WindowFacts | undefined {
    const s = this.strategy;
    if (s.kind !== StrategyKind.TIME) return undefined;
    const index = Math.floor(this.now() / (s.duration / TIME_BUCKETS));
    while (this.buckets.length > 0 && (this.buckets[0]?.index as number) <= index - TIME_BUCKETS) this.buckets.shift();
    let last = this.buckets.at(-1);
    if (!last || last.index !== index) {
      last = { index, calls: 0, failures: 0, slow: 0 };
      this.buckets.push(last);
    }
    last.calls += calls;
    last.failures += failures;
    last.slow += slow;
    let total = 0;
    let failed = 0;
    let slowTotal = 0;
    for (const b of this.buckets) {
      total += b.calls;
      failed += b.failures;
      slowTotal += b.slow;
    }
    return this.judge(failed, total, slowTotal);
  }

  /** The failure rate first, then the slow-call rate, as the library judges. */
  private judge(failures: number, calls: number, slow: number): WindowFacts | undefined {
    const s = this.strategy;
    if (s.kind === StrategyKind.CONSECUTIVE || calls < s.minimumNumberOfCalls) return undefined;
    if (failures / calls >= s.threshold - RATE_EPSILON) return { failures, calls, slow, slowRule: false };
    const slowRate = this.slowCallRateThreshold;
    if (slowRate !== undefined && slow / calls >= slowRate - RATE_EPSILON) return { failures, calls, slow, slowRule: true };
    return undefined;
  }
}
