/**
 * The connections the library derives from an application's client: one for commands and
 * one subscriber, shared by every breaker on that client and closed with the last one.
 * They are configured so that nothing waits on Redis: no offline queue, no retries of a
 * sent command, and a timeout on every command.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, type Redis, type RedisOptions } from 'ioredis';
import { clusterSubscriber } from './cluster-subscriber.js';
import { ClusterTopology } from './cluster-topology.js';
import { RedisAuthError, RedisRefusedError, RedisUnreachableError } from './errors.js';
import { verifyLibrary } from './library.js';
import { redactError, secretsOf } from './redact.js';
import { driverError, redisFailure, replyCode, serverAddress, socketFailure, underlying } from './redis-failure.js';
import { StateFeed } from './state-feed.js';

/** A connection to Redis: one server, or a cluster. */
export type Connection = Redis | Cluster;

/** Longest a command of the library may take before it fails, in ms. */
export const COMMAND_TIMEOUT_MS = 1000;
/** Longest a connection attempt may take, in ms. */
export const CONNECT_TIMEOUT_MS = 2000;
/**
 * Longest start() waits for Redis to become reachable, in ms: a server starting at the
 * same time as the application gets a few seconds. Refused credentials and ACLs fail at
 * once, since waiting cannot change them.
 */
export const READY_TIMEOUT_MS = 5000;
/**
 * How long a closing socket may take to end before it is destroyed, in ms. Nothing is
 * left to send when the library closes a connection; the driver's default (2 s) would keep
 * the process alive that long after a failed start (its timer outlives a dead socket).
 */
const DISCONNECT_TIMEOUT_MS = 0;
/**
 * Breakers read their state (at start, and when they resync) this many at a time: ten
 * thousand started, or resyncing after a reconnect, at once queue here, not in Redis, and
 * each read stays well within the command timeout.
 */
const STATE_READS = 256;
/** Reconnect delays grow by this step up to MAX_RECONNECT_DELAY_MS. */
const RECONNECT_STEP_MS = 100;
const MAX_RECONNECT_DELAY_MS = 1000;
/**
 * Behind Sentinel every reconnect asks a sentinel where the primary is, so a failover is
 * followed at the first attempt after it is announced: attempts are at most this far apart.
 */
const MAX_SENTINEL_RECONNECT_DELAY_MS = 200;

export interface ConnectionListener {
  /** The command connection is ready again after it was lost. */
  onConnectionRestored(): void;
  /**
   * The command connection was lost (a RedisUnreachableError), or, while it is, Redis
   * refused to let it back (a RedisAuthError, or a RedisRefusedError of the ACL).
   */
  onConnectionLost(cause: Error): void;
  /** A cluster's slot map changed (a replica promoted, a slot moved): a shard out of reach may be back. */
  onTopologyChanged(): void;
}

function reconnectDelay(times: number): number {
  return Math.min(RECONNECT_STEP_MS * times, MAX_RECONNECT_DELAY_MS);
}

function sentinelReconnectDelay(times: number): number {
  return Math.min(RECONNECT_STEP_MS * times, MAX_SENTINEL_RECONNECT_DELAY_MS);
}

/** The reconnect delays for a connection duplicated from `client`. */
function reconnectDelays(client: Connection): (times: number) => number {
  return client instanceof Cluster || !client.options.sentinels ? reconnectDelay : sentinelReconnectDelay;
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
  disconnectTimeout: DISCONNECT_TIMEOUT_MS,
};

/** The command connection: the application's client, duplicated with the library's settings. */
function commandConnection(client: Connection): Connection {
  const connectionName = 'zenvark:commands';
  if (client instanceof Cluster) {
    return client.duplicate(undefined, {
      enableOfflineQueue: false,
      clusterRetryStrategy: reconnectDelay,
      // A command lost with its node may have run there before the node died: it is not
      // sent again (no outcome counted twice). The slot map is followed instead
      // (cluster-topology.ts). Redirections (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) are retried:
      // Redis ran nothing for them.
      retryDelayOnFailover: 0,
      lazyConnect: false,
      keyPrefix: '',
      redisOptions: { ...NODE_OPTIONS, connectionName },
    } as never);
  }
  return (client as Redis).duplicate({ ...NODE_OPTIONS, enableOfflineQueue: false, retryStrategy: reconnectDelays(client), connectionName });
}

