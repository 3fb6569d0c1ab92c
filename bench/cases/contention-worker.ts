/**
 * One process of the contention case: `instances` breaker instances (each with its own
 * application client, as separate services would have) of one breaker, each calling as
 * fast as it can for `seconds`, 1% failures. Prints what was executed and where the
 * outcomes went.
 */
import { Redis } from 'ioredis';
import { type BreakerStats, CircuitBreaker, ConsecutiveBreaker, ConstantBackoff } from '../library.js';

const { url, id, instances, seconds } = JSON.parse(process.argv[2] ?? '{}') as {
  url: string;
  id: string;
  instances: number;
  seconds: number;
};

const failure = new Error('dependency failed');
const fail = () => Promise.reject(failure);
const succeed = async () => 1;
const clients = Array.from({ length: instances }, () => new Redis(url));
const breakers = clients.map(
  (redis) =>
    new CircuitBreaker({
      id,
      redis,
      // Never trips: every outcome is for the same generation.
      breaker: new ConsecutiveBreaker({ threshold: 1_000_000_000 }),
      health: { backoff: new ConstantBackoff({ delayMs: 1000 }), check: async () => undefined },
      onError: () => undefined,
    }),
);
await Promise.all(breakers.map((b) => b.start()));

let executed = 0;
const end = performance.now() + seconds * 1000;
await Promise.all(
  breakers.map(async (breaker) => {
    let n = 0;
    while (performance.now() < end) {
      n += 1;
      await breaker.execute(n % 100 === 0 ? fail : succeed).catch(() => undefined);
      executed += 1;
      // Let replies in: a loop of settled promises would never yield to I/O.
      if (n % 64 === 0) await new Promise((r) => setImmediate(r));
    }
  }),
);
// stop() sends what is still pending.
await Promise.all(breakers.map((b) => b.stop()));
for (const c of clients) c.disconnect();

const totals: BreakerStats = { recorded: 0, stale: 0, local: 0, overflowed: 0, undelivered: 0, rejected: 0, ignored: 0, trials: 0 };
for (const b of breakers) {
  const s = b.stats;
  for (const k of Object.keys(totals) as (keyof BreakerStats)[]) totals[k] += s[k];
}
console.log(JSON.stringify({ executed, ...totals }));
