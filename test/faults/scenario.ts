/**
 * The fault suite's contract. A scenario injects one fault into real Redis servers and
 * processes, asserts what a user must observe (in both sizes), and returns its figures.
 * `npm test` runs every scenario 'short'; `npm run faults` (test/faults/run.ts) runs the
 * same files with ZV_FAULTS=long, and writes docs/faults.md from the figures each
 * scenario recorded.
 */
import { appendFileSync } from 'node:fs';
import { it } from 'vitest';
import type { Latency } from './load.js';

export type Size = 'short' | 'long';

/** The size this run's scenarios take. */
export const SIZE: Size = process.env.ZV_FAULTS === 'long' ? 'long' : 'short';

/** Where a long run's scenarios leave their figures, one JSON line each, for run.ts. */
export const RESULTS = new URL('./results.jsonl', import.meta.url);

export interface FaultFigures {
  /** What was injected, for the table: 'SIGSTOP of redis-server for 8 s'. */
  readonly injected: string;
  /** From the injection to the first sign of it in the breakers (a report, a state), in ms. */
  readonly detectMs: number | undefined;
  /** From the end of the fault (or the injection, for faults that do not end) to every
   * instance back on one shared state, in ms. */
  readonly convergeMs: number | undefined;
  /** execute() latency, from the call to its settle, before the fault and during it. */
  readonly latencyBefore: Latency | undefined;
  readonly latencyDuring: Latency | undefined;
  /** Audit entries written while the scenario ran. */
  readonly transitions: number;
  /** Outcomes executed but neither counted (by Redis or locally) nor accounted for in stats. */
  readonly outcomesLost: number;
  /** onError reports per breaker instance (the most any instance received). */
  readonly reportsPerBreaker: number;
  /** Anything the figures do not say. */
  readonly note?: string;
}

/**
 * A scenario as a test: `name` is short, as the table's first column ('Redis frozen
 * (SIGSTOP)'); `run` asserts with vitest's expect and resolves with its figures.
 */
export function scenario(name: string, run: (size: Size) => Promise<FaultFigures>, timeoutMs = SIZE === 'long' ? 600_000 : 60_000): void {
  it(name, async () => {
    const figures = await run(SIZE);
    if (SIZE === 'long') appendFileSync(RESULTS, `${JSON.stringify({ name, ...figures })}\n`);
  }, timeoutMs);
}
