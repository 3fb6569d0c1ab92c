/**
 * Degraded mode (docs/architecture.md, "Degrade, never fail the caller"): while Redis is
 * unreachable this process decides alone. Outcomes go to a window of its own, evaluated
 * by the same rules as the library (unless `localFallback` is off, when the last known
 * state stands), and the shared state is read again every second until Redis answers;
 * then the shared state wins and this mode, with its window, is dropped.
 */
import { StrategyKind } from './constants.js';
import { LocalWindow, type WindowFacts } from './local-window.js';
import type { ResolvedOptions } from './options.js';
import type { Summary } from './recorder.js';
import { type DecisionNumbers, LocalReason } from './transition.js';

/** While Redis is unreachable, the shared state is read again this often, in ms. */
const RESYNC_INTERVAL_MS = 1000;

/** A local trip: why, and the numbers behind it. */
export interface LocalTrip {
  readonly reason: LocalReason;
  readonly numbers: DecisionNumbers;
}

export class LocalMode {
  private window: LocalWindow | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When this process began deciding alone (monotonic clock). */
  readonly since = performance.now();

  /** @param resync reads the shared state again; called every RESYNC_INTERVAL_MS until stop() */
  constructor(
    private readonly o: ResolvedOptions,
    private readonly resync: () => void,
  ) {
    this.window = this.newWindow();
  }

  /** Whether this process evaluates the strategy while alone (else outcomes go undelivered). */
  get evaluating(): boolean {
    return this.window !== undefined;
  }

  /** Counts one outcome; returns the trip when the local strategy reaches its threshold. */
  add(failure: boolean, slow: boolean): LocalTrip | undefined {
    return this.trip(this.window?.add(failure, slow));
  }

  /** Counts outcomes that could not be sent, as the library would have. */
  fold(summary: Summary): LocalTrip | undefined {
    return this.trip(this.window?.fold(summary));
  }

  /** The circuit closed locally: counting starts over. */
  restart(): void {
    this.window = this.newWindow();
  }

  /** Reads the shared state again after a while (once at a time). */
  scheduleResync(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.resync();
    }, RESYNC_INTERVAL_MS);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private newWindow(): LocalWindow | undefined {
    return this.o.localFallback ? new LocalWindow(this.o.breaker, this.o.slowCallRateThreshold) : undefined;
  }

  /** The local trip, with the numbers the library's audit entry would give. */
  private trip(facts: WindowFacts | undefined): LocalTrip | undefined {
    if (!facts) return undefined;
    return { reason: facts.slowRule ? LocalReason.LOCAL_SLOW_CALLS : LocalReason.LOCAL_FAILURES, numbers: windowNumbers(this.o, facts) };
  }
}

/** The numbers behind a trip of a window of this process's own, as the library's audit entry gives them. */
export function windowNumbers(o: ResolvedOptions, facts: WindowFacts): DecisionNumbers {
  const strategy = o.breaker;
  const windowed = strategy.kind !== StrategyKind.CONSECUTIVE;
  const counted = facts.slowRule ? facts.slow : facts.failures;
  const threshold = facts.slowRule ? o.slowCallRateThreshold : strategy.threshold;
  return {
    failures: String(facts.failures),
    calls: String(facts.calls),
    slow: windowed ? String(facts.slow) : '',
    rate: windowed && facts.calls > 0 ? (counted / facts.calls).toFixed(4) : '',
    threshold: String(threshold),
  };
}
