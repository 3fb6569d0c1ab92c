/** Shared pieces of the benchmark cases: arguments, timing loops and the result line. */
import { hrtime } from 'node:process';

export const quick = process.argv.includes('--quick');

/** Positional arguments after the script, flags left out. */
export const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));

export interface Figure {
  /** What was measured, e.g. 'success overhead'. */
  name: string;
  /** Who was measured: 'zenvark', 'cockatiel (consecutive)', ... */
  subject: string;
  value: number;
  unit: string;
  /** Minimum over the repetitions, when value is a median. */
  min?: number;
  /** Extra detail for the table. */
  note?: string;
}

/** Prints the case's figures as one JSON line for bench/run.ts. */
export function report(caseName: string, figures: Figure[]): void {
  console.log(JSON.stringify({ case: caseName, figures }));
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] as number;
}

export function summarize(values: number[]): { n: number; p50: number; p99: number; max: number; min: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    min: sorted[0] ?? Number.NaN,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN,
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Runs `loop(n)` (which makes n calls) and returns nanoseconds per call. */
export async function nsPerCall(n: number, loop: (n: number) => Promise<void>): Promise<number> {
  const start = hrtime.bigint();
  await loop(n);
  return Number(hrtime.bigint() - start) / n;
}
