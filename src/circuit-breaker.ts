import { runCall } from './call-runner.js';
import { type BreakerMode, ControlAction, type CircuitRole, type CircuitState } from './constants.js';
import { type ReasonOptions, type ModeOptions, controlRunning } from './controls.js';
import { Coordinator } from './coordinator.js';
import type { BreakerEventName, BreakerListener, Subscription } from './events.js';
import { type Explanation, explainRunning } from './explain.js';
import { type CircuitBreakerOptions, type ExecuteOptions, resolveOptions } from './options.js';
import type { BreakerStats } from './outcomes.js';
import type { Transition } from './transition.js';

/**
 * A circuit breaker shared by every instance that uses the same `id` and Redis. The
 * decisions are made in Redis; this object caches the state for `execute()`, reports
 * outcomes, follows the state feed and, while it holds the lease, runs the health checks.
 */
/** A started breaker keeps this instead of a promise of its own. */
const SETTLED: Promise<void> = Promise.resolve();

export class CircuitBreaker {
  private readonly core: Coordinator;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;

  /** Validates every option; an invalid one throws a TypeError or RangeError naming it. */
  constructor(options: CircuitBreakerOptions) {
    const o = resolveOptions(options);
    this.core = new Coordinator(o, this);
    o.metrics?.initialize?.(o.id);
  }

  /** The breaker's id. */
  get id(): string {
    return this.core.o.id;
  }

  /** The name of this instance in leases and audit entries. */
  get instanceId(): string {
    return this.core.o.instanceId;
  }

  /** The state execute() acts on: the shared one, or this process's own while Redis is unreachable. */
  get state(): CircuitState {
    return this.core.view.state;
  }

  /**
   * What an operator set beside the state, for every instance: '' (normal operation),
   * 'forced_open', 'forced_closed' or 'monitor' (see forceOpen()). As this instance last
   * heard it; kept while Redis is unreachable.
   */
  get mode(): BreakerMode {
    return this.core.mode.current;
  }

  /** True while Redis is unreachable and this process goes on alone (degraded mode). */
  get degraded(): boolean {
    return this.core.local !== undefined;
  }

  /** 'leader' while this instance holds the health-check lease. */
  get role(): CircuitRole {
    return this.core.role;
  }

  /** Where the outcomes of calls went since construction. */
  get stats(): BreakerStats {
    return this.core.outcomes.stats;
  }

  /**
   * Adds a listener for one of the breaker's events (see BreakerEventMap), at any time,
   * before or after start(). Listeners run synchronously, in the order added; one that
   * throws is reported to the `error` event. `dispose()` on the result removes it.
   */
  on<E extends BreakerEventName>(event: E, listener: BreakerListener<E>): Subscription {
    return this.core.events.on(event, listener);
  }

  /** Removes a listener added with on(); says whether it was there. */
  off<E extends BreakerEventName>(event: E, listener: BreakerListener<E>): boolean {
    return this.core.events.remove(event, listener);
  }

  /**
   * Runs `fn` unless the circuit is open (or half-open with no trial permit free), in
   * which case it throws CircuitOpenError without calling it. Never waits for Redis: the
   * outcome is recorded in the background. With a timeout, `options.signal`, or as a
   * trial call (which must end before its permit lapses), `fn` gets an AbortSignal that
   * aborts at the deadline or with the caller's signal; otherwise nothing could abort
   * the call and `fn` gets undefined.
   */
  execute<T>(fn: (signal: AbortSignal | undefined) => Promise<T>, options?: ExecuteOptions<T>): Promise<T> {
    return runCall(this.core, fn, options);
  }

  /**
   * Why the breaker is in its state, as Redis has it: the transition that led there, the
   * window against each rule, the lease, the recovery progress and when the next check is
   * due, with lines to read (see Explanation). Reads through the breaker's connections:
   * rejects with ZV_NOT_STARTED before start() and after stop(), and within the command
   * timeout (1 s) when Redis does not answer. Changes nothing.
   */
  explain(): Promise<Explanation> {
    return explainRunning(this.core);
  }

  /**
   * Forces the circuit open on every instance: calls fail fast and health checks pause
   * until release(), reset() or the expiry (`forMs`). Resolves with the transition
   * (reason 'forced_open'), audited with this instance's id and `reason`. Like every
   * control: arguments are checked before anything is sent, it needs a started breaker
   * (ZV_NOT_STARTED) and settles within the command timeout (1 s); this instance acts on
   * the result when it resolves, the others when the feed brings it.
   */
  forceOpen(options: ModeOptions): Promise<Transition> {
    return controlRunning(this.core, ControlAction.OPEN, options);
  }

  /** Forces the circuit closed on every instance: outcomes count, but no rule opens it (reason 'forced_closed'). See forceOpen(). */
  forceClose(options: ModeOptions): Promise<Transition> {
    return controlRunning(this.core, ControlAction.CLOSE, options);
  }

  /**
   * Monitor mode (a dry run) on every instance: closed, calls pass and count; a rule
   * reached is audited and published as a 'would_open' transition (closed to closed)
   * instead of opening (reason 'monitored'). See forceOpen().
   */
  monitor(options: ModeOptions): Promise<Transition> {
    return controlRunning(this.core, ControlAction.MONITOR, options);
  }

  /**
   * Ends the mode: the window decides the state (open, with recovery, if it reaches a
   * rule; else closed). Resolves with the transition (reason 'released'), or undefined
   * when no mode was set: nothing written. See forceOpen().
   */
  release(options: ReasonOptions): Promise<Transition | undefined> {
    return controlRunning(this.core, ControlAction.RELEASE, options);
  }

  /** Ends any mode and closes the circuit, with the window and recovery progress cleared (reason 'reset'). See forceOpen(). */
  reset(options: ReasonOptions): Promise<Transition> {
    return controlRunning(this.core, ControlAction.RESET, options);
  }

  /**
   * Connects, checks the function library, loads the shared state and joins the lease.
   * Fails when Redis cannot be reached within a few seconds or the library is missing or
   * older than this package (unless `loadFunctions` is set). Idempotent.
   */
  start(): Promise<void> {
    if (this.stopping) return this.stopping.then(() => this.start());
    this.starting ??= this.core.run().then(
      () => {
        if (this.core.running) this.starting = SETTLED;
      },
      (error: unknown) => {
        this.starting = undefined;
        throw error;
      },
    );
    return this.starting;
  }

  /** Stops every timer, releases the lease and gives the connections back. Idempotent. */
  stop(): Promise<void> {
    const starting = this.starting;
    if (!starting) return Promise.resolve();
    this.stopping ??= starting
      .then(
        () => this.core.end(),
        () => undefined,
      )
      .finally(() => {
        this.starting = undefined;
        this.stopping = undefined;
      });
    return this.stopping;
  }
}
