/**
 * Keeps, or waits for, one breaker's health-check lease. Acquire, renew and release are
 * compare-and-set functions in Redis; every grant carries a fencing token. This instance
 * acts as leader only until its own monotonic clock says the lease may have lapsed
 * (time the grant or renewal was sent + ttl - ttl/10), never by comparing clocks with
 * Redis. A follower retries when the holder's lease expires, or at once when the holder
 * announces a release.
 */
import type { BreakerFunctions, Snapshot } from './functions.js';

/** A follower that cannot reach Redis tries again after this long, in ms. */
const RETRY_AFTER_ERROR_MS = 500;
/** A follower tries this long after the holder's lease should have expired, in ms. */
const EXPIRY_SLACK_MS = 5;

export interface LeaseKeeperOptions {
  functions: BreakerFunctions;
  ttlMs: number;
  /** This instance became the holder. */
  onGranted(token: number, snapshot: Snapshot): void;
  /** This instance stopped being the holder (lost, lapsed or released). */
  onLost(): void;
  onError(error: unknown, operation: 'acquire' | 'renew' | 'release'): void;
}

export class LeaseKeeper {
  private heldToken: number | undefined;
  private next: NodeJS.Timeout | undefined;
  private lapse: NodeJS.Timeout | undefined;
  private busy = false;
  private wakeWanted = false;
  private running = false;

  constructor(private readonly options: LeaseKeeperOptions) {}

  /** The fencing token while this instance holds the lease, else undefined. */
  get token(): number | undefined {
    return this.heldToken;
  }

  private get marginMs(): number {
    return this.options.ttlMs / 10;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.acquire();
  }

  /** The holder released the lease: try to take it now. */
  wake(): void {
    if (!this.running || this.heldToken !== undefined) return;
    if (this.busy) {
      this.wakeWanted = true;
      return;
    }
    void this.acquire();
  }

  /** Checks at once whether the lease is still ours (a report was refused as stale). */
  recheck(): void {
    if (!this.running || this.heldToken === undefined || this.busy) return;
    void this.renew();
  }

  /** Stops all timers and releases a held lease, announcing it to the other instances. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.clearTimers();
    const token = this.heldToken;
    if (token === undefined) return;
    this.demote();
    try {
      await this.options.functions.release(token);
    } catch (error) {
      this.options.onError(error, 'release');
    }
  }

  private clearTimers(): void {
    if (this.next) clearTimeout(this.next);
    if (this.lapse) clearTimeout(this.lapse);
    this.next = undefined;
    this.lapse = undefined;
  }

  private schedule(delayMs: number, action: () => Promise<void>): void {
    if (!this.running) return;
    if (this.next) clearTimeout(this.next);
    this.next = setTimeout(() => {
      this.next = undefined;
      void action();
    }, Math.max(0, delayMs));
  }

  /** Holds the lease until sentAt + ttl - margin on the monotonic clock. */
  private hold(token: number, sentAt: number): void {
    this.heldToken = token;
    if (this.lapse) clearTimeout(this.lapse);
    const until = sentAt + this.options.ttlMs - this.marginMs;
    this.lapse = setTimeout(() => {
      this.lapse = undefined;
      this.demote();
      void this.acquire();
    }, Math.max(0, until - performance.now()));
    this.schedule(this.options.ttlMs / 3, () => this.renew());
  }

  private demote(): void {
    if (this.heldToken === undefined) return;
    this.heldToken = undefined;
    if (this.lapse) clearTimeout(this.lapse);
    this.lapse = undefined;
    this.options.onLost();
  }

  private async acquire(): Promise<void> {
    if (!this.running || this.busy || this.heldToken !== undefined) return;
    this.busy = true;
    this.wakeWanted = false;
    const sentAt = performance.now();
    try {
      const reply = await this.options.functions.acquire(this.options.ttlMs);
      if (!this.running) {
        // stop() ran meanwhile and found nothing to release: give the grant back.
        if (reply.status === 'granted') await this.options.functions.release(reply.token).catch(() => undefined);
        return;
      }
      if (reply.status === 'granted') {
        this.hold(reply.token, sentAt);
        this.options.onGranted(reply.token, reply.snapshot);
      } else {
        this.schedule(reply.leaseMs + EXPIRY_SLACK_MS, () => this.acquire());
      }
    } catch (error) {
      if (!this.running) return;
      this.options.onError(error, 'acquire');
      this.schedule(RETRY_AFTER_ERROR_MS, () => this.acquire());
    } finally {
      this.busy = false;
      if (this.wakeWanted && this.running && this.heldToken === undefined) {
        this.wakeWanted = false;
        this.schedule(0, () => this.acquire());
      }
      this.keepGoing();
    }
  }

  private async renew(): Promise<void> {
    const token = this.heldToken;
    if (!this.running || this.busy || token === undefined) return;
    this.busy = true;
    const sentAt = performance.now();
    try {
      const reply = await this.options.functions.renew(token, this.options.ttlMs);
      if (!this.running || this.heldToken !== token) return;
      if (reply.status === 'renewed') {
        this.hold(token, sentAt);
      } else {
        this.demote();
        this.schedule(reply.leaseMs + EXPIRY_SLACK_MS, () => this.acquire());
      }
    } catch (error) {
      if (!this.running) return;
      this.options.onError(error, 'renew');
      // Keep trying while the lease may still be ours; the lapse timer demotes us.
      if (this.heldToken === token) this.schedule(Math.min(this.options.ttlMs / 10, RETRY_AFTER_ERROR_MS), () => this.renew());
    } finally {
      this.busy = false;
      this.keepGoing();
    }
  }

  /** After a call that scheduled nothing (its answer arrived after a lapse): go on. */
  private keepGoing(): void {
    if (!this.running || this.busy || this.next) return;
    if (this.heldToken === undefined) this.schedule(0, () => this.acquire());
    else this.schedule(this.options.ttlMs / 3, () => this.renew());
  }
}
