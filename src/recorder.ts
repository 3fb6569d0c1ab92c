/**
 * Coalesces call outcomes: per breaker at most one record call is in flight, and what
 * settles meanwhile is folded into a summary sent with the next one. A failure goes out at
 * once when nothing is in flight (one round trip, no timer); successes wait up to
 * flushDelayMs, because they only matter to the window together with later outcomes. Under
 * load, batches grow by themselves.
 */
import type { OutcomeSummary } from './functions.js';

/** Counts of outcomes in arrival order, reduced to what the strategies need. */
export class Summary implements OutcomeSummary {
  ok = 0;
  fail = 0;
  slowOk = 0;
  slowFail = 0;
  /** Failures before the first success. */
  head = 0;
  /** Longest run of failures. */
  maxRun = 0;
  /** Failures after the last success. */
  tail = 0;

  get calls(): number {
    return this.ok + this.fail + this.slowOk + this.slowFail;
  }

  add(failure: boolean, slow: boolean): void {
    if (failure) {
      if (slow) this.slowFail += 1;
      else this.fail += 1;
      this.tail += 1;
      if (this.tail > this.maxRun) this.maxRun = this.tail;
      if (this.ok + this.slowOk === 0) this.head += 1;
    } else {
      if (slow) this.slowOk += 1;
      else this.ok += 1;
      this.tail = 0;
    }
  }
}

/** Where summaries go: the breaker that owns the recorder. */
export interface RecorderOwner {
  /** Sends one summary; must not reject (the owner handles and reports failures). */
  sendSummary(generation: number, summary: Summary): Promise<void>;
}

/** A timer callback shared by every recorder: no closure is kept per breaker. */
function flushRecorder(recorder: Recorder): void {
  recorder.timerFired();
}

export class Recorder {
  /** Outcomes not sent yet; created with the first one, so that an idle breaker holds none. */
  private pending: Summary | undefined;
  private generation = 0;
  private inFlight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  /** Outcomes not taken because the pending summary was full. */
  overflowed = 0;

  /**
   * @param flushDelayMs longest a success waits for company before it is sent alone
   * @param maxPending outcomes one summary may hold; more are dropped and counted
   */
  constructor(
    private readonly owner: RecorderOwner,
    private readonly flushDelayMs: number,
    private readonly maxPending: number,
  ) {}

  /** Starts taking outcomes (again, after drain()), observed under `generation`. */
  start(generation: number): void {
    this.stopped = false;
    this.reset(generation);
  }

  /**
   * Starts a new generation: what was pending belongs to the old one and is dropped.
   * Returns how many outcomes that was.
   */
  reset(generation: number): number {
    this.generation = generation;
    return this.take()?.calls ?? 0;
  }

  /** Hands over what is pending and not yet sent (for the local window). */
  take(): Summary | undefined {
    const pending = this.pending;
    this.pending = undefined;
    return pending;
  }

  add(failure: boolean, slow: boolean): void {
    if (this.stopped) return;
    const pending = (this.pending ??= new Summary());
    if (pending.calls >= this.maxPending) {
      this.overflowed += 1;
      return;
    }
    pending.add(failure, slow);
    if (this.inFlight) return;
    if (failure || slow) this.flush();
    else this.arm();
  }

  /** Sends what is pending (once nothing is in flight) and stops; nothing runs afterwards. */
  async drain(): Promise<void> {
    this.disarm();
    if (this.inFlight) await this.inFlight;
    this.flush();
    if (this.inFlight) await this.inFlight;
    this.stopped = true;
    this.disarm();
  }

  private arm(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(flushRecorder, this.flushDelayMs, this);
    this.timer.unref();
  }

  /** @internal The flush timer fired. */
  timerFired(): void {
    this.timer = undefined;
    if (!this.inFlight) this.flush();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private flush(): void {
    const summary = this.pending;
    if (summary === undefined || summary.calls === 0 || this.stopped) return;
    this.disarm();
    this.pending = undefined;
    // send() reports its own failures; the catch only keeps the recorder from sticking.
    this.inFlight = this.owner.sendSummary(this.generation, summary).catch(() => undefined).then(() => {
      this.inFlight = undefined;
      const next = this.pending;
      if (next === undefined) return;
      if (next.fail + next.slowFail + next.slowOk > 0) this.flush();
      else if (next.calls > 0) this.arm();
    });
  }
}
