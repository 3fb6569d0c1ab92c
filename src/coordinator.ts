/**
 * The coordinator of one breaker in this process. It holds the cached view execute()
 * acts on and the newest shared state seen, owns every part (lease keeper, recorder,
 * trial permits, health duties, degraded mode, notifications) and is what those parts
 * report facts to. Every change of state, role or mode ends in reconcile(), which brings
 * the parts in line with it. See docs/architecture.md for the flows.
 */
import type { CircuitBreaker } from './circuit-breaker.js';
import { BreakerMode, CircuitRole, CircuitState } from './constants.js';
import { type ConnectionListener, type SharedConnections, attachConnections, detachConnections } from './connections.js';
import { Duties } from './duties.js';
import { type BreakerEventName, Emitter, RedisOperation, StateSource } from './events.js';
import { LibraryMissingError, LibraryOutdatedError, ProcessStalledError, ZenvarkError } from './errors.js';
import type { FeedMessage, Published } from './feed-message.js';
import { BreakerFunctions, type Snapshot } from './functions.js';
import { type BreakerKeys, breakerKeys, feedChannel } from './keys.js';
import { Isolation } from './isolation.js';
import { LeaseKeeper } from './lease.js';
import { LocalMode } from './local-mode.js';
import { ModeKeeper } from './mode.js';
import { Notifier } from './notifier.js';
import type { ResolvedOptions } from './options.js';
import { Outcomes } from './outcomes.js';
import type { Summary } from './recorder.js';
import { NEVER_WRITTEN, type SharedView, type View, isBehind, isNewer, sharedView } from './shared-view.js';
import { driverError, redisFailure } from './redis-failure.js';
import { breakerStarted, breakerStopped } from './running-breakers.js';
import type { FeedListener } from './state-feed.js';
import { instanceRuleSpec, strategySpec } from './strategy-spec.js';
import { type DecisionNumbers, LocalReason, type Transition, localTransition } from './transition.js';
import { TrialPermits } from './trial-permits.js';

/**
 * What the parts of a breaker see of its coordinator: they read its fields and report
 * facts to it through its methods; they never assign its fields.
 */
export type BreakerContext = Readonly<Coordinator>;

/**
 * Where a shared view comes from: a reply or snapshot, the feed (to be confirmed by the
 * audit stream), or a read sent since the cache last changed (the present, even if older).
 */
type Source = 'reply' | 'feed' | 'anchor';

export class Coordinator implements FeedListener, ConnectionListener {
  readonly keys: BreakerKeys;
  readonly channel: string;
  readonly outcomes: Outcomes;
  readonly duties: Duties;
  /** The mode an operator set, as this instance knows it, and the end of one with an expiry. */
  readonly mode: ModeKeeper;
  /** No timeout, classifier or slow-call rule: execute() takes its shortest path. */
  readonly plain: boolean;
  /** With the instance rule: this instance's own window, and its isolation (isolation.ts). */
  readonly isolation: Isolation | undefined;
  /** The instance rule as zv1_record takes it ('K:share'), or undefined without one. */
  readonly instanceRule: string | undefined;

  /** What execute() acts on: the shared state, or this process's own while Redis is unreachable. */
  view: View = NEVER_WRITTEN;
  /** The newest shared state seen, from replies, the feed and snapshots. */
  shared: View = NEVER_WRITTEN;
  role: CircuitRole = CircuitRole.FOLLOWER;
  running = false;
  /** Present while Redis is unreachable: degraded mode. */
  local: LocalMode | undefined;
  functions: BreakerFunctions | undefined;
  lease: LeaseKeeper | undefined;
  /** Created when the breaker first goes half-open. */
  trials: TrialPermits | undefined;

