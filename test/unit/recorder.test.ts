import { describe, expect, it, vi } from 'vitest';
import { Recorder, Summary } from '../../src/recorder.js';

function summaryOf(outcomes: string): Summary {
  const s = new Summary();
  for (const c of outcomes) s.add(c === 'f' || c === 'F', c === 'S' || c === 'F');
  return s;
}

describe('Summary', () => {
  it.each([
    ['fff', { ok: 0, fail: 3, head: 3, maxRun: 3, tail: 3 }],
    ['sss', { ok: 3, fail: 0, head: 0, maxRun: 0, tail: 0 }],
    ['ffsfff', { ok: 1, fail: 5, head: 2, maxRun: 3, tail: 3 }],
    ['sfffsfs', { ok: 3, fail: 4, head: 0, maxRun: 3, tail: 0 }],
    ['fsf', { ok: 1, fail: 2, head: 1, maxRun: 1, tail: 1 }],
    ['SFf', { slowOk: 1, slowFail: 1, fail: 1, head: 0, maxRun: 2, tail: 2 }],
  ])('%s', (outcomes, expected) => {
    expect(summaryOf(outcomes)).toMatchObject(expected);
  });
});

describe('Recorder', () => {
  function harness(flushDelayMs = 20, maxPending = 1000) {
    const sent: { generation: number; calls: number; fail: number }[] = [];
    let finish: () => void = () => undefined;
    const owner = {
      sendSummary: (generation: number, s: Summary) => {
        sent.push({ generation, calls: s.calls, fail: s.fail });
        return new Promise<void>((resolve) => {
          finish = resolve;
        });
      },
    };
    const recorder = new Recorder(owner, flushDelayMs, maxPending);
    recorder.start(0);
    return { recorder, sent, finish: () => finish() };
  }

  it('sends a failure at once and folds what settles meanwhile into the next call', async () => {
    const { recorder, sent, finish } = harness();
    recorder.add(true, false);
    expect(sent).toEqual([{ generation: 0, calls: 1, fail: 1 }]);
    for (let n = 0; n < 5; n += 1) recorder.add(true, false);
    recorder.add(false, false);
    expect(sent).toHaveLength(1);
    finish();
    await Promise.resolve();
    await Promise.resolve();
    expect(sent).toEqual([
      { generation: 0, calls: 1, fail: 1 },
      { generation: 0, calls: 6, fail: 5 },
    ]);
  });

  it('holds successes until the flush delay', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const { recorder, sent } = harness(30);
      for (let n = 0; n < 100; n += 1) recorder.add(false, false);
      expect(sent).toEqual([]);
      vi.advanceTimersByTime(29);
      expect(sent).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(sent).toEqual([{ generation: 0, calls: 100, fail: 0 }]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('drops what belongs to an older generation, and counts it', () => {
    const { recorder, sent } = harness();
    recorder.add(false, false);
    recorder.add(false, false);
    expect(recorder.reset(4)).toBe(2);
    recorder.add(true, false);
    expect(sent).toEqual([{ generation: 4, calls: 1, fail: 1 }]);
  });

  it('is bounded, and counts what it drops', () => {
    const { recorder } = harness(20, 10);
    for (let n = 0; n < 15; n += 1) recorder.add(false, false);
    expect(recorder.overflowed).toBe(5);
  });

  it('drain() sends what is pending and leaves no timer behind', async () => {
    const { recorder, sent, finish } = harness(10_000);
    recorder.add(false, false);
    const drained = recorder.drain();
    expect(sent).toEqual([{ generation: 0, calls: 1, fail: 0 }]);
    finish();
    await drained;
    recorder.add(true, false);
    expect(sent).toHaveLength(1);
  });
});
