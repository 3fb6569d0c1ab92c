/**
 * Failover of the server itself: on a Redis Cluster (3 primaries with a replica each) a
 * primary is killed and its replica promoted; behind Sentinel (a primary, a replica, 3
 * sentinels) the primary is killed and the sentinels promote the replica. Breakers of the
 * failed primary keep calling (failures that count but never trip); the figure is the time
 * from the promotion (Cluster) or the `+switch-master` announcement (Sentinel) to the
 * first call of each instance that reaches Redis again (it leaves degraded mode), the
 * slowest instance of each failover.
 *   npx tsx bench/cases/topology-failover.ts [repetitions=3]
 */
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { sleep, wallMs } from '../../harness/clock.js';
import { startCluster } from '../../harness/cluster.js';
import { startSentinel } from '../../harness/sentinel.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { CircuitBreaker, ConstantBackoff, CountBreaker, breakerKeys } from '../library.js';
import { args, report, summarize } from '../measure.js';

const repetitions = Number(args[0] ?? 3);
const INSTANCES = 3;
const BREAKERS = 4;

/** Counts every failure, never trips: the breakers keep calling Redis through the failover. */
const strategy = new CountBreaker({ threshold: 1, size: 10_000, minimumNumberOfCalls: 10_000 });
const health = { backoff: new ConstantBackoff({ delayMs: 1000 }), check: async () => undefined };

interface Run {
  /** When each instance's breakers reached Redis again, the last of them (wallMs()). */
  readonly restored: Promise<number[]>;
  stop(): Promise<void>;
}

/**
 * Starts BREAKERS breakers on each of INSTANCES clients and keeps them failing every 20 ms;
 * `restored` resolves once every breaker that entered degraded mode has left it.
 */
async function watch(clients: (Redis | Cluster)[], ids: string[]): Promise<Run> {
  const breakers = clients.flatMap((redis, n) =>
    ids.map((id) => new CircuitBreaker({ id, redis, breaker: strategy, health, instanceId: `bench-${n}`, onError: () => undefined })),
  );
  await Promise.all(breakers.map((b) => b.start()));
  const degraded = new Set<CircuitBreaker>();
  const times: number[] = [];
  let settle: () => void = () => undefined;
  const restored = new Promise<number[]>((resolve, reject) => {
    settle = () => resolve(times);
    setTimeout(() => reject(new Error(`${degraded.size} breakers did not reach Redis again within 60 s`)), 60_000).unref();
  });
  for (const b of breakers) {
    b.on('degradedChange', ({ degraded: now }) => {
      if (now) degraded.add(b);
      else if (degraded.delete(b)) {
        times.push(wallMs());
        if (degraded.size === 0) settle();
      }
    });
  }
  let running = true;
  const failing = () => Promise.reject(new Error('failed'));
  const loop = (async () => {
    while (running) {
      await Promise.all(breakers.map((b) => b.execute(failing).catch(() => undefined)));
      await sleep(20);
    }
  })();
  return {
    restored,
    async stop() {
      running = false;
      await loop;
      await Promise.all(breakers.map((b) => b.stop()));
    },
  };
}

/** One failover of a topology: its breakers' ids, and the failover itself, resolving to the instant to measure from. */
interface Topology {
  client(): Redis | Cluster;
  ids(): Promise<string[]>;
  failOver(): Promise<{ from: number; rejoin: () => Promise<void> }>;
}

/** `repetitions` failovers of `topology`: for each, the time from its instant to the last instance reaching Redis again. */
async function failovers(topology: Topology): Promise<number[]> {
  const results: number[] = [];
  for (let rep = 0; rep < repetitions; rep += 1) {
    const clients = Array.from({ length: INSTANCES }, () => topology.client());
    const run = await watch(clients, await topology.ids());
    const { from, rejoin } = await topology.failOver();
    const times = await run.restored;
    await run.stop();
    for (const client of clients) client.disconnect();
    results.push(Math.max(...times) - from);
    await rejoin();
  }
  return results;
}

async function onCluster(): Promise<number[]> {
  const cluster = await startCluster();
  try {
    await cluster.loadLibrary(LIBRARY_CODE);
    return await failovers({
      client: () => cluster.client(),
      async ids() {
        const [shard] = await cluster.shards();
        const ids: string[] = [];
        while (shard && ids.length < BREAKERS) {
          const id = `bench-${randomUUID()}`;
          const slot = cluster.slotOf(breakerKeys('zenvark', id).state);
          if (shard.slots.some(([first, last]) => first <= slot && slot <= last)) ids.push(id);
        }
        return ids;
      },
      async failOver() {
        const [shard] = await cluster.shards();
        if (!shard) throw new Error('the cluster has no shard');
        const failover = await cluster.failover(shard.primary, { settle: false });
        return { from: failover.promotedAt, rejoin: () => cluster.rejoin(shard.primary) };
      },
    });
  } finally {
    await cluster.stop();
  }
}

async function behindSentinel(): Promise<number[]> {
  const sentinel = await startSentinel();
  try {
    await sentinel.loadLibrary(LIBRARY_CODE);
    return await failovers({
      client: () => sentinel.client(),
      ids: async () => Array.from({ length: BREAKERS }, () => `bench-${randomUUID()}`),
      async failOver() {
        const old = await sentinel.primary();
        const failover = await sentinel.failover({ settle: false });
        return { from: failover.switchedAt, rejoin: () => sentinel.rejoin(old) };
      },
    });
  } finally {
    await sentinel.stop();
  }
}

/** The figure of one topology: the worst failover, with every one in the note. */
function figure(name: string, from: string, results: number[]) {
  const s = summarize(results);
  return {
    name,
    subject: 'zenvark',
    value: s.max,
    min: s.min,
    unit: 'ms',
    note: `${results.length} failovers (${results.map((r) => r.toFixed(0)).join(', ')} ms), ${INSTANCES} instances × ${BREAKERS} breakers of the failed primary; from ${from} to the last instance reaching Redis again`,
  };
}

const cluster = await onCluster();
const sentinel = await behindSentinel();
report('topology-failover', [
  figure('Cluster: promotion to first successful report', 'the replica promoted', cluster),
  figure('Sentinel: +switch-master to first successful report', '+switch-master', sentinel),
]);
