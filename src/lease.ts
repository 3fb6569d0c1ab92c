/**
 * Keeps, or waits for, one breaker's health-check lease. Acquire, renew and release are
 * compare-and-set functions in Redis; every grant carries a fencing token. This instance
 * acts as leader only until its own monotonic clock says the lease may have lapsed
 * (time the grant or renewal was sent + ttl - ttl/10), never by comparing clocks with
 * Redis. A follower retries when the holder's lease expires, or at once when the holder
 * announces a release.
 *
 * One call at a time: each step (acquire when following, renew when leading) schedules
 * the next one; if a step ends without doing so, the next one runs at once.
 */
import type { BreakerFunctions, Snapshot } from './functions.js';

/** A call that failed is retried after this long, in ms. */
const RETRY_AFTER_ERROR_MS = 500;
/** A follower tries this long after the holder's lease should have expired, in ms. */
const EXPIRY_SLACK_MS = 5;

export interface LeaseKeeperOptions {
  functions: BreakerFunctions;
  ttlMs: number;
  /** This instance became the holder. */
  onGranted(token: number, snapshot: Snapshot): void;
  /** Another instance holds the lease; `snapshot` is the breaker as Redis has it now. */
  onHeld(snapshot: Snapshot): void;
  /** This instance stopped being the holder (lost, lapsed or released). */
  onLost(): void;
  onError(error: unknown, operation: 'acquire' | 'renew' | 'release'): void;
}

export class LeaseKeeper {
  private heldToken: number | undefined;
  private next: NodeJS.Timeout | undefined;
  private lapse: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private running = false;
  /** Counts release announcements, so that one arriving mid-call is not lost. */
  private wakes = 0;

  constructor(private readonly options: LeaseKeeperOptions) {}

  /** The fencing token while this instance holds the lease, else undefined. */
  get token(): number | undefined {
    return this.heldToken;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** The holder released the lease: try to take it now. */
  wake(): void {
    if (!this.running || this.heldToken !== undefined) return;
    this.wakes += 1;
    this.schedule(0);
  }

  /** Checks at once whether the lease is still ours (a report was refused as stale). */
  recheck(): void {
    if (this.running && this.heldToken !== undefined) this.schedule(0);
  }

  /**
   * Stops every timer, waits for a call in flight, and releases the lease if this instance
   * holds it (or was just granted it), announcing the release to the other instances.
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.clear();
    await this.inFlight;
    const token = this.heldToken;
    if (token === undefined) return;
    this.demote();
    try {
      await this.options.functions.release(token);
    } catch (error) {
      this.options.onError(error, 'release');
    }
  }

  private clear(): void {
    if (this.next) clearTimeout(this.next);
    if (this.lapse) clearTimeout(this.lapse);
    this.next = undefined;
    this.lapse = undefined;
  }

  /** Runs the next step after delayMs, replacing whatever was scheduled. */
  private schedule(delayMs: number): void {
    if (this.next) clearTimeout(this.next);
    this.next = undefined;
    if (!this.running) return;
    this.next = setTimeout(() => {
      this.next = undefined;
      this.step();
    }, Math.max(0, delayMs));
  }

  private step(): void {
    // A call in flight schedules what follows when it ends.
    if (!this.running || this.inFlight) return;
    const token = this.heldToken;
    const call = token === undefined ? this.acquire() : this.renew(token);
    this.inFlight = call.finally(() => {
      this.inFlight = undefined;
      if (this.running && !this.next) this.schedule(0);
    });
  }

  private demote(): void {
    if (this.lapse) clearTimeout(this.lapse);
    this.lapse = undefined;
    if (this.heldToken === undefined) return;
    this.heldToken = undefined;
    this.options.onLost();
  }

  /** Holds the lease until sentAt + ttl - ttl/10 on the monotonic clock. */
  private hold(token: number, sentAt: number): void {
    this.heldToken = token;
    if (this.lapse) clearTimeout(this.lapse);
    const until = sentAt + this.options.ttlMs - this.options.ttlMs / 10;
    this.lapse = setTimeout(() => {
      this.lapse = undefined;
      this.demote();
      this.schedule(0);
    }, Math.max(0, until - performance.now()));
    this.schedule(this.options.ttlMs / 3);
  }

  private async acquire(): Promise<void> {
    const sentAt = performance.now();
    const wakes = this.wakes;
    let reply;
    try {
      reply = await this.options.functions.acquire(this.options.ttlMs);
    } catch (error) {
      if (!this.running) return;
      this.options.onError(error, 'acquire');
      this.schedule(RETRY_AFTER_ERROR_MS);
      return;
    }
    if (reply.status === 'granted') {
      if (!this.running) {
        // stop() is waiting for this call: it releases what was granted.
        this.heldToken = reply.token;
        return;
      }
      this.hold(reply.token, sentAt);
      this.options.onGranted(reply.token, reply.snapshot);
      return;
    }
    if (!this.running) return;
    this.options.onHeld(reply.snapshot);
    this.schedule(this.wakes !== wakes ? 0 : reply.leaseMs + EXPIRY_SLACK_MS);
  }

  private async renew(token: number): Promise<void> {
    const sentAt = performance.now();
    let reply;
    try {
      reply = await this.options.functions.renew(token, this.options.ttlMs);
    } catch (error) {
      if (!this.running || this.heldToken !== token) return;
      this.options.onError(error, 'renew');
      // Keep trying while the lease may still be ours; the lapse timer demotes us.
      this.schedule(Math.min(this.options.ttlMs / 10, RETRY_AFTER_ERROR_MS));
      return;
    }
    if (!this.running || this.heldToken !== token) return;
    if (reply.status === 'renewed') {
      this.hold(token, sentAt);
      return;
    }
    this.demote();
    this.schedule(reply.leaseMs === 0 ? 0 : reply.leaseMs + EXPIRY_SLACK_MS);
  }
}
