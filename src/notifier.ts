/**
 * Everything a breaker tells the application: transitions to onStateChange (in order, each
 * once, including those read back from the audit stream after a gap), role changes,
 * metrics observations, and background errors to onError. A callback that throws is
 * reported, never thrown into the breaker.
 *
 * onError hears of a cause once while it lasts, never a flood: the same error again is
 * counted and told with the next report of it, a minute later at the earliest; a lasting
 * cause (Redis refusing the breaker, a dependency failing its checks) is told once until
 * it is settled.
 */
import { setTimeout as sleep } from 'node:timers/promises';
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
/** A failed read of missed transitions is tried this many times, this far apart (ms). */
const CATCH_UP_ATTEMPTS = 4;
const CATCH_UP_RETRY_MS = 250;

/** The same error is reported again after this long at the earliest, in ms. */
const REPEAT_MS = 60_000;
/** Distinct errors remembered per breaker; beyond that the oldest is forgotten. */
const MAX_REMEMBERED = 100;

/** What was reported under one key. */
interface Reported {
  readonly at: number;
  /** Told once until settled, whatever the time. */
  readonly lasting: boolean;
  /** Reports held back since. */
  suppressed: number;
}

/** The chain starts settled; shared, so that an idle breaker holds no promise of its own. */
const SETTLED: Promise<void> = Promise.resolve();

export class Notifier {
  /** Transitions are handed over one after another, through this chain. */
  private emitting: Promise<void> = SETTLED;
  /** Errors reported, by key; created with the first. */
  private reported: Map<string, Reported> | undefined;

  constructor(private readonly o: ResolvedOptions) {}

  /** Hands a background error to onError, unless the same one was told less than a minute ago. */
  report(code: ErrorCode, message: string, cause?: unknown): void {
    this.tell(`${code} ${message}`, false, code, message, cause);
  }

  /** Tells onError of a lasting cause, once until settle(key) says it ended. */
  reportCause(key: string, code: ErrorCode, message: string, cause?: unknown): void {
    this.tell(key, true, code, message, cause);
  }

  /** The causes whose keys start with `prefix` ended: told again if they come back. */
  settle(prefix: string): void {
    const reported = this.reported;
    if (!reported) return;
    for (const key of reported.keys()) if (key.startsWith(prefix)) reported.delete(key);
  }

  private tell(key: string, lasting: boolean, code: ErrorCode, message: string, cause: unknown): void {
    const now = performance.now();
    const reported = (this.reported ??= new Map());
    const before = reported.get(key);
    if (before && (before.lasting || now - before.at < REPEAT_MS)) {
      before.suppressed += 1;
      return;
    }
    if (!before && reported.size >= MAX_REMEMBERED) reported.delete(reported.keys().next().value as string);
    reported.delete(key);
    reported.set(key, { at: now, lasting, suppressed: 0 });
    const more = before && before.suppressed > 0 ? ` (${before.suppressed} more since it was last reported)` : '';
    try {
      this.o.onError(new BackgroundError(code, this.o.id, message + more, cause));
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
      // A read that fails (a connection dropped under it) is tried again a few times:
      // the transitions after it wait in order.
      for (let attempt = 1; functions && attempt <= CATCH_UP_ATTEMPTS; attempt += 1) {
        try {
          missed = await missedTransitions(functions, from.generation, to.generation);
          break;
        } catch (error) {
          if (attempt === CATCH_UP_ATTEMPTS) this.report('ZV_FEED_FAILED', 'reading missed transitions from the audit stream failed', error);
          else await sleep(CATCH_UP_RETRY_MS);
        }
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
    // The dependency is down until a check passes: one report for the whole time.
    if (result === CallResult.FAILURE) this.reportCause(`health:${type}`, 'ZV_HEALTH_CHECK_FAILED', `the ${type} health check failed`, error);
    else this.settle(`health:${type}`);
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