/**
 * The subscriber: the application's client duplicated, or for a cluster a connection to
 * one of its nodes at a time (cluster-subscriber.ts), connected once the cluster knows them.
 */
function subscriberConnection(client: Connection, command: Connection): Connection {
  const settings = { ...NODE_OPTIONS, enableOfflineQueue: false, retryStrategy: reconnectDelays(client), connectionName: 'zenvark:subscriber' };
  if (!(client instanceof Cluster) || !(command instanceof Cluster)) return (client as Redis).duplicate(settings);
  const subscriber = clusterSubscriber(command, { ...(client.options.redisOptions as RedisOptions), ...settings });
  command.on('ready', () => {
    if (subscriber.status === 'wait') subscriber.connect().catch(() => undefined);
  });
  return subscriber;
}

export class SharedConnections {
  readonly command: Connection;
  readonly subscriber: Connection;
  readonly feed: StateFeed;
  private readonly listeners = new Set<ConnectionListener>();
  private lost = false;
  /** Each connection's latest error since it was last ready. */
  private readonly lastErrors = new Map<Connection, Error>();
  private readyWait: Promise<void> | undefined;
  /** The library was found current; forgotten when the connection drops (Redis may come back empty). */
  private libraryOk = false;
  /** Checks in flight, without and with loading. */
  private readonly libraryChecks = new Map<boolean, Promise<void>>();
  /** A cluster's slot map, followed while a shard may be failing over. */
  private readonly topology: ClusterTopology | undefined;
  /** State reads in flight, and those waiting for a turn. */
  private stateReads = 0;
  private readonly waitingReads: (() => void)[] = [];
  refs = 0;
  closed = false;

