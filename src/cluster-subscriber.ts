/**
 * The subscriber connection of a Redis Cluster: one plain connection to one node at a
 * time. In a cluster PUBLISH reaches every node, primaries and replicas alike, so any node
 * serves the feed (docs/architecture.md, "Transitions are stream entries"). Each connect
 * goes to the next node the cluster's slot map names, starting from a random one so that a
 * fleet spreads over the nodes; a lost node is therefore left at the first reconnect, and
 * the feed resubscribes and resyncs as after any reconnect (state-feed.ts).
 *
 * It is an ordinary ioredis connection with a connector of its own (ioredis's `Connector`
 * option): the reconnect delays, timeouts and events are those of every other connection
 * the library derives.
 */
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { AbstractConnector, type Cluster, Redis, type RedisOptions } from 'ioredis';

interface NodeAddress {
  readonly host: string;
  readonly port: number;
}

/** The nodes `cluster` knows now (primaries and replicas), as its slot map names them. */
function knownNodes(cluster: Cluster): NodeAddress[] {
  return cluster.nodes('all').map((node) => ({ host: node.options.host ?? '127.0.0.1', port: node.options.port ?? 6379 }));
}

/**
 * A connection to one node of `cluster` at a time, with `options` (the cluster's node
 * options and the library's own). It connects when told to (lazily): the cluster must
 * know its nodes first.
 */
export function clusterSubscriber(cluster: Cluster, options: RedisOptions): Redis {
  class NodeConnector extends AbstractConnector {
    /** Which known node the next connect tries. */
    private next = Math.floor(Math.random() * 16384);
    private readonly o: RedisOptions;

    constructor(given: unknown) {
      const o = given as RedisOptions;
      super(o.disconnectTimeout ?? 0);
      this.o = o;
    }

    connect(): ReturnType<AbstractConnector['connect']> {
      this.connecting = true;
      const nodes = knownNodes(cluster);
      const node = nodes[this.next % Math.max(1, nodes.length)];
      this.next += 1;
      // Asynchronous, as ioredis expects of a connector: disconnect() may come first.
      return new Promise((resolve, reject) => {
        process.nextTick(() => {
          if (!this.connecting) {
            reject(new Error('Connection is closed.'));
            return;
          }
          if (!node) {
            reject(new Error('no node of the Redis Cluster is known yet'));
            return;
          }
          const tls = this.o.tls;
          const address = this.o.family === undefined ? node : { ...node, family: this.o.family };
          let stream: ReturnType<typeof netConnect>;
          try {
            stream = tls ? tlsConnect({ ...address, ...tls }) : netConnect(address);
          } catch (error) {
            // Options a socket refuses (a bad TLS key or certificate): a failed connect, not a crash.
            reject(error);
            return;
          }
          stream.once('error', (error: Error) => {
            this.firstError = error;
          });
          this.stream = stream;
          resolve(stream);
        });
      });
    }
  }
  return new Redis({ ...options, lazyConnect: true, Connector: NodeConnector });
}

/** Whether `connection` is a cluster's subscriber made here (it names its node by its socket). */
export function isClusterSubscriber(connection: unknown): boolean {
  return connection instanceof Redis && connection.options.Connector !== undefined;
}
