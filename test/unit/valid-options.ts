/**
 * A minimal valid configuration for option tests, on a client that never connects:
 * constructing a breaker and validating its options must not touch Redis.
 */
import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { type CircuitBreakerOptions, ConsecutiveBreaker, ConstantBackoff } from '../../src/index.js';

const redis = new Redis({ lazyConnect: true });
afterAll(() => redis.disconnect());

export const validOptions = (): CircuitBreakerOptions => ({
  id: 'payments',
  redis,
  breaker: new ConsecutiveBreaker({ threshold: 3 }),
  health: { backoff: new ConstantBackoff({ delayMs: 100 }), check: async () => undefined },
});
