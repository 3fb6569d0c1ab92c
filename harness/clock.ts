/**
 * Time for the tests and the benchmarks. `sleep` is for pacing and for bounded waits
 * after a positive signal; to wait for something to happen, poll for it instead.
 */
import { setTimeout as delay } from 'node:timers/promises';

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return delay(ms);
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes
 * on one machine (performance.now() alone is per process). */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}
