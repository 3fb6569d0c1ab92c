/**
 * What the cluster and the sentinel topologies share: a node (a server process of our own
 * with an admin connection and its faults), polling, and a primary's death: killed with or
 * without losing writes, and its replica's promotion timed.
 */
import type { Redis } from 'ioredis';
import { sleep, wallMs } from './clock.js';
import { type ServerOptions, type ServerProcess, disposeRedis, startServer } from './redis-server.js';

/** Server options of every primary and replica of a topology. */
export const DATA_NODE_ARGS = [
  // A replica syncs at once instead of after the default 5 s wait for more replicas.
  '--repl-diskless-sync-delay', '0',
];

/**
 * Polls `probe` every `intervalMs` until it returns something other than undefined, and
 * returns that. A probe that throws counts as "not yet" (a node may be down or loading).
 * On timeout the error names `what`, the probe's last error and `diagnose()`'s text.
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  options: { timeoutMs?: number; intervalMs?: number; diagnose?: () => string } = {},
): Promise<T> {
  const { timeoutMs = 30_000, intervalMs = 20 } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const last = lastError === undefined ? '' : ` (last error: ${String(lastError)})`;
      const diagnosis = options.diagnose ? `\n${options.diagnose()}` : '';
      throw new Error(`${what}: not within ${timeoutMs} ms${last}${diagnosis}`);
    }
    await sleep(intervalMs);
  }
}

/** Starts a server per entry of `options`, in parallel; if one fails, the others are disposed of. */
export async function startNodes<N extends TopologyNode>(options: ServerOptions[], make: (server: ServerProcess) => N): Promise<N[]> {
  const started = await Promise.allSettled(options.map((o) => startServer(o)));
  const failed = started.find((s) => s.status === 'rejected');
  if (!failed) return started.map((s) => make((s as PromiseFulfilledResult<ServerProcess>).value));
  await Promise.all(started.map((s) => (s.status === 'fulfilled' ? disposeRedis(s.value) : undefined)));
  throw failed.reason;
}

/** The `name:value` lines of an INFO reply. */
export function infoFields(info: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of info.split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) fields.set(line.slice(0, at), line.slice(at + 1));
  }
  return fields;
}

/** A failover as harness/cluster.ts and harness/sentinel.ts observe it; times are wallMs() (harness/clock.ts). */
export interface Failover<N extends TopologyNode> {
  /** When the primary was killed (SIGKILL returned). */
  readonly killedAt: number;
  /** When the replica was first seen as primary (ROLE polled every few ms). */
  readonly promotedAt: number;
  /** How long before promotedAt it was last seen as a replica: the promotion happened in between. */
  readonly promotedWithinMs: number;
  /** The node that is primary now (the replica). */
  readonly primary: N;
}

export interface FailoverOptions {
  /**
   * Writes that the failover must lose: run on the primary after its replica was cut off
   * from it, just before the kill (killPrimary).
   */
  losing?: () => Promise<void>;
  /** Whether to return only once the topology settled around the new primary (default true). */
  settle?: boolean;
  /** How long to wait for the promotion, and then for the topology to settle (default 30 s each). */
  timeoutMs?: number;
}

/** One server of a topology: its process, an admin connection to it alone, and its faults. */
export class TopologyNode {
  /** A plain connection to this server alone (no redirects followed), for admin commands and assertions. */
  readonly admin: Redis;
  private paused = false;

  constructor(readonly server: ServerProcess) {
    // Reconnects within 100 ms of a restart, however long the server was down (ioredis's
    // default backs off to 2 s).
    this.admin = server.client({ retryStrategy: (times) => Math.min(times * 10, 100) });
  }

  get host(): string {
    return this.server.host;
  }

  get port(): number {
    return this.server.port;
  }

  get url(): string {
    return this.server.url;
  }

  /** host:port, as servers and sentinels name it. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** Running and not paused: it answers. */
  get alive(): boolean {
    return this.server.running && !this.paused;
  }

