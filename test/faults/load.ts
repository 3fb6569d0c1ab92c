/**
 * Steady calls through breakers while a fault is injected: execute() latency from the
 * call to its settle (fn answers at once, so this is the breaker's own cost, which must
 * not move with Redis), and what happened to each outcome.
 */
import type { CircuitBreaker } from '../../src/index.js';
import { sleep } from '../../harness/clock.js';

export interface Latency {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
}

export interface LoadResult {
  /** Latencies by phase, in the order the phases were marked. */
  readonly phases: ReadonlyMap<string, Latency>;
  /** Calls that ran fn (not refused with CircuitOpenError). */
  readonly executed: number;
  readonly refused: number;
}

export interface Load {
  /** Starts a new phase: latencies from now on are counted under `name`. */
  phase(name: string): void;
  /** Stops calling and waits for calls in flight. */
  stop(): Promise<LoadResult>;
}

function latency(values: number[]): Latency {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN;
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), p999: at(0.999) };
}

/**
 * Calls every breaker `ratePerSecond` times a second (in ticks of 10 ms) with `fn`, which
 * decides each call's outcome (`failing()` to throw). Starts in phase 'before'.
 */
export function startLoad(breakers: readonly CircuitBreaker[], ratePerSecond: number, fn: () => Promise<unknown>): Load {
  const samples = new Map<string, number[]>([['before', []]]);
  let current = samples.get('before') as number[];
  let executed = 0;
  let refused = 0;
  let running = true;
  const inFlight = new Set<Promise<unknown>>();
  const perTick = Math.max(1, Math.round(ratePerSecond / 100));
  const loop = (async () => {
    while (running) {
      for (const breaker of breakers) {
        for (let n = 0; n < perTick; n += 1) {
          const bucket = current;
          const startedAt = performance.now();
          const call = breaker
            .execute(() => {
              executed += 1;
              return fn();
            })
            .catch((error: unknown) => {
              if ((error as { code?: string })?.code === 'ZV_CIRCUIT_OPEN') refused += 1;
            })
            .finally(() => {
              bucket.push(performance.now() - startedAt);
              inFlight.delete(call);
            });
          inFlight.add(call);
        }
      }
      await sleep(10);
    }
  })();
  return {
    phase(name) {
      current = [];
      samples.set(name, current);
    },
    async stop() {
      running = false;
      await loop;
      await Promise.all(inFlight);
      return { phases: new Map([...samples].map(([name, values]) => [name, latency(values)])), executed, refused };
    },
  };
}

/** Outcomes executed but not accounted for by any breaker's stats. */
export function lostOutcomes(executed: number, breakers: readonly CircuitBreaker[]): number {
  let accounted = 0;
  for (const b of breakers) {
    const s = b.stats;
    accounted += s.recorded + s.stale + s.local + s.overflowed + s.undelivered + s.ignored + s.trials;
  }
  return Math.max(0, executed - accounted);
}
