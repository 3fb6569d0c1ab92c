/**
 * Failover: SIGKILL the lease holder of an open breaker while it runs recovery checks,
 * at a random point of its renewal cycle; the time until a new holder starts its check.
 *   npx tsx bench/cases/failover.ts [repetitions=5] [leaseTtlMs=5000]
 */
import { randomUUID } from 'node:crypto';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { firstAmong, leaderAmong, startWorkers } from '../../harness/fleet/processes.js';
import { sleep, wallMs } from '../../harness/clock.js';
import { args, report, summarize } from '../measure.js';
import { disposeRedis, startRedis } from '../../harness/redis-server.js';

const repetitions = Number(args[0] ?? 5);
const leaseTtlMs = Number(args[1] ?? 5000);
const backoffMs = 100;

const server = await startRedis();
const admin = server.client();
await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
const results: number[] = [];
try {
  for (let rep = 0; rep < repetitions; rep += 1) {
    const workers = await startWorkers(3, { url: server.url, id: `bench-${randomUUID()}`, leaseTtlMs, backoffMs, threshold: 1 });
    try {
      // Open, the breaker has a duty: one process takes the lease (whichever) and checks.
      await workers[0]?.send({ cmd: 'fail', count: 1 });
      const leader = await leaderAmong(workers);
      await leader.next('check');
      await sleep(Math.random() * leaseTtlMs);
      const others = workers.filter((w) => w !== leader);
      const after = others.map((w) => w.events.length);
      const killedAt = wallMs();
      leader.kill('SIGKILL');
      const first = await firstAmong(others, 'check', after, leaseTtlMs * 3 + 10_000);
      results.push(first.event.at - killedAt);
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
  }
} finally {
  admin.disconnect();
  await disposeRedis(server);
}

const s = summarize(results);
report('failover', [
  {
    name: `failover, lease TTL ${leaseTtlMs} ms`,
    subject: 'zenvark',
    value: s.p50,
    min: s.min,
    unit: 'ms',
    note: `max ${s.max.toFixed(0)} ms over ${repetitions} kills; backoff ${backoffMs} ms`,
  },
  { name: `failover max, lease TTL ${leaseTtlMs} ms`, subject: 'zenvark', value: s.max, unit: 'ms' },
]);
