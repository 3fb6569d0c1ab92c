/**
 * Keeps, or waits for, one breaker's health-check lease while the breaker has a duty that
 * needs it (docs/architecture.md, "Fenced leases"): recovery checks or the open wait while
 * it is open, trial periods while half-open, idle probes while closed when they are
 * configured. A breaker with no duty holds no lease and sends nothing, so that idle
 * breakers cost Redis nothing; when the duty ends, the holder gives the lease back.
 *
 * Acquire, renew and release are compare-and-set functions in Redis; every grant carries a
 * fencing token. This instance acts as leader only until its own monotonic clock says the
 * lease may have lapsed (time the grant or renewal was sent + ttl - ttl/10), never by
 * comparing clocks with Redis. A follower retries when the holder's lease expires, or at
 * once when the holder announces a release.
 *
 * One call at a time, and one timer: each step (acquire when following, renew when
 * leading) schedules the next; if a step ends without doing so, the next runs at once.
 * While leading, the timer also fires at the lapse deadline if that comes first.
 */
import type { BreakerContext } from './coordinator.js';
import { RedisOperation } from './events.js';
import type { BreakerFunctions } from './functions.js';

/** A call that failed is retried after this long, in ms. */
const RETRY_AFTER_ERROR_MS = 500;
/** A follower tries this long after the holder's lease should have expired, in ms. */
const EXPIRY_SLACK_MS = 5;
/**
 * When a duty appears and nothing is known of the lease, the first acquire waits a random
 * delay below this, in ms: the trip that made the duty usually granted the lease already,
 * and the feed says to whom within that time, so that a fleet does not ask all at once.
 */
const ACQUIRE_SPREAD_MS = 50;

/** dueAt while only the lapse deadline is watched (a renewal is in flight). */
const NOT_DUE = -1;

/** A timer callback shared by every keeper: no closure is kept per breaker. */
function fireLeaseTimer(keeper: LeaseKeeper): void {
  keeper.fire();
}

export class LeaseKeeper {
  private heldToken: number | undefined;
  /** Monotonic time after which a held lease may have lapsed. */
  private deadline = 0;
  /** Monotonic time of the next step. */
  private dueAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private running = false;
  /** A duty needs the lease: only then does this keeper acquire and renew. */
  private wanted = false;
  /** Monotonic time until which another instance holds the lease, as last heard; 0: free or unknown. */
  private heldElsewhereUntil = 0;
  /** Counts release announcements, so that one arriving mid-call is not lost. */
  private wakes = 0;

  constructor(
    private readonly functions: BreakerFunctions,
    private readonly ttlMs: number,
    private readonly c: BreakerContext,
  ) {}

  /** The fencing token while this instance holds the lease, else undefined. */
  get token(): number | undefined {
    return this.heldToken;
  }

  private get active(): boolean {
    return this.running && this.wanted;
  }

  start(): void {
    this.running = true;
  }

  /**
   * Whether a duty needs the lease now (the coordinator decides, in reconcile()). Wanted,
   * it is taken when free; no longer wanted, it is given back.
   */
  want(wanted: boolean): void {
    if (!this.running || wanted === this.wanted) return;
    this.wanted = wanted;
    const token = this.heldToken;
    if (wanted) {
      if (token === undefined) {
        this.schedule(this.waitBeforeAcquire());
        return;
      }
      // Granted while no duty needed it, and kept while its call ended: it is needed now.
      this.schedule(this.ttlMs / 3);
      this.c.leaseTaken();
      return;
    }
    if (token === undefined) this.clearTimer();
    // A renewal in flight ends first (its timer still watches the lapse deadline).
    else if (!this.inFlight) this.giveBack(token);
  }

  /**
   * What Redis said of the lease: another instance, `holder`, holds it for `remainingMs`
   * more. A follower waiting to ask waits for that lease to expire instead.
   */
  heldBy(holder: string, remainingMs: number): void {
    if (holder === '' || holder === this.c.o.instanceId || remainingMs <= 0) return;
    // No longer than a lease of this instance's own: news from the feed is a hint (a holder
    // with a longer lease is asked again, and says so).
    this.heldElsewhereUntil = performance.now() + Math.min(remainingMs, this.ttlMs);
    if (this.active && this.heldToken === undefined && !this.inFlight) this.schedule(this.waitBeforeAcquire());
  }

  /**
   * This instance was granted the lease by a call of its own that also changed the state
   * (a trip), sent at monotonic time `sentAt`.
   */
  granted(token: number, sentAt: number): void {
    if (!this.running || this.heldToken !== undefined) return;
    if (!this.c.running) {
      // stop() is under way and waits for this keeper: it releases what was granted.
      this.heldToken = token;
      return;
    }
    this.hold(token, sentAt);
    if (this.wanted) this.c.leaseTaken();
    else if (!this.inFlight) this.giveBack(token);
  }

  /** The holder released the lease: try to take it now (when a duty needs it). */
  wake(): void {
    this.heldElsewhereUntil = 0;
    if (!this.active || this.heldToken !== undefined) return;
    this.wakes += 1;
    this.schedule(0);
  }

  /** Checks at once whether the lease is still ours (a report was refused as stale). */
  recheck(): void {
    if (this.active && this.heldToken !== undefined) this.schedule(0);
  }

