/**
 * An instance isolating itself (docs/architecture.md, "One instance's failures are its own",
 * and the flow "An instance isolating itself"). With the instance rule configured
 * (minimumInstances, minimumInstanceShare), the fleet opens only when failures come from
 * enough instances; an instance whose own outcomes reach the
 * strategy's rule while the fleet stays closed opens for itself only: state 'isolated',
 * its calls fail fast, and it runs its own recovery checks (the health checker's code,
 * with health.check, health.backoff and health.successThreshold). It rejoins when they
 * pass ('recovered'), when the fleet opens anyway ('fleet_opened': it follows the fleet)
 * or when it stops ('stopped'). Redis decides whether it may isolate (zv1_isolate judges
 * the figures of this instance's own window by the stored strategy) and keeps the audit
 * entries, in the breaker's instance-events stream; when Redis cannot be reached the
 * instance isolates and rejoins alone, and says so once through onError.
 */
import {
  BreakerMode,
  CallResult,
  type CheckResult,
  CircuitState,
  HealthCheckType,
  RejoinReason,
  StrategyKind,
  TransitionReason,
  TransitionScope,
} from './constants.js';
import type { BreakerContext } from './coordinator.js';
import { RedisUnreachableError } from './errors.js';
import { RedisOperation, StateSource } from './events.js';
import type { IsolateReply } from './functions.js';
import { HealthChecker } from './health-checker.js';
import { windowNumbers } from './local-mode.js';
import { LocalWindow, type WindowFacts } from './local-window.js';
import { redisFailure } from './redis-failure.js';
import type { SharedView } from './shared-view.js';
import { windowName } from './strategy-spec.js';
import { type DecisionNumbers, type Transition, localTransition } from './transition.js';

/** An isolation under way. */
interface Isolated {
  /** The fleet generation it began under: a fleet that moves on ends it. */
  readonly generation: number;
  /** The transition that began it: explain() tells its rule and figures. */
  readonly transition: Transition;
  /** Own recovery checks passed in a row. */
  passes: number;
}

/** The notifier's cause keys of zv1_isolate's refusals. */
const REFUSED = 'isolation-refused:';

/** Isolations are numbered across the process, so that each one's recovery loop is a new duty. */
let isolations = 0;

export class Isolation {
  /** This instance's own outcomes while the fleet is closed and it is not isolated. */
  private window: LocalWindow;
  private current: Isolated | undefined;
  /** An isolate call is on its way: the window does not ask again meanwhile. */
  private asking = false;
  /** Created with the first isolation. */
  private checker: HealthChecker | undefined;
  /** zv1_isolate calls under way: stop() waits for them. */
  private readonly calls = new Set<Promise<void>>();

  constructor(private readonly c: BreakerContext) {
    this.window = this.newWindow();
  }

  /** Whether this instance is isolated now. */
  get isolated(): boolean {
    return this.current !== undefined;
  }

  /** The transition that isolated this instance, while it is. */
  get since(): Transition | undefined {
    return this.current?.transition;
  }

  /** A call made while the fleet was closed settled (recorded for the fleet too). */
  add(failure: boolean, slow: boolean): void {
    const c = this.c;
    // A fleet forced closed keeps every instance in: zv1_isolate would answer 'mode'.
    if (this.current || c.mode.current === BreakerMode.FORCED_CLOSED) return;
    const facts = this.window.add(failure, slow);
    if (facts && !this.asking) this.ask(facts);
  }

  /** The fleet's shared state moved to `next`: an isolation of an earlier generation is over. */
  fleetMoved(next: SharedView): void {
    const current = this.current;
    if (current === undefined) {
      if (next.state === CircuitState.CLOSED) this.window = this.newWindow();
      return;
    }
    if (next.generation === current.generation && next.state === CircuitState.CLOSED) return;
    // An operator's control of a closed fleet moves it on too (or transitions this instance
    // did not see): the isolation ends with it.
    this.leave(next.state === CircuitState.CLOSED ? RejoinReason.FLEET_MOVED : RejoinReason.FLEET_OPENED, next.state);
  }