  /** Subscribed to the feed: from before start() reads the snapshot until stop(). */
  private listening = false;
  private connections: SharedConnections | undefined;
  private resyncing = false;
  private resyncAgain = false;
  /** Counts changes of the shared view: a read sent since the last one answers for the present. */
  private adoptions = 0;
  /** The shared view when it was taken from the feed and its audit entry not yet read back. */
  private unconfirmed: SharedView | undefined;
  /** Created when there is something to tell: an idle breaker has none. */
  private notices: Notifier | undefined;
  /** The breaker's listeners: created with the first one. */
  emitter: Emitter | undefined;

  constructor(
    readonly o: ResolvedOptions,
    /** The public breaker: what the metrics entry points attach to (running-breakers.ts). */
    readonly owner: CircuitBreaker,
  ) {
    this.keys = breakerKeys(o.prefix, o.id);
    this.channel = feedChannel(o.prefix);
    this.outcomes = new Outcomes(this);
    this.duties = new Duties(this);
    this.mode = new ModeKeeper(this);
    this.isolation = o.instanceRule ? new Isolation(this) : undefined;
    this.instanceRule = o.instanceRule && instanceRuleSpec(o.instanceRule.minimumInstances, o.instanceRule.minimumInstanceShare);
    this.plain = o.timeoutMs === undefined && o.slowCallDurationMs === undefined && o.isFailure === undefined && o.isResultFailure === undefined;
  }

  /** What the breaker tells the application: its events, and errors once per cause. */
  get notifier(): Notifier {
    this.notices ??= new Notifier(this.o, this);
    return this.notices;
  }

  /** The breaker's listeners (see events.ts). */
  get events(): Emitter {
    this.emitter ??= new Emitter((name, error) => this.notifier.report('ZV_CALLBACK_FAILED', `a '${name}' listener threw`, error));
    return this.emitter;
  }

  /** Whether anything listens for `name` (a call: metrics too): events nobody listens for are not built. */
  listens(name: BreakerEventName): boolean {
    return (this.emitter !== undefined && this.emitter.listens(name)) || (name === 'call' && this.o.metrics !== undefined);
  }

  // ---- one run: from start() to stop() (circuit-breaker.ts makes them idempotent) -----

  /** Connects, checks the library, reads the shared state and joins the lease; cleans up when that fails. */
  async run(): Promise<void> {
    const o = this.o;
    const connections = attachConnections(o.redis);
    this.connections = connections;
    // Feed messages that arrive before the snapshot is read are merged into this.
    this.shared = NEVER_WRITTEN;
    this.mode.forget();
    let subscribed = false;
    try {
      await connections.whenReady();
      await connections.verifyLibrary(o.loadFunctions);
      const spec = strategySpec(o.breaker, o.slowCallRateThreshold);
      const functions = new BreakerFunctions(connections.command, this.keys, this.channel, o.instanceId, o.auditRetention, spec, o.leaseTtlMs);
      this.functions = functions;
      await connections.feed.add(this.channel, this.keys.state, this);
      subscribed = true;
      this.listening = true;
      const mark = this.adoptions;
      const snapshot = await connections.stateRead(() => functions.state());

      // The initial load is not a transition: no onStateChange for it. Feed messages taken
      // while it was read are newer, unless they were not the library's; and a read that
      // raced them cannot tell (a breaker first written meanwhile reads as unwritten): Redis
      // is read again once the breaker runs.
      if (this.adoptions === mark || isNewer(snapshot, this.shared)) this.shared = sharedView(snapshot);
      if (this.adoptions !== mark) this.resyncAgain = true;
      this.view = this.shared;
      this.local = undefined;
      this.duties.reset();
      this.duties.resume(snapshot, this.shared);
      this.outcomes.start(this.shared.generation);
      this.isolation?.reset();
      this.lease = new LeaseKeeper(functions, o.leaseTtlMs, this);
      connections.addListener(this);
      this.running = true;
      breakerStarted(this);
      if (this.listens('stateChange')) this.notifier.started(this.view.state);
      this.lease.start();
      this.lease.heldBy(snapshot.holder, snapshot.leaseMs);
      this.mode.followSnapshot(snapshot);
      this.reconcile();
      if (this.resyncAgain) {
        this.resyncAgain = false;
        void this.resync();
      }
    } catch (error) {
      this.listening = false;
      if (subscribed) connections.feed.remove(this.channel, this.keys.state, this);
      this.connections = undefined;
      this.functions = undefined;
      await detachConnections(o.redis, connections);
      // Whatever went wrong talking to Redis says so in Zenvark's words.
      throw driverError(error, connections.command);
    }
  }

