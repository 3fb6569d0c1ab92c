/**
 * Time for the tests and the benchmarks. `sleep` is for pacing and for bounded waits
 * after a positive signal; to wait for something to happen, poll for it instead.
 */
import { setTimeout as delay } from 'node:timers/promises';

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return delay(ms);
}

/**
 * What to add to performance.now() for the system clock's time. Measured at a tick of
 * Date.now(), so that it is right to a few microseconds: performance.timeOrigin can be
 * off by several milliseconds in a process that started under load, which made
 * processes disagree on the time.
 */
const offsetMs = (() => {
  // The first call loads the performance API, which takes milliseconds.
  performance.now();
  const start = Date.now();
  let now = start;
  while (now === start) now = Date.now();
  return now - performance.now();
})();

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes
 * on one machine (performance.now() alone is per process). */
export function wallMs(): number {
  return offsetMs + performance.now();
}

/**
 * Blocks this process for `ms`, as a stall would (a long GC pause, a blocked event loop):
 * no timer, socket or promise callback runs meanwhile. A fault to inject, not a wait.
 */
export function stall(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
