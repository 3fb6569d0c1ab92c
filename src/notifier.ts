/**
 * Everything a breaker tells the application, as events (src/events.ts): transitions (in
 * order, each once, including those read back from the audit stream after a gap), role
 * changes, calls, health checks, degraded mode, Redis failures, and background errors.
 * The constructor callbacks hear the same events first, called from here: a breaker that
 * has only them holds no emitter (an idle breaker's memory is budgeted). A listener or
 * callback that throws is reported, never thrown into the breaker.
 *
 * onError hears of a cause once while it lasts, never a flood: the same error again is
 * counted and told with the next report of it, a minute later at the earliest; a lasting
 * cause (Redis refusing the breaker, a dependency failing its checks) is told once until
 * it is settled.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CallResult, type CheckResult, type CircuitRole, type CircuitState, type HealthCheckType } from './constants.js';
import type { ErrorCode } from './error-codes.js';
import { BackgroundError } from './errors.js';
import { CallOutcome, type Emitter, type RedisOperation, StateSource } from './events.js';
import type { BreakerFunctions } from './functions.js';
import type { ResolvedOptions } from './options.js';
import { redisFailure } from './redis-failure.js';
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

/** Where the notifier finds the breaker's listeners (created with the first one), and whom it tells of transitions read back. */
export interface EventSource {
  readonly emitter: Emitter | undefined;
  /** A transition of life `epoch` read back from the audit stream: the mode after it is news too. */
  replayed(transition: Transition, epoch: string): void;
}

export class Notifier {
  /** Transitions are handed over one after another, through this chain. */
  private emitting: Promise<void> = SETTLED;
  /** Errors reported, by key; created with the first. */
  private reported: Map<string, Reported> | undefined;

