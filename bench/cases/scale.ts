/**
 * Scale: N idle breakers in one process on one application client. Reports the Redis
 * connections the process holds (CLIENT LIST, the application's own client included), the
 * client heap per idle breaker (after GC, connections and all), the time to start N at
 * once, the Redis CPU an idle breaker costs per second (Redis's user + system CPU while
 * the N idle breakers run, less the same reading without them, over N and the seconds),
 * and the Redis memory per breaker (MEMORY USAGE over its keys, default retention). Also
 * the size of one audit entry. Measures the compiled library (dist/), as an application
 * runs it. Run with --expose-gc.
 *   node --expose-gc --import tsx bench/cases/scale.ts [breakers=100]
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { CircuitBreaker, ConsecutiveBreaker, ConstantBackoff, breakerKeys } from '../library.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { sleep } from '../../harness/clock.js';
import { disposeRedis, startRedis } from '../../harness/redis-server.js';
import { args, median, quick, report } from '../measure.js';

const count = Number(args[0] ?? 100);
/** How long the idle breakers' Redis CPU is read over, in ms. */
const IDLE_WINDOW_MS = quick ? 2000 : 5000;
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

/** Redis's own CPU time so far (user + system), in µs. */
async function redisCpuMicros(): Promise<number> {
  const info = await admin.info('cpu');
  const seconds = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6;
}

/** Redis's CPU per second over IDLE_WINDOW_MS, in µs per second. */
async function redisCpuRate(): Promise<number> {
  const cpuBefore = await redisCpuMicros();
  const before = performance.now();
  await sleep(IDLE_WINDOW_MS);
  const cpuAfter = await redisCpuMicros();
  return (cpuAfter - cpuBefore) / ((performance.now() - before) / 1000);
}
await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
const redis = new Redis(server.url, { connectionName: 'application' });
await redis.ping();
// What the application passes is shared by its breakers, as it usually is: the figure is
// what the library adds per breaker (with the id string the application gives it).
const strategy = new ConsecutiveBreaker({ threshold: 5 });
const health = { backoff: new ConstantBackoff({ delayMs: 1000 }), check: async () => undefined };
const onError = () => undefined;
// The default lease: an idle breaker holds none (it has no duty), so its length changes nothing here.
const options = (id: string) => ({ id, redis, breaker: strategy, health, onError });

// Breakers first that are not measured, so that what a process pays once (connections,
// the feed, code compiled on the way) is not charged to the idle breakers measured next.
// With a single breaker there is no per-breaker heap to speak of (GC noise is larger):
// only its connections and Redis memory are measured.
const warmUp = Array.from({ length: count >= 100 ? 200 : 0 }, () => new CircuitBreaker(options(`bench-${randomUUID()}`)));
await Promise.all(warmUp.map((b) => b.start()));
await sleep(1500);
// What Redis spends with no breaker of the round running: its own housekeeping.
const baselineCpu = await redisCpuRate();
// Rounds: start `count` breakers, measure, stop them; the median round counts.
const ROUNDS = 5;
const perBreaker: number[] = [];
const startMs: number[] = [];
const cpuPerBreakerSecond: number[] = [];
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
  const startedAt = performance.now();
  await Promise.all(breakers.map((b) => b.start()));
  startMs.push(performance.now() - startedAt);
  // Let whatever follows a start settle.
  await sleep(1500);
  perBreaker.push(((await settledHeap()) - heapBefore) / count);
  if (round === 0 || !quick) cpuPerBreakerSecond.push((await redisCpuRate()) - baselineCpu);
}

const names = ((await admin.client('LIST')) as string)
  .trim()
  .split('\n')
  .map((line) => /name=(\S*)/.exec(line)?.[1] ?? '')
  .filter((name) => name !== 'bench-admin');

// An idle breaker that never recorded a call has nothing in Redis; one that recorded a
// call (a failure, below its threshold) has its state hash: that is what is measured.
let redisBytes = 0;
const sample = ids.slice(0, 200);
await Promise.all(
  breakers.slice(0, sample.length).map((b) => b.execute(() => Promise.reject(new Error('failed'))).catch(() => undefined)),
);
await sleep(200);
for (const id of sample) {
  const keys = breakerKeys('zenvark', id);
  for (const key of [keys.state, keys.events]) redisBytes += Number((await admin.memory('USAGE', key)) ?? 0);
}

// One audit entry: 1,000 transitions of one breaker (the default retention), MEMORY USAGE of
// its stream per entry. Redis packs a stream's entries in blocks that share their field
// names, so the figure falls with the number of entries (about 147 bytes at 100).
const auditId = `bench-${randomUUID()}`;
const auditKeys = breakerKeys('zenvark', auditId);
for (let gen = 0; gen < 1000; gen += 1) {
  await admin.call('FCALL', 'zv1_record', '2', auditKeys.state, auditKeys.events, 'zenvark:feed', 'bench', '1000', String(gen), '0', '1', '0', '0', '1', '1', '1', 'consecutive:1:0:0');
  await admin.call('FCALL', 'zv1_acquire', '2', auditKeys.state, auditKeys.events, 'zenvark:feed', 'bench', '1000', '60000');
  const token = await admin.hget(auditKeys.state, 'lt');
  await admin.call('FCALL', 'zv1_health', '2', auditKeys.state, auditKeys.events, 'zenvark:feed', 'bench', '1000', String(token), String(gen + 1), 'recovery', 'success');
  gen += 1;
}
const entries = await admin.xlen(auditKeys.events);
const streamBytes = Number((await admin.memory('USAGE', auditKeys.events, 'SAMPLES', '0')) ?? 0);

await Promise.all([...warmUp, ...breakers].map((b) => b.stop()));
// Nothing of the library is left once every breaker stopped: no connection of its own.
const leftAfterStop = ((await admin.client('LIST')) as string).split('\n').filter((line) => /name=zenvark:/.test(line)).length;
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
  {
    name: `start-up of ${count} breakers`,
    subject: 'zenvark',
    value: median(startMs),
    min: Math.min(...startMs),
    unit: 'ms',
    note: `all started at once on one client; ${startMs.length} round(s): ${startMs.map((m) => m.toFixed(0)).join(', ')}`,
  },
  {
    name: `Redis CPU per idle breaker-second (${count})`,
    subject: 'zenvark',
    value: median(cpuPerBreakerSecond) / count,
    unit: 'µs',
    note: `Redis CPU over ${IDLE_WINDOW_MS / 1000} s with the breakers idle, less ${baselineCpu.toFixed(0)} µs/s without them; ${cpuPerBreakerSecond.length} reading(s)`,
  },
  {
    name: `Redis memory per idle breaker (${count})`,
    subject: 'zenvark',
    value: redisBytes / sample.length,
    unit: 'bytes',
    note: 'a breaker that has recorded a call (one that never did has nothing in Redis)',
  },
  { name: `library connections left after stop (${count})`, subject: 'zenvark', value: leftAfterStop, unit: 'connections' },
  { name: 'Redis memory per audit entry', subject: 'zenvark', value: streamBytes / entries, unit: 'bytes', note: `${entries} entries: ${streamBytes} bytes` },
]);