  /** Stops every part, gives the lease and the connections back. */
  async end(): Promise<void> {
    const connections = this.connections;
    this.running = false;
    this.listening = false;
    const modeStopped = this.mode.stop();
    // An isolated instance writes its rejoin entry while it still has its connections.
    const isolationStopped = this.isolation?.stop();
    this.duties.stop();
    const trials = this.trials;
    // Permits belong to this run's connections: the next start() asks anew.
    this.trials = undefined;
    const trialsStopped = trials?.stop();
    this.local?.stop();
    connections?.removeListener(this);
    await this.outcomes.drain();
    await modeStopped;
    await this.lease?.stop();
    await trialsStopped;
    await isolationStopped;
    if (connections) connections.feed.remove(this.channel, this.keys.state, this);
    await this.notices?.drained();
    this.connections = undefined;
    this.functions = undefined;
    this.lease = undefined;
    this.local = undefined;
    if (connections) await detachConnections(this.o.redis, connections);
    breakerStopped(this);
    this.emitter?.emit('stop', {});
  }

  /**
   * Brings the parts in line with the present state, role and mode: trial permits follow
   * a half-open shared state (Redis reachable), the lease follows the duties the shared
   * state calls for (none while an operator's mode is set: health checks pause), and the
   * health duties follow the rest.
   */
  private reconcile(): void {
    const halfOpen = this.o.halfOpen;
    const functions = this.functions;
    const shared = this.shared.state;
    if (this.running && !this.local && halfOpen && functions && shared === CircuitState.HALF_OPEN) {
      this.trials ??= new TrialPermits(functions, halfOpen, this);
      this.trials.open(this.shared.generation);
    } else {
      this.trials?.close();
    }
    // A closed breaker needs a lease holder only for idle probes: otherwise none is kept,
    // and an idle breaker costs Redis nothing (docs/architecture.md, "Fenced leases").
    const duty = shared !== CircuitState.CLOSED || this.o.idleProbeIntervalMs !== undefined;
    this.lease?.want(this.running && duty && this.mode.current === BreakerMode.NORMAL);
    this.duties.update();
  }

  // ---- the shared state ---------------------------------------------------------------

  /** Redis answered with the breaker's shared state, and the transition that led there if any. */
  adopt(incoming: SharedView, published?: Published): void {
    this.heardOfLease(published);
    if (this.apply(incoming, published, 'reply')) this.reconcile();
  }

  /** A published transition says who holds the lease: a follower that needs it waits for that lease to end. */
  private heardOfLease(published: Published | undefined): void {
    const lease = published?.lease;
    if (lease) this.lease?.heldBy(lease.holder, lease.remainingMs);
  }

  /**
   * Takes a shared view newer than the cached one; returns whether execute()'s view
   * changed. A view of another epoch (the state hash was recreated) replaces the cache
   * whatever its generation; a breaker never written (epoch '') is generation 0 of
   * whatever epoch comes first. An older view of the same epoch is either a reply
   * overtaken by the feed or a sign that the cache holds what Redis never wrote: a read
   * finds out, and its answer (an 'anchor': nothing was taken since it was sent) is the
   * present, older or not.
   */
  private apply(incoming: SharedView, published: Published | undefined, source: Source): boolean {
    const current = this.shared;
    if (!this.take(incoming, source)) return false;
    const next = this.shared;
    const modeChanged = published !== undefined && this.followMode(published.transition, next.epoch);
    // Taken from the feed, it is the library's only if the audit stream has it (while the
    // breaker starts too).
    if (source === 'feed' && published) void this.confirm(published.transition);
    // Alone, this instance keeps its own state; a mode it hears of still changes its duties.
    if (this.local || !this.running) return this.running && modeChanged;
    if (next.state === current.state && next.generation === current.generation) return false;
    this.duties.follow(next, published?.recoveryFailures ?? 0);
    this.isolation?.fleetMoved(next);
    this.view = this.own(next);
    this.outcomes.newGeneration(next.generation);
    this.notifier.changed(this.functions, current, next, published?.transition, source === 'feed' ? StateSource.FEED : StateSource.REPLY);
    return true;
  }

