/**
 * A small HTTP service that protects its call to a dependency with a Zenvark breaker and
 * exports the breaker's metrics to Prometheus. Node's own `http`, no framework.
 *
 *   GET /quote     calls the dependency through the breaker: its answer, or
 *                  502 (it failed), 504 (it did not answer within 2 s),
 *                  503 with Retry-After (the circuit is open: it was not called)
 *   GET /metrics   the metrics of every breaker of the process, for Prometheus to scrape
 *   GET /healthz   200 while the process serves; it does not depend on the dependency or Redis
 *
 * Environment:
 *   REDIS_URL         default redis://127.0.0.1:6379
 *   DEPENDENCY_URL    what /quote calls, default http://127.0.0.1:8080/quote
 *   HEALTH_URL        what the health check calls, default DEPENDENCY_URL
 *   BREAKER_ID        default quote-api; every instance of the service uses the same one
 *   PORT              default 3000; 0 takes a free port (the line "listening on" names it)
 *   HOST              default 127.0.0.1; 0.0.0.0 to serve on every interface (in a container)
 *
 * Run it with `npx tsx examples/service/server.ts`; SIGTERM or Ctrl-C stops it cleanly.
 */
import { createServer } from 'node:http';
import { Redis } from 'ioredis';
import { register } from 'prom-client';
import { CircuitBreaker, CircuitOpenError, ConsecutiveBreaker, ExponentialBackoff, TimeoutError } from 'zenvark';
import { registerMetrics } from 'zenvark/prometheus';

const env = process.env;
const dependencyUrl = env.DEPENDENCY_URL ?? 'http://127.0.0.1:8080/quote';
const healthUrl = env.HEALTH_URL ?? dependencyUrl;
/** What a refused caller is told to wait: the instance cannot know when the next recovery check passes. */
const RETRY_AFTER_S = 5;

/** The dependency answered, with a server error. */
class DependencyError extends Error {}

async function get(url: string, signal: AbortSignal | undefined): Promise<{ status: number; type: string; body: string }> {
  const response = await fetch(url, { signal });
  const body = await response.text();
  // A 4xx is the caller's doing, not a sign that the dependency is down: it is passed on.
  if (response.status >= 500) throw new DependencyError(`${url} answered ${response.status}`);
  return { status: response.status, type: response.headers.get('content-type') ?? 'text/plain', body };
}

const redis = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379');
// The breaker reports Redis's troubles through onError; the client's own events would repeat them.
redis.on('error', () => {});

const breaker = new CircuitBreaker({
  id: env.BREAKER_ID ?? 'quote-api',
  redis,
  breaker: new ConsecutiveBreaker({ threshold: 5 }),
  timeoutMs: 2_000,
  health: {
    backoff: new ExponentialBackoff({ initialDelayMs: 1_000, multiplier: 2, maxDelayMs: 30_000, jitter: 'full' }),
    timeoutMs: 2_000,
    check: async (_type, signal) => {
      await get(healthUrl, signal);
    },
  },
  // Lets a first run load the Redis functions; in production, run deploy-functions instead.
  loadFunctions: true,
  onStateChange: (state, transition) => console.log(`circuit ${breaker.id} is ${state} (${transition.reason})`),
  onError: (error) => console.error(`breaker ${breaker.id}: ${error.message}`),
});

// Every breaker of the process, in prom-client's default registry.
const metrics = registerMetrics();

let stopping = false;

const server = createServer((request, response) => {
  const path = request.url?.split('?')[0];
  const send = (status: number, body: string, headers: Record<string, string | number> = {}) => {
    // While stopping, a kept-alive connection is closed after its answer, so that close() ends.
    const closing = stopping ? { connection: 'close' } : {};
    response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers, ...closing }).end(body);
  };
  if (request.method !== 'GET') return send(405, 'method not allowed\n', { allow: 'GET' });

  if (path === '/healthz') return send(200, 'ok\n');
  if (path === '/metrics') {
    register.metrics().then(
      (text) => send(200, text, { 'content-type': register.contentType }),
      (error: Error) => send(500, `${error.message}\n`),
    );
    return;
  }
  if (path === '/quote') {
    breaker.execute((signal) => get(dependencyUrl, signal)).then(
      (answer) => send(answer.status, answer.body, { 'content-type': answer.type }),
      (error: unknown) => {
        if (error instanceof CircuitOpenError) return send(503, `${breaker.id} is unavailable: circuit ${error.state}\n`, { 'retry-after': RETRY_AFTER_S });
        if (error instanceof TimeoutError) return send(504, `${breaker.id} did not answer within ${error.timeoutMs} ms\n`);
        // What the dependency said stays here: callers learn only that it failed.
        return send(502, `${breaker.id} failed\n`);
      },
    );
    return;
  }
  send(404, 'not found\n');
});

async function shutdown(signal: string): Promise<void> {
  // A second Ctrl-C does not wait.
  if (stopping) process.exit(1);
  stopping = true;
  console.log(`${signal}: stopping`);
  // Stop taking requests and let those in flight finish; then give up the breaker's lease if
  // it holds one (another instance takes over its health checks at once) and close the
  // connections. Nothing is left then, so the process ends by itself.
  if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  await breaker.stop();
  metrics.dispose();
  await redis.quit();
  console.log('stopped');
}
function stop(reason: string): void {
  shutdown(reason).catch((error: unknown) => {
    console.error(`shutdown failed: ${(error as Error).message}`);
    process.exitCode = 1;
  });
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

server.on('error', (error) => {
  console.error(`cannot serve: ${error.message}`);
  process.exitCode = 1;
  stop('server error');
});

// ZV_REDIS_UNREACHABLE, ZV_AUTH_FAILED, ZV_LIBRARY_MISSING, ...: the message says what to do.
const started = await breaker.start().then(
  () => true,
  (error: Error) => {
    console.error(`cannot start: ${error.message}`);
    return false;
  },
);
if (started) {
  server.listen(Number(env.PORT ?? 3000), env.HOST ?? '127.0.0.1', () => {
    const address = server.address();
    if (typeof address === 'object' && address) console.log(`listening on http://${address.address}:${address.port}`);
  });
} else {
  // A failed start() leaves nothing running: the process ends once these are closed.
  metrics.dispose();
  redis.disconnect();
  process.exitCode = 1;
}
