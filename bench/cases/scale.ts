/**
 * Scale: N idle breakers in one process on one application client. Reports the Redis
 * connections the process holds (CLIENT LIST, the application's own client included), the
 * client heap per idle breaker (after GC, connections and all), and the Redis memory per
 * breaker (MEMORY USAGE over its keys, default retention). Also the size of one audit
 * entry. Measures the compiled library (dist/), as an application runs it. Run with
 * --expose-gc.
 *   node --expose-gc --import tsx bench/cases/scale.ts [breakers=100]
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { CircuitBreaker, ConsecutiveBreaker, ConstantBackoff, breakerKeys } from '../library.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { sleep } from '../../harness/clock.js';
import { disposeRedis, startRedis } from '../../harness/redis-server.js';
import { args, median, report } from '../measure.js';

const count = Number(args[0] ?? 100);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

/** Heap in use right after a full collection (the pauses before it let finalizers run). */
async function settledHeap(): Promise<number> {
  for (let n = 0; n < 3; n += 1) {
    await sleep(20);
    gc?.();
  }
  return process.memoryUsage().heapUsed;
}

const server = await startRedis();
const admin = server.client({ connectionName: 'bench-admin' });
await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
const redis = new Redis(server.url, { connectionName: 'application' });
await redis.ping();
// What the application passes is shared by its breakers, as it usually is: the figure is
// what the library adds per breaker (with the id string the application gives it).
const strategy = new ConsecutiveBreaker({ threshold: 5 });
const health = { backoff: new ConstantBackoff({ delayMs: 1000 }), check: async () => undefined };
const onError = () => undefined;
// A long lease keeps renewals (and their short-lived allocations) out of the heap readings;
// what an idle breaker holds does not depend on it.
const options = (id: string) => ({ id, redis, breaker: strategy, health, onError, leaseTtlMs: 60_000 });

// Breakers first that are not measured, so that what a process pays once (connections,
// the feed, code compiled on the way) is not charged to the idle breakers measured next.
// With a single breaker there is no per-breaker heap to speak of (GC noise is larger):
// only its connections and Redis memory are measured.
const warmUp = Array.from({ length: count >= 100 ? 200 : 0 }, () => new CircuitBreaker(options(`bench-${randomUUID()}`)));
await Promise.all(warmUp.map((b) => b.start()));
await sleep(1500);
// Rounds: start `count` breakers, measure, stop them; the median round counts.
const ROUNDS = 5;
const perBreaker: number[] = [];
let ids: string[] = [];
let breakers: CircuitBreaker[] = [];
for (let round = 0; round < (count >= 100 ? ROUNDS : 1); round += 1) {
  if (round > 0) {
    await Promise.all(breakers.map((b) => b.stop()));
    breakers = [];
  }
  const heapBefore = await settledHeap();
  ids = Array.from({ length: count }, () => `bench-${randomUUID()}`);
  breakers = ids.map((id) => new CircuitBreaker(options(id)));
  await Promise.all(breakers.map((b) => b.start()));
  // Every idle breaker acquires its lease and renews it: let that settle.
  await sleep(1500);
  perBreaker.push(((await settledHeap()) - heapBefore) / count);
}

const names = ((await admin.client('LIST')) as string)
  .trim()
  .split('\n')
  .map((line) => /name=(\S*)/.exec(line)?.[1] ?? '')
  .filter((name) => name !== 'bench-admin');

let redisBytes = 0;
const sample = ids.slice(0, 200);
for (const id of sample) {
  const keys = breakerKeys('zenvark', id);
  for (const key of [keys.state, keys.events]) redisBytes += Number((await admin.memory('USAGE', key)) ?? 0);
}

// One audit entry: 100 transitions of one breaker, MEMORY USAGE of its stream per entry.
const auditId = `bench-${randomUUID()}`;
const auditKeys = breakerKeys('zenvark', auditId);
for (let gen = 0; gen < 100; gen += 1) {
  await admin.call('FCALL', 'zv1_record', '2', auditKeys.state, auditKeys.events, 'zenvark:feed', 'bench', '1000', String(gen), '0', '1', '0', '0', '1', '1', '1', 'consecutive:1:0:0');
  await admin.call('FCALL', 'zv1_acquire', '2', auditKeys.state, auditKeys.events, 'zenvark:feed', 'bench', '1000', '60000');
  const token = await admin.hget(auditKeys.state, 'lt');
  await admin.call('FCALL', 'zv1_health', '2', auditKeys.state, auditKeys.events, 'zenvark:feed', 'bench', '1000', String(token), String(gen + 1), 'recovery', 'success');
  gen += 1;
}
const entries = await admin.xlen(auditKeys.events);
const streamBytes = Number((await admin.memory('USAGE', auditKeys.events, 'SAMPLES', '0')) ?? 0);

await Promise.all([...warmUp, ...breakers].map((b) => b.stop()));
redis.disconnect();
admin.disconnect();
await disposeRedis(server);

const total = count + warmUp.length;
report('scale', [
  {
    name: `connections (${count})`,
    subject: 'zenvark',
    value: names.length,
    unit: 'connections',
    note: `${total} breakers in the process: ${[...new Set(names)].join(', ')}`,
  },
  ...(count >= 100
    ? [
        {
          name: `client heap per idle breaker (${count})`,
          subject: 'zenvark',
          value: median(perBreaker),
          min: Math.min(...perBreaker),
          unit: 'bytes',
          note: `${ROUNDS} rounds: ${perBreaker.map((b) => b.toFixed(0)).join(', ')}`,
        },
      ]
    : []),
  { name: `Redis memory per idle breaker (${count})`, subject: 'zenvark', value: redisBytes / sample.length, unit: 'bytes' },
  { name: 'Redis memory per audit entry', subject: 'zenvark', value: streamBytes / entries, unit: 'bytes', note: `${entries} entries: ${streamBytes} bytes` },
]);