  /** Takes `incoming` as the shared state if it is newer, or the present (an anchor); says whether it did. */
  private take(incoming: SharedView, source: Source): boolean {
    const current = this.shared;
    if (!isNewer(incoming, current)) {
      if (!isBehind(incoming, current)) return false;
      if (source !== 'anchor') {
        this.verify();
        return false;
      }
      this.notifier.rolledBack(current, incoming, this.unconfirmed === current);
    }
    this.shared = sharedView(incoming);
    this.unconfirmed = source === 'feed' ? this.shared : undefined;
    this.adoptions += 1;
    return true;
  }

  /**
   * A transition taken from the feed is the library's only if the audit stream has it;
   * otherwise Redis says what is true (and the cache goes back to it).
   */
  private async confirm(transition: Transition): Promise<void> {
    const taken = this.shared;
    try {
      if (!this.functions) return;
      if (await this.functions.audited(transition)) {
        if (this.unconfirmed === taken) this.unconfirmed = undefined;
      } else {
        this.verify();
      }
    } catch (error) {
      // No answer to check with: the next reply or resync corrects a wrong cache.
      this.notices?.redisFailed(RedisOperation.READ, error);
    }
  }

  /** The mode after transition `t` of life `epoch`; says whether it changed. One this instance did not hear set is read from Redis. */
  private followMode(t: Transition, epoch: string): boolean {
    const changed = this.mode.followTransition(t, epoch);
    if (changed === 'unknown') this.verify();
    return changed !== false;
  }

  /** A transition read back from the audit stream after a gap (the notifier's catch-up): the mode it leaves. */
  replayed(t: Transition, epoch: string): void {
    if (this.followMode(t, epoch) && this.running) this.reconcile();
  }

  /** Has Redis say what the state is (before the breaker runs: once it does). */
  verify(): void {
    if (this.running) void this.resync();
    else this.resyncAgain = true;
  }

  /**
   * Reads the shared state again, one read at a time, through a call Redis refuses where
   * this instance could not write; leaves degraded mode when that works.
   */
  private async resync(): Promise<void> {
    const functions = this.functions;
    const connections = this.connections;
    if (!this.running || !functions || !connections) return;
    if (this.resyncing) {
      this.resyncAgain = true;
      return;
    }
    this.resyncing = true;
    const mark = this.adoptions;
    try {
      const snapshot = await connections.stateRead(() => functions.sync());
      if (!this.running) return;
      this.lease?.heldBy(snapshot.holder, snapshot.leaseMs);
      const source: Source = this.adoptions === mark ? 'anchor' : 'reply';
      if (this.local) {
        this.leaveLocal(snapshot, source);
      } else {
        this.apply(snapshot, undefined, source);
        this.mode.followSnapshot(snapshot);
        this.duties.resume(snapshot, this.shared);
        this.reconcile();
      }
    } catch (error) {
      this.failed(error, RedisOperation.READ, 'reading the shared state');
    } finally {
      this.resyncing = false;
      if (this.resyncAgain && this.running) {
        this.resyncAgain = false;
        void this.resync();
      } else if (this.local && this.running) {
        this.local.scheduleResync();
      }
    }
  }

  // ---- the lease ----------------------------------------------------------------------

