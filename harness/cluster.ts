/**
 * A Redis Cluster of our own: primaries with replicas, each a server process from
 * SERVER_BINARY (harness/redis-server.ts) on free loopback ports, formed with the
 * cluster's own commands (so that it works where no redis-cli is installed, as with
 * Valkey). Which node serves what is always asked of the cluster, never remembered.
 */
import calculateSlot from 'cluster-key-slot';
import { Cluster, type ClusterOptions } from 'ioredis';
import { wallMs } from './clock.js';
import { disposeRedis } from './redis-server.js';
import { DATA_NODE_ARGS, type Failover, type FailoverOptions, TopologyNode, killPrimary, promotion, startNodes as startTopologyNodes, until } from './topology.js';

export const SLOTS = 16384;

/**
 * Cluster bus timeout (cluster-node-timeout), in ms: a node that does not answer for this
 * long is suspected, and a dead primary's replica takes over about a second later. Measured
 * on a 2-core machine under four CPU-bound processes and a client writing 20,000 keys a
 * second, for minutes (load average 10): no node was ever suspected, at 1000 ms nor at 500.
 */
export const NODE_TIMEOUT_MS = 1000;

/**
 * The server options of every node. cluster-require-full-coverage keeps the server's
 * default (yes), as production has it: once a dead primary is marked failed, every node
 * refuses every command with CLUSTERDOWN until its replica has taken over (measured: about
 * a second), and tests see that.
 */
function nodeArgs(nodeTimeoutMs: number): string[] {
  return [
    '--cluster-node-timeout', String(nodeTimeoutMs),
    // A replica fails over however long ago it last heard from its primary. With the
    // default (10), a replica that had heard nothing for 10 node timeouts plus the
    // 10 s replication ping period (a primary paused for 20 s) would never take over.
    '--cluster-replica-validity-factor', '0',
    ...DATA_NODE_ARGS,
  ];
}

/** A node of the cluster. */
export class ClusterNode extends TopologyNode {
  private nodeId: string | undefined;

  /** Its cluster node id; kept across restarts (its nodes.conf stays). */
  get id(): string {
    if (this.nodeId === undefined) throw new Error(`${this.address} has not been asked its node id`);
    return this.nodeId;
  }

  /** Asks the node its id, once, after it started. */
  async identify(): Promise<void> {
    this.nodeId ??= (await this.admin.call('CLUSTER', 'MYID')) as string;
  }
}

/** A line of CLUSTER NODES: one node as the asked node sees it. */
interface NodeEntry {
  readonly id: string;
  readonly port: number;
  readonly flags: readonly string[];
  /** For a replica, its primary's id. */
  readonly primaryId: string | undefined;
  /** Slot ranges it serves, [first, last]. */
  readonly slots: readonly (readonly [number, number])[];
  /** The asked node's cluster bus link to it is up. */
  readonly connected: boolean;
}

function parseNodes(text: string): NodeEntry[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const [id = '', address = '', flags = '', primary = '', , , , link = '', ...slots] = line.trim().split(' ');
      return {
        id,
        connected: link === 'connected',
        port: Number(/:(\d+)@/.exec(address)?.[1]),
        flags: flags.split(','),
        primaryId: primary === '-' ? undefined : primary,
        // Entries in brackets are slots being migrated or imported.
        slots: slots
          .filter((s) => !s.startsWith('['))
          .map((s) => {
            const [first, last = first] = s.split('-').map(Number) as [number, number?];
            return [first, last] as const;
          }),
      };
    });
}

function isPrimary(entry: NodeEntry): boolean {
  return entry.flags.includes('master');
}

/** What every node must agree on: each node's role, primary and slots. */
function layout(entries: NodeEntry[]): string {
  return entries
    .map((e) => `${e.id} ${isPrimary(e) ? 'primary' : `replica of ${e.primaryId}`} ${e.slots.map((r) => r.join('-')).join(',')}`)
    .sort()
    .join('\n');
}

