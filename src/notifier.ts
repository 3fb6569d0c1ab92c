/**
 * Everything a breaker tells the application: transitions to onStateChange (in order, each
 * once, including those read back from the audit stream after a gap), role changes,
 * metrics observations, and background errors to onError. A callback that throws is
 * reported, never thrown into the breaker.
 */
import { CallResult, type CircuitRole, type HealthCheckType } from './constants.js';
import type { ErrorCode } from './error-codes.js';
import { BackgroundError } from './errors.js';
import type { BreakerFunctions } from './functions.js';
import type { ResolvedOptions } from './options.js';
import type { SharedView } from './shared-view.js';
import { LocalReason, type Transition, localTransition } from './transition.js';

/** Missed transitions are read back from the audit stream in pages of this many. */
const CATCH_UP_PAGE = 100;
/** At most this many pages are read back after one gap. */
const CATCH_UP_PAGES = 10;

/** The chain starts settled; shared, so that an idle breaker holds no promise of its own. */
const SETTLED: Promise<void> = Promise.resolve();

export class Notifier {
  /** Transitions are handed over one after another, through this chain. */
  private emitting: Promise<void> = SETTLED;

  constructor(private readonly o: ResolvedOptions) {}

  /** Hands a background error to onError. */
  report(code: ErrorCode, message: string, cause?: unknown): void {
    try {
      this.o.onError(new BackgroundError(code, this.o.id, message, cause));
    } catch {
      // onError itself failed; there is nobody left to tell.
    }
  }

  /** Runs one of the application's callbacks; one that throws is reported. */
  private safely(name: string, callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.report('ZV_CALLBACK_FAILED', `${name} threw`, error);
    }
  }

  /** Hands a transition to onStateChange after those before it. */
  transition(transition: Transition): void {
    this.emitting = this.emitting.then(() => this.stateChanged(transition));
  }

  /**
   * The shared view jumped from `from` to `to` past transitions this instance did not
   * see: reads them back from the audit log (entries trimmed by retention are gone), or
   * says it resynced when there is nothing to read.
   */
  catchUp(functions: BreakerFunctions | undefined, from: SharedView, to: SharedView, actor: string): void {
    this.emitting = this.emitting.then(async () => {
      let missed: Transition[] = [];
      try {
        if (functions) missed = await missedTransitions(functions, from.generation, to.generation);
      } catch (error) {
        this.report('ZV_FEED_FAILED', 'reading missed transitions from the audit stream failed', error);
      }
      if (missed.length === 0 && from.state !== to.state) {
        missed = [localTransition(from.state, to.state, LocalReason.RESYNC, to.generation, actor)];
      }
      for (const t of missed) this.stateChanged(t);
    });
  }

  /** Resolves once every transition handed over so far has been delivered. */
  drained(): Promise<void> {
    return this.emitting;
  }

  private stateChanged(transition: Transition): void {
    const callback = this.o.onStateChange;
    if (callback) this.safely('onStateChange', () => callback(transition.to, transition));
  }

  roleChanged(role: CircuitRole): void {
    const callback = this.o.onRoleChange;
    if (callback) this.safely('onRoleChange', () => callback(role));
  }

  call(result: CallResult, durationMs: number): void {
    const metrics = this.o.metrics;
    if (metrics) this.safely('metrics.recordCall', () => metrics.recordCall({ breakerId: this.o.id, result, durationMs }));
  }

  rejected(): void {
    const metrics = this.o.metrics;
    if (metrics) this.safely('metrics.recordBlockedRequest', () => metrics.recordBlockedRequest({ breakerId: this.o.id }));
  }

  healthCheck(type: HealthCheckType, result: CallResult, durationMs: number, error: unknown): void {
    if (result === CallResult.FAILURE) this.report('ZV_HEALTH_CHECK_FAILED', `the ${type} health check failed`, error);
    const metrics = this.o.metrics;
    if (metrics) {
      this.safely('metrics.recordHealthCheck', () => metrics.recordHealthCheck({ breakerId: this.o.id, type, result, durationMs }));
    }
  }
}

/**
 * The transitions with a generation in (after, upTo], oldest first, paging back through
 * the audit stream (newer entries may have been added since upTo was seen).
 */
async function missedTransitions(functions: BreakerFunctions, after: number, upTo: number): Promise<Transition[]> {
  const missed: Transition[] = [];
  let before: string | undefined;
  for (let page = 0; page < CATCH_UP_PAGES; page += 1) {
    const entries = await functions.history(CATCH_UP_PAGE, before);
    for (const t of entries) {
      if (t.generation <= after) return missed.reverse();
      if (t.generation <= upTo) missed.push(t);
    }
    if (entries.length < CATCH_UP_PAGE) break;
    before = entries.at(-1)?.id;
  }
  return missed.reverse();
}
