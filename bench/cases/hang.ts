/**
 * Hang detection: the time from the first call to a dependency that stopped answering to
 * OPEN (onStateChange), while calls keep coming and none of them ever settles.
 *   npx tsx bench/cases/hang.ts <count|sampling> [runs] [--quick]
 * The breaker: minimum 5 calls, slowCallDurationMs 200, slowCallRateThreshold 0.5 (a
 * CountBreaker of 10 calls, or a SamplingBreaker of 10 s), a call started every 10 ms.
 * With no round trip, the fifth call (started 40 ms after the first) would reach the
 * minimum at 240 ms: what is above that is the timer's lateness and Redis's answer.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { CircuitBreaker, ConstantBackoff, CountBreaker, SamplingBreaker } from '../library.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { disposeRedis, startRedis } from '../../harness/redis-server.js';
import { args, median, quick, report } from '../measure.js';

const [kind = 'count', runsArg] = args;
const RUNS = Number(runsArg ?? (quick ? 3 : 10));
const SLOW_CALL_MS = 200;
const EVERY_MS = 10;

const server = await startRedis();
const admin = server.client();
await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
const redis = new Redis(server.url);

/** One run: a fresh breaker, calls that never settle every EVERY_MS; ms from the first call to OPEN. */
async function once(): Promise<number> {
  let opened: (at: number) => void = () => undefined;
  const open = new Promise<number>((resolve) => {
    opened = resolve;
  });
  const breaker = new CircuitBreaker({
    id: `bench-hang-${randomUUID()}`,
    redis,
    breaker:
      kind === 'sampling'
        ? new SamplingBreaker({ threshold: 0.5, duration: 10_000, minimumNumberOfCalls: 5 })
        : new CountBreaker({ threshold: 0.5, size: 10, minimumNumberOfCalls: 5 }),
    slowCallDurationMs: SLOW_CALL_MS,
    slowCallRateThreshold: 0.5,
    health: { backoff: new ConstantBackoff({ delayMs: 1_000_000 }), check: async () => Promise.reject(new Error('down')) },
    onStateChange: (state) => {
      if (state === 'open') opened(performance.now());
    },
    onError: () => undefined,
  });
  await breaker.start();
  const hanging = () => new Promise<never>(() => undefined);
  const first = performance.now();
  void breaker.execute(hanging).catch(() => undefined);
  const timer = setInterval(() => void breaker.execute(hanging).catch(() => undefined), EVERY_MS);
  const at = await open;
  clearInterval(timer);
  await breaker.stop();
  return at - first;
}

const times: number[] = [];
for (let run = 0; run < RUNS; run += 1) times.push(await once());
redis.disconnect();
admin.disconnect();
await disposeRedis(server);

const subject = kind === 'sampling' ? 'SamplingBreaker' : 'CountBreaker';
report('hang', [
  {
    name: `first hanging call to OPEN, slowCallDurationMs ${SLOW_CALL_MS}`,
    subject,
    value: median(times),
    min: Math.min(...times),
    unit: 'ms',
    note: `max ${Math.max(...times).toFixed(0)} ms over ${RUNS} runs; minimum 5 calls, slow rate 0.5, a call every ${EVERY_MS} ms`,
  },
]);
