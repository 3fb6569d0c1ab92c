/**
 * This instance's trial permits while its breaker is half-open. Redis grants them
 * atomically, at most `permittedCalls` per half-open period across the fleet. execute()
 * never waits for Redis: a permit is asked for in the background (on entering half-open,
 * after one is taken, and when a call found none), held until a call takes it, and
 * dropped shortly before Redis would reclaim it. A call without a permit fails fast.
 */
import type { BreakerFunctions, Published, SharedView, TrialResult, TrialSettings } from './functions.js';

/** An exhausted pool whose next free permit is unknown is asked again after this long, in ms. */
const RETRY_MS = 1000;

export interface Permit {
  readonly id: string;
  readonly generation: number;
  /** Monotonic time after which the permit is not used any more. */
  readonly usableUntil: number;
}

/** What the permits tell the breaker that owns them. */
export interface TrialOwner {
  /** Redis answered with the breaker's state (a transition, or a state other than expected). */
  onTrialReply(view: SharedView, published: Published | undefined): void;
  onTrialError(error: unknown, what: string): void;
}

/** A timer callback shared by every keeper: no closure is kept per breaker. */
function permitTimer(permits: TrialPermits): void {
  permits.timerFired();
}

export class TrialPermits {
  private held: Permit | undefined;
  private generation = -1;
  private active = false;
  private asking = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly functions: BreakerFunctions,
    private readonly settings: TrialSettings,
    private readonly owner: TrialOwner,
  ) {}

  /** The breaker is half-open in `generation`: hold a permit when one is free. */
  open(generation: number): void {
    if (this.active && this.generation === generation) return;
    this.close();
    this.active = true;
    this.generation = generation;
    this.ask();
  }

  /** The breaker left half-open, or stops: nothing is held or asked for any more. */
  close(): void {
    this.active = false;
    this.held = undefined;
    this.clearTimer();
  }

  /** A permit for one trial call, or undefined (and one is asked for, for a later call). */
  take(): Permit | undefined {
    const permit = this.held;
    if (permit !== undefined) {
      // The timer was the permit's expiry.
      this.held = undefined;
      this.clearTimer();
    }
    // Without a permit, a pending retry timer still paces the asking.
    this.ask();
    return permit !== undefined && performance.now() < permit.usableUntil ? permit : undefined;
  }

  /** Reports how a trial call went; Redis decides what it means. */
  report(permit: Permit, result: TrialResult): void {
    this.functions.trial(permit.generation, permit.id, result, this.settings).then(
      (reply) => this.owner.onTrialReply(reply.view, reply.published),
      (error: unknown) => this.owner.onTrialError(error, 'reporting a trial call'),
    );
  }

  /** @internal The retry or permit-expiry timer fired. */
  timerFired(): void {
    this.timer = undefined;
    if (this.held && performance.now() >= this.held.usableUntil) {
      // Unused: Redis reclaims it. Ask again only when a call wants one, so that the
      // permits go to the instances that have calls to make.
      this.held = undefined;
      return;
    }
    this.ask();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private ask(): void {
    if (!this.active || this.asking || this.held || this.timer) return;
    this.asking = true;
    const generation = this.generation;
    const sentAt = performance.now();
    this.functions.permit(generation, this.settings).then(
      (reply) => {
        this.asking = false;
        if (!this.active || this.generation !== generation) return;
        if (reply.status === 'granted') {
          // Stop using it a little before Redis would reclaim it.
          const usableMs = reply.ms - reply.ms / 10;
          this.held = { id: reply.permit, generation, usableUntil: sentAt + usableMs };
          this.timer = setTimeout(permitTimer, usableMs, this);
        } else if (reply.status === 'exhausted') {
          this.timer = setTimeout(permitTimer, reply.ms > 0 ? reply.ms + 5 : RETRY_MS, this);
        } else {
          this.owner.onTrialReply(reply.view, undefined);
        }
      },
      (error: unknown) => {
        this.asking = false;
        this.owner.onTrialError(error, 'asking for a trial permit');
      },
    );
  }
}
