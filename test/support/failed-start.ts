/**
 * A process of its own that starts one breaker and expects start() to fail. It prints one
 * JSON line: what start() threw, how `util.inspect` and `console.error` show it, and what
 * the process still holds right after (process.getActiveResourcesInfo()); then it ends
 * without process.exit(), so that it exits by itself only if nothing is left running, and
 * says when it exits (a second line, `exitMs` after the rejection).
 *
 *   node --import tsx test/support/failed-start.ts '{"url":"redis://127.0.0.1:6390","options":{},"loadFunctions":false}'
 */
import { inspect } from 'node:util';
import { Redis, type RedisOptions } from 'ioredis';
import { CircuitBreaker, ConsecutiveBreaker, ConstantBackoff } from '../../src/index.js';
import { printedByConsoleError } from './printed.js';

const { url, options = {}, loadFunctions = false } = JSON.parse(process.argv[2] ?? '{}') as {
  url: string;
  options?: Partial<RedisOptions>;
  loadFunctions?: boolean;
};

const redis = new Redis(url, { lazyConnect: true, ...options });
redis.on('error', () => {});
const breaker = new CircuitBreaker({
  id: 'failed-start',
  redis,
  breaker: new ConsecutiveBreaker({ threshold: 3 }),
  health: { backoff: new ConstantBackoff({ delayMs: 100 }), check: async () => {} },
  loadFunctions,
});

try {
  await breaker.start();
  console.log(JSON.stringify({ started: true }));
  await breaker.stop();
} catch (error) {
  const active = process.getActiveResourcesInfo();
  const rejectedAt = performance.now();
  const printed = printedByConsoleError(error);
  const e = error as { name?: string; code?: string; message?: string };
  console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message, inspected: inspect(error, { depth: 10 }), printed, active }));
  process.on('exit', () => console.log(JSON.stringify({ exitMs: Math.round(performance.now() - rejectedAt) })));
}
