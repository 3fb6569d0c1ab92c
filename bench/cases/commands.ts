/**
 * Redis commands per call: one instance at a steady rate (default 10,000 calls/s) with 1%
 * failures, counted from INFO commandstats deltas: every command the instance sent, lease
 * and feed included. INFO commandstats also counts the commands a function runs inside
 * Redis (TIME, HMGET, HSET, ...); those are not sent by anyone and are left out.
 * With `zenvark`, also the server cost: usec_per_call of FCALL (nearly all zv1_record)
 * under that load, and back to back (the median of 7 rounds, 3 with --quick), and an
 * empty FCALL at the same pace for scale. With `stream`, the per-call stream baseline.
 * Three repetitions (one with --quick), each with a fresh breaker.
 *   npx tsx bench/cases/commands.ts <zenvark|stream> [seconds=10] [callsPerSecond=10000]
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { sleep } from '../../harness/clock.js';
import { disposeRedis, startRedis } from '../../harness/redis-server.js';
import { StreamPerCallBreaker } from '../baselines/stream-per-call.js';
import { CircuitBreaker, ConstantBackoff, CountBreaker } from '../library.js';
import { type Figure, args, median, quick, report } from '../measure.js';

const [subject = 'zenvark', secondsArg = '10', rateArg = '10000'] = args;
const seconds = Number(secondsArg);
const rate = Number(rateArg);
const repetitions = quick ? 1 : 3;
const backToBackRounds = quick ? 3 : 7;

const server = await startRedis();
const admin = server.client();
await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
const redis = new Redis(server.url);
const failure = new Error('dependency failed');

// The commands the function library calls inside Redis.
const librarySource = readFileSync(new URL('../../lua/zenvark_v1.lua', import.meta.url), 'utf8');
const inner = new Set([...librarySource.matchAll(/(?:call|pcall_redis)\('([A-Z]+)'/g)].map((m) => (m[1] as string).toLowerCase()));

type Counts = Map<string, { calls: number; usec: number }>;

async function commandCounts(): Promise<Counts> {
  const counts: Counts = new Map();
  for (const m of (await admin.info('commandstats')).matchAll(/cmdstat_([^:]+):calls=(\d+),usec=(\d+)/g)) {
    counts.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return counts;
}

const delta = (before: Counts, after: Counts, name: string, field: 'calls' | 'usec') =>
  (after.get(name)?.[field] ?? 0) - (before.get(name)?.[field] ?? 0);

async function subjectUnderTest(): Promise<{ execute: (fn: () => Promise<unknown>) => Promise<unknown>; close: () => Promise<void> }> {
  if (subject === 'zenvark') {
    const breaker = new CircuitBreaker({
      id: `bench-${randomUUID()}`,
      redis,
      breaker: new CountBreaker({ threshold: 0.5, size: 100 }),
      health: { backoff: new ConstantBackoff({ delayMs: 1000 }), check: async () => undefined },
      onError: () => undefined,
    });
    await breaker.start();
    return { execute: (fn) => breaker.execute(fn), close: () => breaker.stop() };
  }
  const reader = new Redis(server.url);
  const baseline = new StreamPerCallBreaker(redis, reader, `bench-stream-${randomUUID()}`, 5);
  baseline.start();
  return { execute: (fn) => baseline.execute(fn), close: () => baseline.stop() };
}

/** One steady run: commands per call, and FCALL calls and server time. */
async function steadyRun(): Promise<{ perCall: number; issued: number; commands: number; fcalls: number; fcallUsec: number; elapsedS: number }> {
  const { execute, close } = await subjectUnderTest();
  // Let start-up traffic settle, then count only the steady run.
  await sleep(500);
  const before = await commandCounts();
  let issued = 0;
  const startedAt = performance.now();
  while (performance.now() - startedAt < seconds * 1000) {
    const due = Math.floor(((performance.now() - startedAt) / 1000) * rate);
    const batch: Promise<unknown>[] = [];
    for (; issued < due; issued += 1) {
      const fails = issued % 100 === 99;
      batch.push(execute(fails ? () => Promise.reject(failure) : async () => 1).catch(() => undefined));
    }
    await Promise.all(batch);
    await sleep(5);
  }
  const elapsedS = (performance.now() - startedAt) / 1000;
  // Successes wait up to 1 s to be sent.
  await sleep(1500);
  const after = await commandCounts();
  await close();
  let commands = 0;
  for (const name of after.keys()) {
    if (name === 'info' || (subject === 'zenvark' && inner.has(name))) continue;
    commands += delta(before, after, name, 'calls');
  }
  return {
    perCall: commands / issued,
    issued,
    commands,
    fcalls: delta(before, after, 'fcall', 'calls'),
    fcallUsec: delta(before, after, 'fcall', 'usec'),
    elapsedS,
  };
}

