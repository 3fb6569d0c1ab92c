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

export interface RecorderOptions {
  /** Sends one summary; must not reject (the breaker handles and reports failures). */
  send(generation: number, summary: Summary): Promise<void>;
  /** Longest a success waits for company before it is sent alone, in ms. */
  flushDelayMs: number;
  /** Outcomes one summary may hold; more are dropped and counted. */
  maxPending: number;
}

export class Recorder {
  private pending = new Summary();
  private generation = 0;
  private inFlight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  /** Outcomes not taken because the pending summary was full. */
  overflowed = 0;

  constructor(private readonly options: RecorderOptions) {}

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
    return this.take().calls;
  }

  /** Hands over what is pending and not yet sent (for the local window). */
  take(): Summary {
    const pending = this.pending;
    this.pending = new Summary();
    return pending;
  }

  add(failure: boolean, slow: boolean): void {
    if (this.stopped) return;
    if (this.pending.calls >= this.options.maxPending) {
      this.overflowed += 1;
      return;
    }
    this.pending.add(failure, slow);
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
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.inFlight) this.flush();
    }, this.options.flushDelayMs);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private flush(): void {
    if (this.pending.calls === 0 || this.stopped) return;
    this.disarm();
    const summary = this.pending;
    this.pending = new Summary();
    // send() reports its own failures; the catch only keeps the recorder from sticking.
    this.inFlight = this.options.send(this.generation, summary).catch(() => undefined).then(() => {
      this.inFlight = undefined;
      if (this.pending.fail + this.pending.slowFail + this.pending.slowOk > 0) this.flush();
      else if (this.pending.calls > 0) this.arm();
    });
  }
}
