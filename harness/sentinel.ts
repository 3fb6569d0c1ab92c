/**
 * A primary, its replica and three sentinels of our own, each a process from
 * SERVER_BINARY (harness/redis-server.ts; the binary runs as a sentinel with
 * `--sentinel`) on free loopback ports. Which server is primary is always asked of the
 * sentinels or the servers, never remembered.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { wallMs } from './clock.js';
import { type ServerProcess, disposeRedis } from './redis-server.js';
import { DATA_NODE_ARGS, type Failover, type FailoverOptions, TopologyNode, killPrimary, promotion, startNodes, until } from './topology.js';

/** The name the sentinels monitor the primary under. */
export const MASTER_NAME = 'zenvark';
/**
 * How long a server may not answer before a sentinel holds it down, in ms; a failover
 * starts a second or two later.
 */
export const DOWN_AFTER_MS = 1000;
/**
 * Sentinel's failover-timeout, in ms: a failover that has not promoted the replica by
 * then is given up, and a failover that did not happen (no votes, no replica fit to
 * promote) is tried again only after twice this time. A completed failover does not delay
 * the next one (measured: a second failover 3.5 s after the first took as long).
 */
export const FAILOVER_TIMEOUT_MS = 3000;

function sentinelConfig(primary: TopologyNode, setup: Required<SentinelSetup>): string {
  return [
    `sentinel monitor ${MASTER_NAME} ${primary.host} ${primary.port} 2`,
    `sentinel down-after-milliseconds ${MASTER_NAME} ${setup.downAfterMs}`,
    `sentinel failover-timeout ${MASTER_NAME} ${setup.failoverTimeoutMs}`,
    `sentinel parallel-syncs ${MASTER_NAME} 1`,
    '',
  ].join('\n');
}

/** A sentinel failover; times are wallMs() (harness/clock.ts). */
export interface SentinelFailover extends Failover<TopologyNode> {
  /** When the first sentinel announced `+switch-master`. */
  readonly switchedAt: number;
}

/** A sentinel's reply of alternating names and values, as a map. */
function fields(reply: string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < reply.length; i += 2) map.set(reply[i] as string, reply[i + 1] as string);
  return map;
}

export class RedisSentinel {
  readonly name = MASTER_NAME;
  private readonly clients: Redis[] = [];

  constructor(
    /** The primary and the replica, in start order (the first started as primary). */
    readonly servers: readonly TopologyNode[],
    readonly sentinels: readonly TopologyNode[],
  ) {}

  /** Where a client finds the primary: `new Redis({ sentinels, name })`. */
  get sentinelAddresses(): { host: string; port: number }[] {
    return this.sentinels.map((s) => ({ host: s.host, port: s.port }));
  }

  /** An application client that finds the primary through the sentinels; closed by stop(). */
  client(options: Partial<RedisOptions> = {}): Redis {
    const client = new Redis({ sentinels: this.sentinelAddresses, name: this.name, ...options });
    client.on('error', () => {});
    this.clients.push(client);
    return client;
  }

  private get liveSentinels(): TopologyNode[] {
    return this.sentinels.filter((s) => s.alive);
  }

  private server(address: string): TopologyNode {
    const server = this.servers.find((s) => s.address === address);
    if (!server) throw new Error(`the sentinels name ${address}, which is not one of ours`);
    return server;
  }