  constructor(
    private readonly o: ResolvedOptions,
    private readonly source: EventSource,
  ) {}

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
    const error = new BackgroundError(code, this.o.id, message + more, cause);
    const emitter = this.source.emitter;
    const onError = this.o.onError;
    // An error handler that throws is not told again: that would never end.
    if (onError) {
      try {
        onError(error);
      } catch {
        // Nobody is left to tell.
      }
    }
    if (emitter?.listens('error')) emitter.emit('error', error);
    else if (!onError) console.error(error);
  }

  /** Runs one of the constructor's callbacks; one that throws is reported. */
  private safely(name: string, callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.report('ZV_CALLBACK_FAILED', `${name} threw`, error);
    }
  }

  /** Hands a transition to the stateChange listeners after those before it. */
  transition(transition: Transition, source: typeof StateSource.FEED | typeof StateSource.REPLY | typeof StateSource.LOCAL): void {
    // The lag is taken on arrival, not when the chain gets to it.
    const lagMs = source === StateSource.FEED ? Date.now() - transition.time : undefined;
    this.chain(() => this.stateChanged(transition, source, lagMs));
  }

  /**
   * Tells how the shared state went from `from` (what was last told) to `to`: the
   * transition itself when it is the next one, the missed ones read back from the audit
   * stream, or a local `resync` when there is nothing to read (another epoch).
   */
  changed(
    functions: BreakerFunctions | undefined,
    from: SharedView,
    to: SharedView,
    transition?: Transition,
    source: typeof StateSource.FEED | typeof StateSource.REPLY = StateSource.REPLY,
  ): void {
    const sameEpoch = to.epoch === from.epoch || from.epoch === '';
    if (transition && sameEpoch && to.generation === from.generation + 1) {
      this.transition(transition, source);
    } else if (sameEpoch && to.generation > from.generation) {
      this.catchUp(functions, from, to, this.o.instanceId);
    } else if (to.state !== from.state) {
      this.transition(localTransition(from.state, to.state, LocalReason.RESYNC, to.generation, this.o.instanceId), StateSource.LOCAL);
    }
  }

  /**
   * Redis answered with an earlier state than `held`: one taken from the feed and never
   * confirmed (`unconfirmed`) was a message the library did not publish, or one whose writes
   * Redis lost before it was read back; one Redis answered, or whose audit entry was read
   * back, was written, and Redis has lost it since (a failover to a replica that had not
   * received it). Either way Redis's state is back.
   */
  rolledBack(held: SharedView, incoming: SharedView, unconfirmed: boolean): void {
    const states = `generation ${held.generation} (${held.state}); Redis has ${incoming.generation} (${incoming.state})`;
    if (unconfirmed) {
      this.report(
        'ZV_BAD_MESSAGE',
        `this instance held ${states}: it took a feed message that the audit stream does not hold (one the library did not publish, ` +
          `or one Redis lost before it was read back); Redis's state is back`,
      );
      return;
    }
    this.report(
      'ZV_STATE_LOST',
      `Redis no longer has a state of this breaker that it wrote: this instance held ${states}; Redis lost writes ` +
        `(a failover to a replica that had not received them); this instance follows Redis's state again`,
    );
  }

  /** The state read at start(), after the transitions handed over before it (only asked for while stateChange has listeners). */
  started(state: CircuitState): void {
    this.chain(() =>
      this.source.emitter?.emit('stateChange', { state, previous: undefined, transition: undefined, source: StateSource.START, lagMs: undefined }),
    );
  }

  /** Runs `deliver` after what was handed over before; once all is delivered, the chain holds no promise of its own. */
  private chain(deliver: () => void | Promise<void>): void {
    const next = this.emitting.then(deliver);
    this.emitting = next;
    void next.then(() => {
      if (this.emitting === next) this.emitting = SETTLED;
    });
  }

  /**
   * The shared view jumped from `from` to `to` past transitions this instance did not
   * see: reads them back from the audit log (entries trimmed by retention are gone), or
   * says it resynced when there is nothing to read.
   */
  catchUp(functions: BreakerFunctions | undefined, from: SharedView, to: SharedView, actor: string): void {
    this.chain(async () => {
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
        this.stateChanged(localTransition(from.state, to.state, LocalReason.RESYNC, to.generation, actor), StateSource.LOCAL, undefined);
      }
      for (const t of missed) {
        this.source.replayed(t, to.epoch);
        this.stateChanged(t, StateSource.REPLAY, undefined);
      }
    });
  }

  /** Resolves once every transition handed over so far has been delivered. */
  drained(): Promise<void> {
    return this.emitting;
  }

  private stateChanged(transition: Transition, source: StateSource, lagMs: number | undefined): void {
    const onStateChange = this.o.onStateChange;
    if (onStateChange) this.safely('onStateChange', () => onStateChange(transition.to, transition));
    this.source.emitter?.emit('stateChange', { state: transition.to, previous: transition.from, transition, source, lagMs });
  }

  roleChanged(role: CircuitRole): void {
    const onRoleChange = this.o.onRoleChange;
    if (onRoleChange) this.safely('onRoleChange', () => onRoleChange(role));
    this.source.emitter?.emit('roleChange', { role });
  }

  /** A call settled (or was refused: durationMs 0) as `result`; only asked for while something listens (metrics included). */
  call(result: CallOutcome, durationMs: number, trial: boolean): void {
    const metrics = this.o.metrics;
    if (metrics) {
      const breakerId = this.o.id;
      if (result === CallOutcome.REJECTED_OPEN || result === CallOutcome.REJECTED_HALF_OPEN) {
        this.safely('metrics.recordBlockedRequest', () => metrics.recordBlockedRequest({ breakerId }));
      } else {
        const recorded = result === CallOutcome.TIMEOUT ? CallResult.FAILURE : result;
        this.safely('metrics.recordCall', () => metrics.recordCall({ breakerId, result: recorded, durationMs }));
      }
    }
    this.source.emitter?.emit('call', { result, durationMs, trial });
  }

  healthCheck(type: HealthCheckType, result: CheckResult, durationMs: number, error: unknown): void {
    // The dependency is down until a check passes: one report for the whole time.
    if (result === CallResult.FAILURE) this.reportCause(`health:${type}`, 'ZV_HEALTH_CHECK_FAILED', `the ${type} health check failed`, error);
    else this.settle(`health:${type}`);
    const metrics = this.o.metrics;
    if (metrics) this.safely('metrics.recordHealthCheck', () => metrics.recordHealthCheck({ breakerId: this.o.id, type, result, durationMs }));
    this.source.emitter?.emit('healthCheck', { type, result, durationMs, error });
  }

  degraded(degraded: boolean, durationMs: number): void {
    this.source.emitter?.emit('degradedChange', { degraded, durationMs });
  }

  /** A call to Redis failed: every failure is an event, whatever onError is told. */
  redisFailed(operation: RedisOperation, error: unknown): void {
    const emitter = this.source.emitter;
    if (!emitter?.listens('redisError')) return;
    emitter.emit('redisError', { operation, code: redisFailure(error).code, error });
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
