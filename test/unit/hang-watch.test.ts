import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HangWatch } from '../../src/hang-watch.js';

// Fake timers and a fake Date: the watch's clock is Date.now(), which moves with the timers.
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});

afterEach(() => {
  vi.useRealTimers();
});

/** A watch of 100 ms on the fake clock, and the tags it told of, in order. */
function watch(): { hangs: HangWatch<string>; hung: string[] } {
  const hung: string[] = [];
  const hangs = new HangWatch<string>(100, (tag) => hung.push(tag), () => Date.now());
  return { hangs, hung };
}

describe('the hang watch', () => {
  it('tells of a call once, when it runs past its deadline; its end then says it was counted', () => {
    const { hangs, hung } = watch();
    const call = hangs.begin(Date.now(), 'a');
    vi.advanceTimersByTime(99);
    expect(hung).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(hung).toEqual(['a']);
    vi.advanceTimersByTime(1000);
    expect(hung).toEqual(['a']);
    expect(call.end()).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a call that ends in time is never told of, and its end says so', () => {
    const { hangs, hung } = watch();
    const call = hangs.begin(Date.now(), 'a');
    vi.advanceTimersByTime(50);
    expect(call.end()).toBe(false);
    vi.advanceTimersByTime(1000);
    expect(hung).toEqual([]);
  });

  it('keeps one timer while calls run, re-armed for each deadline in turn, none once they ended', () => {
    const { hangs, hung } = watch();
    expect(vi.getTimerCount()).toBe(0);
    const a = hangs.begin(Date.now(), 'a');
    vi.advanceTimersByTime(30);
    const b = hangs.begin(Date.now(), 'b');
    vi.advanceTimersByTime(30);
    const c = hangs.begin(Date.now(), 'c');
    expect(vi.getTimerCount()).toBe(1);
    // a at 100, b at 130, c at 160: each at its own deadline.
    vi.advanceTimersByTime(40);
    expect(hung).toEqual(['a']);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(30);
    expect(hung).toEqual(['a', 'b']);
    expect([a.end(), b.end()]).toEqual([true, true]);
    expect(vi.getTimerCount()).toBe(1);
    expect(c.end()).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(1000);
    expect(hung).toEqual(['a', 'b']);
  });

  it('a call that ends in the middle leaves the others watched, in order', () => {
    const { hangs, hung } = watch();
    const calls = ['a', 'b', 'c', 'd'].map((tag) => {
      const call = hangs.begin(Date.now(), tag);
      vi.advanceTimersByTime(10);
      return call;
    });
    // The oldest and one in the middle end in time; so does the newest, last.
    expect(calls[1]?.end()).toBe(false);
    expect(calls[0]?.end()).toBe(false);
    vi.advanceTimersByTime(200);
    expect(hung).toEqual(['c', 'd']);
    expect(vi.getTimerCount()).toBe(0);
    expect(calls[3]?.end()).toBe(true);
    // A new call after they all hung arms a timer of its own.
    const e = hangs.begin(Date.now(), 'e');
    expect(vi.getTimerCount()).toBe(1);
    expect(e.end()).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('calls that share a deadline are told of together', () => {
    const { hangs, hung } = watch();
    const now = Date.now();
    hangs.begin(now, 'a');
    hangs.begin(now, 'b');
    vi.advanceTimersByTime(100);
    expect(hung).toEqual(['a', 'b']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('stop() drops the timer and the calls: their end counts as if never watched', () => {
    const { hangs, hung } = watch();
    const a = hangs.begin(Date.now(), 'a');
    const b = hangs.begin(Date.now(), 'b');
    hangs.stop();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(1000);
    expect(hung).toEqual([]);
    expect([a.end(), b.end()]).toEqual([false, false]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a timer that runs early (the event loop rounds its clock) re-arms for what is left', () => {
    let now = 0;
    const hung: string[] = [];
    const hangs = new HangWatch<string>(100, (tag) => hung.push(tag), () => now);
    hangs.begin(0.4, 'a');
    // The timer was asked for a duration from the start, but the clock it is read with says 0.4 ms are left.
    now = 100;
    vi.advanceTimersByTime(100);
    expect(hung).toEqual([]);
    expect(vi.getTimerCount()).toBe(1);
    now = 101;
    vi.advanceTimersByTime(1);
    expect(hung).toEqual(['a']);
    expect(vi.getTimerCount()).toBe(0);
  });
});
