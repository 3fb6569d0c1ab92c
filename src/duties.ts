/**
 * The health duties of one breaker and the recovery progress they follow. Only the lease
 * holder has a duty (every instance, while Redis is unreachable): recovery checks while
 * the circuit is open, spaced by the backoff; idle probes while it is closed and unused.
 * While an operator's mode is set no check runs (zv1_health would ignore it): the operator
 * decides, and a breaker forced open stays open in degraded mode too. Recovery progress
 * (checks made in the current open period) is changed only through the named operations
 * below.
 */
import { BreakerMode, CallResult, type CheckResult, CircuitState, HealthCheckType } from './constants.js';
import type { BreakerContext } from './coordinator.js';
import { RedisOperation } from './events.js';
import type { BreakerFunctions, HealthReply, Snapshot } from './functions.js';
import { type Duty, type HealthCheckOwner, HealthChecker } from './health-checker.js';
import type { SharedView } from './shared-view.js';
import { LocalReason } from './transition.js';

/** Recovery checks made (and half-open periods failed) in one open period, on the local clock. */
interface Progress {
  /** The open period: '<epoch>:<generation>' of a shared one, 'local:<n>' of this process's own. */
  readonly period: string;
  readonly checks: number;
  /** When the last check ran, or the period began. */
  readonly lastAt: number;
}

/** No progress: what a closed breaker holds (shared, so an idle breaker holds none of its own). */
const NO_PROGRESS: Progress = { period: '', checks: 0, lastAt: 0 };

/** Local periods are numbered across the process (each one is a new duty), so that a
 * breaker needs no counter of its own. */
let localPeriods = 0;

function periodOf(view: SharedView): string {
  return `${view.epoch}:${view.generation}`;
}

/**
 * The recovery checks an open period has made, as Redis counts them: the failed ones (and
 * failed half-open periods) and the passing run. The next check is attempt number this + 1,
 * whichever instance makes it.
 */
export function recoveryChecksSoFar(snapshot: Snapshot): number {
  return snapshot.recoveryFailures + snapshot.recoverySuccesses;
}

export class Duties implements HealthCheckOwner {
  /** Created when there is a first check to run. */
  private checker: HealthChecker | undefined;
  private progress: Progress = NO_PROGRESS;

  constructor(private readonly c: BreakerContext) {}

  // ---- recovery progress ------------------------------------------------------------

  /**
   * The shared view moved to `view`. An open period starts its progress when first seen
   * (after failed half-open periods, from `failuresSoFar`); any other state has none.
   */
  follow(view: SharedView, failuresSoFar: number): void {
    if (view.state !== CircuitState.OPEN) this.progress = NO_PROGRESS;
    else if (this.progress.period !== periodOf(view)) {
      this.progress = { period: periodOf(view), checks: failuresSoFar, lastAt: performance.now() };
    }
  }

  /** Takes the progress Redis reports, if the snapshot is of the open period under way. */
  resume(snapshot: Snapshot, current: SharedView): void {
    if (snapshot.state !== CircuitState.OPEN) return;
    if (snapshot.generation !== current.generation || snapshot.epoch !== current.epoch) return;
    this.progress = {
      period: periodOf(snapshot),
      checks: recoveryChecksSoFar(snapshot),
      lastAt: performance.now() - snapshot.recoveryAgeMs,
    };
  }

  /**
   * Redis answers again after a local period: an open shared period's progress starts
   * now, unless Redis reports more of it.
   */
  rejoin(snapshot: Snapshot, shared: SharedView): void {
    this.progress = shared.state === CircuitState.OPEN ? { period: periodOf(shared), checks: 0, lastAt: performance.now() } : NO_PROGRESS;
    this.resume(snapshot, shared);
  }

  /** This process changed its state alone: a local period starts now. */
  startLocalPeriod(): void {
    localPeriods += 1;
    this.progress = { period: `local:${localPeriods}`, checks: 0, lastAt: performance.now() };
  }

  /** Forgets all progress (a new run of the breaker). */
  reset(): void {
    this.progress = NO_PROGRESS;
  }

  private counted(view: SharedView): void {
    this.progress = { period: periodOf(view), checks: this.progress.checks + 1, lastAt: performance.now() };
  }

  // ---- duties -------------------------------------------------------------------------

