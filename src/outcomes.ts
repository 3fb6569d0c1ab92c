/**
 * Where the result of every settled call goes: to the trial report (a call made with a
 * half-open permit), to the recorder that coalesces outcomes for Redis, or to the local
 * window while Redis is unreachable; one observed under an older view is stale. It keeps
 * the counts behind `breaker.stats`.
 */
import { BreakerMode, CallResult, CircuitState } from './constants.js';
import type { BreakerContext } from './coordinator.js';
import { CallOutcome, RedisOperation } from './events.js';
import { MAX_PENDING_OUTCOMES } from './limits.js';
import type { LocalTrip } from './local-mode.js';
import { Recorder, type RecorderOwner, type Summary } from './recorder.js';
import type { View } from './shared-view.js';
import type { Permit } from './trial-permits.js';

/** Longest a success waits to be sent with other outcomes, in ms. */
const FLUSH_DELAY_MS = 1000;

/** Where the outcomes of a breaker's calls went, and how many calls were refused. */
export interface BreakerStats {
  /** Outcomes Redis counted. */
  recorded: number;
  /** Outcomes of calls that started under an older generation: not counted, by design. */
  stale: number;
  /** Outcomes counted in this process while Redis was unreachable. */
  local: number;
  /** Outcomes dropped because the pending summary was full (100,000 outcomes). */
  overflowed: number;
  /**
   * Outcomes that could not be delivered (Redis unreachable and no local window to take
   * them), or whose report's answer a stalled process never read.
   */
  undelivered: number;
  /** Calls refused with CircuitOpenError. */
  rejected: number;
  /** Outcomes counted as neither success nor failure (classifiers, caller aborts). */
  ignored: number;
  /** Outcomes of trial calls made with a half-open permit. */
  trials: number;
}

export class Outcomes implements RecorderOwner {
  // The counts of BreakerStats; `overflowed` is the recorder's own.
  private recorded = 0;
  private stale = 0;
  private local = 0;
  private undelivered = 0;
  private ignored = 0;
  private trials = 0;
  private rejected = 0;
  /** Created with the first outcome: an idle breaker has no recorder. */
  private recorder: Recorder | undefined;
  private reshapeReported = false;

  constructor(private readonly c: BreakerContext) {}

  get stats(): BreakerStats {
    const { recorded, stale, local, undelivered, rejected, ignored, trials } = this;
    return { recorded, stale, local, overflowed: this.recorder?.overflowed ?? 0, undelivered, rejected, ignored, trials };
  }

  /** A call was refused with CircuitOpenError. */
  refused(): void {
    this.rejected += 1;
  }

  /**
   * A call settled with `result` (`timedOut`: by this breaker's TimeoutError); it started
   * when execute() acted on `view`, at `startedAt` (0: the time was not taken, as nothing
   * needed it).
   */
  observed(view: View, result: CallResult, startedAt: number, permit?: Permit, timedOut = false): void {
    const c = this.c;
    const durationMs = startedAt === 0 ? 0 : performance.now() - startedAt;
    // A call that started before anything listened has no duration to tell.
    if (startedAt !== 0 && c.listens('call')) c.notifier.call(timedOut ? CallOutcome.TIMEOUT : result, durationMs, permit !== undefined);
    if (!c.running) return;
    if (permit) {
      this.trials += 1;
      c.trials?.report(permit, result);
      return;
    }
    if (result === CallResult.IGNORED) {
      this.ignored += 1;
      return;
    }
    const failure = result === CallResult.FAILURE;
    const slowAfter = c.o.slowCallDurationMs;
    const slow = slowAfter !== undefined && durationMs >= slowAfter;
    const local = c.local;
    if (view !== c.view) {
      this.stale += 1;
    } else if (!local) {
      if (!this.recorder) {
        this.recorder = new Recorder(this, FLUSH_DELAY_MS, MAX_PENDING_OUTCOMES);
        this.recorder.start(view.generation);
      }
      this.recorder.add(failure, slow);
      c.isolation?.add(failure, slow);
    } else if (!local.evaluating) {
      this.undelivered += 1;
    } else {
      this.local += 1;
      this.tripLocally(local.add(failure, slow));
    }
  }

  /**
   * The local window reached a rule: a closed circuit opens, unless an operator's mode
   * holds it closed (forced closed, or monitor: alone, nothing is audited).
   */
  private tripLocally(trip: LocalTrip | undefined): void {
    const c = this.c;
    if (trip && c.view.state === CircuitState.CLOSED && c.mode.current === BreakerMode.NORMAL) {
      c.changeLocally(CircuitState.OPEN, trip.reason, trip.numbers);
    }
  }

  /**
   * Outcomes whose record call got no answer: into the local window in degraded mode;
   * otherwise (a stalled process, see ProcessStalledError) Redis may well have counted
   * them, so they are not counted again, only as undelivered.
   */
  unanswered(summary: Summary): void {
    if (this.c.local) this.foldLocally(summary);
    else this.undelivered += summary.calls;
  }

  /** Counts outcomes that could not be sent into the local window (degraded mode only). */
  foldLocally(summary: Summary): void {
    const local = this.c.local;
    if (!local || summary.calls === 0) return;
    if (!local.evaluating) {
      this.undelivered += summary.calls;
      return;
    }
    this.local += summary.calls;
    this.tripLocally(local.fold(summary));
  }

  /** Starts taking outcomes (again) under `generation`. */
  start(generation: number): void {
    this.recorder?.start(generation);
  }

  /** A new generation: outcomes pending for the old one are stale. */
  newGeneration(generation: number): void {
    this.stale += this.recorder?.reset(generation) ?? 0;
  }

  /** Hands over the outcomes not sent yet (for the local window). */
  takePending(): Summary | undefined {
    return this.recorder?.take();
  }

  /** Sends what is pending and stops recording. */
  async drain(): Promise<void> {
    await this.recorder?.drain();
  }

  /** Sends one summary of outcomes (the recorder's owner); never rejects. */
  async sendSummary(generation: number, summary: Summary): Promise<void> {
    const c = this.c;
    const functions = c.functions;
    if (!functions) return;
    const sentAt = performance.now();
    try {
      // A breaker that is stopping records what is pending, but takes no lease with a trip.
      const reply = await functions.record(generation, summary, c.running, c.instanceRule);
      if (reply.status === 'stale_gen' || reply.status === 'not_closed') this.stale += summary.calls;
      else this.recorded += summary.calls;
      if (!c.running) {
        // stop() began while the trip that granted this instance the lease was on its way: it gives it back.
        if (reply.token > 0) c.lease?.granted(reply.token, sentAt);
        return;
      }
      if (reply.status === 'reshaped' && !this.reshapeReported) {
        this.reshapeReported = true;
        c.notifier.report(
          'ZV_WINDOW_RESHAPED',
          'the stored window had another shape and was reset: do all instances of this breaker use the same strategy?',
        );
      }
      c.adopt(reply.view, reply.published);
      // The trip made this instance the lease holder: it runs the recovery checks.
      if (reply.token > 0) c.lease?.granted(reply.token, sentAt);
    } catch (error) {
      if (c.running) c.failed(error, RedisOperation.RECORD, 'recording outcomes', summary);
      else this.undelivered += summary.calls;
    }
  }
}
