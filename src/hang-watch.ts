/**
 * Hang detection: with the slow-call rule configured, a call still running past
 * slowCallDurationMs counts as slow at that moment, so a dependency that stops answering
 * trips the breaker although no call finishes.
 *
 * Every call of a breaker has the same deadline after its start, so the running calls,
 * kept in the order they started, are also in the order of their deadlines: a doubly
 * linked list through the calls themselves gives O(1) start and end, and one timer, armed
 * for the oldest call's deadline, serves them all. It exists only while calls are in
 * flight: armed by a start when none is armed, re-armed after firing for the next
 * deadline, cleared when the last call ends and by stop().
 */

/** One running call: its place in the list, its deadline, and what it was started with. */
export class WatchedCall<T> {
  prev: WatchedCall<T> | undefined;
  next: WatchedCall<T> | undefined;
  /** In the watch's list: running, not past its deadline, not dropped by stop(). */
  listed = true;
  /** Counted as hung when its deadline passed: its end counts nothing more. */
  hung = false;

  constructor(
    private readonly watch: HangWatch<T>,
    /** Monotonic clock (performance.now()), in ms. */
    readonly deadline: number,
    readonly tag: T,
  ) {}

  /** The call settled; returns whether it was already counted as hung. */
  end(): boolean {
    return this.watch.end(this);
  }
}

/** A timer callback shared by every watch: no closure is kept per breaker. */
function fire(watch: { timerFired(): void }): void {
  watch.timerFired();
}

export class HangWatch<T> {
  private oldest: WatchedCall<T> | undefined;
  private newest: WatchedCall<T> | undefined;
  private timer: NodeJS.Timeout | undefined;

  /**
   * @param durationMs how long a call may run before it counts as hung (slowCallDurationMs)
   * @param onHung told once per call whose deadline passed, with the tag it began with
   */
  constructor(
    private readonly durationMs: number,
    private readonly onHung: (tag: T) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A call started at `startedAt` (monotonic clock, ms); the handle to end it with. */
  begin(startedAt: number, tag: T): WatchedCall<T> {
    const call = new WatchedCall(this, startedAt + this.durationMs, tag);
    const newest = this.newest;
    if (newest) {
      newest.next = call;
      call.prev = newest;
    } else {
      this.oldest = call;
    }
    this.newest = call;
    // The call's deadline is a whole duration away: no need to read the clock again.
    if (!this.timer) this.arm(this.durationMs);
    return call;
  }

  /**
   * `call` settled (WatchedCall.end()); returns whether it was already counted as hung. A
   * timer armed for its deadline stays (it re-arms for the next when it fires) unless no
   * call is left.
   */
  end(call: WatchedCall<T>): boolean {
    if (call.listed) {
      this.unlink(call);
      if (!this.oldest) this.disarm();
    }
    return call.hung;
  }

  /** Drops every running call (their end counts as usual) and the timer. */
  stop(): void {
    this.disarm();
    for (let call = this.oldest; call; call = call.next) call.listed = false;
    this.oldest = undefined;
    this.newest = undefined;
  }

  /** @internal The timer fired: every call past its deadline is hung; then the next deadline. */
  timerFired(): void {
    this.timer = undefined;
    const now = this.now();
    let call = this.oldest;
    while (call && call.deadline <= now) {
      this.unlink(call);
      call.hung = true;
      this.onHung(call.tag);
      // onHung may have stopped the watch (a trip that stops the breaker): it dropped the rest.
      call = this.oldest;
    }
    if (call && !this.timer) this.arm(call.deadline - now);
  }

  private unlink(call: WatchedCall<T>): void {
    const { prev, next } = call;
    if (prev) prev.next = next;
    else this.oldest = next;
    if (next) next.prev = prev;
    else this.newest = prev;
    call.prev = undefined;
    call.next = undefined;
    call.listed = false;
  }

  /** Fires in `delayMs`, rounded up to whole milliseconds (a timer that runs early finds no call due, and re-arms). */
  private arm(delayMs: number): void {
    this.timer = setTimeout(fire, Math.ceil(delayMs), this);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