/** A primary and what it serves, as the cluster reports them. */
export interface Shard {
  readonly primary: ClusterNode;
  readonly replicas: readonly ClusterNode[];
  /** Slot ranges, [first, last]. */
  readonly slots: readonly (readonly [number, number])[];
}

export interface MoveOptions {
  /** Keys per MIGRATE (default 100). */
  batch?: number;
  /** Runs after the first batch moved, while the slot's keys are split between the two primaries. */
  midway?: () => Promise<void>;
}

export class RedisCluster {
  private readonly clients: Cluster[] = [];

  constructor(
    /** Every node ever started, the killed ones too, in start order (primaries first). */
    readonly nodes: ClusterNode[],
    private readonly nodeTimeoutMs: number,
  ) {}

  /** Where a client starts: every node the cluster was started with. */
  get startupNodes(): { host: string; port: number }[] {
    return this.nodes.map((n) => ({ host: n.host, port: n.port }));
  }

  /** An application client (ioredis Cluster) over the startup nodes; closed by stop(). */
  client(options: ClusterOptions = {}): Cluster {
    const client = new Cluster(this.startupNodes, options);
    client.on('error', () => {});
    this.clients.push(client);
    return client;
  }

  /** The hash slot of a key. */
  slotOf(key: string): number {
    return calculateSlot(key);
  }

  /** The nodes that answer (not killed, not paused). */
  get alive(): ClusterNode[] {
    return this.nodes.filter((n) => n.alive);
  }

  /** CLUSTER NODES as `from` (default: the first live node) sees it. */
  private async entries(from = this.alive[0]): Promise<NodeEntry[]> {
    if (!from) throw new Error('no node of the cluster is alive');
    return parseNodes((await from.admin.call('CLUSTER', 'NODES')) as string);
  }

  private node(id: string | undefined): ClusterNode {
    const node = this.nodes.find((n) => n.id === id);
    if (!node) throw new Error(`the cluster names node ${id}, which is not one of ours`);
    return node;
  }

  /** Every primary with its replicas and slots, as a live node reports them; primaries without slots too. */
  async shards(): Promise<Shard[]> {
    const entries = await this.entries();
    return entries
      .filter((e) => isPrimary(e) && !e.flags.includes('fail'))
      .map((e) => ({
        primary: this.node(e.id),
        replicas: entries.filter((r) => !isPrimary(r) && r.primaryId === e.id).map((r) => this.node(r.id)),
        slots: e.slots,
      }))
      .sort((a, b) => (a.slots[0]?.[0] ?? SLOTS) - (b.slots[0]?.[0] ?? SLOTS));
  }

  /** The shard that serves a key or a slot. */
  async shardOf(keyOrSlot: string | number): Promise<Shard> {
    const slot = typeof keyOrSlot === 'number' ? keyOrSlot : this.slotOf(keyOrSlot);
    const shard = (await this.shards()).find((s) => s.slots.some(([first, last]) => first <= slot && slot <= last));
    if (!shard) throw new Error(`no primary serves slot ${slot}`);
    return shard;
  }

  /** The primary that serves a key or a slot. */
  async primaryOf(keyOrSlot: string | number): Promise<ClusterNode> {
    return (await this.shardOf(keyOrSlot)).primary;
  }

  /** The (first) replica of a primary. */
  async replicaOf(primary: ClusterNode): Promise<ClusterNode> {
    const replica = (await this.entries()).find((e) => !isPrimary(e) && e.primaryId === primary.id);
    if (!replica) throw new Error(`${primary.address} has no replica`);
    return this.node(replica.id);
  }

  /** The last lines of every node's log. */
  private diagnose = (): string => this.nodes.map((n) => n.logTail()).join('\n');

