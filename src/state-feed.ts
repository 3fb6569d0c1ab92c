/**
 * One subscriber connection per shared connection set, for every breaker on it. The
 * function library publishes each transition (and each lease release) on the channel of
 * its key prefix; the feed hands it to the breakers whose state key it names. After every
 * reconnect it subscribes again and then asks each breaker to resync, so that a message
 * lost while disconnected cannot leave a breaker stale.
 */
import { ZenvarkError } from './errors.js';
import { type Connection, type FeedMessage, parseFeedMessage } from './functions.js';

export interface FeedListener {
  /** A message for this listener's breaker. */
  onFeedMessage(message: FeedMessage): void;
  /** The subscription was re-established: messages may have been missed. */
  onResubscribed(): void;
  /** Something failed that this listener should report. */
  onFeedError(error: Error): void;
}

export class StateFeed {
  private readonly listeners = new Map<string, Set<FeedListener>>();
  private readonly channels = new Map<string, number>();
  private connectedOnce = false;

  constructor(private readonly subscriber: Connection) {
    subscriber.on('message', (channel: string, message: string) => this.dispatch(channel, message));
    subscriber.on('ready', () => {
      if (this.connectedOnce) void this.resubscribe();
      this.connectedOnce = true;
    });
  }

  /** Registers a listener for a state key; resolves once its channel is subscribed. */
  async add(channel: string, key: string, listener: FeedListener): Promise<void> {
    let set = this.listeners.get(key);
    if (!set) {
      set = new Set();
      this.listeners.set(key, set);
    }
    set.add(listener);
    const count = this.channels.get(channel) ?? 0;
    this.channels.set(channel, count + 1);
    try {
      await this.subscriber.subscribe(channel);
    } catch (error) {
      this.remove(channel, key, listener);
      throw error;
    }
  }

  remove(channel: string, key: string, listener: FeedListener): void {
    const set = this.listeners.get(key);
    if (set?.delete(listener) && set.size === 0) this.listeners.delete(key);
    const count = (this.channels.get(channel) ?? 1) - 1;
    if (count > 0) {
      this.channels.set(channel, count);
      return;
    }
    this.channels.delete(channel);
    if (this.subscriber.status === 'ready') {
      this.subscriber.unsubscribe(channel).catch(() => {
        // The connection is going away or already gone; nothing is left to unsubscribe.
      });
    }
  }

  private allListeners(): FeedListener[] {
    const all: FeedListener[] = [];
    for (const set of this.listeners.values()) all.push(...set);
    return all;
  }

  private dispatch(channel: string, text: string): void {
    if (!this.channels.has(channel)) return;
    let message: FeedMessage;
    try {
      message = parseFeedMessage(text);
    } catch (error) {
      // A foreign publisher on our channel: tell each distinct error handler once.
      const cause = error instanceof Error ? error : new Error(String(error));
      const reported = new Set<FeedListener['onFeedError']>();
      for (const listener of this.allListeners()) {
        if (reported.has(listener.onFeedError)) continue;
        reported.add(listener.onFeedError);
        listener.onFeedError(new ZenvarkError('ZV_BAD_MESSAGE', `ignored a message on ${channel}`, { cause }));
      }
      return;
    }
    const set = this.listeners.get(message.key);
    if (!set) return;
    for (const listener of set) listener.onFeedMessage(message);
  }

  private async resubscribe(): Promise<void> {
    const channels = [...this.channels.keys()];
    try {
      if (channels.length > 0) await this.subscriber.subscribe(...channels);
    } catch (error) {
      // The connection dropped again; the next 'ready' retries.
      for (const listener of this.allListeners()) {
        listener.onFeedError(new ZenvarkError('ZV_FEED_FAILED', 'resubscribing to the state feed failed', { cause: error }));
      }
      return;
    }
    for (const listener of this.allListeners()) listener.onResubscribed();
  }
}