  /** This instance holds the lease now; `snapshot` is the breaker as Redis has it. */
  leaseGranted(snapshot: Snapshot): void {
    this.apply(snapshot, undefined, 'reply');
    this.mode.followSnapshot(snapshot);
    this.duties.resume(snapshot, this.shared);
    this.setRole(CircuitRole.LEADER);
    this.reconcile();
  }

  /** This instance took the lease with a call that changed the state too (the reply was adopted first). */
  leaseTaken(): void {
    this.setRole(CircuitRole.LEADER);
    this.reconcile();
  }

  /** This instance stopped holding the lease (lost, lapsed or released). */
  leaseLost(): void {
    this.setRole(CircuitRole.FOLLOWER);
    this.reconcile();
  }

  private setRole(role: CircuitRole): void {
    if (this.role === role) return;
    this.role = role;
    this.notifier.roleChanged(role);
  }

  // ---- degraded mode (docs/architecture.md, "Degrade, never fail the caller") ---------

  /**
   * A call to Redis failed. `unsent` holds the outcomes a failed record call carried. Each
   * cause (no answer, out of memory, a missing library, ...) is told once while it lasts.
   */
  failed(error: unknown, operation: RedisOperation, what: string, unsent?: Summary): void {
    if (!this.running) return;
    this.notifier.redisFailed(operation, error);
    this.connections?.callFailed(error);
    if (error instanceof ProcessStalledError) {
      // This process stopped running, not Redis: its answer may be waiting unread. Redis is
      // read again, and only a failure of that read, or of a later call, means it is
      // unreachable (docs/architecture.md, "Degrade, never fail the caller"). In degraded
      // mode the resyncs go on as they were.
      if (unsent) this.outcomes.unanswered(unsent);
      if (!this.local) void this.resync();
      return;
    }
    if (error instanceof LibraryMissingError || error instanceof LibraryOutdatedError) {
      // A node without the current library (flushed, restarted empty, added to a cluster
      // later, a replica promoted that missed a load): loaded there when this application may.
      this.connections?.libraryMissing(this.o.loadFunctions)?.catch((cause: unknown) =>
        this.notifier.report('ZV_LIBRARY_MISSING', 'reloading the function library failed', cause),
      );
    }
    const failure = redisFailure(error);
    const mode = this.o.localFallback ? 'evaluating the strategy locally' : 'keeping the last known state';
    const explained = failure.summary && ` (${failure.summary})`;
    const message = `${what} failed${explained}; ${mode} until Redis accepts this breaker's calls again`;
    this.notifier.reportCause(`redis:${failure.key}`, failure.code, message, error);
    if (this.local) {
      if (unsent) this.outcomes.foldLocally(unsent);
      return;
    }
    // A new outage: its end will be told too.
    this.notifier.settle('restored');
    this.enterLocal(unsent);
    this.notifier.degraded(true, 0);
  }

  private enterLocal(unsent?: Summary): void {
    const local = new LocalMode(this.o, () => void this.resync());
    this.local = local;
    this.view = { ...this.view, local: true };
    this.duties.startLocalPeriod();
    // Trial calls need Redis: alone, a half-open circuit is open again.
    if (this.view.state === CircuitState.HALF_OPEN) this.changeLocally(CircuitState.OPEN, LocalReason.REDIS_UNREACHABLE);
    // Outcomes that did not reach Redis are the freshest the local window can start from:
    // those of the failed call, then those that settled after it.
    if (unsent) this.outcomes.foldLocally(unsent);
    const pending = this.outcomes.takePending();
    if (pending) this.outcomes.foldLocally(pending);
    this.reconcile();
    local.scheduleResync();
  }

  /** This process changes its state alone (degraded mode). */
  changeLocally(to: CircuitState, reason: LocalReason, numbers?: DecisionNumbers): void {
    const from = this.view.state;
    this.view = { ...this.view, state: to, local: true };
    if (to === CircuitState.CLOSED) this.local?.restart();
    this.duties.startLocalPeriod();
    this.notifier.transition(localTransition(from, to, reason, this.shared.generation, this.o.instanceId, numbers), StateSource.LOCAL);
    this.reconcile();
  }

