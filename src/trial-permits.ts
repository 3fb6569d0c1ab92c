/**
 * This instance's trial permits while its breaker is half-open. Redis grants them
 * atomically: across the fleet, permits out plus successful trials never exceed
 * `permittedCalls`. execute() never waits for Redis: a call that finds no permit fails
 * fast and has one asked for in the background, for a later call. Permits go only to
 * instances that have calls to make; one held but not taken is given back shortly before
 * Redis would reclaim it, and at stop(). A trial call must end before its permit lapses
 * (the breaker cuts it short there), so a permit goes only to a call it can outlive.
 */
import { CallResult } from './constants.js';
import { COMMAND_TIMEOUT_MS } from './connections.js';
import type { BreakerContext } from './coordinator.js';
import { RedisOperation } from './events.js';
import type { BreakerFunctions, TrialSettings } from './functions.js';

/** While the pool is exhausted, a call that wants a permit asks again after at most this long, in ms. */
const RETRY_MS = 1000;

export interface Permit {
  readonly id: string;
  readonly generation: number;
  /** Monotonic time by which its trial call must have ended: a little before Redis reclaims it. */
  readonly usableUntil: number;
  /** How long it was usable for when granted, in ms. */
  readonly lifeMs: number;
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
  /** A call found no permit since the last request. */
  private wanted = false;
  /** The held permit's expiry, or the pause before asking an exhausted pool again. */
  private timer: NodeJS.Timeout | undefined;
  /** Calls to Redis in flight, awaited by stop(). */
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly functions: BreakerFunctions,
    private readonly settings: TrialSettings,
    private readonly c: BreakerContext,
  ) {}

  /** The breaker is half-open in `generation`: permits are asked for when calls want them. */
  open(generation: number): void {
    if (this.active && this.generation === generation) return;
    this.close();
    this.active = true;
    this.generation = generation;
  }

  /** The breaker left half-open: a permit held is void, nothing is asked for any more. */
  close(): void {
    this.active = false;
    this.held = undefined;
    this.wanted = false;
    this.clearTimer();
  }

  /** The breaker stops: gives a permit held back, and waits for the calls to Redis in flight. */
  async stop(): Promise<void> {
    const held = this.held;
    this.close();
    if (held) this.giveBack(held);
    // A permit granted while stopping is given back too: wait for that report as well.
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  /**
   * A permit for one trial call that may take up to `timeoutMs` (undefined: as long as
   * the permit allows, which must then be at least half its life), or undefined, and one
   * is asked for, for a later call.
   */
  take(timeoutMs: number | undefined): Permit | undefined {
    const permit = this.held;
    if (permit !== undefined) {
      // The timer was the permit's expiry.
      this.held = undefined;
      this.clearTimer();
      if (permit.usableUntil - performance.now() >= Math.min(timeoutMs ?? Number.POSITIVE_INFINITY, permit.lifeMs / 2)) {
        return permit;
      }
      // Too old for this call: a fresh one will be.
      this.giveBack(permit);
    }
    this.wanted = true;
    this.ask();
    return undefined;
  }

  /** Returns an unused permit to the pool, if it has not lapsed already. */
  giveBack(permit: Permit): void {
    if (performance.now() < permit.usableUntil) this.report(permit, CallResult.IGNORED);
  }

  /** Reports a trial call's result ('ignored' gives the permit back); Redis decides what it means. */
  report(permit: Permit, result: CallResult): void {
    this.track(
      this.functions.trial(permit.generation, permit.id, result, this.settings).then(
        (reply) => {
          if (reply.status === 'unknown_permit' && result !== CallResult.IGNORED) {
            this.c.notifier.report('ZV_TRIAL_LOST', `a trial call's ${result} reached Redis after its permit was reclaimed: it was not counted`);
          }
          this.c.adopt(reply.view, reply.published);
        },
        (error: unknown) => this.c.failed(error, RedisOperation.TRIAL, 'reporting a trial call'),
      ),
    );
  }

  /** @internal The permit-expiry or retry timer fired. */
  timerFired(): void {
    this.timer = undefined;
    const held = this.held;
    if (held) {
      // Not taken in time: give it back to the instances that have calls to make.
      this.held = undefined;
      this.giveBack(held);
    } else if (this.wanted) {
      this.ask();
    }
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private track(call: Promise<void>): void {
    this.inFlight.add(call);
    const done = () => this.inFlight.delete(call);
    call.then(done, done);
  }

  private ask(): void {
    if (!this.active || this.asking || this.held || this.timer) return;
    this.asking = true;
    this.wanted = false;
    const generation = this.generation;
    const sentAt = performance.now();
    this.track(
      this.functions.permit(generation, this.settings).then(
        (reply) => {
          this.asking = false;
          // Stop using it early enough for the result to reach Redis before it reclaims the
          // permit: a tenth of its life, but as long as a command may take where that is
          // more, and never more than half of it.
          const usableMs = reply.ms - Math.min(reply.ms / 2, Math.max(reply.ms / 10, COMMAND_TIMEOUT_MS));
          const granted = reply.status === 'granted' ? { id: reply.permit, generation, usableUntil: sentAt + usableMs, lifeMs: usableMs } : undefined;
          if (!this.active || this.generation !== generation) {
            // Stopped, or moved on while asking: nobody here will use it.
            if (granted) this.giveBack(granted);
            return;
          }
          if (granted) {
            this.held = granted;
            this.timer = setTimeout(permitTimer, usableMs, this);
          } else if (reply.status === 'exhausted') {
            // A permit may come back before the soonest expiry (a trial ignored, an
            // instance stopped): ask again within RETRY_MS if a call still wants one.
            this.timer = setTimeout(permitTimer, reply.ms > 0 ? Math.min(reply.ms + 5, RETRY_MS) : RETRY_MS, this);
          } else {
            // Not half-open in this generation any more: Redis says what it is.
            this.c.adopt(reply.view);
          }
        },
        (error: unknown) => {
          this.asking = false;
          this.c.failed(error, RedisOperation.TRIAL, 'asking for a trial permit');
        },
      ),
    );
  }
}
