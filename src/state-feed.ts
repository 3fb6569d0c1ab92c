/**
 * One subscriber connection per shared connection set, for every breaker on it. The
 * function library publishes each transition (and each lease release) on the channel of
 * its key prefix; the feed hands it to the breakers whose state key it names. After every
 * reconnect it subscribes again and then asks each breaker to resync, so that a message
 * lost while disconnected cannot leave a breaker stale.
 */
import { ZenvarkError } from './errors.js';
import type { Connection } from './connections.js';
import { type FeedMessage, parseFeedMessage } from './feed-message.js';
import { driverError } from './redis-failure.js';

/** A resubscription that failed while the connection stayed up is retried after this long, in ms. */
const RESUBSCRIBE_RETRY_MS = 500;

export interface FeedListener {
  /** A message for this listener's breaker. */
  onFeedMessage(message: FeedMessage): void;
  /** The subscription was re-established: messages may have been missed. */
  onResubscribed(): void;
  /** Something failed that this listener should report. */
  onFeedError(error: Error): void;
  /** Where this listener's errors end up: listeners sharing it hear a feed-wide error once. */
  readonly errorSink: unknown;
}

export class StateFeed {
  /** By state key: one listener, or several when a process runs more than one instance. */
  private readonly listeners = new Map<string, FeedListener | FeedListener[]>();
  private readonly channels = new Map<string, number>();
  /** Each channel's SUBSCRIBE, sent once however many breakers use the channel. */
  private readonly subscriptions = new Map<string, Promise<unknown>>();
  private connectedOnce = false;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly subscriber: Connection) {
    subscriber.on('message', (channel: string, message: string) => this.dispatch(channel, message));
    subscriber.on('ready', () => {
      if (this.connectedOnce) void this.resubscribe();
      this.connectedOnce = true;
    });
  }

  /** Registers a listener for a state key; resolves once its channel is subscribed. */
  async add(channel: string, key: string, listener: FeedListener): Promise<void> {
    const present = this.listeners.get(key);
    if (present === undefined) this.listeners.set(key, listener);
    else if (Array.isArray(present)) present.push(listener);
    else this.listeners.set(key, [present, listener]);
    const count = this.channels.get(channel) ?? 0;
    this.channels.set(channel, count + 1);
    try {
      await this.subscribed(channel);
    } catch (error) {
      this.remove(channel, key, listener);
      throw driverError(error, this.subscriber);
    }
  }

  /**
   * Subscribes to `channel` once: breakers that start together share one SUBSCRIBE (ten
   * thousand breakers on one prefix send one). A failed one is sent again by the next.
   */
  private subscribed(channel: string): Promise<unknown> {
    let subscription = this.subscriptions.get(channel);
    if (!subscription) {
      subscription = this.subscriber.subscribe(channel);
      this.subscriptions.set(channel, subscription);
      subscription.catch(() => {
        if (this.subscriptions.get(channel) === subscription) this.subscriptions.delete(channel);
      });
    }
    return subscription;
  }

  remove(channel: string, key: string, listener: FeedListener): void {
    const present = this.listeners.get(key);
    if (present === listener) {
      this.listeners.delete(key);
    } else if (Array.isArray(present)) {
      const rest = present.filter((l) => l !== listener);
      if (rest.length === 1) this.listeners.set(key, rest[0] as FeedListener);
      else this.listeners.set(key, rest);
    }
    const count = (this.channels.get(channel) ?? 1) - 1;
    if (count > 0) {
      this.channels.set(channel, count);
      return;
    }
    this.channels.delete(channel);
    this.subscriptions.delete(channel);
    if (this.subscriber.status === 'ready') {
      this.subscriber.unsubscribe(channel).catch(() => {
        // The connection is going away or already gone; nothing is left to unsubscribe.
      });
    }
  }

  /** An error that concerns every breaker: each distinct error handler hears it once. */
  private tellAll(error: ZenvarkError): void {
    const told = new Set<unknown>();
    for (const listener of this.allListeners()) {
      if (told.has(listener.errorSink)) continue;
      told.add(listener.errorSink);
      listener.onFeedError(error);
    }
  }

  private allListeners(): FeedListener[] {
    const all: FeedListener[] = [];
    for (const present of this.listeners.values()) {
      if (Array.isArray(present)) all.push(...present);
      else all.push(present);
    }
    return all;
  }

  private dispatch(channel: string, text: string): void {
    if (!this.channels.has(channel)) return;
    let message: FeedMessage;
    try {
      message = parseFeedMessage(text);
    } catch (error) {
      // A foreign publisher on our channel.
      this.tellAll(new ZenvarkError('ZV_BAD_MESSAGE', `ignored a message on ${channel}`, { cause: error }));
      return;
    }
    const present = this.listeners.get(message.key);
    if (present === undefined) return;
    if (!Array.isArray(present)) {
      present.onFeedMessage(message);
      return;
    }
    for (const listener of present) listener.onFeedMessage(message);
  }

  /**
   * Subscribes again after a reconnect, then has every breaker resync. A failure while the
   * connection stays up (a timeout) is retried; a dropped connection retries on 'ready'.
   */
  private async resubscribe(): Promise<void> {
    this.clearRetry();
    const channels = [...this.channels.keys()];
    try {
      if (channels.length > 0) await this.subscriber.subscribe(...channels);
    } catch (error) {
      this.tellAll(new ZenvarkError('ZV_FEED_FAILED', 'resubscribing to the state feed failed', { cause: driverError(error, this.subscriber) }));
      if (this.subscriber.status === 'ready' && !this.closed) {
        this.retry = setTimeout(() => void this.resubscribe(), RESUBSCRIBE_RETRY_MS);
      }
      return;
    }
    for (const listener of this.allListeners()) listener.onResubscribed();
  }

  private clearRetry(): void {
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
  }

  /** Stops retrying; the connection itself is closed by its owner. */
  close(): void {
    this.closed = true;
    this.clearRetry();
  }
}
