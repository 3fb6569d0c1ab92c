import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { wallMs } from '../../harness/clock.js';
import { uniqueId } from '../support/instances.js';
import { type Worker, leaderAmong, startWorkers } from '../../harness/fleet/processes.js';

const url = inject('redisUrl');
let workers: Worker[] = [];

afterEach(async () => {
  for (const w of workers) if (w.alive) w.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
  workers = [];
});

async function spawn(size: number, leaseTtlMs: number): Promise<Worker[]> {
  workers = await startWorkers(size, { url, id: uniqueId('fleet'), leaseTtlMs, backoffMs: 50, threshold: 3 });
  return workers;
}

const states = (list: Worker[]) => list.map((w) => w.state);

describe('instances in separate processes', () => {
  it('trip together, probe from one process, and close together', async () => {
    await spawn(4, 1000);
    const other = workers[1] as Worker;
    await other.send({ cmd: 'fail', count: 3 });
    await vi.waitFor(() => expect(states(workers)).toEqual(['open', 'open', 'open', 'open']), { timeout: 10_000 });
    // Open, the breaker has a duty: one process takes the lease (whichever) and probes.
    const leader = await leaderAmong(workers);
    await vi.waitFor(() => expect(leader.of('check').length).toBeGreaterThanOrEqual(2));
    expect(workers.filter((w) => w !== leader).flatMap((w) => w.of('check'))).toEqual([]);
    expect(await other.send({ cmd: 'call' })).toBe('CircuitOpenError');

    await leader.send({ cmd: 'healthy', value: true });
    await vi.waitFor(() => expect(states(workers)).toEqual(['closed', 'closed', 'closed', 'closed']), { timeout: 10_000 });
    for (const w of workers) {
      expect(w.of('state').map((e) => `${e.state}:${e.reason}:${e.generation}`)).toEqual([
        'open:consecutive_failures:1',
        'closed:recovery_check_passed:2',
      ]);
    }
    expect(await other.send({ cmd: 'call' })).toBe('ok');
    await Promise.all(workers.map((w) => w.stop()));
    expect(workers.flatMap((w) => w.of('error'))).toEqual([]);
  });

  it('half-open across 10 processes: exactly permittedCalls trial calls run, then the circuit closes everywhere', async () => {
    workers = await startWorkers(10, {
      url,
      id: uniqueId('fleet'),
      leaseTtlMs: 2000,
      backoffMs: 100,
      threshold: 1,
      halfOpenPermits: 3,
    });
    await workers[0]?.send({ cmd: 'fail', count: 1 });
    await vi.waitFor(() => expect(new Set(states(workers))).toEqual(new Set(['half_open'])), { timeout: 10_000 });
    // Every process calls every 20 ms for 1.5 s; each trial call takes 2 s, so no permit
    // comes back while they try.
    const ran = (await Promise.all(workers.map((w) => w.send({ cmd: 'calls', forMs: 1500, holdMs: 2000 })))) as number[];
    expect(ran.reduce((a, b) => a + b, 0)).toBe(3);
    await vi.waitFor(() => expect(new Set(states(workers))).toEqual(new Set(['closed'])), { timeout: 15_000 });
    for (const w of workers) expect(w.of('state').at(-1)?.reason).toBe('trial_calls_passed');
    await Promise.all(workers.map((w) => w.stop()));
  });

  it('SIGKILL of the lease holder while open: another process takes over within TTL + 0.5 s', async () => {
    const ttl = 1000;
    await spawn(3, ttl);
    await workers[0]?.send({ cmd: 'fail', count: 3 });
    await vi.waitFor(() => expect(states(workers)).toEqual(['open', 'open', 'open']), { timeout: 10_000 });
    const leader = await leaderAmong(workers);
    await leader.next('check');

    const rest = workers.filter((w) => w !== leader);
    const from = rest.map((w) => w.events.length);
    const killedAt = wallMs();
    leader.kill('SIGKILL');
    await leader.exited;
    const next = await leaderAmong(rest);
    const firstCheck = await next.next('check', from[rest.indexOf(next)]);
    const failoverMs = firstCheck.at - killedAt;
    console.log(`failover: the next recovery check ran ${failoverMs.toFixed(0)} ms after SIGKILL (lease TTL ${ttl} ms)`);
    expect(failoverMs).toBeLessThanOrEqual(ttl + 500);

    // The new holder closes the circuit for everyone left.
    await next.send({ cmd: 'healthy', value: true });
    await vi.waitFor(() => expect(states(rest)).toEqual(['closed', 'closed']), { timeout: 10_000 });
    expect(rest.every((w) => w.of('state').at(-1)?.reason === 'recovery_check_passed')).toBe(true);
    await Promise.all(rest.map((w) => w.stop()));
  });
});
