/**
 * Throughput under contention: `instances` breaker instances, spread over `processes`
 * processes, recording into one breaker as fast as they can. Reports the outcomes Redis
 * accepted per second and the share lost: outcomes executed but neither counted by Redis
 * nor accounted for (overflow of the bounded buffer is counted, not lost). Three
 * repetitions (one with --quick), each with a fresh breaker.
 *   npx tsx bench/cases/contention.ts [instances=50] [seconds=5] [processes=2]
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { disposeRedis, startRedis } from '../../harness/redis-server.js';
import { args, median, quick, report } from '../measure.js';

const run = promisify(execFile);
const instances = Number(args[0] ?? 50);
const seconds = Number(args[1] ?? 5);
const processes = Number(args[2] ?? 2);
const worker = fileURLToPath(new URL('./contention-worker.ts', import.meta.url));

const server = await startRedis();
const admin = server.client();
await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
const shares = Array.from({ length: processes }, (_, p) => Math.floor(instances / processes) + (p < instances % processes ? 1 : 0));

async function once(): Promise<{ accepted: number; lost: number; executed: number; overflowed: number; stale: number; undelivered: number }> {
  const id = `bench-${randomUUID()}`;
  const results = await Promise.all(
    shares.map(async (share) => {
      const config = JSON.stringify({ url: server.url, id, instances: share, seconds });
      const { stdout } = await run(process.execPath, ['--import', 'tsx', worker, config], { timeout: (seconds + 60) * 1000 });
      return JSON.parse(stdout.trim().split('\n').at(-1) as string) as Record<string, number>;
    }),
  );
  const sum = (k: string) => results.reduce((t, r) => t + (r[k] ?? 0), 0);
  const executed = sum('executed');
  const accounted = sum('recorded') + sum('stale') + sum('local') + sum('overflowed') + sum('undelivered');
  return {
    accepted: sum('recorded') / seconds,
    lost: executed === 0 ? Number.NaN : (executed - accounted) / executed,
    executed,
    overflowed: sum('overflowed'),
    stale: sum('stale'),
    undelivered: sum('undelivered'),
  };
}

const runs = [];
for (let rep = 0; rep < (quick ? 1 : 3); rep += 1) runs.push(await once());
admin.disconnect();
await disposeRedis(server);

const accepted = runs.map((r) => r.accepted);
const last = runs.at(-1) as (typeof runs)[number];
report('contention', [
  {
    name: `outcomes accepted by Redis, ${instances} instances`,
    subject: 'zenvark',
    value: median(accepted),
    min: Math.min(...accepted),
    unit: 'outcomes/s',
    note: `${runs.length} runs of ${seconds} s over ${processes} processes; last: ${last.executed} calls executed`,
  },
  {
    name: 'outcomes lost',
    subject: 'zenvark',
    value: Math.max(...runs.map((r) => r.lost)),
    unit: 'share',
    note: `worst of ${runs.length} runs; overflowed (counted): ${runs.reduce((t, r) => t + r.overflowed, 0)}, stale: ${runs.reduce((t, r) => t + r.stale, 0)}, undelivered: ${runs.reduce((t, r) => t + r.undelivered, 0)}`,
  },
]);
