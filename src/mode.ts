/**
 * A breaker's mode as this instance knows it: what an operator set beside the state
 * (forced open, forced closed, monitor; zv1_control), or normal operation. It is learned
 * in order, like the state, from the transitions this instance takes (each carries the
 * mode after it) and from snapshots; a generation older than the one it was learned at
 * changes nothing.
 *
 * A mode with an expiry ends on Redis's clock whoever is alive, but its `expired` entry is
 * written only by a call that writes. So an instance that knows when it is due asks for
 * its end then (zv1_control 'expire', after a random spread so that a fleet does not ask
 * all at once), and every instance hears the end at the same time. One timer at most,
 * only while a mode with an expiry is known and the breaker runs.
 */
import { BreakerMode, TransitionReason } from './constants.js';
import type { BreakerContext } from './coordinator.js';
import { RedisOperation } from './events.js';
import type { Snapshot } from './functions.js';
import { NEVER_WRITTEN, type SharedView, isBehind, isNewer } from './shared-view.js';
import type { Transition } from './transition.js';

/** The end of a mode is asked for this long after it is due at most (random), in ms, as lease asks are spread. */
const EXPIRE_SPREAD_MS = 50;
/** Longest wait a Node timer holds (2³¹−1 ms); a mode may last 30 days, so a longer wait is taken in steps. */
const MAX_TIMER_MS = 2_147_483_647;

/** The reasons of the controls that set a mode: their entries carry its expiry. */
const SETS_MODE: ReadonlySet<string> = new Set([TransitionReason.FORCED_OPEN, TransitionReason.FORCED_CLOSED, TransitionReason.MONITORED]);

/** A timer callback shared by every keeper: no closure is kept per breaker. */
function fireExpiry(keeper: ModeKeeper): void {
  keeper.fire();
}

export class ModeKeeper {
  private mode: BreakerMode = BreakerMode.NORMAL;
  /** The shared state the mode was learned at. */
  private at: SharedView = NEVER_WRITTEN;
  /** Monotonic time at which the mode's expiry is due; 0 for none. */
  private dueAt = 0;
  private timer: NodeJS.Timeout | undefined;
  /** The expire call under way, which stop() waits for. */
  private expiring: Promise<void> | undefined;

  constructor(private readonly c: BreakerContext) {}

  /** The mode now, as this instance last heard it. */
  get current(): BreakerMode {
    return this.mode;
  }

  /** Forgets what it knew (a new run of the breaker reads it again). */
  forget(): void {
    this.clearTimer();
    this.mode = BreakerMode.NORMAL;
    this.at = NEVER_WRITTEN;
    this.dueAt = 0;
  }

  /**
   * A snapshot read from Redis, once the coordinator has taken what it holds: its mode,
   * unless the shared state is newer (a transition heard meanwhile). One taken as the
   * present though older (Redis lost writes) replaces a mode heard from them too.
   * Schedules the end.
   */
  followSnapshot(snapshot: Snapshot): void {
    const shared = this.c.shared;
    if (!isBehind(snapshot, shared)) {
      // The coordinator's view of what the snapshot holds (not the snapshot, which is not kept).
      this.at = shared;
      const { mode, until, leftMs } = snapshot.mode;
      this.set(mode, until > 0 ? performance.now() + leftMs : 0);
    }
    this.schedule();
  }

  /**
   * A transition taken (from a reply, the feed or the audit stream), of life `epoch`: the
   * mode after it. Returns whether the mode changed, or 'unknown' for a mode this instance
   * did not hear set (a transition it missed), which only a snapshot can tell in full.
   */
  followTransition(t: Transition, epoch: string): boolean | 'unknown' {
    const at = { state: t.to, generation: t.generation, epoch };
    if (!isNewer(at, this.at)) return false;
    this.at = at;
    // Server times: the wait from the transition to the expiry, from now (a little late
    // by the message's way here, never early).
    if (SETS_MODE.has(t.reason)) return this.set(t.mode, t.until === '' ? 0 : performance.now() + Math.max(0, Number(t.until) - t.time));
    // The same mode goes on (a would_open under monitor) with its expiry; or it ended.
    if (t.mode === this.mode) return false;
    if (t.mode === BreakerMode.NORMAL) return this.set(t.mode, 0);
    this.set(t.mode, 0);
    return 'unknown';
  }

  /** Clears the timer and waits for an expire call under way (the next run sets the timer again from its start-up read). */
  async stop(): Promise<void> {
    this.clearTimer();
    await this.expiring;
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private set(mode: BreakerMode, dueAt: number): boolean {
    const changed = mode !== this.mode;
    this.mode = mode;
    this.dueAt = mode === BreakerMode.NORMAL ? 0 : dueAt;
    this.schedule();
    return changed;
  }

  /** One timer, for the known expiry, while the breaker runs. */
  private schedule(): void {
    this.clearTimer();
    if (!this.c.running || this.dueAt === 0) return;
    const waitMs = Math.max(0, this.dueAt - performance.now()) + Math.random() * EXPIRE_SPREAD_MS;
    this.timer = setTimeout(fireExpiry, Math.min(Math.ceil(waitMs), MAX_TIMER_MS), this);
    // The breaker's connections keep a running process alive, not a mode's end.
    this.timer.unref();
  }

  /** @internal */
  fire(): void {
    this.timer = undefined;
    if (performance.now() < this.dueAt) {
      this.schedule();
      return;
    }
    const expiring = this.expire().finally(() => {
      if (this.expiring === expiring) this.expiring = undefined;
    });
    this.expiring = expiring;
  }

  /** Asks Redis to end the mode, and takes its answer like any other. */
  private async expire(): Promise<void> {
    const c = this.c;
    const functions = c.functions;
    // In degraded mode Redis is read again every second: the snapshot that ends it brings the expiry back.
    if (!c.running || !functions || c.local) return;
    try {
      const reply = await functions.control('expire', '', 0);
      if (!c.running) return;
      // Not yet on Redis's clock, or a new mode was set meanwhile: a read says when it ends.
      if (reply.status === 'not_due') c.verify();
      else c.adopt(reply.view, reply.published);
    } catch (error) {
      c.failed(error, RedisOperation.CONTROL, 'ending a mode whose expiry passed');
    }
  }
}