  /**
   * Waits until every live node reports cluster_state:ok, knows every node, agrees with
   * the others on each node's role, primary and slots, every live replica's link to its
   * primary is up, and so is every live node's cluster bus link to every other live node:
   * a PUBLISH crosses the bus, and a node whose link is being made again drops it (a node
   * makes a link again when a pong is half the node timeout late, which a loaded machine
   * sees).
   */
  async settled(timeoutMs = 30_000): Promise<void> {
    await until(
      'the cluster settled',
      async () => {
        const alive = this.alive;
        const layouts = new Set<string>();
        for (const node of alive) {
          const info = (await node.admin.call('CLUSTER', 'INFO')) as string;
          if (!info.includes('cluster_state:ok')) return undefined;
          const entries = await this.entries(node);
          if (entries.length !== this.nodes.length || entries.some((e) => e.flags.includes('handshake'))) return undefined;
          const livePorts = new Set(alive.map((n) => n.port));
          if (entries.some((e) => !e.flags.includes('myself') && livePorts.has(e.port) && !e.connected)) return undefined;
          layouts.add(layout(entries));
          const self = entries.find((e) => e.flags.includes('myself'));
          if (self && !isPrimary(self) && (await node.info('replication')).get('master_link_status') !== 'up') return undefined;
        }
        return layouts.size === 1 ? true : undefined;
      },
      { timeoutMs, diagnose: this.diagnose },
    );
  }

  /**
   * Kills `primary` (SIGKILL) and waits until its replica is primary, polling the
   * replica's ROLE every few milliseconds; then, unless `settle` is false, until the
   * cluster settled.
   */
  async failover(primary: ClusterNode, options: FailoverOptions = {}): Promise<Failover<ClusterNode>> {
    const { settle = true, timeoutMs = 30_000 } = options;
    const replica = await this.replicaOf(primary);
    const killedAt = await killPrimary(primary, replica, options.losing);
    const promoted = await promotion(replica, timeoutMs, this.diagnose);
    if (settle) await this.settled(timeoutMs);
    return { killedAt, promotedAt: promoted.at, promotedWithinMs: promoted.withinMs, primary: replica };
  }

  /**
   * Brings a killed node back (restarted with its nodes.conf, no data) and waits until the
   * cluster settled: a failed-over primary comes back as a replica of its successor.
   */
  async rejoin(node: ClusterNode): Promise<void> {
    await node.restart();
    await this.settled();
  }

  /** Starts a new node and makes it a primary of the cluster, with no slots. */
  async addPrimary(): Promise<ClusterNode> {
    const seed = this.alive[0];
    if (!seed) throw new Error('no node of the cluster is alive');
    const [node] = (await startNodes(1, this.nodeTimeoutMs)) as [ClusterNode];
    this.nodes.push(node);
    await node.identify();
    await meet(node, seed);
    await this.settled();
    return node;
  }

  /**
   * Moves a slot and its keys from the primary that serves it to `to`, as an operator's
   * resharding does while clients run: the target imports, the source migrates, the keys
   * go over in batches of MIGRATE, and every primary is told the new owner (the target
   * first, then the source). Resolves once the cluster settled.
   */
  async moveSlot(slot: number, to: ClusterNode, options: MoveOptions = {}): Promise<{ keys: number; durationMs: number }> {
    const { batch = 100 } = options;
    const startedAt = wallMs();
    const from = await this.primaryOf(slot);
    if (from === to) throw new Error(`slot ${slot} is served by ${to.address} already`);
    await to.admin.call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', from.id);
    await from.admin.call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', to.id);
    let moved = 0;
    for (;;) {
      const keys = (await from.admin.call('CLUSTER', 'GETKEYSINSLOT', String(slot), String(batch))) as string[];
      if (keys.length === 0) break;
      await from.admin.call('MIGRATE', to.host, String(to.port), '', '0', '10000', 'KEYS', ...keys);
      if (moved === 0 && options.midway) await options.midway();
      moved += keys.length;
    }
    const others = (await this.shards()).map((s) => s.primary).filter((p) => p !== from && p !== to && p.alive);
    for (const primary of [to, from, ...others]) await primary.admin.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', to.id);
    await this.settled();
    return { keys: moved, durationMs: wallMs() - startedAt };
  }

