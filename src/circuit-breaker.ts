import { type ConnectionListener, type SharedConnections, attachConnections, detachConnections } from './connections.js';
import { CallResult, CircuitRole, CircuitState, HealthCheckType, StrategyKind } from './constants.js';
import { BackgroundError, CircuitOpenError, LibraryMissingError, TimeoutError, ZenvarkError } from './errors.js';
import {
  BreakerFunctions,
  type FeedMessage,
  type HealthReply,
  type Published,
  type ReportedResult,
  type SharedView,
  type Snapshot,
  isNewer,
} from './functions.js';
import { type Duty, type HealthCheckOwner, HealthChecker } from './health-checker.js';
import { type BreakerKeys, breakerKeys, feedChannel } from './keys.js';
import { LeaseKeeper, type LeaseOwner } from './lease.js';
import { LocalWindow, type WindowFacts } from './local-window.js';
import { type CircuitBreakerOptions, type ExecuteOptions, type ResolvedOptions, resolveOptions, validateExecuteOptions } from './options.js';
import { Recorder, type RecorderOwner, type Summary } from './recorder.js';
import type { FeedListener } from './state-feed.js';
import { LocalReason, type Transition } from './transition.js';
import { type Permit, TrialPermits, type TrialOwner } from './trial-permits.js';

/** While Redis is unreachable, the shared state is read again this often, in ms. */
const RESYNC_INTERVAL_MS = 1000;
/** Longest a success waits to be sent with other outcomes, in ms. */
const FLUSH_DELAY_MS = 1000;
/** Outcomes one pending summary may hold before further ones are dropped. */
const MAX_PENDING_OUTCOMES = 100_000;
/** Missed transitions are read back from the audit stream in pages of this many. */
const CATCH_UP_PAGE = 100;
/** At most this many pages are read back after one gap. */
const CATCH_UP_PAGES = 10;

/** What a call's outcome counts as. */
type Verdict = CallResult;
const SUCCESS = CallResult.SUCCESS;
const FAILURE = CallResult.FAILURE;
const IGNORE = CallResult.IGNORED;

/** The notification chain starts settled; shared, so that an idle breaker holds no promise. */
const SETTLED: Promise<void> = Promise.resolve();

/** What execute() decides on. A new object for every change, so that outcomes of calls
 * started under an older view can be recognised and dropped. While Redis is reachable,
 * the shared view is the view. */
interface View extends SharedView {
  /** True while Redis is unreachable and the state is this process's own. */
  readonly local: boolean;
}

/** A breaker before anything was read: closed, generation 0, of no life yet. */
const NEVER_WRITTEN: View = { state: CircuitState.CLOSED, generation: 0, epoch: '', local: false };

function sharedView(v: SharedView): View {
  return { state: v.state, generation: v.generation, epoch: v.epoch, local: false };
}

/** Where every outcome of a call went, and how many calls were refused. */
export interface BreakerStats {
  /** Outcomes Redis counted. */
  recorded: number;
  /** Outcomes of calls that started under an older generation: not counted, by design. */
  stale: number;
  /** Outcomes counted in this process while Redis was unreachable. */
  local: number;
  /** Outcomes dropped because the pending summary was full (100,000 outcomes). */
  overflowed: number;
  /** Outcomes that could not be delivered (Redis unreachable and no local window to take them). */
  undelivered: number;
  /** Calls refused with CircuitOpenError. */
  rejected: number;
  /** Outcomes counted as neither success nor failure (classifiers, caller aborts). */
  ignored: number;
  /** Outcomes of trial calls made with a half-open permit. */
  trials: number;
}

/** Progress of recovery checks in the current open period, on the local clock. */
interface RecoveryProgress {
  readonly generation: number;
  /** Recovery checks made (and half-open periods failed) since the circuit opened. */
  readonly checks: number;
  readonly lastAt: number;
}

/** No progress known: what a closed breaker holds (shared, so an idle breaker holds none). */
const NO_PROGRESS: RecoveryProgress = { generation: -1, checks: 0, lastAt: 0 };

/**
 * A circuit breaker shared by every instance that uses the same `id` and Redis. The
 * decisions are made in Redis; this object caches the state for `execute()`, reports
 * outcomes, follows the state feed and, while it holds the lease, runs the health checks.
 */