const runs = [];
for (let rep = 0; rep < repetitions; rep += 1) runs.push(await steadyRun());
const perCall = runs.map((r) => r.perCall);
const last = runs.at(-1) as (typeof runs)[number];
const label = subject === 'zenvark' ? 'zenvark' : 'per-call stream baseline';
const figures: Figure[] = [
  {
    name: 'Redis commands per call',
    subject: label,
    value: median(perCall),
    min: Math.min(...perCall),
    unit: 'commands/call',
    note: `${repetitions} runs of ${seconds} s at ${Math.round(last.issued / last.elapsedS)} calls/s; last: ${last.issued} calls, ${last.commands} commands`,
  },
];

if (subject === 'zenvark') {
  const perFcall = runs.map((r) => r.fcallUsec / r.fcalls);
  figures.push({
    name: 'server cost of zv1_record',
    subject: label,
    value: median(perFcall),
    min: Math.min(...perFcall),
    unit: 'µs/call',
    note: `usec_per_call of FCALL under this load (${last.fcalls} calls in the last run)`,
  });

  // The record function back to back (pipelined), where Redis stays warm: the figure the
  // target is held to. A round is 20,000 calls into a fresh breaker (a CountBreaker window
  // of 100, summaries of 99 successes and 1 failure); the median of the rounds, after a
  // warm-up round of 1,000, so that one round slowed by other work on the machine does not
  // decide it.
  // With `rule`, the calls carry an instance rule (minimumInstances 2) and come from 8
  // reporters in turn: what the rule adds to a record that trips nothing (the reporter's
  // entry read and written, the position counter).
  const backToBack = async (calls: number, rule = false): Promise<number> => {
    const id = `bench-sat-${randomUUID()}`;
    const keys = [`zenvark:{${id}}:state`, `zenvark:{${id}}:events`, ...(rule ? [`zenvark:{${id}}:instances`] : [])];
    const before = await commandCounts();
    for (let sent = 0; sent < calls; sent += 1000) {
      const pipeline = admin.pipeline();
      for (let n = 0; n < Math.min(1000, calls - sent); n += 1) {
        const actor = rule ? `bench-${n % 8}` : 'bench';
        const args = ['zenvark:feed', actor, '1000', '0', '99', '1', '0', '0', '0', '1', '1', 'count:0.5:100:100', ...(rule ? ['0', '2:0'] : [])];
        pipeline.call('FCALL', 'zv1_record', String(keys.length), ...keys, ...args);
      }
      for (const [error, reply] of (await pipeline.exec()) ?? []) {
        // A refused call costs less: the figure would not be the record path's.
        if (error || (reply as unknown[])[0] !== 'ok') throw new Error(`zv1_record answered ${String(error ?? reply)}`);
      }
    }
    const after = await commandCounts();
    return delta(before, after, 'fcall', 'usec') / delta(before, after, 'fcall', 'calls');
  };
  await backToBack(1000);
  const rounds: number[] = [];
  for (let round = 0; round < backToBackRounds; round += 1) rounds.push(await backToBack(20_000));
  figures.push({
    name: 'server cost of zv1_record, back to back',
    subject: label,
    value: median(rounds),
    min: Math.min(...rounds),
    unit: 'µs/call',
    note: `${rounds.length} rounds of 20,000 calls pipelined (Redis stays warm): ${rounds.map((r) => r.toFixed(1)).join(', ')}`,
  });
  const ruleRounds: number[] = [];
  for (let round = 0; round < backToBackRounds; round += 1) ruleRounds.push(await backToBack(20_000, true));
  figures.push({
    name: 'server cost of zv1_record with an instance rule, back to back',
    subject: label,
    value: median(ruleRounds),
    min: Math.min(...ruleRounds),
    unit: 'µs/call',
    note: `as above, from 8 reporters with minimumInstances 2 (no target): ${ruleRounds.map((r) => r.toFixed(1)).join(', ')}`,
  });

  // For scale: an FCALL of a function that does nothing, at the pace of the record calls.
  await admin.call('FUNCTION', 'LOAD', 'REPLACE', "#!lua name=zenvark_bench\nredis.register_function('zvb_noop', function() return 1 end)");
  const floorBefore = await commandCounts();
  for (let n = 0; n < 100; n += 1) {
    await admin.call('FCALL', 'zvb_noop', '0');
    await sleep(10);
  }
  const floorAfter = await commandCounts();
  figures.push({
    name: 'server cost of an empty FCALL, same pace',
    subject: 'Redis (for scale)',
    value: delta(floorBefore, floorAfter, 'fcall', 'usec') / delta(floorBefore, floorAfter, 'fcall', 'calls'),
    unit: 'µs/call',
    note: 'a function that returns 1, called every 10 ms: the floor on this machine',
  });
}

redis.disconnect();
admin.disconnect();
await disposeRedis(server);
report('commands', figures);