  /** SIGKILL; resolves when the process is gone. Its dir (nodes.conf, sentinel.conf) stays for restart(). */
  async kill(): Promise<void> {
    this.paused = false;
    await this.server.stop({ kill: true });
  }

  /** SIGSTOP: the process holds its sockets and answers nothing until resume(). */
  pause(): void {
    this.server.pause();
    this.paused = this.server.running;
  }

  /** SIGCONT. */
  resume(): void {
    this.server.resume();
    this.paused = false;
  }

  /** Starts it again (killed first if it runs) on the same port, with no data but its config files. */
  async restart(): Promise<void> {
    this.paused = false;
    await this.server.restart();
  }

  /** The fields of `INFO <section>`. */
  async info(section: string): Promise<Map<string, string>> {
    return infoFields(await this.admin.info(section));
  }

  /** The last lines of its log, for failure messages. */
  logTail(lines = 15): string {
    const tail = this.server.log().trimEnd().split('\n').slice(-lines);
    return `--- ${this.address} ---\n${tail.join('\n')}`;
  }
}

/**
 * Waits until `node` answers ROLE as a primary, asking every few milliseconds on a
 * connection of its own. Returns the wall-clock time (harness/clock.ts wallMs) of the
 * first answer that said so, and how long before it the last answer that did not came:
 * the promotion happened in between.
 */
export async function promotion(node: TopologyNode, timeoutMs: number, diagnose: () => string): Promise<{ at: number; withinMs: number }> {
  // Sentinel's promotion kills every normal connection (REPLICAOF NO ONE, then CLIENT KILL
  // TYPE normal): reconnect at once, so that the promotion is seen within milliseconds.
  const probe = node.server.client({ maxRetriesPerRequest: 0, commandTimeout: 1000, retryStrategy: () => 1, connectionName: 'harness:promotion' });
  let lastNo = wallMs();
  try {
    return await until(
      `${node.address} promoted to primary`,
      async () => {
        const [role] = (await probe.call('ROLE')) as [string];
        const now = wallMs();
        if (role === 'master') return { at: now, withinMs: now - lastNo };
        lastNo = now;
        return undefined;
      },
      { timeoutMs, intervalMs: 2, diagnose },
    );
  } finally {
    probe.disconnect();
  }
}

/**
 * Waits until `replica` has applied everything `primary` had written when called. A
 * replica can lag by milliseconds even on loopback, and what it has not read when the
 * primary is killed is lost: measured (Sentinel, Redis 7.0, a loaded machine), a write
 * acknowledged a few milliseconds before the SIGKILL was missing after the failover in
 * 4 runs of 6.
 */
export async function caughtUp(primary: TopologyNode, replica: TopologyNode): Promise<void> {
  const written = Number((await primary.info('replication')).get('master_repl_offset'));
  await until(`${replica.address} caught up with ${primary.address}`, async () =>
    Number((await replica.info('replication')).get('slave_repl_offset')) >= written ? true : undefined,
  );
}

/**
 * Kills `primary` (SIGKILL) and returns the wall-clock time of the kill. First `replica`
 * catches up with it, so that the failover loses nothing but, with `losing`, what
 * `losing` writes: the replica is paused (SIGSTOP), the primary drops its replication
 * connection (so that the writes do not wait in the replica's socket, as they would with
 * a pause alone), `losing` runs, the primary is killed, and the replica resumes with its
 * link to a dead primary.
 */
export async function killPrimary(primary: TopologyNode, replica: TopologyNode, losing?: () => Promise<void>): Promise<number> {
  await caughtUp(primary, replica);
  if (!losing) {
    await primary.kill();
    return wallMs();
  }
  replica.pause();
  try {
    await primary.admin.call('CLIENT', 'KILL', 'TYPE', 'replica');
    await until(`${primary.address} without replicas`, async () =>
      (await primary.info('replication')).get('connected_slaves') === '0' ? true : undefined,
    );
    await losing();
    await primary.kill();
    return wallMs();
  } finally {
    replica.resume();
  }
}