  /** A new run of the breaker: not isolated, an empty window. */
  reset(): void {
    this.current = undefined;
    this.window = this.newWindow();
  }

  /** The breaker stops: an isolation ends with a 'stopped' entry (best effort, within the command timeout). */
  async stop(): Promise<void> {
    this.checker?.stop();
    if (this.current) this.leave(RejoinReason.STOPPED, CircuitState.CLOSED);
    while (this.calls.size > 0) await Promise.all(this.calls);
  }

  // ---- isolating ----------------------------------------------------------------------

  private ask(facts: WindowFacts): void {
    const c = this.c;
    const functions = c.functions;
    if (!functions || !c.running) return;
    const generation = c.shared.generation;
    this.asking = true;
    const figures = { failures: facts.failures, calls: facts.calls, slow: facts.slow };
    this.track(
      functions.isolate(generation, figures).then(
        (reply) => this.answered(reply, facts, generation),
        (error: unknown) => this.isolateFailed(error, facts, generation),
      ),
      () => {
        this.asking = false;
      },
    );
  }

  private answered(reply: IsolateReply, facts: WindowFacts, generation: number): void {
    const c = this.c;
    this.accepted();
    if (reply.status === 'isolated') {
      const t = this.transition(CircuitState.CLOSED, CircuitState.ISOLATED, this.ruleOf(facts), generation, windowNumbers(c.o, facts), reply.entryId);
      if (!c.running) {
        // Isolated in Redis as this instance stopped: it rejoins there at once. Neither was
        // told here: the instance never acted isolated.
        this.rejoinAfter(t, RejoinReason.STOPPED, CircuitState.CLOSED, false);
      } else if (c.shared.generation !== generation || c.shared.state !== CircuitState.CLOSED) {
        // The fleet moved on while the call was on its way: the isolation Redis wrote ends there too.
        this.rejoinAfter(t, c.shared.state === CircuitState.CLOSED ? RejoinReason.FLEET_MOVED : RejoinReason.FLEET_OPENED, c.shared.state, false);
      } else if (!this.current) {
        this.begin(t);
      }
      return;
    }
    if (!c.running) return;
    this.window = this.newWindow();
    if (reply.status === 'monitored') {
      // Monitor mode: audited as would_isolate, and told as the fleet's would_open is.
      const t = this.transition(CircuitState.CLOSED, CircuitState.CLOSED, TransitionReason.WOULD_ISOLATE, generation, windowNumbers(c.o, facts), reply.entryId);
      c.notifier.transition({ ...t, rule: this.ruleOf(facts) }, StateSource.REPLY);
    } else if (reply.status === 'not_closed' || reply.status === 'stale_gen') {
      c.adopt(reply);
    }
  }

  /** Redis could not be asked: this instance isolates alone, and the cause is told once. */
  private isolateFailed(error: unknown, facts: WindowFacts, generation: number): void {
    const c = this.c;
    if (!c.running || this.current) return;
    this.begin(this.transition(CircuitState.CLOSED, CircuitState.ISOLATED, this.ruleOf(facts), generation, windowNumbers(c.o, facts), ''));
    this.failed(error, 'isolating this instance');
  }

  /**
   * A zv1_isolate call failed. No answer: Redis is unreachable, as for any call (degraded
   * mode). Refused (an ACL without the instance keys, a key of another type): the breaker's
   * other calls may well be accepted, so it is not degraded mode, whose resync would end at
   * once and tell the cause again at each isolation: told once, until a call is accepted.
   */
  private failed(error: unknown, what: string): void {
    const c = this.c;
    if (error instanceof RedisUnreachableError) {
      c.failed(error, RedisOperation.ISOLATION, what);
      return;
    }
    const failure = redisFailure(error);
    c.notifier.reportCause(`${REFUSED}${failure.key}`, failure.code, `${what} failed; this instance isolates itself and rejoins without Redis`, error);
  }

  /** A zv1_isolate call was accepted: a refusal told before is over (told again if it comes back). */
  private accepted(): void {
    this.c.notifier.settle(REFUSED);
  }

