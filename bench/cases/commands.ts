/**
 * Redis commands per call: one instance at a steady rate (default 10,000 calls/s) with 1%
 * failures, counted from INFO commandstats deltas: every command the instance sent, lease
 * and feed included. INFO commandstats also counts the commands a function runs inside
 * Redis (TIME, HMGET, HSET, ...); those are not sent by anyone and are left out. With `zenvark`, also the server cost: usec_per_call of FCALL
 * (nearly all zv1_record) under that load. With `stream`, the per-call stream baseline.
 *   npx tsx bench/cases/commands.ts <zenvark|stream> [seconds=10] [callsPerSecond=10000]
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { CircuitBreaker, ConstantBackoff, CountBreaker } from '../library.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { disposeRedis, startRedis } from '../../test/support/redis.js';
import { StreamPerCallBreaker } from '../baselines/stream-per-call.js';
import { args, report } from '../measure.js';

const [subject = 'zenvark', secondsArg = '10', rateArg = '10000'] = args;
const seconds = Number(secondsArg);
const rate = Number(rateArg);

const server = await startRedis();
const admin = server.client();
await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
const redis = new Redis(server.url);

const failure = new Error('dependency failed');
let execute: (fn: () => Promise<unknown>) => Promise<unknown>;
let close: () => Promise<void>;
if (subject === 'zenvark') {
  const breaker = new CircuitBreaker({
    id: `bench-${randomUUID()}`,
    redis,
    breaker: new CountBreaker({ threshold: 0.5, size: 100 }),
    health: { backoff: new ConstantBackoff({ delayMs: 1000 }), check: async () => undefined },
    onError: () => undefined,
  });
  await breaker.start();
  execute = (fn) => breaker.execute(fn);
  close = () => breaker.stop();
} else {
  const reader = new Redis(server.url);
  const baseline = new StreamPerCallBreaker(redis, reader, `bench-stream-${randomUUID()}`, 5);
  baseline.start();
  execute = (fn) => baseline.execute(fn);
  close = () => baseline.stop();
}

async function commandCounts(): Promise<Map<string, { calls: number; usec: number }>> {
  const counts = new Map<string, { calls: number; usec: number }>();
  for (const m of (await admin.info('commandstats')).matchAll(/cmdstat_([^:]+):calls=(\d+),usec=(\d+)/g)) {
    counts.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return counts;
}

// Let start-up traffic settle, then count only the steady run.
await new Promise((r) => setTimeout(r, 500));
const before = await commandCounts();
let issued = 0;
const startedAt = performance.now();
const durationMs = seconds * 1000;
while (performance.now() - startedAt < durationMs) {
  const due = Math.floor(((performance.now() - startedAt) / 1000) * rate);
  const batch: Promise<unknown>[] = [];
  for (; issued < due; issued += 1) {
    const fails = issued % 100 === 99;
    batch.push(execute(fails ? () => Promise.reject(failure) : async () => 1).catch(() => undefined));
  }
  await Promise.all(batch);
  await new Promise((r) => setTimeout(r, 5));
}
const elapsedS = (performance.now() - startedAt) / 1000;
// Successes wait up to 1 s to be sent.
await new Promise((r) => setTimeout(r, 1500));
const after = await commandCounts();
await close();

// For scale: what an FCALL of a function that does nothing costs on this server, called
// at the same pace as the record calls above (one every ~10 ms).
let floorUsec = Number.NaN;
let saturatedUsec = Number.NaN;
if (subject === 'zenvark') {
  // The record function back to back (pipelined), where Redis stays warm.
  const id = `bench-sat-${randomUUID()}`;
  const state = `zenvark:{${id}}:state`;
  const events = `zenvark:{${id}}:events`;
  const satStart = await commandCounts();
  for (let batch = 0; batch < 20; batch += 1) {
    const pipeline = admin.pipeline();
    for (let n = 0; n < 1000; n += 1) {
      pipeline.call('FCALL', 'zv1_record', '2', state, events, 'zenvark:feed', 'bench', '1000', '0', '99', '1', '0', '0', '0', '1', '1', 'count:0.5:100:100');
    }
    await pipeline.exec();
  }
  const satEnd = await commandCounts();
  saturatedUsec =
    ((satEnd.get('fcall')?.usec ?? 0) - (satStart.get('fcall')?.usec ?? 0)) /
    ((satEnd.get('fcall')?.calls ?? 0) - (satStart.get('fcall')?.calls ?? 0));

  await admin.call('FUNCTION', 'LOAD', 'REPLACE', "#!lua name=zenvark_bench\nredis.register_function('zvb_noop', function() return 1 end)");
  const paced = Math.max(20, Math.min(200, Math.round((after.get('fcall')?.calls ?? 0) - (before.get('fcall')?.calls ?? 0))));
  const start = await commandCounts();
  for (let n = 0; n < paced; n += 1) {
    await admin.call('FCALL', 'zvb_noop', '0');
    await new Promise((r) => setTimeout(r, 10));
  }
  const end = await commandCounts();
  floorUsec = ((end.get('fcall')?.usec ?? 0) - (start.get('fcall')?.usec ?? 0)) / ((end.get('fcall')?.calls ?? 0) - (start.get('fcall')?.calls ?? 0));
}
redis.disconnect();
admin.disconnect();
await disposeRedis(server);

// The commands the function library calls inside Redis.
const librarySource = readFileSync(new URL('../../lua/zenvark_v1.lua', import.meta.url), 'utf8');
const inner = new Set([...librarySource.matchAll(/(?:call|pcall_redis)\('([A-Z]+)'/g)].map((m) => (m[1] as string).toLowerCase()));
let commands = 0;
for (const [name, now] of after) {
  if (name === 'info' || (subject === 'zenvark' && inner.has(name))) continue;
  commands += now.calls - (before.get(name)?.calls ?? 0);
}
const fcallCalls = (after.get('fcall')?.calls ?? 0) - (before.get('fcall')?.calls ?? 0);
const fcallUsec = (after.get('fcall')?.usec ?? 0) - (before.get('fcall')?.usec ?? 0);
const label = subject === 'zenvark' ? 'zenvark' : 'per-call stream baseline';
const figures = [
  {
    name: 'Redis commands per call',
    subject: label,
    value: commands / issued,
    unit: 'commands/call',
    note: `${issued} calls in ${elapsedS.toFixed(1)} s (${Math.round(issued / elapsedS)}/s), ${commands} commands`,
  },
];
if (subject === 'zenvark') {
  figures.push({
    name: 'server cost of zv1_record',
    subject: label,
    value: fcallUsec / fcallCalls,
    unit: 'µs/call',
    note: `usec_per_call of ${fcallCalls} FCALLs under this load`,
  });
  figures.push({
    name: 'server cost of zv1_record, back to back',
    subject: 'zenvark',
    value: saturatedUsec,
    unit: 'µs/call',
    note: '20,000 calls pipelined: Redis stays warm',
  });
  figures.push({
    name: 'server cost of an empty FCALL, same pace',
    subject: 'Redis (for scale)',
    value: floorUsec,
    unit: 'µs/call',
    note: 'a function that returns 1, called every 10 ms: the floor on this machine',
  });
}
if (process.env.BENCH_DEBUG) console.error([...after].map(([n, v]) => `${n}: ${v.calls - (before.get(n)?.calls ?? 0)} calls, ${v.usec - (before.get(n)?.usec ?? 0)} usec`).join("\n"));
report("commands", figures);
