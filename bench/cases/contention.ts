/**
 * Throughput under contention: `instances` breaker instances, spread over `processes`
 * processes, recording into one breaker as fast as they can. Reports the outcomes Redis
 * accepted per second and the share lost: outcomes executed but neither counted by Redis
 * nor accounted for (overflow of the bounded buffer is counted, not lost).
 *   npx tsx bench/cases/contention.ts [instances=50] [seconds=5] [processes=2]
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { disposeRedis, startRedis } from '../../test/support/redis.js';
import { args, report } from '../measure.js';

const run = promisify(execFile);
const instances = Number(args[0] ?? 50);
const seconds = Number(args[1] ?? 5);
const processes = Number(args[2] ?? 2);
const worker = fileURLToPath(new URL('./contention-worker.ts', import.meta.url));

const server = await startRedis();
const admin = server.client();
await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
const id = `bench-${randomUUID()}`;
const shares = Array.from({ length: processes }, (_, p) => Math.floor(instances / processes) + (p < instances % processes ? 1 : 0));
const results = await Promise.all(
  shares.map(async (share) => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', worker, JSON.stringify({ url: server.url, id, instances: share, seconds })], {
      timeout: (seconds + 60) * 1000,
    });
    return JSON.parse(stdout.trim().split('\n').at(-1) as string) as Record<string, number>;
  }),
);
admin.disconnect();
await disposeRedis(server);

const sum = (k: string) => results.reduce((t, r) => t + (r[k] ?? 0), 0);
const executed = sum('executed');
const accounted = sum('recorded') + sum('stale') + sum('local') + sum('overflowed') + sum('undelivered');
report('contention', [
  {
    name: `outcomes accepted by Redis, ${instances} instances`,
    subject: 'zenvark',
    value: sum('recorded') / seconds,
    unit: 'outcomes/s',
    note: `${executed} calls executed in ${seconds} s over ${processes} processes`,
  },
  {
    name: 'outcomes lost',
    subject: 'zenvark',
    value: executed === 0 ? Number.NaN : (executed - accounted) / executed,
    unit: 'share',
    note: `overflowed (counted): ${sum('overflowed')}, stale: ${sum('stale')}, undelivered: ${sum('undelivered')}`,
  },
]);