  /**
   * Stops the timer, waits for a call in flight, and releases the lease if this instance
   * holds it (or was just granted it), announcing the release to the other instances.
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.wanted = false;
    this.clearTimer();
    await this.inFlight;
    const token = this.heldToken;
    if (token === undefined) return;
    this.demote();
    try {
      await this.functions.release(token);
    } catch (error) {
      this.c.notifier.redisFailed(RedisOperation.LEASE, error);
      this.c.notifier.report('ZV_LEASE_FAILED', 'releasing the lease failed; another instance takes over when it expires', error);
    }
  }

  /**
   * How long to wait before asking for the lease: until the holder's lease expires when
   * one is known, else a short random spread.
   */
  private waitBeforeAcquire(): number {
    const left = this.heldElsewhereUntil - performance.now();
    if (left > 0) return left + EXPIRY_SLACK_MS;
    return Math.random() * ACQUIRE_SPREAD_MS;
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Runs the next step after delayMs (or at the lapse deadline, if earlier). */
  private schedule(delayMs: number): void {
    this.clearTimer();
    if (!this.active) return;
    const now = performance.now();
    // Whole milliseconds: small integers, not boxed doubles, in every keeper.
    this.dueAt = Math.ceil(now + Math.max(0, delayMs));
    const at = this.heldToken === undefined ? this.dueAt : Math.min(this.dueAt, this.deadline);
    this.timer = setTimeout(fireLeaseTimer, Math.max(0, at - now), this);
  }

  /** @internal */
  fire(): void {
    this.timer = undefined;
    const now = performance.now();
    if (this.heldToken !== undefined && now >= this.deadline) {
      this.demote();
    } else if (this.dueAt !== NOT_DUE && now < this.dueAt) {
      // Woken for a lapse that a renewal pushed back: wait for the step.
      this.schedule(this.dueAt - now);
      return;
    }
    this.step();
  }

  private step(): void {
    // A call in flight schedules what follows when it ends.
    if (!this.active || this.inFlight) return;
    const token = this.heldToken;
    const call = token === undefined ? this.acquire() : this.renew(token);
    this.track(call);
    if (token !== undefined && this.active && !this.timer) {
      // A renewal that takes long must not keep us leading past the deadline.
      this.dueAt = NOT_DUE;
      this.timer = setTimeout(fireLeaseTimer, Math.max(0, this.deadline + 1 - performance.now()), this);
    }
  }

  /** Makes `call` the one in flight; when it ends, the next step is scheduled, or a lease no duty needs is given back. */
  private track(call: Promise<void>): void {
    this.inFlight = call.finally(() => {
      this.inFlight = undefined;
      if (!this.running) return;
      const token = this.heldToken;
      if (!this.wanted && token !== undefined) this.giveBack(token);
      else if (this.active && !this.timer) this.schedule(0);
    });
  }

  /** Gives the lease back because no duty needs it any more, announcing it to the others. */
  private giveBack(token: number): void {
    this.clearTimer();
    this.demote();
    this.track(
      this.functions.release(token).then(
        () => undefined,
        (error: unknown) => {
          // The lease expires by itself; the failure is a failed call to Redis like any other.
          if (this.running) this.c.failed(error, RedisOperation.LEASE, 'lease release');
        },
      ),
    );
  }

  private demote(): void {
    if (this.heldToken === undefined) return;
    this.heldToken = undefined;
    this.c.leaseLost();
  }

  /** Holds the lease until sentAt + ttl - ttl/10 on the monotonic clock; renews at ttl/3. */
  private hold(token: number, sentAt: number): void {
    this.heldToken = token;
    this.heldElsewhereUntil = 0;
    this.deadline = Math.floor(sentAt + this.ttlMs - this.ttlMs / 10);
    this.schedule(this.ttlMs / 3);
  }

  private async acquire(): Promise<void> {
    const sentAt = performance.now();
    const wakes = this.wakes;
    let reply;
    try {
      reply = await this.functions.acquire();
    } catch (error) {
      if (!this.running) return;
      this.c.failed(error, RedisOperation.LEASE, 'lease acquire');
      this.schedule(RETRY_AFTER_ERROR_MS);
      return;
    }
    if (reply.status === 'granted') {
      if (!this.running || !this.wanted) {
        // stop() is waiting for this call, or the duty ended meanwhile: what was granted is released.
        this.heldToken = reply.token;
        return;
      }
      this.hold(reply.token, sentAt);
      this.c.leaseGranted(reply.snapshot);
      return;
    }
    if (!this.running) return;
    // Another instance holds it; the snapshot is the breaker as Redis has it now.
    this.heldElsewhereUntil = performance.now() + reply.leaseMs;
    this.c.adopt(reply.snapshot);
    this.schedule(this.wakes !== wakes ? 0 : reply.leaseMs + EXPIRY_SLACK_MS);
  }

  private async renew(token: number): Promise<void> {
    const sentAt = performance.now();
    let reply;
    try {
      reply = await this.functions.renew(token);
    } catch (error) {
      if (!this.running || this.heldToken !== token) return;
      this.c.failed(error, RedisOperation.LEASE, 'lease renew');
      // Keep trying while the lease may still be ours; the deadline demotes us.
      this.schedule(Math.min(this.ttlMs / 10, RETRY_AFTER_ERROR_MS));
      return;
    }
    if (!this.running || this.heldToken !== token) return;
    if (reply.status === 'renewed') {
      this.hold(token, sentAt);
      return;
    }
    this.demote();
    this.heldElsewhereUntil = reply.leaseMs === 0 ? 0 : performance.now() + reply.leaseMs;
    this.schedule(reply.leaseMs === 0 ? 0 : reply.leaseMs + EXPIRY_SLACK_MS);
  }
}