  /** Gives the checker the duty that fits the breaker now (none once it stopped). */
  update(): void {
    const duty = this.c.running ? this.duty() : undefined;
    if (!duty && !this.checker) return;
    this.checker ??= new HealthChecker(this, this.c.o.backoff, this.c.o.healthTimeoutMs);
    this.checker.assign(duty);
  }

  stop(): void {
    this.checker?.stop();
  }

  private duty(): Duty | undefined {
    const c = this.c;
    const o = c.o;
    const progress = this.progress;
    const probe = o.check !== undefined;
    const mode = c.mode.current;
    if (c.local) {
      if (!c.local.evaluating || c.view.state !== CircuitState.OPEN || mode === BreakerMode.FORCED_OPEN) return undefined;
      // Alone, this instance recovers by its own checks, or (with no check) after the wait.
      return {
        type: HealthCheckType.RECOVERY,
        key: `local-recovery:${progress.period}`,
        checksSoFar: 0,
        probe,
        sinceLastMs: performance.now() - progress.lastAt,
        report: async (result) => {
          if (result === CallResult.SUCCESS) c.changeLocally(CircuitState.CLOSED, LocalReason.LOCAL_RECOVERY);
          return result === CallResult.SUCCESS;
        },
      };
    }
    const token = c.lease?.token;
    const functions = c.functions;
    if (token === undefined || !functions || mode !== BreakerMode.NORMAL) return undefined;
    const shared = c.shared;
    const { generation, state } = shared;
    const successThreshold = o.healthSuccessThreshold;
    const permits = o.halfOpen?.permittedCalls ?? 0;
    if (state === CircuitState.OPEN) {
      const period = periodOf(shared);
      const current = progress.period === period ? progress : { checks: 0, lastAt: performance.now() };
      const type = probe ? HealthCheckType.RECOVERY : 'wait';
      return {
        type: HealthCheckType.RECOVERY,
        key: `recovery:${period}:${token}`,
        checksSoFar: current.checks,
        probe,
        sinceLastMs: performance.now() - current.lastAt,
        report: (result) => this.report(() => functions.health(token, generation, type, result, successThreshold, permits)),
      };
    }
    const intervalMs = o.idleProbeIntervalMs;
    if (intervalMs === undefined || state !== CircuitState.CLOSED) return undefined;
    return {
      type: HealthCheckType.IDLE,
      key: `idle:${periodOf(shared)}:${token}`,
      intervalMs,
      idleFor: () => this.idleFor(functions),
      reportFailure: () =>
        this.report(() => functions.health(token, generation, HealthCheckType.IDLE, CallResult.FAILURE, successThreshold, permits)),
    };
  }

  /** Sends a health report; resolves true when the current check loop should end. */
  private async report(send: () => Promise<HealthReply>): Promise<boolean> {
    let reply: HealthReply;
    try {
      reply = await send();
    } catch (error) {
      this.c.failed(error, RedisOperation.HEALTH, 'reporting a health-check result');
      return true;
    }
    if (!this.c.running) return true;
    switch (reply.status) {
      case 'counted':
        this.counted(reply.view);
        return false;
      case 'stale_token':
        this.c.lease?.recheck();
        return true;
      default:
        this.c.adopt(reply.view, reply.published);
        return true;
    }
  }

  /** How long no instance has used the breaker: Redis knows the fleet's last call. */
  private async idleFor(functions: BreakerFunctions): Promise<number> {
    try {
      const snapshot = await functions.state();
      return snapshot.idleMs < 0 ? snapshot.ageMs : snapshot.idleMs;
    } catch (error) {
      this.c.failed(error, RedisOperation.READ, 'reading when the breaker was last used');
      return 0;
    }
  }

  // ---- what the checker asks for (HealthCheckOwner) -----------------------------------

  runHealthCheck(type: HealthCheckType, signal: AbortSignal): Promise<void> {
    // A duty asks for a check only when there is one (see duty()).
    return (this.c.o.check as NonNullable<BreakerContext['o']['check']>)(type, signal);
  }

  observeHealthCheck(type: HealthCheckType, result: CheckResult, durationMs: number, error: unknown): void {
    this.c.notifier.healthCheck(type, result, durationMs, error);
  }

  onHealthCheckerError(error: unknown): void {
    this.c.notifier.report('ZV_HEALTH_CHECK_FAILED', 'the health-check loop failed', error);
  }
}
