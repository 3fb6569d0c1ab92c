/**
 * The fleet simulation of issue 13 (item 4), instances in separate processes on one
 * breaker with the instance rule: one instance whose dependency fails while the others'
 * answers isolates itself and the fleet stays closed, then recovers by its own checks;
 * a real outage (every instance failing) opens the fleet, once; a dependency that hangs
 * opens it on the slow-call rate before any call returns.
 */
import { Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { type Worker, startWorkers } from '../../harness/fleet/processes.js';
import type { Traffic } from '../../harness/fleet/worker.js';
import { DEFAULTS, breakerKeys } from '../../src/index.js';
import { uniqueId } from '../support/instances.js';

const url = inject('redisUrl');
let workers: Worker[] = [];
let redis: Redis | undefined;

afterEach(async () => {
  for (const w of workers) if (w.alive) w.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
  workers = [];
  redis?.disconnect();
  redis = undefined;
});

/** A stream's entries, oldest first: each one's fields. */
async function entries(key: string): Promise<Record<string, string>[]> {
  redis ??= new Redis(url);
  const list = (await redis.xrange(key, '-', '+')) as [string, string[]][];
  return list.map(([, fields]) => Object.fromEntries(Array.from({ length: fields.length / 2 }, (_, n) => [fields[2 * n], fields[2 * n + 1]])));
}

const states = (list: Worker[]) => list.map((w) => w.state);
/** Every worker calls its dependency every 20 ms for `forMs`. */
const traffic = (list: Worker[], forMs: number) => Promise.all(list.map((w) => w.send({ cmd: 'traffic', forMs, everyMs: 20 }) as Promise<Traffic>));

describe('the instance rule across processes', () => {
  it('one instance failing alone isolates itself and recovers, the fleet stays closed; a real outage opens the fleet once', async () => {
    const id = uniqueId('instances');
    const keys = breakerKeys(DEFAULTS.prefix, id);
    workers = await startWorkers(4, { url, id, leaseTtlMs: 1000, backoffMs: 100, threshold: 3, minimumInstances: 2 });
    // Recovery checks pass whenever the worker's own dependency answers.
    await Promise.all(workers.map((w) => w.send({ cmd: 'healthy', value: true })));
    const [alone, ...others] = workers as [Worker, ...Worker[]];

    // One instance's dependency fails (a broken network path of its own); the others' answers.
    await alone.send({ cmd: 'dependency', mode: 'fail' });
    const [, ...othersTraffic] = await traffic(workers, 1500);
    await vi.waitFor(() => expect(alone.state).toBe('isolated'), { timeout: 10_000 });
    expect(states(others)).toEqual(['closed', 'closed', 'closed']);
    expect(others.flatMap((w) => w.of('state'))).toEqual([]);
    // The others kept calling: none of their calls was refused; the isolated one's are.
    for (const t of othersTraffic) expect(t).toMatchObject({ rejected: 0 });
    const [isolatedTraffic] = await traffic([alone], 200);
    expect(isolatedTraffic?.ran).toBe(0);
    expect(isolatedTraffic?.rejected).toBeGreaterThan(0);
    expect(await entries(keys.events)).toEqual([]);
    const isolated = await entries(keys.instanceEvents);
    expect(isolated[0]).toMatchObject({ from: 'closed', to: 'isolated', reason: 'consecutive_failures', actor: alone.name });

    // Its dependency heals: its own checks pass and it rejoins.
    await alone.send({ cmd: 'dependency', mode: 'ok' });
    await vi.waitFor(() => expect(alone.state).toBe('closed'), { timeout: 10_000 });
    expect(alone.of('state').map((e) => `${e.scope}:${e.state}:${e.reason}`)).toEqual(['instance:isolated:consecutive_failures', 'instance:closed:recovered']);
    expect((await entries(keys.instanceEvents)).map((e) => e.reason)).toEqual(['consecutive_failures', 'recovered']);
    expect(await entries(keys.events)).toEqual([]);

    // A real outage: every instance's dependency fails. Some may isolate themselves first:
    // an isolated instance still counts as failing, so the next one that fails opens the
    // fleet, once, and the isolated ones follow it.
    await Promise.all(workers.map((w) => w.send({ cmd: 'dependency', mode: 'fail' })));
    await traffic(workers, 1000);
    await vi.waitFor(() => expect(states(workers)).toEqual(['open', 'open', 'open', 'open']), { timeout: 10_000 });
    const opened = (await entries(keys.events)).filter((e) => e.to === 'open');
    expect(opened).toHaveLength(1);
    expect(opened[0]).toMatchObject({ reason: 'consecutive_failures', rule: 'minimum_instances:2' });
    expect(Number(opened[0]?.instances)).toBeGreaterThanOrEqual(2);
    for (const w of workers) expect(w.of('state').filter((e) => e.scope === 'fleet').map((e) => `${e.state}:${e.reason}`)).toEqual(['open:consecutive_failures']);

    await Promise.all(workers.map((w) => w.stop()));
    expect(workers.flatMap((w) => w.of('error'))).toEqual([]);
  });

  it('a hanging dependency: the fleet opens on the slow-call rate while every call hangs, before any returns', async () => {
    const id = uniqueId('hangs');
    const keys = breakerKeys(DEFAULTS.prefix, id);
    // Calls are slow after 200 ms; a hanging call answers only when the test lets the
    // dependency answer again (its timeout, a minute, never comes).
    workers = await startWorkers(3, { url, id, leaseTtlMs: 1000, backoffMs: 100, threshold: 3, slowCallDurationMs: 200, timeoutMs: 60_000 });
    await Promise.all(workers.map((w) => w.send({ cmd: 'dependency', mode: 'hang' })));
    // Traffic for 1 s (a call every 20 ms from each): answered once every call has ended.
    const done = traffic(workers, 1000);
    // No call has returned: every one started is hanging.
    await vi.waitFor(() => expect(states(workers)).toEqual(['open', 'open', 'open']), { timeout: 30_000 });
    const [opened, ...more] = (await entries(keys.events)).filter((e) => e.to === 'open');
    expect(more).toEqual([]);
    expect(opened).toMatchObject({ reason: 'slow_call_rate', failures: '0' });
    expect(Number(opened?.slow)).toBeGreaterThanOrEqual(5);

    // The dependency answers again: the calls that hung end; the later ones were refused.
    await Promise.all(workers.map((w) => w.send({ cmd: 'dependency', mode: 'ok' })));
    for (const t of await done) expect(t.rejected).toBeGreaterThan(0);
    await Promise.all(workers.map((w) => w.stop()));
    expect(workers.flatMap((w) => w.of('error'))).toEqual([]);
  });
});
