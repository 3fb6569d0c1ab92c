/**
 * Trip storms: every process of a fleet fails on one breaker at the same moment, each
 * with enough failures to trip it alone. Redis decides once: exactly one transition to
 * open per storm is written to the audit stream, and every process sees it once
 * (onStateChange); outcomes that arrive after it belong to an older generation and are
 * not counted. Once every call of a storm has run, the dependency heals and a recovery
 * check closes the breaker, before the next storm.
 */
import { describe, expect } from 'vitest';
import { wallMs } from '../../harness/clock.js';
import { mostReports, processFleet, unaccounted } from './fleet.js';
import { scenario } from './scenario.js';

const fleet = processFleet();

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

describe('trip storms', () => {
  scenario('Trip storms: every process failing at once', async (size) => {
    const processes = size === 'long' ? 20 : 10;
    const storms = size === 'long' ? 30 : 3;
    const threshold = 3;
    const workers = await fleet.start(processes, { leaseTtlMs: 5000, backoffMs: 100, threshold, reportDelayMs: 30 });
    const healthy = (value: boolean) => Promise.all(workers.map((w) => w.send({ cmd: 'healthy', value })));

    const firstOpen: number[] = [];
    const everyOpen: number[] = [];
    let executed = 0;
    for (let storm = 0; storm < storms; storm += 1) {
      const from = workers.map((w) => w.events.length);
      // Far enough ahead for the command to reach every process first.
      const at = wallMs() + 200;
      const ran = (await Promise.all(workers.map((w) => w.send({ cmd: 'storm', at, count: threshold })))) as number[];
      executed += ran.reduce((a, b) => a + b, 0);
      // Every call of the storm has run: the dependency heals, a recovery check closes the
      // circuit (no call of this storm can trip it again).
      await healthy(true);
      const opens = await Promise.all(
        workers.map(async (w, n) => {
          const open = await w.next('state', from[n], (e) => e.state === 'open', 15_000);
          await w.next('state', from[n], (e) => e.state === 'closed', 15_000);
          return open.at - at;
        }),
      );
      firstOpen.push(Math.min(...opens));
      everyOpen.push(Math.max(...opens));
      const generation = 2 * storm;
      for (const [n, w] of workers.entries()) {
        expect(w.events.slice(from[n]).filter((e) => e.type === 'state').map((e) => `${e.state}:${e.reason}:${e.generation}`)).toEqual([
          `open:consecutive_failures:${generation + 1}`,
          `closed:recovery_check_passed:${generation + 2}`,
        ]);
      }
      const audit = await fleet.audit();
      expect(audit.slice(generation).map((e) => `${e.to}:${e.gen}`)).toEqual([`open:${generation + 1}`, `closed:${generation + 2}`]);
      await healthy(false);
    }

    const stats = await Promise.all(workers.map((w) => w.stop()));
    const audit = await fleet.audit();
    expect(audit.filter((e) => e.to === 'open')).toHaveLength(storms);
    expect(audit).toHaveLength(2 * storms);
    for (const w of workers) expect(w.of('state').filter((e) => e.state === 'open')).toHaveLength(storms);
    return {
      injected: `${storms} storms: ${processes} processes each failing ${threshold} calls at the same moment (threshold ${threshold}), closed by a recovery check once every call of a storm had run`,
      detectMs: median(firstOpen),
      convergeMs: Math.max(...everyOpen),
      latencyBefore: undefined,
      latencyDuring: undefined,
      transitions: audit.length,
      outcomesLost: unaccounted(executed, stats),
      reportsPerBreaker: mostReports(workers),
      note:
        `one open per storm; detect: from the storm to the first process open (median), converge: to every process open ` +
        `(the slowest storm; median ${median(everyOpen).toFixed(0)} ms); ${executed} of ${processes * threshold * storms} failing calls ran fn, ` +
        'the rest were refused by processes that had seen the circuit open',
    };
  });
});