export class CircuitBreaker
  implements FeedListener, ConnectionListener, LeaseOwner, RecorderOwner, HealthCheckOwner, TrialOwner
{
  private readonly o: ResolvedOptions;
  private readonly keys: BreakerKeys;
  private readonly channel: string;
  /** Created when there is a first check to run. */
  private checker: HealthChecker | undefined;

  private view: View = NEVER_WRITTEN;
  private shared: View = NEVER_WRITTEN;
  private recovery: RecoveryProgress = NO_PROGRESS;
  private currentRole: CircuitRole = CircuitRole.FOLLOWER;

  private running = false;
  /** Subscribed to the feed: from before start() reads the snapshot until stop(). */
  private listening = false;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private connections: SharedConnections | undefined;
  private functions: BreakerFunctions | undefined;
  /** Half-open trial permits of this instance; created when the breaker first goes half-open. */
  private trials: TrialPermits | undefined;
  /** No timeout, classifier or slow-call rule: execute() takes its shortest path. */
  private readonly plain: boolean;
  /** Created with the first outcome: an idle breaker has no recorder. */
  private recorder: Recorder | undefined;
  private lease: LeaseKeeper | undefined;

  private degraded = false;
  private local: LocalWindow | undefined;
  private localEpisode = 0;
  private resyncTimer: NodeJS.Timeout | undefined;
  private resyncing = false;
  private resyncAgain = false;
  private emitting: Promise<void> = SETTLED;
  private reshapeReported = false;
  // Outcome counts (see BreakerStats), as plain fields: one object less per breaker.
  private recordedCount = 0;
  private ignoredCount = 0;
  private trialCount = 0;
  private staleCount = 0;
  private localCount = 0;
  private undeliveredCount = 0;
  private rejectedCount = 0;

  constructor(options: CircuitBreakerOptions) {
    this.o = resolveOptions(options);
    this.keys = breakerKeys(this.o.prefix, this.o.id);
    this.plain =
      this.o.timeoutMs === undefined &&
      this.o.slowCallDurationMs === undefined &&
      this.o.isFailure === undefined &&
      this.o.isResultFailure === undefined;
    this.channel = feedChannel(this.o.prefix);
    this.o.metrics?.initialize?.(this.o.id);
  }

  /** The breaker's id. */
  get id(): string {
    return this.o.id;
  }

  /** The name of this instance in leases and audit entries. */
  get instanceId(): string {
    return this.o.instanceId;
  }

  /** The state execute() acts on: the shared one, or this process's own while Redis is unreachable. */
  get state(): CircuitState {
    return this.view.state;
  }

  /** 'leader' while this instance holds the health-check lease. */
  get role(): CircuitRole {
    return this.currentRole;
  }

  /** Where the outcomes of calls went since construction. */
  get stats(): BreakerStats {
    return {
      recorded: this.recordedCount,
      stale: this.staleCount,
      local: this.localCount,
      overflowed: this.recorder?.overflowed ?? 0,
      undelivered: this.undeliveredCount,
      rejected: this.rejectedCount,
      ignored: this.ignoredCount,
      trials: this.trialCount,
    };
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
    if (options !== undefined) {
      try {
        validateExecuteOptions(options);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const view = this.view;
    if (view.state === CircuitState.CLOSED) {
      return options === undefined && this.plain ? this.run(view, fn) : this.runFully(view, fn, options, undefined);
    }
    if (view.state === CircuitState.HALF_OPEN && !view.local) {
      const permit = this.trials?.take(options?.timeoutMs ?? this.o.timeoutMs);
      if (permit) return this.runFully(view, fn, options, permit);
    }
    return this.failFast(view.state, options?.fallback);
  }

  /**
   * The fast-fail path. The rejection is settled a microtask later, once the caller has
   * attached its handler: a promise rejected before that is tracked by Node as possibly
   * unhandled, which would cost more than the whole rest of this path.
   */
  private failFast<T>(state: CircuitState, fallback: ExecuteOptions<T>['fallback']): Promise<T> {
    this.rejectedCount += 1;
    if (this.o.metrics) this.observeBlocked();
    const error = new CircuitOpenError(this.o.id, state === CircuitState.HALF_OPEN ? 'half_open' : 'open');
    if (fallback) return answerOf(fallback, error);
    return new Promise<T>((_, reject) => queueMicrotask(() => reject(error)));
  }

  /**
   * Runs fn when nothing but the outcome is asked for: no timeout, no classification, no
   * slow calls, no options. Plain callbacks cost less than an async function, and handing
   * back fn's own rejected promise costs less than rethrowing its error.
   */
  private run<T>(view: View, fn: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    if (typeof fn !== 'function') return Promise.reject(new TypeError('execute(fn): fn must be a function'));
    const startedAt = this.o.metrics ? performance.now() : 0;
    let pending: Promise<T>;
    try {
      // Nothing could abort this call: fn gets no signal.
      pending = Promise.resolve(fn(undefined));
    } catch (error) {
      this.observed(view, FAILURE, startedAt);
      return Promise.reject(error);
    }
    return pending.then(
      (result) => {
        this.observed(view, SUCCESS, startedAt);
        return result;
      },
      () => {
        this.observed(view, FAILURE, startedAt);
        return pending;
      },
    );
  }

  /** Runs fn with whatever was configured: timeout, caller's signal, classification,
   * slow calls, fallback; as a trial call when a permit is given. */
  private runFully<T>(
    view: View,
    fn: (signal: AbortSignal | undefined) => Promise<T>,
    options: ExecuteOptions<T> | undefined,
    permit: Permit | undefined,
  ): Promise<T> {
    const callerSignal = options?.signal;
    if (typeof fn !== 'function' || callerSignal?.aborted) {
      if (permit) this.trials?.giveBack(permit);
      return Promise.reject(callerSignal?.aborted ? callerSignal.reason : new TypeError('execute(fn): fn must be a function'));
    }
    const fallback = options?.fallback;
    // A trial call must end before its permit lapses, or its outcome would not count.
    const timeoutMs = permit ? trialTimeout(options?.timeoutMs ?? this.o.timeoutMs, permit) : (options?.timeoutMs ?? this.o.timeoutMs);
    const timed = timeoutMs !== undefined || this.o.slowCallDurationMs !== undefined || this.o.metrics !== undefined;
    const startedAt = timed ? performance.now() : 0;
    const controller = timeoutMs !== undefined || callerSignal ? new AbortController() : undefined;

    return new Promise<T>((resolve, reject) => {
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      // Settles once: by fn, by the timeout, or by the caller's signal, whichever is first.
      const finish = (verdict: Verdict, error: unknown, failed: boolean, result?: T) => {
        if (done) return false;
        done = true;
        if (timer) clearTimeout(timer);
        callerSignal?.removeEventListener('abort', onCallerAbort);
        this.observed(view, verdict, startedAt, permit);
        if (!failed) resolve(result as T);
        else if (fallback && verdict === FAILURE) resolve(answerOf(fallback, error));
        else reject(error);
        return true;
      };
      const onCallerAbort = () => {
        // The caller gave up: not the dependency's doing, so counted as neither.
        if (finish(IGNORE, callerSignal?.reason, true)) controller?.abort(callerSignal?.reason);
      };
      callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const error = new TimeoutError(this.o.id, timeoutMs);
          if (finish(FAILURE, error, true)) controller?.abort(error);
        }, timeoutMs);
      }
      let pending: Promise<T>;
      try {
        pending = Promise.resolve(fn(controller?.signal));
      } catch (error) {
        pending = Promise.reject(error);
      }
      pending.then(
        (result) => {
          finish(this.classifyResult(result), undefined, false, result);
        },
        (error: unknown) => {
          finish(this.classifyError(error), error, true);
        },
      );
    });
  }

  private classifyError(error: unknown): Verdict {
    if (error instanceof TimeoutError && error.breakerId === this.o.id) return FAILURE;
    const isFailure = this.o.isFailure;
    if (!isFailure) return FAILURE;
    return this.verdict(() => isFailure(error), FAILURE, 'isFailure');
  }

  private classifyResult(result: unknown): Verdict {
    const isResultFailure = this.o.isResultFailure;
    if (!isResultFailure) return SUCCESS;
    return this.verdict(() => isResultFailure(result), SUCCESS, 'isResultFailure');
  }

  /** A classifier's answer as a verdict; one that throws or answers nonsense is reported. */
  private verdict(ask: () => boolean | 'ignore', fallback: Verdict, name: string): Verdict {
    try {
      const answer = ask();
      if (answer === true) return FAILURE;
      if (answer === false) return SUCCESS;
      if (answer === 'ignore') return IGNORE;
      this.report('ZV_CALLBACK_FAILED', `${name} must return true, false or 'ignore', got ${String(answer)}`);
    } catch (error) {
      this.report('ZV_CALLBACK_FAILED', `${name} threw`, error);
    }
    return fallback;
  }

  /**
   * Connects, checks the function library, loads the shared state and joins the lease.
   * Fails when Redis cannot be reached within a few seconds or the library is missing or
   * older than this package (unless `loadFunctions` is set). Idempotent.
   */
  start(): Promise<void> {
    if (this.stopping) return this.stopping.then(() => this.start());
    this.starting ??= this.startOnce().then(
      () => {
        // Started: a shared settled promise stands for it, so the breaker keeps none.
        if (this.running) this.starting = SETTLED;
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
        () => this.stopOnce(),
        () => undefined,
      )
      .finally(() => {
        this.starting = undefined;
        this.stopping = undefined;
      });
    return this.stopping;
  }

  // ---- lifecycle -------------------------------------------------------------------

  private async startOnce(): Promise<void> {
    const connections = attachConnections(this.o.redis);
    this.connections = connections;
    // Feed messages that arrive before the snapshot is read are merged into this.
    this.shared = NEVER_WRITTEN;
    let subscribed = false;
    try {
      await connections.whenReady();
      await connections.verifyLibrary(this.o.loadFunctions);
      const functions = new BreakerFunctions(
        connections.command,
        this.keys,
        { channel: this.channel, actor: this.o.instanceId, retention: this.o.auditRetention },
        this.o.breaker,
        this.o.slowCallRateThreshold,
      );
      this.functions = functions;
      await connections.feed.add(this.channel, this.keys.state, this);
      subscribed = true;
      this.listening = true;
      const snapshot = await functions.state();

      // The initial load is not a transition: no onStateChange for it.
      if (isNewer(snapshot, this.shared)) this.shared = sharedView(snapshot);
      this.view = this.shared;
      this.recovery = NO_PROGRESS;
      this.trackRecovery(snapshot);
      this.degraded = false;
      this.recorder?.start(this.shared.generation);
      this.lease = new LeaseKeeper(functions, this.o.leaseTtlMs, this);
      connections.addListener(this);
      this.running = true;
      this.lease.start();
      this.updateDuties();
      this.followTrials();
    } catch (error) {
      this.listening = false;
      if (subscribed) connections.feed.remove(this.channel, this.keys.state, this);
      this.connections = undefined;
      this.functions = undefined;
      await detachConnections(this.o.redis, connections);
      throw error;
    }
  }

  private async stopOnce(): Promise<void> {
    const connections = this.connections;
    this.running = false;
    this.listening = false;
    this.checker?.stop();
    const trials = this.trials;
    // Permits belong to this run's connections: the next start() asks anew.
    this.trials = undefined;
    const trialsStopped = trials?.stop();
    this.clearResyncTimer();
    connections?.removeListener(this);
    await this.recorder?.drain();
    await this.lease?.stop();
    await trialsStopped;
    if (connections) connections.feed.remove(this.channel, this.keys.state, this);
    await this.emitting;
    this.connections = undefined;
    this.functions = undefined;
    this.lease = undefined;
    this.degraded = false;
    this.local = undefined;
    if (connections) await detachConnections(this.o.redis, connections);
  }

  // ---- outcomes --------------------------------------------------------------------

  /**
   * A call settled. Its outcome goes to the trial report (with a permit), to the
   * recorder, or to the local window while Redis is unreachable; an outcome observed
   * under an older view is stale.
   */
  private observed(view: View, verdict: Verdict, startedAt: number, permit?: Permit): void {
    const durationMs = startedAt === 0 ? 0 : performance.now() - startedAt;
    if (this.o.metrics) this.observeCall(verdict, durationMs);
    if (!this.running) return;
    if (permit) {
      this.trialCount += 1;
      this.trials?.report(permit, verdict);
      return;
    }
    if (verdict === IGNORE) {
      this.ignoredCount += 1;
      return;
    }
    const failure = verdict === FAILURE;
    const slowAfter = this.o.slowCallDurationMs;
    const slow = slowAfter !== undefined && durationMs >= slowAfter;
    if (view !== this.view) {
      this.staleCount += 1;
    } else if (!this.degraded) {
      if (!this.recorder) {
        this.recorder = new Recorder(this, FLUSH_DELAY_MS, MAX_PENDING_OUTCOMES);
        this.recorder.start(view.generation);
      }
      this.recorder.add(failure, slow);
    } else if (!this.local) {
      this.undeliveredCount += 1;
    } else {
      this.localCount += 1;
      const facts = this.local.add(failure, slow);
      if (facts && view.state === CircuitState.CLOSED) this.openLocally(facts);
    }
  }

  /** @internal */
  async sendSummary(generation: number, summary: Summary): Promise<void> {
    const functions = this.functions;
    if (!functions) return;
    try {
      const reply = await functions.record(generation, summary);
      if (reply.status === 'stale_gen' || reply.status === 'not_closed') this.staleCount += summary.calls;
      else this.recordedCount += summary.calls;
      if (!this.running) return;
      if (reply.status === 'reshaped' && !this.reshapeReported) {
        this.reshapeReported = true;
        this.report(
          'ZV_WINDOW_RESHAPED',
          'the stored window had another shape and was reset: do all instances of this breaker use the same strategy?',
        );
      }
      this.applyShared(reply.view, reply.published);
    } catch (error) {
      if (this.running) this.callFailed(error, 'recording outcomes', summary);
      else this.undeliveredCount += summary.calls;
    }
  }

  // ---- the shared state ------------------------------------------------------------

  /**
   * Applies a shared view newer than the cached one. A view of another epoch (the state
   * hash was recreated) replaces the cache whatever its generation; a breaker never
   * written (epoch '') is generation 0 of whatever epoch comes first.
   */
  private applyShared(incoming: SharedView, published?: Published): void {
    const current = this.shared;
    if (!isNewer(incoming, current)) return;
    const next = sharedView(incoming);
    this.shared = next;
    if (this.degraded || !this.running) return;
    if (next.state === current.state && next.generation === current.generation) return;
    // A new open period starts its recovery progress now (after failed half-open periods,
    // from where they left it); a closed breaker needs none.
    if (next.state !== CircuitState.OPEN) this.recovery = NO_PROGRESS;
    else if (this.recovery.generation !== next.generation) {
      this.recovery = { generation: next.generation, checks: published?.recoveryFailures ?? 0, lastAt: performance.now() };
    }
    const transition = published?.transition;
    const sameEpoch = next.epoch === current.epoch || current.epoch === '';
    this.view = next;
    this.staleCount += this.recorder?.reset(next.generation) ?? 0;
    this.followTrials();
    if (transition && sameEpoch && next.generation === current.generation + 1) {
      this.emit(transition);
    } else if (sameEpoch) {
      this.catchUp(current, next);
    } else if (next.state !== current.state) {
      this.emit(this.localTransitionRecord(current.state, next.state, LocalReason.RESYNC));
    }
    this.updateDuties();
  }

  /** Takes the recovery progress Redis reports, if the snapshot is of the cached, open state. */
  private trackRecovery(snapshot: Snapshot): void {
    if (snapshot.state !== CircuitState.OPEN) return;
    if (snapshot.generation !== this.shared.generation || snapshot.epoch !== this.shared.epoch) return;
    this.recovery = {
      generation: snapshot.generation,
      checks: snapshot.recoveryFailures + snapshot.recoverySuccesses,
      lastAt: performance.now() - snapshot.recoveryAgeMs,
    };
  }

  /** Reads the shared state again; leaves degraded mode when that works. */
  private async resync(): Promise<void> {
    const functions = this.functions;
    if (!this.running || !functions) return;
    if (this.resyncing) {
      this.resyncAgain = true;
      return;
    }
    this.resyncing = true;
    try {
      const snapshot = await functions.state();
      if (!this.running) return;
      if (this.degraded) {
        this.leaveDegraded(snapshot);
      } else {
        this.applyShared(snapshot);
        this.trackRecovery(snapshot);
      }
    } catch (error) {
      this.callFailed(error, 'reading the shared state');
    } finally {
      this.resyncing = false;
      if (this.resyncAgain && this.running) {
        this.resyncAgain = false;
        void this.resync();
      } else if (this.degraded && this.running) {
        this.scheduleResync();
      }
    }
  }

  // ---- the feed and the connection (FeedListener, ConnectionListener) ----------------

  /** @internal */
  onFeedMessage(message: FeedMessage): void {
    if (!this.listening) return;
    if (message.kind === 'released') {
      this.lease?.wake();
      return;
    }
    const t = message.transition;
    this.applyShared({ state: t.to, generation: t.generation, epoch: message.epoch }, message);
  }

  /** @internal */
  onResubscribed(): void {
    void this.resync();
  }

  /** @internal */
  get errorSink(): unknown {
    return this.o.onError;
  }

  /** @internal */
  onFeedError(error: Error): void {
    this.report(error instanceof ZenvarkError ? error.code : 'ZV_FEED_FAILED', 'the state feed failed', error);
  }

  /** @internal */
  onConnectionLost(cause: Error | undefined): void {
    this.enterDegraded(cause ?? new Error('connection closed'), 'the connection to Redis');
  }

  /** @internal */
  onConnectionRestored(): void {
    void this.resync();
  }

  // ---- degraded mode (DESIGN §9) -----------------------------------------------------

  /** A call to Redis failed. `unsent` holds the outcomes a failed record call carried. */
  private callFailed(error: unknown, what: string, unsent?: Summary): void {
    if (!this.running) return;
    if (error instanceof LibraryMissingError && this.connections) {
      this.connections.forgetLibrary();
    }
    if (error instanceof LibraryMissingError && this.o.loadFunctions && this.connections) {
      this.connections.verifyLibrary(true).catch((cause: unknown) =>
        this.report('ZV_LIBRARY_MISSING', 'reloading the function library failed', cause),
      );
    }
    if (this.degraded) {
      if (unsent) this.foldLocally(unsent);
      return;
    }
    this.enterDegraded(error, what, unsent);
  }

  private enterDegraded(cause: unknown, what: string, unsent?: Summary): void {
    if (!this.running || this.degraded) return;
    this.degraded = true;
    this.localEpisode += 1;
    const mode = this.o.localFallback ? 'evaluating the strategy locally' : 'keeping the last known state';
    this.report('ZV_REDIS_UNREACHABLE', `${what} failed; ${mode} until Redis answers again`, cause);
    this.local = this.o.localFallback ? this.newLocalWindow() : undefined;
    this.view = { ...this.view, local: true };
    this.recovery = { generation: -this.localEpisode, checks: 0, lastAt: performance.now() };
    this.followTrials();
    // Trial calls need Redis: alone, a half-open circuit is open again.
    if (this.view.state === CircuitState.HALF_OPEN) this.changeLocally(CircuitState.OPEN, LocalReason.REDIS_UNREACHABLE);
    // Outcomes that did not reach Redis are the freshest the local window can start from:
    // those of the failed call, then those that settled after it.
    if (unsent) this.foldLocally(unsent);
    const pending = this.recorder?.take();
    if (pending) this.foldLocally(pending);
    this.updateDuties();
    this.scheduleResync();
  }

  private newLocalWindow(): LocalWindow {
    return new LocalWindow(this.o.breaker, this.o.slowCallRateThreshold);
  }

  private foldLocally(summary: Summary): void {
    if (summary.calls === 0) return;
    if (!this.local) {
      this.undeliveredCount += summary.calls;
      return;
    }
    this.localCount += summary.calls;
    const facts = this.local.fold(summary);
    if (facts && this.view.state === CircuitState.CLOSED) this.openLocally(facts);
  }

  private leaveDegraded(snapshot: Snapshot): void {
    this.degraded = false;
    this.local = undefined;
    this.clearResyncTimer();
    const before = this.view.state;
    // Feed messages may have brought a newer state than this snapshot, read earlier.
    if (isNewer(snapshot, this.shared)) this.shared = sharedView(snapshot);
    const shared = this.shared;
    this.view = shared;
    this.recovery = shared.state === CircuitState.OPEN ? { generation: shared.generation, checks: 0, lastAt: performance.now() } : NO_PROGRESS;
    this.trackRecovery(snapshot);
    this.staleCount += this.recorder?.reset(shared.generation) ?? 0;
    if (before !== shared.state) {
      this.emit(this.localTransitionRecord(before, shared.state, LocalReason.RESYNC));
    }
    this.updateDuties();
    this.followTrials();
  }

  private openLocally(facts: WindowFacts): void {
    this.changeLocally(CircuitState.OPEN, facts.slowRule ? LocalReason.LOCAL_SLOW_CALLS : LocalReason.LOCAL_FAILURES, facts);
  }

  private changeLocally(to: CircuitState, reason: LocalReason, facts?: WindowFacts): void {
    const from = this.view.state;
    this.view = { ...this.view, state: to, local: true };
    if (to === CircuitState.CLOSED) this.local = this.o.localFallback ? this.newLocalWindow() : undefined;
    this.recovery = { generation: -this.localEpisode, checks: 0, lastAt: performance.now() };
    this.emit(this.localTransitionRecord(from, to, reason, facts));
    this.updateDuties();
  }

  private scheduleResync(): void {
    if (this.resyncTimer || !this.running) return;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      void this.resync();
    }, RESYNC_INTERVAL_MS);
  }

  private clearResyncTimer(): void {
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
  }

  // ---- lease and health checks ----------------------------------------------------

  /** @internal */
  onLeaseGranted(snapshot: Snapshot): void {
    this.applyShared(snapshot);
    this.trackRecovery(snapshot);
    this.setRole(CircuitRole.LEADER);
    this.updateDuties();
  }

  /** @internal */
  onLeaseHeld(snapshot: Snapshot): void {
    this.applyShared(snapshot);
  }

  /** @internal */
  onLeaseLost(): void {
    this.setRole(CircuitRole.FOLLOWER);
    this.updateDuties();
  }

  /** @internal */
  onLeaseError(error: unknown, operation: 'acquire' | 'renew' | 'release'): void {
    if (operation === 'release') {
      this.report('ZV_LEASE_FAILED', 'releasing the lease failed; another instance takes over when it expires', error);
    } else {
      this.callFailed(error, `lease ${operation}`);
    }
  }

  private setRole(role: CircuitRole): void {
    if (this.currentRole === role) return;
    this.currentRole = role;
    const callback = this.o.onRoleChange;
    if (!callback) return;
    try {
      callback(role);
    } catch (error) {
      this.report('ZV_CALLBACK_FAILED', 'onRoleChange threw', error);
    }
  }

  /** Gives the health checker the duty that fits the current role and state. */
  private updateDuties(): void {
    const duty = this.running ? this.currentDuty() : undefined;
    if (!duty && !this.checker) return;
    this.checker ??= new HealthChecker(this, this.o.backoff, this.o.healthTimeoutMs);
    this.checker.assign(duty);
  }

  /** @internal */
  runHealthCheck(type: HealthCheckType, signal: AbortSignal): Promise<void> {
    // Duties ask for a check only when there is one (see currentDuty).
    return (this.o.check as NonNullable<ResolvedOptions['check']>)(type, signal);
  }

  /** @internal */
  onHealthCheckerError(error: unknown): void {
    this.report('ZV_HEALTH_CHECK_FAILED', 'the health-check loop failed', error);
  }

  private currentDuty(): Duty | undefined {
    const recovery = this.recovery;
    const probe = this.o.check !== undefined;
    if (this.degraded) {
      if (!this.o.localFallback || this.view.state !== CircuitState.OPEN) return undefined;
      // Alone, this instance recovers by its own checks, or (with no check) after the wait.
      return {
        type: HealthCheckType.RECOVERY,
        key: `local:${this.localEpisode}:${recovery.lastAt}`,
        checksSoFar: 0,
        probe,
        sinceLastMs: performance.now() - recovery.lastAt,
        report: async (success) => {
          if (success) this.changeLocally(CircuitState.CLOSED, LocalReason.LOCAL_RECOVERY);
          return success;
        },
      };
    }
    const token = this.lease?.token;
    const functions = this.functions;
    if (token === undefined || !functions) return undefined;
    const { generation, epoch, state } = this.shared;
    const successThreshold = this.o.healthSuccessThreshold;
    const permits = this.o.halfOpen?.permittedCalls ?? 0;
    if (state === CircuitState.OPEN) {
      const progress = recovery.generation === generation ? recovery : { checks: 0, lastAt: performance.now() };
      const type = probe ? HealthCheckType.RECOVERY : 'wait';
      return {
        type: HealthCheckType.RECOVERY,
        key: `recovery:${epoch}:${generation}:${token}`,
        checksSoFar: progress.checks,
        probe,
        sinceLastMs: performance.now() - progress.lastAt,
        report: (success) =>
          this.reportHealth(() => functions.health(token, generation, type, result(success), successThreshold, permits)),
      };
    }
    const intervalMs = this.o.idleProbeIntervalMs;
    if (intervalMs === undefined || state !== CircuitState.CLOSED) return undefined;
    return {
      type: HealthCheckType.IDLE,
      key: `idle:${epoch}:${generation}:${token}`,
      intervalMs,
      idleFor: () => this.idleFor(functions),
      reportFailure: () =>
        this.reportHealth(() =>
          functions.health(token, generation, HealthCheckType.IDLE, CallResult.FAILURE, successThreshold, permits),
        ),
    };
  }

  /** Holds trial permits while the shared state is half-open (with trial calls configured). */
  private followTrials(): void {
    const halfOpen = this.o.halfOpen;
    const functions = this.functions;
    if (this.running && !this.degraded && halfOpen && functions && this.shared.state === CircuitState.HALF_OPEN) {
      this.trials ??= new TrialPermits(functions, halfOpen, this);
      this.trials.open(this.shared.generation);
    } else {
      this.trials?.close();
    }
  }

  /** @internal */
  onTrialReply(view: SharedView, published: Published | undefined): void {
    this.applyShared(view, published);
  }

  /** @internal */
  onTrialError(error: unknown, what: string): void {
    this.callFailed(error, what);
  }

  /** Sends a health report; resolves true when the current check loop should end. */
  private async reportHealth(send: () => Promise<HealthReply>): Promise<boolean> {
    let reply: HealthReply;
    try {
      reply = await send();
    } catch (error) {
      this.callFailed(error, 'reporting a health-check result');
      return true;
    }
    if (!this.running) return true;
    switch (reply.status) {
      case 'counted':
        this.recovery = { generation: reply.view.generation, checks: this.recovery.checks + 1, lastAt: performance.now() };
        return false;
      case 'stale_token':
        this.lease?.recheck();
        return true;
      default:
        this.applyShared(reply.view, reply.published);
        return true;
    }
  }

  /** How long no instance has used the breaker: Redis knows the fleet's last call. */
  private async idleFor(functions: BreakerFunctions): Promise<number> {
    try {
      const snapshot = await functions.state();
      return snapshot.idleMs < 0 ? snapshot.ageMs : snapshot.idleMs;
    } catch (error) {
      this.callFailed(error, 'reading when the breaker was last used');
      return 0;
    }
  }

  // ---- notifications ---------------------------------------------------------------

  private localTransitionRecord(
    from: CircuitState,
    to: CircuitState,
    reason: LocalReason,
    facts?: WindowFacts,
  ): Transition {
    const strategy = this.o.breaker;
    const windowed = facts !== undefined && strategy.kind !== StrategyKind.CONSECUTIVE;
    const counted = facts?.slowRule ? facts.slow : facts?.failures;
    const threshold = facts?.slowRule ? this.o.slowCallRateThreshold : strategy.threshold;
    return {
      id: '',
      from,
      to,
      reason,
      generation: this.shared.generation,
      failures: facts ? String(facts.failures) : '',
      calls: facts ? String(facts.calls) : '',
      slow: windowed ? String(facts.slow) : '',
      rate: windowed && facts.calls > 0 ? ((counted as number) / facts.calls).toFixed(4) : '',
      threshold: facts ? String(threshold) : '',
      window: '',
      actor: this.o.instanceId,
      token: '',
      time: Date.now(),
      local: true,
    };
  }

  /** Hands transitions to onStateChange in order, each once. */
  private emit(transition: Transition): void {
    this.emitting = this.emitting.then(() => this.notify(transition));
  }

  /** The view jumped more than one generation: read what was missed from the audit log. */
  private catchUp(from: SharedView, to: SharedView): void {
    const functions = this.functions;
    this.emitting = this.emitting.then(async () => {
      let missed: Transition[] = [];
      try {
        if (functions) missed = await missedTransitions(functions, from.generation, to.generation);
      } catch (error) {
        this.report('ZV_FEED_FAILED', 'reading missed transitions from the audit stream failed', error);
      }
      if (missed.length === 0 && from.state !== to.state) {
        missed = [this.localTransitionRecord(from.state, to.state, LocalReason.RESYNC)];
      }
      for (const t of missed) this.notify(t);
    });
  }

  private notify(transition: Transition): void {
    const callback = this.o.onStateChange;
    if (!callback) return;
    try {
      callback(transition.to, transition);
    } catch (error) {
      this.report('ZV_CALLBACK_FAILED', 'onStateChange threw', error);
    }
  }

  /** Hands a background error to onError. */
  private report(code: string, message: string, cause?: unknown): void {
    try {
      this.o.onError(new BackgroundError(code, this.o.id, message, cause));
    } catch {
      // onError itself failed; there is nobody left to tell.
    }
  }

  private observeCall(verdict: Verdict, durationMs: number): void {
    try {
      this.o.metrics?.recordCall({ breakerId: this.o.id, result: verdict, durationMs });
    } catch (error) {
      this.report('ZV_CALLBACK_FAILED', 'metrics.recordCall threw', error);
    }
  }

  private observeBlocked(): void {
    try {
      this.o.metrics?.recordBlockedRequest({ breakerId: this.o.id });
    } catch (error) {
      this.report('ZV_CALLBACK_FAILED', 'metrics.recordBlockedRequest threw', error);
    }
  }

  /** @internal */
  observeHealthCheck(type: HealthCheckType, outcome: CallResult, durationMs: number, error: unknown): void {
    if (outcome === CallResult.FAILURE) {
      this.report('ZV_HEALTH_CHECK_FAILED', `the ${type} health check failed`, error);
    }
    try {
      this.o.metrics?.recordHealthCheck({ breakerId: this.o.id, type, result: outcome, durationMs });
    } catch (caught) {
      this.report('ZV_CALLBACK_FAILED', 'metrics.recordHealthCheck threw', caught);
    }
  }
}

/**
 * The transitions with a generation in (after, upTo], oldest first, paging back through
 * the audit stream (newer entries may have been added since upTo was seen). Entries
 * trimmed by retention are gone.
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

function result(success: boolean): ReportedResult {
  return success ? 'success' : 'failure';
}

/** What the fallback answers for `error`, as a promise: what it returns or throws. */
function answerOf<T>(fallback: (error: unknown) => T | Promise<T>, error: unknown): Promise<T> {
  return new Promise<T>((resolve) => resolve(fallback(error)));
}

/** A trial call's timeout: its own, cut to what is left of its permit. */
function trialTimeout(timeoutMs: number | undefined, permit: Permit): number {
  const left = Math.max(1, Math.floor(permit.usableUntil - performance.now()));
  return timeoutMs === undefined ? left : Math.min(timeoutMs, left);
}
