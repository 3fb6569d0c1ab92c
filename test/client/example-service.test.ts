/**
 * examples/service/server.ts, run as a user would run it (its own process, the package
 * imported by name), in front of a fake dependency that the test breaks and heals: its
 * circuit opens, refused requests get 503 with Retry-After, /metrics shows it, a health
 * check closes it again, and SIGTERM ends the process cleanly, holding no lease.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, inject, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import { stateOf, uniqueId } from '../support/instances.js';
import { sampleValue } from '../support/promql.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const redisUrl = inject('redisUrl');

interface Service {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let service: Service | undefined;
let dependency: Server | undefined;
let admin: Redis | undefined;

afterEach(async () => {
  // Whatever happened, nothing of this test goes on running.
  if (service && service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGKILL');
  service = undefined;
  dependency?.closeAllConnections();
  await new Promise((resolve) => (dependency ? dependency.close(resolve) : resolve(undefined)));
  dependency = undefined;
  admin?.disconnect();
  admin = undefined;
});

/** A dependency that answers 200 with a quote, or 503 while broken. */
async function fakeDependency(): Promise<{ url: string; setHealthy(healthy: boolean): void; served: () => number }> {
  let healthy = true;
  let served = 0;
  dependency = createServer((_request, response) => {
    served += 1;
    if (healthy) response.writeHead(200, { 'content-type': 'application/json' }).end('{"quote":"42"}');
    else response.writeHead(503).end('down');
  });
  await new Promise<void>((resolve) => dependency!.listen(0, '127.0.0.1', resolve));
  const { port } = dependency.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/quote`, setHealthy: (value) => (healthy = value), served: () => served };
}

function startService(env: Record<string, string>): Service {
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/service/server.ts'], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exited };
}

async function get(url: string): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await fetch(url);
  return { status: response.status, headers: response.headers, body: await response.text() };
}

it('protects its calls, shows the circuit in /metrics, recovers, and stops cleanly on SIGTERM', async () => {
  const upstream = await fakeDependency();
  const id = uniqueId('example-service');
  service = startService({ REDIS_URL: redisUrl, DEPENDENCY_URL: upstream.url, BREAKER_ID: id, PORT: '0', HOST: '127.0.0.1' });
  const running = service;
  const base = await vi.waitFor(
    () => {
      const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(running.output())?.[1];
      if (!port) throw new Error(`not listening yet:\n${running.output()}`);
      return `http://127.0.0.1:${port}`;
    },
    { timeout: 30_000, interval: 50 },
  );
  const metric = async (name: string, labels: Record<string, string>) => {
    const scrape = await get(`${base}/metrics`);
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return sampleValue(scrape.body, name, { breaker: id, ...labels });
  };

  expect(await get(`${base}/healthz`)).toMatchObject({ status: 200, body: 'ok\n' });
  expect(await get(`${base}/quote`)).toMatchObject({ status: 200, body: '{"quote":"42"}' });
  expect(await metric('zenvark_state', { state: 'closed' })).toBe(1);

  // Broken: the failures pass through (502) until the circuit opens; then the dependency
  // is spared and callers are told to come back.
  upstream.setHealthy(false);
  const statuses: number[] = [];
  const refused = await vi.waitFor(
    async () => {
      const answer = await get(`${base}/quote`);
      statuses.push(answer.status);
      expect(answer.status).toBe(503);
      return answer;
    },
    { timeout: 20_000, interval: 20 },
  );
  expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
  // The threshold (5 in a row) reached the dependency and failed.
  expect(statuses.slice(0, -1).filter((status) => status !== 502)).toEqual([]);
  expect(statuses.length).toBeGreaterThan(5);
  expect(await metric('zenvark_state', { state: 'open' })).toBe(1);
  expect(await metric('zenvark_state', { state: 'closed' })).toBe(0);
  const rejected = (await metric('zenvark_calls_rejected_total', { state: 'open' })) ?? 0;
  expect(rejected).toBeGreaterThanOrEqual(1);
  for (let n = 0; n < 3; n += 1) expect((await get(`${base}/quote`)).status).toBe(503);
  expect(await metric('zenvark_calls_rejected_total', { state: 'open' })).toBe(rejected + 3);
  expect(await metric('zenvark_call_duration_seconds_count', { result: 'failure' })).toBe(statuses.length - 1);
  const servedWhileOpen = upstream.served();

  // Healed: the lease holder's health check closes the circuit. Its backoff (1 s doubling
  // to 30 s, jittered) grew with every check that failed meanwhile.
  upstream.setHealthy(true);
  await vi.waitFor(async () => expect(await metric('zenvark_state', { state: 'closed' })).toBe(1), { timeout: 60_000, interval: 100 });
  expect(upstream.served()).toBeGreaterThan(servedWhileOpen);
  expect(await metric('zenvark_health_check_duration_seconds_count', { type: 'recovery', result: 'success' })).toBeGreaterThanOrEqual(1);
  expect(await get(`${base}/quote`)).toMatchObject({ status: 200 });

  // The service never calls process.exit() on its way out: it ends when nothing is left
  // running (no socket, no timer), or not at all.
  running.child.kill('SIGTERM');
  const patience = new AbortController();
  const exit = await Promise.race([
    running.exited,
    delay(20_000, 'still running 20 s after SIGTERM', { signal: patience.signal }),
  ]).finally(() => patience.abort());
  expect(exit, running.output()).toEqual({ code: 0, signal: null });
  expect(running.output()).toContain('SIGTERM: stopping\n');
  expect(running.output()).toContain('stopped\n');
  // No lease is left held: closed, the breaker had no duty that needed one (the recovery's
  // holder gave it back), and stop() gives back any it holds.
  admin = new Redis(redisUrl);
  expect((await stateOf(admin, id)).holder).toBe('');
  await expect(fetch(`${base}/healthz`)).rejects.toThrow();
}, 150_000);
