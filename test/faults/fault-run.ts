/**
 * One fault, measured: a steady load through the instances, the injection and the heal
 * marked, detection and convergence timed by polling their signals, and the figures
 * collected once the breakers have stopped (stop() drains the recorders, so every outcome
 * has reached Redis, the local window or a count by then).
 */
import type { Redis } from 'ioredis';
import { expect, vi } from 'vitest';
import { DEFAULTS, breakerKeys } from '../../src/index.js';
import { sleep } from '../../harness/clock.js';
import { type Instance, failing, sharedState } from '../support/instances.js';
import { type Latency, type Load, type LoadResult, lostOutcomes, startLoad } from './load.js';
import type { FaultFigures, Size } from './scenario.js';

/** The codes of the reports an instance's onError received, in order. */
export const codes = (i: Instance): (string | undefined)[] => i.seen.errors.map((e) => (e as { code?: string }).code);

/** How many reports of `code` an instance received. */
export const reported = (i: Instance, code: string): number => codes(i).filter((c) => c === code).length;

/** The report of `code` an instance received first. */
export const reportOf = (i: Instance, code: string): Error | undefined => i.seen.errors.find((e) => (e as { code?: string }).code === code);

/** Every instance has reported `code` at least once (for vi.waitFor). */
export function expectEachReported(instances: readonly Instance[], code: string): void {
  expect(instances.map((i) => codes(i).includes(code))).toEqual(instances.map(() => true));
}

/** Some instance has reported `code` (for vi.waitFor). */
export function expectSomeReported(instances: readonly Instance[], code: string): void {
  expect(instances.some((i) => codes(i).includes(code))).toBe(true);
}

/** The instance heard of each cause once, and of each of `expected` at least once. */
export function expectOncePerCause(i: Instance, ...expected: string[]): void {
  const seen = codes(i);
  for (const code of expected) expect(seen).toContain(code);
  expect(seen.filter((c, n) => seen.indexOf(c) !== n), `${i.breaker.instanceId} heard ${seen.join(', ')}`).toEqual([]);
}

/**
 * Each outage the instance went through was told once, and its end once: its reports of
 * no answer and of Redis answering again alternate, the end last.
 */
export function expectEveryOutageEnded(i: Instance): void {
  const told = codes(i).filter((c) => c === 'ZV_REDIS_UNREACHABLE' || c === 'ZV_REDIS_RESTORED');
  expect(told, `${i.breaker.instanceId} heard ${codes(i).join(', ')}`).toEqual(
    told.map((_, n) => (n % 2 === 0 ? 'ZV_REDIS_UNREACHABLE' : 'ZV_REDIS_RESTORED')),
  );
  expect(told.length % 2, `${i.breaker.instanceId}'s last outage was not told to end: ${codes(i).join(', ')}`).toBe(0);
}

/** Every instance acts on the state Redis has (for vi.waitFor). */
export async function expectOnSharedState(instances: readonly Instance[]): Promise<void> {
  const shared = await sharedState(instances[0] as Instance);
  expect(instances.map((i) => i.breaker.state)).toEqual(instances.map(() => shared.state));
}

/** Every instance left degraded mode and acts on the state Redis has (for vi.waitFor). */
export async function expectRejoined(instances: readonly Instance[]): Promise<void> {
  expectEachReported(instances, 'ZV_REDIS_RESTORED');
  await expectOnSharedState(instances);
}

/** The generations of the audited transitions an instance's onStateChange saw, in order. */
export const generationsSeen = (i: Instance): number[] => i.seen.states.filter((s) => !s.transition.local).map((s) => s.transition.generation);

/** The reasons of every transition an instance's onStateChange saw, in order. */
export const reasonsSeen = (i: Instance): string[] => i.seen.states.map((s) => s.transition.reason);

/**
 * How long a fault that ends with a resync is held: whole 1 s resync periods and a half,
 * so that the heal falls mid-period and convergence shows the middle of the 0–1 s the next
 * resync may take, not a lucky or an unlucky end of it (3.5 s short, 20.5 s long).
 */
export const resyncedOutageMs = (size: Size): number => (size === 'long' ? 20_500 : 3500);

const POLL = { interval: 5 } as const;

