/**
 * The lease holder of an open breaker frozen (SIGSTOP) past its lease, then resumed
 * (SIGCONT): another process takes the lease when it expires. The frozen one, resumed,
 * does not act on its stale lease: the health report it sends before it notices is
 * refused by its fencing token (it changes nothing, and no transition carries that
 * token), it becomes a follower, and one process alone holds the lease until the circuit
 * closes (then the holder gives it back).
 */
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, vi } from 'vitest';
import { sleep, wallMs } from '../../harness/clock.js';
import { type Worker, firstAmong } from '../../harness/fleet/processes.js';
import { healUnder, openUnderHolder, processFleet, soleHolder, takeoverFigures } from './fleet.js';
import { scenario } from './scenario.js';

const fleet = processFleet();

/** One FCALL as Redis received it (MONITOR): Redis's time, the function, the actor and, for lease and health calls, the token. */
interface Call {
  readonly at: number;
  readonly fn: string;
  readonly actor: string;
  readonly token: string;
}

let monitor: Redis | undefined;

afterEach(() => {
  monitor?.disconnect();
  monitor = undefined;
});

/**
 * Every FCALL Redis receives from now on, in order. Call it before any traffic: ioredis
 * takes the connection for a monitor only once the MONITOR reply's promise settles, so
 * monitor lines that arrive in the same read are taken for replies ("Command queue state
 * error", thrown from the socket's data handler).
 */
async function watchCalls(): Promise<Call[]> {
  const calls: Call[] = [];
  monitor = await fleet.own.server.client().monitor();
  // FCALL name 2 state events channel actor retention token ...
  monitor.on('monitor', (time: string, args: string[]) => {
    if (args[0]?.toLowerCase() !== 'fcall') return;
    calls.push({ at: Number(time) * 1000, fn: args[1] ?? '', actor: args[6] ?? '', token: args[8] ?? '' });
  });
  return calls;
}

describe('the lease holder frozen', () => {
  scenario('Lease holder frozen (SIGSTOP) past its lease, then resumed', async (size) => {
    const leaseTtlMs = size === 'long' ? 5000 : 1500;
    const freezes = size === 'long' ? 5 : 1;
    const calls = await watchCalls();
    const workers = await fleet.start(size === 'long' ? 5 : 3, { leaseTtlMs, backoffMs: 100, threshold: 3 });
    let { holder, token } = await openUnderHolder(fleet, workers);
    const opened = await fleet.state();

    const takeovers: number[] = [];
    /** Health reports of a resumed holder with its stale token, sent after another took over. */
    const late: Call[] = [];
    /** The tokens of frozen holders, and when their lease was taken over. */
    const stale: { token: string; takenAt: number }[] = [];
    // A freeze whose holder notices its lapsed lease before it reports (its lease timer
    // fired first) shows no late report: a run without one freezes up to twice more.
    for (let freeze = 0; freeze < freezes || (late.length === 0 && freeze < freezes + 2); freeze += 1) {
      // Frozen right after a renewal, its next check is due before its lease timer:
      // resumed, it runs that check and reports before it sees that its lease lapsed.
      const mark = calls.length;
      await vi.waitFor(() => expect(calls.slice(mark).some((c) => c.fn === 'zv1_renew' && c.actor === holder.name)).toBe(true), {
        timeout: 15_000,
        interval: 1,
      });
      // Its checks pass from halfway through the freeze on: a late report that counted
      // would close the circuit.
      await holder.send({ cmd: 'healthy', value: true, at: wallMs() + leaseTtlMs / 2 });
      const rest = workers.filter((w) => w !== holder);
      const from = rest.map((w) => w.events.length);
      const frozenAt = wallMs();
      holder.kill('SIGSTOP');

      const first = await firstAmong(rest, 'check', from, leaseTtlMs + 15_000);
      takeovers.push(first.event.at - frozenAt);
      expect(first.event.at - frozenAt).toBeLessThanOrEqual(leaseTtlMs + 2000);
      const next: Worker = first.worker;
      const nextToken = await soleHolder(fleet, rest, next);
      expect(nextToken).toBeGreaterThan(token);
      const takenAt = next.of('role').at(-1)?.at ?? Number.NaN;
      stale.push({ token: String(token), takenAt });

      const resumedFrom = holder.events.length;
      holder.kill('SIGCONT');
      await holder.next('role', resumedFrom, (e) => e.role === 'follower', 15_000);
      expect(await soleHolder(fleet, workers, next)).toBe(nextToken);
      // What it sent on resuming has reached Redis by now.
      await sleep(300);
      const frozen = holder;
      late.push(...calls.filter((c) => c.fn === 'zv1_health' && c.actor === frozen.name && c.token === String(token) && c.at > takenAt));
      // Nothing it said counted: the circuit is open in the same generation, under the new holder.
      expect(await fleet.state()).toMatchObject({ state: 'open', gen: opened.gen, holder: next.name, token: String(nextToken) });
      await holder.send({ cmd: 'healthy', value: false });
      holder = next;
      token = nextToken;
    }
    expect(late.length).toBeGreaterThan(0);

    const { convergeMs, audit } = await healUnder(fleet, workers, holder, token);
    // Closed, the recovery duty is over: the holder gives the lease back, and no process,
    // the resumed ones included, leads.
    await vi.waitFor(
      async () => {
        expect(workers.filter((w) => w.role === 'leader').map((w) => w.name)).toEqual([]);
        expect(await fleet.state()).toMatchObject({ holder: '', token: String(token) });
      },
      { timeout: 15_000, interval: 20 },
    );
    for (const { token: old, takenAt } of stale) {
      expect(audit.filter((e) => e.token === old && Number(e.time) > takenAt)).toEqual([]);
    }
    await Promise.all(workers.map((w) => w.stop()));
    return takeoverFigures({
      injected: `SIGSTOP of the lease holder of an open breaker until another took over, then SIGCONT; ${takeovers.length} time(s), ${workers.length} processes, lease TTL ${leaseTtlMs} ms`,
      what: 'freeze',
      takeovers,
      convergeMs,
      audit,
      workers,
      note: `${late.length} late health report(s) of resumed holders, passing checks with stale tokens, were refused: no transition carries those tokens`,
    });
  });
});
