import { describe, expect, it } from 'vitest';
import { stall } from '../../harness/clock.js';
import { STALL_MS, stallWatch } from '../../src/stall-watch.js';
import { watchHandles } from '../support/handles.js';

describe('the stall watch', () => {
  it('finds a stall while a call is in flight, and not one from before the call', () => {
    stall(2 * STALL_MS);
    const since = stallWatch.begin();
    expect(stallWatch.stalledSince(since)).toBe(0);
    stall(3 * STALL_MS);
    expect(stallWatch.stalledSince(since)).toBeGreaterThan(STALL_MS);
    stallWatch.end();
    // A call made after the stall is not blamed on it.
    const later = stallWatch.begin();
    expect(stallWatch.stalledSince(later)).toBe(0);
    stallWatch.end();
  });

  it('keeps a timer only while calls are in flight', async () => {
    const timers = watchHandles(['Timeout']);
    // Run from a fresh stack, as calls to Redis are: the handle watch leaves out the test runner's.
    const fresh = (step: () => void) => new Promise<void>((resolve) => setImmediate(() => resolve(step())));
    try {
      await fresh(() => stallWatch.begin());
      await fresh(() => stallWatch.begin());
      expect(await timers.pending()).toHaveLength(1);
      await fresh(() => stallWatch.end());
      expect(await timers.pending()).toHaveLength(1);
      await fresh(() => stallWatch.end());
      expect(await timers.pending()).toEqual([]);
    } finally {
      timers.stop();
    }
  });
});
