/**
 * The strategies evaluated in this process, for the time Redis is unreachable (DESIGN §9).
 * The same rules as the Lua library, applied one outcome at a time on the local monotonic
 * clock; when Redis returns, its shared state wins and this window is dropped.
 */
import { StrategyKind } from './constants.js';
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
      case StrategyKind.CONSECUTIVE: {
        this.run = failure ? this.run + 1 : 0;
        return this.run >= s.threshold ? { failures: this.run, calls: this.run } : undefined;
      }
      case StrategyKind.COUNT: {
        if (this.ringFilled === s.size) this.ringFailures -= this.ring[this.ringPos] as number;
        else this.ringFilled += 1;
        this.ring[this.ringPos] = failure ? 1 : 0;
        this.ringFailures += failure ? 1 : 0;
        this.ringPos = (this.ringPos + 1) % s.size;
        return this.judge(this.ringFailures, this.ringFilled, s.threshold, s.minimumNumberOfCalls);
      }
      case StrategyKind.TIME: {
        const width = s.duration / TIME_BUCKETS;
        const index = Math.floor(this.now() / width);
        while (this.buckets.length > 0 && (this.buckets[0]?.index as number) <= index - TIME_BUCKETS) {
          this.buckets.shift();
        }
        let last = this.buckets[this.buckets.length - 1];
        if (!last || last.index !== index) {
          last = { index, calls: 0, failures: 0 };
          this.buckets.push(last);
        }
        last.calls += 1;
        last.failures += failure ? 1 : 0;
        let calls = 0;
        let failures = 0;
        for (const b of this.buckets) {
          calls += b.calls;
          failures += b.failures;
        }
        return this.judge(failures, calls, s.threshold, s.minimumNumberOfCalls);
      }
    }
  }

  private judge(failures: number, calls: number, threshold: number, minimum: number): WindowFacts | undefined {
    return calls >= minimum && failures / calls >= threshold - RATE_EPSILON ? { failures, calls } : undefined;
  }
}