  /** Loads a function library (FUNCTION LOAD REPLACE) on every live primary, and waits until their replicas have it. */
  async loadLibrary(code: string): Promise<void> {
    for (const { primary, replicas } of await this.shards()) {
      if (!primary.alive) continue;
      await primary.admin.call('FUNCTION', 'LOAD', 'REPLACE', code);
      await primary.admin.call('WAIT', String(replicas.filter((r) => r.alive).length), '10000');
    }
  }

  /** Removes every function from one node (FUNCTION FLUSH); a primary's replicas follow it. */
  async flushLibrary(node: ClusterNode): Promise<void> {
    await node.admin.call('FUNCTION', 'FLUSH', 'SYNC');
  }

  /** Closes the clients and kills every node; their dirs are removed. */
  async stop(): Promise<void> {
    for (const client of this.clients.splice(0)) client.disconnect();
    await Promise.all(this.nodes.map((n) => disposeRedis(n.server)));
  }
}

/** Makes `node` meet `other` (on its cluster bus port, which is not the default port + 10000). */
async function meet(node: ClusterNode, other: ClusterNode): Promise<void> {
  await node.admin.call('CLUSTER', 'MEET', other.host, String(other.port), String(other.server.busPort));
}

/** Starts `count` nodes in cluster mode, not yet part of any cluster. */
async function startNodes(count: number, nodeTimeoutMs: number): Promise<ClusterNode[]> {
  const options = Array.from({ length: count }, () => ({ cluster: true, args: nodeArgs(nodeTimeoutMs) }));
  return startTopologyNodes(options, (server) => new ClusterNode(server));
}

export interface ClusterSetup {
  /** Primaries (default 3), each serving an equal share of the slots. */
  primaries?: number;
  /** Replicas per primary (default 1). */
  replicas?: number;
  /** cluster-node-timeout, in ms (default NODE_TIMEOUT_MS). */
  nodeTimeoutMs?: number;
}

/**
 * Starts the nodes, gives each primary its slots, makes them meet, attaches the replicas,
 * and resolves once the cluster settled: about 2 s, since a primary reports
 * cluster_state:ok no sooner than 2 s after it started (the server's fixed delay before a
 * primary turns writable, CLUSTER_WRITABLE_DELAY; redis-cli --cluster create takes 3 s).
 */
export async function startCluster(setup: ClusterSetup = {}): Promise<RedisCluster> {
  const { primaries = 3, replicas = 1, nodeTimeoutMs = NODE_TIMEOUT_MS } = setup;
  const total = primaries * (1 + replicas);
  const nodes = await startNodes(total, nodeTimeoutMs);
  const cluster = new RedisCluster(nodes, nodeTimeoutMs);
  try {
    await Promise.all(nodes.map((n) => n.identify()));
    // Distinct config epochs, as redis-cli gives them: no collisions to resolve later.
    await Promise.all(nodes.map((n, i) => n.admin.call('CLUSTER', 'SET-CONFIG-EPOCH', String(i + 1))));
    await Promise.all(
      nodes.slice(0, primaries).map((n, i) => {
        const first = Math.floor((i * SLOTS) / primaries);
        const last = Math.floor(((i + 1) * SLOTS) / primaries) - 1;
        return n.admin.call('CLUSTER', 'ADDSLOTSRANGE', String(first), String(last));
      }),
    );
    // Every pair meets directly: learning of each other through gossip takes a second.
    await Promise.all(nodes.flatMap((n, i) => nodes.slice(0, i).map((other) => meet(n, other))));
    // A replica can follow a primary only once it knows it.
    await Promise.all(
      nodes.slice(primaries).map(async (replica, i) => {
        const primary = nodes[i % primaries] as ClusterNode;
        await until(`${replica.address} knows ${primary.address}`, async () =>
          parseNodes((await replica.admin.call('CLUSTER', 'NODES')) as string).some((e) => e.id === primary.id && !e.flags.includes('handshake'))
            ? true
            : undefined,
        );
        await replica.admin.call('CLUSTER', 'REPLICATE', primary.id);
      }),
    );
    await cluster.settled();
    return cluster;
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}