  private begin(t: Transition): void {
    const c = this.c;
    isolations += 1;
    this.current = { generation: t.generation, transition: t, passes: 0 };
    c.isolationChanged();
    c.notifier.transition(t, StateSource.REPLY);
    this.checker ??= new HealthChecker(c.duties, c.o.backoff, c.o.healthTimeoutMs);
    this.checker.assign({
      type: HealthCheckType.RECOVERY,
      key: `isolation:${isolations}`,
      checksSoFar: 0,
      probe: c.o.check !== undefined,
      sinceLastMs: 0,
      report: async (result) => this.checked(result),
    });
  }

  /** One of the isolated instance's own recovery checks settled; resolves true when the loop ends. */
  private async checked(result: CheckResult): Promise<boolean> {
    const current = this.current;
    if (!current) return true;
    current.passes = result === CallResult.SUCCESS ? current.passes + 1 : 0;
    if (current.passes < this.c.o.healthSuccessThreshold) return false;
    this.leave(RejoinReason.RECOVERED, CircuitState.CLOSED);
    return true;
  }

  // ---- rejoining ----------------------------------------------------------------------

  /**
   * Ends the isolation at once (execute() acts on the fleet's state from now) and, for a
   * reason, writes the rejoin entry; told as a transition to `to` once Redis answered.
   */
  private leave(reason: RejoinReason | undefined, to: CircuitState): void {
    const c = this.c;
    const current = this.current;
    if (!current) return;
    this.current = undefined;
    this.window = this.newWindow();
    this.checker?.assign(undefined);
    if (c.running) c.isolationChanged();
    if (reason === undefined) return;
    this.rejoinAfter(current.transition, reason, to);
  }

  /**
   * Writes the rejoin entry of the isolation `began`; when `told` (the instance acted
   * isolated), tells it as a transition to `to` (or to the fleet's state, as Redis answered).
   */
  private rejoinAfter(began: Transition, reason: RejoinReason, to: CircuitState, told = true): void {
    const c = this.c;
    const tell = (id: string, view?: SharedView) => {
      if (told) c.notifier.transition(this.transition(CircuitState.ISOLATED, view?.state ?? to, reason, began.generation, undefined, id), StateSource.REPLY);
    };
    const functions = c.functions;
    if (!functions) {
      tell('');
      return;
    }
    this.track(
      functions.rejoin(began.generation, reason).then(
        (reply) => {
          this.accepted();
          tell(reply.entryId, reply);
        },
        (error: unknown) => {
          tell('');
          if (c.running) this.failed(error, 'rejoining the fleet');
          else c.notifier.report(redisFailure(error).code, 'writing the rejoin entry of this instance as it stopped failed', error);
        },
      ),
    );
  }

  // ---- helpers ------------------------------------------------------------------------

  private track(call: Promise<void>, done?: () => void): void {
    const tracked = call
      .catch((error: unknown) => this.c.notifier.report('ZV_CALLBACK_FAILED', 'an isolation step failed', error))
      .finally(() => {
        done?.();
        this.calls.delete(tracked);
      });
    this.calls.add(tracked);
  }

  private newWindow(): LocalWindow {
    return new LocalWindow(this.c.o.breaker, this.c.o.slowCallRateThreshold);
  }

  /** The rule this instance's own window reached, as the library names it. */
  private ruleOf(facts: WindowFacts): TransitionReason {
    if (facts.slowRule) return TransitionReason.SLOW_CALL_RATE;
    return this.c.o.breaker.kind === StrategyKind.CONSECUTIVE ? TransitionReason.CONSECUTIVE_FAILURES : TransitionReason.FAILURE_RATE;
  }

  /** An instance-level transition: audited when `id` is an entry's, else decided here alone. */
  private transition(
    from: CircuitState,
    to: CircuitState,
    reason: TransitionReason,
    generation: number,
    numbers: DecisionNumbers | undefined,
    id: string,
  ): Transition {
    const c = this.c;
    const t = localTransition(from, to, reason, generation, c.o.instanceId, numbers, TransitionScope.INSTANCE);
    return { ...t, id, window: numbers ? windowName(c.o.breaker) : '', mode: c.mode.current, local: id === '' };
  }
}