/** A phase's latency, if calls were made in it. */
const measured = (latency: Latency | undefined): Latency | undefined => (latency && latency.n > 0 ? latency : undefined);

export class FaultRun {
  /** While true, the dependency behind the load's calls fails. */
  down = false;
  private load: Load | undefined;
  private injectedAt: number | undefined;
  private healedAt: number | undefined;
  private detectMs: number | undefined;
  private convergeMs: number | undefined;
  private result: LoadResult | undefined;
  /** The calls began with the fault there: nothing was measured before it. */
  private faultFirst = false;

  /** `admin` reads the audit stream at the end. Nothing runs until flow(). */
  constructor(
    readonly instances: readonly Instance[],
    private readonly admin: Redis,
    private readonly ratePerSecond = 200,
  ) {}

  /**
   * A run whose calls flow for a while before the fault (5 s long, 0.5 s short), through
   * started breakers.
   */
  static async begin(instances: readonly Instance[], admin: Redis, size: Size, ratePerSecond?: number): Promise<FaultRun> {
    const run = new FaultRun(instances, admin, ratePerSecond);
    run.flow();
    await sleep(size === 'long' ? 5000 : 500);
    return run;
  }

  /**
   * Starts calling every instance's breaker `ratePerSecond` times a second, in phase
   * 'during' if the fault is there already. The breakers must have started.
   */
  flow(): void {
    if (this.load) return;
    this.faultFirst = this.injectedAt !== undefined;
    this.load = startLoad(
      this.instances.map((i) => i.breaker),
      this.ratePerSecond,
      () => (this.down ? failing() : Promise.resolve('ok')),
    );
    if (this.faultFirst) this.load.phase('during');
  }

  /** The fault starts now: latencies from here on count as 'during'. */
  inject(): void {
    this.load?.phase('during');
    this.injectedAt = performance.now();
  }

  /** Waits until `signal` (an assertion) holds; the first such wait times the detection. */
  async detected(signal: () => unknown, timeout = 15_000): Promise<void> {
    await vi.waitFor(signal, { timeout, ...POLL });
    this.detectMs ??= performance.now() - this.injected();
  }

  /** Keeps the fault until `ms` after the injection. */
  async hold(ms: number): Promise<void> {
    await sleep(Math.max(0, this.injected() + ms - performance.now()));
  }

  /** The fault ends now: latencies from here on count as 'after'. */
  heal(): void {
    this.load?.phase('after');
    this.healedAt = performance.now();
  }

  /**
   * Waits until `signal` (an assertion) holds; times the convergence from the heal (or
   * from the injection, for a fault that does not end).
   */
  async converged(signal: () => unknown, timeout = 20_000): Promise<void> {
    await vi.waitFor(signal, { timeout, ...POLL });
    this.convergeMs = performance.now() - (this.healedAt ?? this.injected());
  }

  /** Calls refused with CircuitOpenError, once finish() has stopped the load. */
  get refused(): number {
    return this.outcome().refused;
  }

  /**
   * Stops the load, then the breakers (their recorders drain), and collects the figures;
   * the transitions are the entries of the breaker's audit stream.
   */
  async finish(what: { injected: string; note?: string }): Promise<FaultFigures> {
    if (!this.load) throw new Error('flow() was not called');
    this.result = await this.load.stop();
    await Promise.all(this.instances.map((i) => i.breaker.stop()));
    const first = this.instances[0] as Instance;
    const result = this.outcome();
    return {
      injected: what.injected,
      detectMs: this.detectMs,
      convergeMs: this.convergeMs,
      latencyBefore: this.faultFirst ? undefined : measured(result.phases.get('before')),
      latencyDuring: measured(result.phases.get('during')),
      transitions: await this.admin.xlen(breakerKeys(DEFAULTS.prefix, first.breaker.id).events),
      outcomesLost: lostOutcomes(
        result.executed,
        this.instances.map((i) => i.breaker),
      ),
      reportsPerBreaker: Math.max(...this.instances.map((i) => i.seen.errors.length)),
      ...(what.note === undefined ? {} : { note: what.note }),
    };
  }

  private outcome(): LoadResult {
    if (!this.result) throw new Error('the run has not finished');
    return this.result;
  }

  private injected(): number {
    if (this.injectedAt === undefined) throw new Error('inject() was not called');
    return this.injectedAt;
  }
}
