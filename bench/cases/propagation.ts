/**
 * Propagation: 20 instances in separate processes. For each trip, the time from the
 * settle of the call that trips the breaker on one instance to OPEN being observed
 * (onStateChange) on each of the others.
 *   npx tsx bench/cases/propagation.ts [trips=50] [instances=20]
 */
import { randomUUID } from 'node:crypto';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { startWorkers } from '../../harness/fleet/processes.js';
import { args, report, summarize } from '../measure.js';
import { disposeRedis, startRedis } from '../../harness/redis-server.js';

const trips = Number(args[0] ?? 50);
const size = Number(args[1] ?? 20);

const server = await startRedis();
const admin = server.client();
await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
// Threshold 1: every failure trips. The holder's (healthy) check closes the circuit
// 100 ms later, after every instance has seen it open, ready for the next trip.
const workers = await startWorkers(size, { url: server.url, id: `bench-${randomUUID()}`, leaseTtlMs: 5000, backoffMs: 100, threshold: 1, reportDelayMs: 30 });
await Promise.all(workers.map((w) => w.send({ cmd: 'healthy', value: true })));

const delays: number[] = [];
try {
  for (let trip = 0; trip < trips; trip += 1) {
    const from = workers.map((w) => w.events.length);
    const tripper = workers[trip % size] as (typeof workers)[number];
    const settledAt = (await tripper.send({ cmd: 'fail', count: 1 })) as number;
    await Promise.all(
      workers.map(async (w, n) => {
        const open = await w.next('state', from[n], (e) => e.state === 'open');
        if (w !== tripper) delays.push(open.at - settledAt);
        await w.next('state', from[n], (e) => e.state === 'closed');
      }),
    );
  }
} finally {
  await Promise.all(workers.map((w) => w.stop()));
  admin.disconnect();
  await disposeRedis(server);
}

const s = summarize(delays);
const note = `${size} processes, ${trips} trips, ${s.n} observations`;
report('propagation', [
  { name: 'propagation p50', subject: 'zenvark', value: s.p50, min: s.min, unit: 'ms', note },
  { name: 'propagation p99', subject: 'zenvark', value: s.p99, unit: 'ms', note },
  { name: 'propagation max', subject: 'zenvark', value: s.max, unit: 'ms', note },
]);
