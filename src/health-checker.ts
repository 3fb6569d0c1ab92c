/**
 * Runs one breaker's health checks: recovery checks while the circuit is open, spaced by
 * the backoff, and optional idle probes while it is closed and unused. The breaker says
 * which duty applies (only the lease holder gets one, or every instance while Redis is
 * unreachable); a new duty aborts the old one through its AbortSignal, and nothing runs
 * after stop().
 */
import type { BackoffStrategy } from './backoff.js';
import { MAX_DELAY_MS } from './limits.js';
import { CallResult, type CheckResult, HealthCheckType } from './constants.js';
import { ZenvarkError } from './errors.js';

export interface RecoveryDuty {
  readonly type: typeof HealthCheckType.RECOVERY;
  /** Distinguishes duties: the same key keeps the running loop. */
  readonly key: string;
  /** Recovery checks made so far in this open period: the next is attempt checksSoFar + 1. */
  readonly checksSoFar: number;
  /** Run the user's check; without one (half-open only), waiting out the delay is the check. */
  readonly probe: boolean;
  /** Time since the last check (or the opening), in ms. */
  readonly sinceLastMs: number;
  /** Reports a check's result; resolves true when the loop should end. */
  report(result: CheckResult): Promise<boolean>;
}

export interface IdleDuty {
  readonly type: typeof HealthCheckType.IDLE;
  readonly key: string;
  readonly intervalMs: number;
  /** How long no instance has used the breaker, in ms. */
  idleFor(): Promise<number>;
  /** Reports a failed probe; resolves true when the loop should end. */
  reportFailure(): Promise<boolean>;
}

export type Duty = RecoveryDuty | IdleDuty;

/** What the checker runs and tells: the breaker that owns it. */
export interface HealthCheckOwner {
  /** The user's check. */
  runHealthCheck(type: HealthCheckType, signal: AbortSignal): Promise<void>;
  /** Observes every check: its result and duration. */
  observeHealthCheck(type: HealthCheckType, result: CheckResult, durationMs: number, error: unknown): void;
  onHealthCheckerError(error: unknown): void;
}

/** Resolves after ms, or as soon as the signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.min(Math.max(0, ms), MAX_DELAY_MS));
    signal.addEventListener('abort', done, { once: true });
  });
}

/** The delay `backoff` gives before recovery check `attempt`, in ms; a RangeError if it is not a number >= 0. */
export function backoffDelayMs(backoff: BackoffStrategy, attempt: number): number {
  const delay = backoff.getDelayMs(attempt);
  if (typeof delay !== 'number' || !(delay >= 0)) {
    throw new RangeError(`backoff.getDelayMs(${attempt}) must return a number >= 0, got ${String(delay)}`);
  }
  return delay;
}

/**
 * The next recovery check of an open period, after `checksSoFar` checks the last of which
 * (or the opening) was `sinceLastMs` ago: its attempt number, and how long until it is due
 * (waitMs, in ms; 0 or less: due now). The lease holder's loop waits this long, and
 * explain() tells it (src/explain.ts).
 */
export function nextRecoveryCheck(backoff: BackoffStrategy, checksSoFar: number, sinceLastMs: number): { attempt: number; waitMs: number } {
  const attempt = checksSoFar + 1;
  return { attempt, waitMs: backoffDelayMs(backoff, attempt) - sinceLastMs };
}

export class HealthChecker {
  private current: { key: string; controller: AbortController } | undefined;

  /** @param timeoutMs a check not settled after this long is aborted and counts as failed */
  constructor(
    private readonly owner: HealthCheckOwner,
    private readonly backoff: BackoffStrategy,
    private readonly timeoutMs: number,
  ) {}

  /** Makes `duty` the running one; undefined stops checking. */
  assign(duty: Duty | undefined): void {
    if (duty && this.current?.key === duty.key) return;
    this.current?.controller.abort();
    this.current = undefined;
    if (!duty) return;
    const controller = new AbortController();
    this.current = { key: duty.key, controller };
    const loop = duty.type === HealthCheckType.RECOVERY ? this.recover(duty, controller.signal) : this.probe(duty, controller.signal);
    loop
      .catch((error: unknown) => this.owner.onHealthCheckerError(error))
      .finally(() => {
        if (this.current?.controller === controller) this.current = undefined;
      });
  }

  stop(): void {
    this.assign(undefined);
  }

  private async recover(duty: RecoveryDuty, signal: AbortSignal): Promise<void> {
    let { attempt, waitMs: wait } = nextRecoveryCheck(this.backoff, duty.checksSoFar, duty.sinceLastMs);
    while (!signal.aborted) {
      await sleep(wait, signal);
      if (signal.aborted) return;
      const result = duty.probe ? await this.run(HealthCheckType.RECOVERY, signal) : CallResult.SUCCESS;
      if (signal.aborted || (await duty.report(result))) return;
      attempt += 1;
      wait = backoffDelayMs(this.backoff, attempt);
    }
  }

  private async probe(duty: IdleDuty, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const idle = await duty.idleFor();
      if (signal.aborted) return;
      if (idle < duty.intervalMs) {
        await sleep(duty.intervalMs - idle, signal);
        continue;
      }
      const result = await this.run(HealthCheckType.IDLE, signal);
      if (signal.aborted) return;
      if (result === CallResult.FAILURE && (await duty.reportFailure())) return;
      await sleep(duty.intervalMs, signal);
    }
  }

  /**
   * Runs the user's check with a signal that aborts on the duty's end or after the check
   * timeout; either ends the wait even if the check ignores its signal. A timeout counts
   * as a failure.
   */
  private async run(type: HealthCheckType, duty: AbortSignal): Promise<CheckResult> {
    const startedAt = performance.now();
    const controller = new AbortController();
    const abort = () => controller.abort();
    duty.addEventListener('abort', abort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.timeoutMs);
    const check = Promise.resolve().then(() => this.owner.runHealthCheck(type, controller.signal));
    // A check settling after the abort has nobody to tell.
    check.catch(() => undefined);
    const aborted = new Promise<void>((resolve) => controller.signal.addEventListener('abort', () => resolve(), { once: true }));
    let error: unknown;
    try {
      await Promise.race([check, aborted]);
    } catch (caught) {
      error = caught ?? new Error('health check failed');
    } finally {
      clearTimeout(timer);
      duty.removeEventListener('abort', abort);
      controller.abort();
    }
    if (duty.aborted) return CallResult.FAILURE;
    if (timedOut) {
      error = new ZenvarkError('ZV_HEALTH_CHECK_TIMEOUT', `the ${type} health check did not settle within ${this.timeoutMs} ms`);
    }
    const result = error === undefined ? CallResult.SUCCESS : CallResult.FAILURE;
    this.owner.observeHealthCheck(type, result, performance.now() - startedAt, error);
    return result;
  }
}