  constructor(client: Connection) {
    this.command = commandConnection(client);
    this.subscriber = subscriberConnection(client, this.command);
    this.feed = new StateFeed(this.subscriber);
    if (this.command instanceof Cluster) {
      const cluster = this.command;
      this.topology = new ClusterTopology(cluster, () => {
        for (const listener of this.listeners) listener.onTopologyChanged();
      });
      // A node's connection ended or failed: its shard may be failing over.
      cluster.on('-node', () => this.topology?.suspect());
      cluster.on('node error', () => this.topology?.suspect());
    }
    for (const connection of [this.command, this.subscriber]) {
      // Errors surface through start(), the breakers (onConnectionLost, failed calls);
      // without a listener ioredis would print each reconnect attempt.
      connection.on('error', (error: Error) => this.lastErrors.set(connection, underlying(error)));
      connection.on('ready', () => this.lastErrors.delete(connection));
    }
    this.command.on('error', (error: Error) => {
      // Refused on reconnecting: waiting longer will not help, and the breakers say why.
      const refused = refusal(error, this.command);
      if (refused && this.lost && !this.closed) for (const listener of this.listeners) listener.onConnectionLost(refused);
    });
    this.command.on('close', () => {
      this.libraryOk = false;
      if (this.lost || this.closed) return;
      this.lost = true;
      const cause = this.lastErrors.get(this.command);
      const server = serverAddress(this.command);
      const lost = new RedisUnreachableError(server, `the command connection to ${server} was lost${reason(cause)}`, cause);
      for (const listener of this.listeners) listener.onConnectionLost(lost);
    });
    this.command.on('ready', () => {
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

  /**
   * A breaker's call to Redis failed: on a cluster, a call that got no answer, or was
   * refused because the cluster is down, may mean its shard is failing over.
   */
  callFailed(error: unknown): void {
    if (!this.topology) return;
    const failure = redisFailure(error);
    if (failure.code === 'ZV_REDIS_UNREACHABLE' || failure.key === 'CLUSTERDOWN') this.topology.suspect();
  }

  /** Runs a breaker's read of its state when its turn comes (STATE_READS at a time). */
  async stateRead<T>(read: () => Promise<T>): Promise<T> {
    if (this.stateReads >= STATE_READS) await new Promise<void>((resolve) => this.waitingReads.push(resolve));
    this.stateReads += 1;
    try {
      return await read();
    } finally {
      this.stateReads -= 1;
      this.waitingReads.shift()?.();
    }
  }

  addListener(listener: ConnectionListener): void {
    this.listeners.add(listener);
  }

  removeListener(listener: ConnectionListener): void {
    this.listeners.delete(listener);
  }

  /**
   * Resolves when both connections are ready. Refused credentials or ACL rights reject at
   * once, as soon as the driver reports them; no answer rejects after timeoutMs. Breakers
   * starting together share one wait.
   */
  whenReady(timeoutMs = READY_TIMEOUT_MS): Promise<void> {
    this.readyWait ??= this.waitForReady(timeoutMs).finally(() => {
      this.readyWait = undefined;
    });
    return this.readyWait;
  }

  private waitForReady(timeoutMs: number): Promise<void> {
    const pending = new Set([this.command, this.subscriber].filter((c) => c.status !== 'ready'));
    if (pending.size === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      /** The connections that reached Redis at least once during the wait. */
      const connected = new Set<Connection>();
      const undo: (() => void)[] = [];
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      const finish = (error?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        for (const step of undo) step();
        if (error) reject(error);
        else resolve();
      };
      for (const connection of pending) {
        const handlers = {
          connect: () => connected.add(connection),
          ready: () => {
            pending.delete(connection);
            if (pending.size === 0) finish();
          },
          error: (error: Error) => {
            const refused = refusal(error, connection);
            if (refused) finish(refused);
          },
          end: () => {
            const server = serverAddress(connection);
            finish(new RedisUnreachableError(server, `the connection to ${server} was closed before it became ready`));
          },
        };
        for (const [event, handler] of Object.entries(handlers)) {
          connection.on(event, handler);
          undo.push(() => connection.off(event, handler));
        }
        // Refused before this wait began (another breaker's start, a reconnect).
        const refused = refusal(this.lastErrors.get(connection), connection);
        if (refused) finish(refused);
      }
      if (!done) timer = setTimeout(() => finish(this.gaveUp(pending, connected, timeoutMs)), timeoutMs);
    });
  }

  /** What start() says when a connection did not become ready in time. */
  private gaveUp(pending: Set<Connection>, connected: Set<Connection>, timeoutMs: number): Error {
    const connection = [...pending][0] as Connection;
    const server = serverAddress(connection);
    const last = this.lastErrors.get(connection);
    const cause = redactError(last, secretsOf(connection));
    const socket = socketFailure(last);
    if (socket !== undefined || !connected.has(connection)) {
      return new RedisUnreachableError(
        server,
        `Redis at ${server} is not reachable (${socket ?? 'no answer'}); start() gave up after ${timeoutMs} ms — ` +
          'check the address and that the server is up',
        cause,
      );
    }
    return new RedisUnreachableError(
      server,
      `Redis at ${server} accepted a connection but did not become ready${reason(last)}; start() gave up after ${timeoutMs} ms — ` +
        'check that the server is not paused, overloaded or still loading its data set',
      cause,
    );
  }

  /** Closes both connections; resolves once their sockets are gone. */
  async close(): Promise<void> {
    this.closed = true;
    this.feed.close();
    this.topology?.stop();
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
  // Disconnecting from a dead socket (a connection waiting to reconnect) sets the driver's
  // disconnect timer, which no event clears: a timer of the same length set after it runs
  // after it, so that nothing is left once this resolves.
  else await sleep(DISCONNECT_TIMEOUT_MS);
}

/** The driver's error, when it says Redis refused the credentials or the ACL refused a command: waiting will not help. */
function refusal(error: Error | undefined, connection: Connection): Error | undefined {
  if (!error) return undefined;
  const translated = driverError(underlying(error), connection);
  if (translated instanceof RedisAuthError) return translated;
  if (translated instanceof RedisRefusedError && translated.code === 'ZV_NOPERM') return translated;
  return undefined;
}

/** ` (why)`, from the last error of a connection: a socket's failure or Redis's refusal; '' for none. */
function reason(error: Error | undefined): string {
  const socket = socketFailure(error);
  if (socket !== undefined) return ` (${socket})`;
  const word = error && replyCode(error);
  return word ? ` (Redis answered ${word})` : '';
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