  // ---- isolation (isolation.ts) ------------------------------------------------------

  /** execute()'s view of the shared view `v`: 'isolated' while this instance is. */
  private own(v: View): View {
    return this.isolation?.isolated ? { ...v, state: CircuitState.ISOLATED } : v;
  }

  /** This instance isolated itself or rejoined: execute() acts on that from now. */
  isolationChanged(): void {
    const isolated = this.isolation?.isolated === true;
    if (this.local) {
      // Alone, an instance that rejoins starts a window of its own afresh.
      this.view = { ...this.view, state: isolated ? CircuitState.ISOLATED : CircuitState.CLOSED };
      if (!isolated) this.local.restart();
    } else {
      this.view = this.own(this.shared);
    }
    this.reconcile();
  }

  /** Redis accepts this breaker's calls again: its shared state replaces this process's own. */
  private leaveLocal(snapshot: Snapshot, source: Source): void {
    const local = this.local;
    if (!local) return;
    local.stop();
    this.local = undefined;
    // What onStateChange was last told: the local state, on the shared generation it left.
    const before = this.view;
    // Feed messages may have brought a newer state than this snapshot, read earlier.
    this.take(snapshot, source);
    this.mode.followSnapshot(snapshot);
    const shared = this.shared;
    this.isolation?.fleetMoved(shared);
    this.view = this.own(shared);
    this.duties.rejoin(snapshot, shared);
    this.outcomes.newGeneration(shared.generation);
    this.notifier.settle('redis:');
    const durationMs = performance.now() - local.since;
    const seconds = (durationMs / 1000).toFixed(1);
    this.notifier.reportCause(
      'restored',
      'ZV_REDIS_RESTORED',
      `Redis accepts this breaker's calls again after ${seconds} s; its shared state replaced the local one`,
    );
    this.notifier.degraded(false, durationMs);
    // Transitions made meanwhile by the others are read back, in order.
    this.notifier.changed(this.functions, before, shared);
    this.reconcile();
  }

  // ---- the feed and the connection (FeedListener, ConnectionListener) -----------------

  onFeedMessage(message: FeedMessage): void {
    if (!this.listening) return;
    if (message.kind === 'released') {
      this.lease?.wake();
      return;
    }
    const t = message.transition;
    const current = this.shared;
    const incoming = { state: t.to, generation: t.generation, epoch: message.epoch };
    // Only the next transition of the life this instance knows is taken at once (and
    // confirmed by the audit stream), and who holds the lease heard from it; for anything
    // else, Redis says what is true. A breaker this instance has seen only unwritten (an
    // idle one, epoch '') is generation 0 of whatever life its first transition begins.
    const sameLife = message.epoch === current.epoch || (current.epoch === '' && current.generation === 0);
    if (sameLife && t.generation === current.generation + 1) {
      this.heardOfLease(message);
      if (this.apply(incoming, message, 'feed')) this.reconcile();
    } else if (isNewer(incoming, current)) {
      this.verify();
    }
  }

  onResubscribed(): void {
    void this.resync();
  }

  /**
   * Who hears a failure of the feed, which every breaker shares: the same onError on many
   * breakers is told once, and so is console.error for the breakers nobody listens to.
   */
  get errorSink(): unknown {
    return this.o.onError ?? (this.listens('error') ? this : console.error);
  }

  onFeedError(error: Error): void {
    this.notifier.redisFailed(RedisOperation.CONNECTION, error);
    this.notifier.report(error instanceof ZenvarkError ? error.code : 'ZV_FEED_FAILED', 'the state feed failed', error);
  }

  onConnectionLost(cause: Error): void {
    this.failed(cause, RedisOperation.CONNECTION, 'the connection to Redis');
  }

  onConnectionRestored(): void {
    void this.resync();
  }

  onTopologyChanged(): void {
    // A breaker that could not reach its shard tries at once: its primary may be a new one.
    if (this.local) void this.resync();
  }
}
