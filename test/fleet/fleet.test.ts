import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { uniqueId } from '../support/instances.js';
import { Worker } from './processes.js';

const url = inject('redisUrl');
let workers: Worker[] = [];

afterEach(async () => {
  for (const w of workers) if (w.alive) w.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
  workers = [];
});

async function spawnFleet(size: number, leaseTtlMs: number): Promise<Worker[]> {
  const id = uniqueId('fleet');
  workers = Array.from(
    { length: size },
    (_, n) => new Worker({ url, id, instanceId: `proc-${n}`, leaseTtlMs, backoffMs: 50, threshold: 3 }),
  );
  await vi.waitFor(
    () => {
      for (const w of workers) {
        // A worker that could not start says why; there is no point in waiting for it.
        if (!w.alive || w.of('error').length > 0) throw new Error(`${w.name} failed: ${JSON.stringify(w.of('error'))}`);
      }
      expect(workers.every((w) => w.of('ready').length === 1)).toBe(true);
    },
    { timeout: 30_000 },
  );
  return workers;
}

async function theLeader(among: Worker[]): Promise<Worker> {
  return vi.waitFor(
    () => {
      const leaders = among.filter((w) => w.role === 'leader');
      expect(leaders).toHaveLength(1);
      return leaders[0] as Worker;
    },
    { timeout: 15_000 },
  );
}

describe('instances in separate processes', () => {
  it('trip together, probe from one process, and close together', async () => {
    await spawnFleet(4, 1000);
    const leader = await theLeader(workers);
    const other = workers.find((w) => w !== leader) as Worker;
    await other.send({ cmd: 'fail', count: 3 });
    await vi.waitFor(() => expect(workers.map((w) => w.state)).toEqual(['open', 'open', 'open', 'open']), { timeout: 10_000 });
    await vi.waitFor(() => expect(leader.of('check').length).toBeGreaterThanOrEqual(2));
    expect(workers.filter((w) => w !== leader).flatMap((w) => w.of('check'))).toEqual([]);
    expect(await other.send({ cmd: 'call' })).toBe('CircuitOpenError');

    await leader.send({ cmd: 'healthy', value: true });
    await vi.waitFor(() => expect(workers.map((w) => w.state)).toEqual(['closed', 'closed', 'closed', 'closed']), { timeout: 10_000 });
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

  it('SIGKILL of the lease holder while open: another process takes over within TTL + 0.5 s', async () => {
    const ttl = 1000;
    await spawnFleet(3, ttl);
    const leader = await theLeader(workers);
    await leader.send({ cmd: 'fail', count: 3 });
    await vi.waitFor(() => expect(workers.map((w) => w.state)).toEqual(['open', 'open', 'open']), { timeout: 10_000 });
    await vi.waitFor(() => expect(leader.of('check').length).toBeGreaterThanOrEqual(1));

    const killedAt = Date.now();
    leader.kill('SIGKILL');
    await leader.exited;
    const rest = workers.filter((w) => w !== leader);
    const next = await theLeader(rest);
    await vi.waitFor(() => expect(next.of('check').length).toBeGreaterThanOrEqual(1), { timeout: 10_000 });
    const failoverMs = (next.of('check')[0]?.at as number) - killedAt;
    console.log(`failover: the next recovery check ran ${failoverMs} ms after SIGKILL (lease TTL ${ttl} ms)`);
    expect(failoverMs).toBeLessThanOrEqual(ttl + 500);

    // The new holder closes the circuit for everyone left.
    await next.send({ cmd: 'healthy', value: true });
    await vi.waitFor(() => expect(rest.map((w) => w.state)).toEqual(['closed', 'closed']), { timeout: 10_000 });
    const closing = rest.map((w) => w.of('state').at(-1));
    expect(closing.every((e) => e?.reason === 'recovery_check_passed')).toBe(true);
    await Promise.all(rest.map((w) => w.stop()));
  });
});
