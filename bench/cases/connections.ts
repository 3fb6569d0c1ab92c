/**
 * Connections: N breakers in one process on one application client; Redis connections
 * the process holds (CLIENT LIST), the application's own client included.
 *   npx tsx bench/cases/connections.ts [breakers=100]
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { CircuitBreaker, ConsecutiveBreaker, ConstantBackoff } from '../../src/index.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { disposeRedis, startRedis } from '../../test/support/redis.js';

const count = Number(process.argv[2] ?? 100);
const server = await startRedis();
const admin = server.client({ connectionName: 'bench-admin' });
await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
const redis = new Redis(server.url, { connectionName: 'application' });
const breakers = Array.from(
  { length: count },
  () =>
    new CircuitBreaker({
      id: `bench-${randomUUID()}`,
      redis,
      breaker: new ConsecutiveBreaker({ threshold: 5 }),
      health: { backoff: new ConstantBackoff({ delayMs: 1000 }), check: async () => undefined },
    }),
);
await Promise.all(breakers.map((b) => b.start()));
const names = ((await admin.client('LIST')) as string)
  .trim()
  .split('\n')
  .map((line) => /name=(\S*)/.exec(line)?.[1] ?? '')
  .filter((name) => name !== 'bench-admin');
await Promise.all(breakers.map((b) => b.stop()));
redis.disconnect();
admin.disconnect();
await disposeRedis(server);
console.log(JSON.stringify({ case: 'connections', breakers: count, connections: names.length, names: [...new Set(names)] }));
