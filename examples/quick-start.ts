import { Redis } from 'ioredis';
import { CircuitBreaker, CircuitOpenError, ConsecutiveBreaker, ExponentialBackoff } from 'zenvark';

// A dependency that is down: every call fails.
async function chargeCard(): Promise<string> {
  throw new Error('payments API: 503 Service Unavailable');
}

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');

const breaker = new CircuitBreaker({
  id: 'payments-api',
  redis,
  breaker: new ConsecutiveBreaker({ threshold: 3 }),
  health: {
    backoff: new ExponentialBackoff({ initialDelayMs: 1_000, multiplier: 2, maxDelayMs: 30_000 }),
    // Runs on one instance only (the lease holder) while the circuit is open.
    check: async (_type, signal) => {
      const response = await fetch('http://127.0.0.1:9/health', { signal });
      if (!response.ok) throw new Error(`health check answered ${response.status}`);
    },
  },
  // Lets this first run load the Redis functions; in production, run deploy-functions instead.
  loadFunctions: true,
  onStateChange: (state, transition) => console.log(`circuit is ${state} (${transition.reason})`),
  onError: () => {}, // the failing health checks would be reported here
});

await breaker.start();
for (let call = 1; call <= 5; call += 1) {
  try {
    await breaker.execute(chargeCard);
  } catch (error) {
    const outcome = error instanceof CircuitOpenError ? 'rejected at once: circuit open' : (error as Error).message;
    console.log(`call ${call}: ${outcome}`);
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
}
await breaker.stop();
redis.disconnect();
