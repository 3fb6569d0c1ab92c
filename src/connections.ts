/**
 * The connections the library derives from an application's client: one for commands and
 * one subscriber, shared by every breaker on that client and closed with the last one.
 * They are configured so that nothing waits on Redis: no offline queue, no retries of a
 * sent command, and a timeout on every command.
 */
import { Cluster, type Redis, type RedisOptions } from 'ioredis';
import { verifyLibrary } from './library.js';
import { StateFeed } from './state-feed.js';

/** A connection to Redis: one server, or a cluster. */
export type Connection = Redis | Cluster;

/** Longest a command of the library may take before it fails, in ms. */
export const COMMAND_TIMEOUT_MS = 1000;
/** Longest a connection attempt may take, in ms. */
export const CONNECT_TIMEOUT_MS = 2000;
/** Longest start() waits for Redis to become reachable, in ms. */
export const READY_TIMEOUT_MS = 5000;
/** Reconnect delays grow by this step up to MAX_RECONNECT_DELAY_MS. */
const RECONNECT_STEP_MS = 100;
const MAX_RECONNECT_DELAY_MS = 1000;

export interface ConnectionListener {
  /** The command connection is ready again after it was lost. */
  onConnectionRestored(): void;
  /** The command connection was lost. */
  onConnectionLost(cause: Error | undefined): void;
}

function reconnectDelay(times: number): number {
  return Math.min(RECONNECT_STEP_MS * times, MAX_RECONNECT_DELAY_MS);
}

const NODE_OPTIONS: Partial<RedisOptions> = {
  commandTimeout: COMMAND_TIMEOUT_MS,
  connectTimeout: CONNECT_TIMEOUT_MS,
  maxRetriesPerRequest: 0,
  autoResendUnfulfilledCommands: false,
  autoResubscribe: false,
  enableAutoPipelining: true,
  lazyConnect: false,
  keyPrefix: '',
  replyMapping: 'legacy',
};

function derive(client: Connection, role: 'commands' | 'subscriber'): Connection {
  const connectionName = `zenvark:${role}`;
  if (client instanceof Cluster) {
    return client.duplicate(undefined, {
      enableOfflineQueue: false,
      clusterRetryStrategy: reconnectDelay,
      lazyConnect: false,
      keyPrefix: '',
      redisOptions: { ...NODE_OPTIONS, connectionName },
    } as never);
  }
  return (client as Redis).duplicate({
    ...NODE_OPTIONS,
    enableOfflineQueue: false,
    retryStrategy: reconnectDelay,
    connectionName,
  });
}

export class SharedConnections {
  readonly command: Connection;
  readonly subscriber: Connection;
  readonly feed: StateFeed;
  private readonly listeners = new Set<ConnectionListener>();
  private lost = false;
  private lastError: Error | undefined;
  private readyWait: Promise<void> | undefined;
  /** The library was found current; forgotten when the connection drops (Redis may come back empty). */
  private libraryOk = false;
  /** Checks in flight, without and with loading. */
  private readonly libraryChecks = new Map<boolean, Promise<void>>();
  refs = 0;
  closed = false;

  constructor(client: Connection) {
    this.command = derive(client, 'commands');
    this.subscriber = derive(client, 'subscriber');
    this.feed = new StateFeed(this.subscriber);
    // Errors surface through the breakers (onConnectionLost, failed calls); without a
    // listener ioredis would print each reconnect attempt.
    this.command.on('error', (error: Error) => {
      this.lastError = error;
    });
    this.subscriber.on('error', () => {});
    this.command.on('close', () => {
      this.libraryOk = false;
      if (this.lost || this.closed) return;
      this.lost = true;
      for (const listener of this.listeners) listener.onConnectionLost(this.lastError);
    });
    this.command.on('ready', () => {
      this.lastError = undefined;
      if (!this.lost) return;
      this.lost = false;
      for (const listener of this.listeners) listener.onConnectionRestored();
    });
  }

  /**
   * A call found the library missing (flushed, or a server that came back empty): it is
   * checked again, and with `reload` loaded again (the promise of that, for its failure).
   */
  libraryMissing(reload: boolean): Promise<void> | undefined {
    this.libraryOk = false;
    return reload ? this.verifyLibrary(true) : undefined;
  }

  /** Checks (and with `load`, loads) the function library once for all breakers here. */
  verifyLibrary(load: boolean): Promise<void> {
    if (this.libraryOk) return Promise.resolve();
    let check = this.libraryChecks.get(load);
    if (!check) {
      check = verifyLibrary(this.command, load)
        .then(() => {
          this.libraryOk = true;
        })
        .finally(() => this.libraryChecks.delete(load));
      this.libraryChecks.set(load, check);
    }
    return check;
  }

  addListener(listener: ConnectionListener): void {
    this.listeners.add(listener);
  }

  removeListener(listener: ConnectionListener): void {
    this.listeners.delete(listener);
  }

  /** Resolves when both connections are ready; rejects after timeoutMs. Breakers
   * starting together share one wait. */
  whenReady(timeoutMs = READY_TIMEOUT_MS): Promise<void> {
    this.readyWait ??= Promise.all([this.command, this.subscriber].map((c) => this.waitFor(c, timeoutMs)))
      .then(() => undefined)
      .finally(() => {
        this.readyWait = undefined;
      });
    return this.readyWait;
  }

  private waitFor(connection: Connection, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (connection.status === 'ready') {
        resolve();
        return;
      }
      const done = (error?: Error) => {
        clearTimeout(timer);
        connection.off('ready', onReady);
        connection.off('end', onEnd);
        if (error) reject(error);
        else resolve();
      };
      const onReady = () => done();
      const onEnd = () => done(new Error('the connection was closed'));
      const timer = setTimeout(() => {
        const cause = this.lastError ? `: ${this.lastError.message}` : '';
        done(new Error(`Redis did not become reachable within ${timeoutMs} ms${cause}`));
      }, timeoutMs);
      connection.on('ready', onReady);
      connection.on('end', onEnd);
    });
  }

  /** Closes both connections; resolves once their sockets are gone. */
  async close(): Promise<void> {
    this.closed = true;
    this.feed.close();
    await Promise.all([this.command, this.subscriber].map((connection) => closeConnection(connection)));
  }
}

async function closeConnection(connection: Connection): Promise<void> {
  if (connection.status === 'end') return;
  // Only a connection with a socket emits 'end' once disconnected; one waiting to
  // reconnect just drops its timer.
  const hasSocket = ['connecting', 'connect', 'ready'].includes(connection.status);
  const ended = new Promise<void>((resolve) => connection.once('end', () => resolve()));
  if (connection.status === 'ready') {
    try {
      await connection.quit();
    } catch {
      // QUIT failed: fall back to closing the socket ourselves.
    }
  }
  connection.disconnect();
  if (hasSocket) await ended;
}

const registry = new WeakMap<object, SharedConnections>();

/** The shared connections of an application client, created on first use. */
export function attachConnections(client: Connection): SharedConnections {
  let shared = registry.get(client);
  if (!shared || shared.closed) {
    shared = new SharedConnections(client);
    registry.set(client, shared);
  }
  shared.refs += 1;
  return shared;
}

/** Gives a reference back; the last one closes the connections. */
export async function detachConnections(client: Connection, shared: SharedConnections): Promise<void> {
  shared.refs -= 1;
  if (shared.refs > 0) return;
  if (registry.get(client) === shared) registry.delete(client);
  await shared.close();
}