  /** The primary as a live sentinel reports it. */
  async primary(): Promise<TopologyNode> {
    const sentinel = this.liveSentinels[0];
    if (!sentinel) throw new Error('no sentinel is alive');
    const [host, port] = (await sentinel.admin.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.name)) as [string, string];
    return this.server(`${host}:${port}`);
  }

  /** The replica connected to the primary, as the primary reports it. */
  async replica(): Promise<TopologyNode> {
    const primary = await this.primary();
    const replica = /slave0:ip=([^,]+),port=(\d+)/.exec(await primary.admin.info('replication'));
    if (!replica) throw new Error(`${primary.address} has no replica`);
    return this.server(`${replica[1]}:${replica[2]}`);
  }

  /** The last lines of every process's log. */
  private diagnose = (): string => [...this.servers, ...this.sentinels].map((n) => n.logTail()).join('\n');

  /**
   * Waits until every live sentinel names the same primary, that server says it is
   * primary, every other live server is its replica with its link up, and every live
   * sentinel knows the other sentinels and sees each live replica as healthy (so that
   * the next failover can pick it).
   */
  async settled(timeoutMs = 30_000): Promise<void> {
    await until(
      'the sentinel topology settled',
      async () => {
        const named = new Set<string>();
        // "<sentinel port> <replica address>" for each replica a sentinel holds healthy.
        const replicas = new Set<string>();
        for (const sentinel of this.liveSentinels) {
          const master = fields((await sentinel.admin.call('SENTINEL', 'MASTER', this.name)) as string[]);
          if (master.get('flags') !== 'master' || Number(master.get('num-other-sentinels')) !== this.sentinels.length - 1) return undefined;
          named.add(`${master.get('ip')}:${master.get('port')}`);
          for (const entry of (await sentinel.admin.call('SENTINEL', 'REPLICAS', this.name)) as string[][]) {
            const replica = fields(entry);
            if (replica.get('flags') === 'slave') replicas.add(`${sentinel.port} ${replica.get('ip')}:${replica.get('port')}`);
          }
        }
        if (named.size !== 1) return undefined;
        const primary = this.server([...named][0] as string);
        if (!primary.alive || (await primary.info('replication')).get('role') !== 'master') return undefined;
        for (const replica of this.servers.filter((s) => s !== primary && s.alive)) {
          const replication = await replica.info('replication');
          if (replication.get('master_port') !== String(primary.port) || replication.get('master_link_status') !== 'up') return undefined;
          if (this.liveSentinels.some((s) => !replicas.has(`${s.port} ${replica.address}`))) return undefined;
        }
        return true;
      },
      { timeoutMs, diagnose: this.diagnose },
    );
  }

  /**
   * Kills the primary (SIGKILL) and waits until a sentinel announces `+switch-master`
   * (every live sentinel is subscribed before the kill), timing the replica's promotion
   * too; then, unless `settle` is false, until the topology settled.
   */
  async failover(options: FailoverOptions = {}): Promise<SentinelFailover> {
    const { settle = true, timeoutMs = 30_000 } = options;
    const primary = await this.primary();
    const replica = await this.replica();
    const subscribers = this.liveSentinels.map((s) => s.server.client({ connectionName: 'harness:switch-master' }));
    try {
      let switchedAt: number | undefined;
      let announced = '';
      for (const subscriber of subscribers) {
        subscriber.on('message', (_channel: string, message: string) => {
          if (switchedAt !== undefined) return;
          switchedAt = wallMs();
          announced = message;
        });
        await subscriber.subscribe('+switch-master');
      }
      const killedAt = await killPrimary(primary, replica, options.losing);
      const promoted = await promotion(replica, timeoutMs, this.diagnose);
      const at = await until('+switch-master', async () => switchedAt, { timeoutMs, intervalMs: 5, diagnose: this.diagnose });
      // "<name> <old ip> <old port> <new ip> <new port>"
      const [, , , host, port] = announced.split(' ');
      const now = this.server(`${host}:${port}`);
      if (now !== replica) throw new Error(`the sentinels switched to ${now.address}, not to the replica ${replica.address}`);
      if (settle) await this.settled(timeoutMs);
      return { killedAt, promotedAt: promoted.at, promotedWithinMs: promoted.withinMs, switchedAt: at, primary: now };
    } finally {
      for (const subscriber of subscribers) subscriber.disconnect();
    }
  }

  /**
   * Brings a killed server back as a replica of the current primary (restarted empty, then
   * REPLICAOF at once, so that it never serves as a second primary), and waits until the
   * topology settled.
   */
  async rejoin(server: TopologyNode): Promise<void> {
    const primary = await this.primary();
    await server.restart();
    await server.admin.call('REPLICAOF', primary.host, String(primary.port));
    await this.settled();
  }

  /** Loads a function library (FUNCTION LOAD REPLACE) on the primary, and waits until its replicas have it. */
  async loadLibrary(code: string): Promise<void> {
    const primary = await this.primary();
    await primary.admin.call('FUNCTION', 'LOAD', 'REPLACE', code);
    await primary.admin.call('WAIT', String(this.servers.filter((s) => s !== primary && s.alive).length), '10000');
  }

  /** Closes the clients and kills every process; their dirs are removed. */
  async stop(): Promise<void> {
    for (const client of this.clients.splice(0)) client.disconnect();
    await Promise.all([...this.servers, ...this.sentinels].map((n) => disposeRedis(n.server)));
  }
}

/** Sentinel's default period of hello messages, in ms, and the one used while starting. */
const PUBLISH_PERIOD_MS = 2000;
const STARTUP_PUBLISH_PERIOD_MS = 100;

async function setPublishPeriod(sentinels: TopologyNode[], ms: number): Promise<void> {
  await Promise.all(sentinels.map((s) => s.admin.call('SENTINEL', 'DEBUG', 'publish-period', String(ms))));
}

export interface SentinelSetup {
  /** down-after-milliseconds (default DOWN_AFTER_MS). */
  downAfterMs?: number;
  /** failover-timeout, in ms (default FAILOVER_TIMEOUT_MS). */
  failoverTimeoutMs?: number;
}

/** Starts the primary and its replica, then three sentinels (quorum 2), and resolves once the topology settled. */
export async function startSentinel(setup: SentinelSetup = {}): Promise<RedisSentinel> {
  const options = { downAfterMs: DOWN_AFTER_MS, failoverTimeoutMs: FAILOVER_TIMEOUT_MS, ...setup };
  const node = (server: ServerProcess) => new TopologyNode(server);
  const servers = await startNodes([{ args: DATA_NODE_ARGS }, { args: DATA_NODE_ARGS }], node);
  const sentinels: TopologyNode[] = [];
  const topology = new RedisSentinel(servers, sentinels);
  try {
    const [primary, replica] = servers as [TopologyNode, TopologyNode];
    await replica.admin.call('REPLICAOF', primary.host, String(primary.port));
    const config = sentinelConfig(primary, options);
    sentinels.push(...(await startNodes([0, 1, 2].map(() => ({ sentinel: config })), node)));
    // Sentinels find each other through hello messages, every 2 s: more often until they
    // have, then back to the default (SENTINEL DEBUG is in Redis 7.0+ and Valkey).
    await setPublishPeriod(sentinels, STARTUP_PUBLISH_PERIOD_MS);
    await topology.settled();
    await setPublishPeriod(sentinels, PUBLISH_PERIOD_MS);
    return topology;
  } catch (error) {
    await topology.stop();
    throw error;
  }
}
