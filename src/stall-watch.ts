/**
 * Whether this process stopped running while a call to Redis was in flight: a blocked
 * event loop, a long GC pause, SIGSTOP, a paused VM. On resuming, Node runs the timers
 * that came due before it reads its sockets, so the driver's command timeout fires while
 * Redis's answer may be waiting unread: such a timeout says nothing about Redis.
 *
 * The time a call takes cannot tell: with auto-pipelining a call waits for the pipeline
 * before it, so a call can fail up to two command timeouts after it was made while the
 * process ran all along. A timer can: one for the process, ticking only while calls are
 * in flight, finds the process stalled when it runs much later than it was due.
 */

/** How often the watch ticks while calls are in flight, in ms. */
const TICK_MS = 100;
/** A tick this much later than due, in ms, means the process stopped running; event-loop lag under load stays well below it. */
export const STALL_MS = 250;

class StallWatch {
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastTick = 0;
  /** When a stall was last seen to end (monotonic clock), and how long it lasted. */
  private stallEnd = Number.NEGATIVE_INFINITY;
  private stallMs = 0;

  /** A call was made; returns the time to ask about when it fails. */
  begin(): number {
    const now = performance.now();
    if (this.inFlight === 0) {
      this.lastTick = now;
      this.timer = setInterval(tick, TICK_MS);
      this.timer.unref();
    }
    this.inFlight += 1;
    return now;
  }

  /** A call made with begin() settled; with none in flight the watch stops (no timer). */
  end(): void {
    this.inFlight -= 1;
    if (this.inFlight > 0) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** How long the process stopped running since `since` (a time begin() returned), in ms; 0 if it did not. */
  stalledSince(since: number): number {
    // The timer may not have run since the stall: the time since its last tick counts too.
    this.tick();
    return this.stallEnd >= since ? this.stallMs : 0;
  }

  /** @internal */
  tick(): void {
    const now = performance.now();
    const late = now - this.lastTick - TICK_MS;
    if (late > STALL_MS) {
      this.stallEnd = now;
      this.stallMs = late;
    }
    this.lastTick = now;
  }
}

/** The watch of this process, shared by every breaker. */
export const stallWatch = new StallWatch();

function tick(): void {
  stallWatch.tick();
}
