/**
 * The lease holder of an open breaker dies (SIGKILL: it cannot release its lease).
 * Another process takes the lease when it expires and runs the next recovery check, one
 * process alone holds the lease from then on, and the circuit recovers under it once the
 * dependency is healthy.
 */
import { describe, expect } from 'vitest';
import { sleep, wallMs } from '../../harness/clock.js';
import { type Worker, firstAmong } from '../../harness/fleet/processes.js';
import { healUnder, openUnderHolder, processFleet, soleHolder, takeoverFigures } from './fleet.js';
import { scenario } from './scenario.js';

const fleet = processFleet();

/** The check events of `worker` from its event index `from` on. */
const checksSince = (worker: Worker, from: number) => worker.events.slice(from).filter((e) => e.type === 'check');

describe('the lease holder killed', () => {
  scenario('Lease holder killed (SIGKILL) while open', async (size) => {
    const leaseTtlMs = size === 'long' ? 5000 : 1000;
    const kills = size === 'long' ? 3 : 1;
    const workers = await fleet.start(size === 'long' ? 5 : 3, { leaseTtlMs, backoffMs: 100, threshold: 3 });
    let { holder, token } = await openUnderHolder(fleet, workers);

    const takeovers: number[] = [];
    for (let kill = 0; kill < kills; kill += 1) {
      // At a random point of the holder's renewal cycle.
      await sleep((Math.random() * leaseTtlMs) / 3);
      const rest = workers.filter((w) => w.alive && w !== holder);
      const from = rest.map((w) => w.events.length);
      const killedAt = wallMs();
      holder.kill('SIGKILL');
      await holder.exited;
      const first = await firstAmong(rest, 'check', from, leaseTtlMs + 15_000);
      const takeoverMs = first.event.at - killedAt;
      takeovers.push(takeoverMs);
      expect(takeoverMs).toBeLessThanOrEqual(leaseTtlMs + 2000);
      const next = first.worker;
      const nextToken = await soleHolder(fleet, workers, next);
      expect(nextToken).toBeGreaterThan(token);
      // A renewal period or two later it still holds the lease alone, and only it checks.
      await sleep(leaseTtlMs / 2);
      expect(await soleHolder(fleet, workers, next)).toBe(nextToken);
      expect(rest.filter((w) => w !== next).flatMap((w) => checksSince(w, from[rest.indexOf(w)] as number))).toEqual([]);
      expect(checksSince(next, from[rest.indexOf(next)] as number).length).toBeGreaterThan(0);
      holder = next;
      token = nextToken;
    }

    const survivors = workers.filter((w) => w.alive);
    const { convergeMs, audit } = await healUnder(fleet, survivors, holder, token);
    await Promise.all(survivors.map((w) => w.stop()));
    return takeoverFigures({
      injected: `SIGKILL of the lease holder of an open breaker, ${kills} time(s) in a row, ${workers.length} processes, lease TTL ${leaseTtlMs} ms`,
      what: 'kill',
      takeovers,
      convergeMs,
      audit,
      workers,
      note: 'the one process that took the lease ran it, and only it ran checks',
    });
  });
});
