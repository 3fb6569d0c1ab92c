/**
 * What the fault scenarios with breaker instances in separate processes share: a Redis
 * server of the file's own with the shipped library loaded, the workers of the running
 * test (killed after it, whether stopped, frozen or already dead), and what Redis says
 * of their breaker.
 */
import { afterEach, beforeAll, expect, vi } from 'vitest';
import { type BreakerStats, DEFAULTS, breakerKeys } from '../../src/index.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { type Worker, leaderAmong, startWorkers } from '../../harness/fleet/processes.js';
import type { WorkerConfig } from '../../harness/fleet/worker.js';
import { wallMs } from '../../harness/clock.js';
import { stateOf, uniqueId } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';
import type { FaultFigures } from './scenario.js';

/** One entry of a breaker's audit stream: its id and fields (from, to, reason, gen, actor, token, time, ...). */
export type AuditEntry = Readonly<Record<string, string>> & { readonly id: string };

export interface ProcessFleet {
  readonly own: ReturnType<typeof ownRedis>;
  /** Starts `size` workers of a new breaker on this file's server. */
  start(size: number, config: Omit<WorkerConfig, 'url' | 'id' | 'instanceId'>): Promise<Worker[]>;
  /** The breaker of the running test as zv1_state reads it: state, gen, holder, token, ... */
  state(): Promise<Record<string, string>>;
  /** Its audit stream, oldest first. */
  audit(): Promise<AuditEntry[]>;
}

/** Call at the top of a test file. */
export function processFleet(): ProcessFleet {
  const own = ownRedis();
  let workers: Worker[] = [];
  let id = '';
  beforeAll(async () => {
    await own.admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
  });
  afterEach(async () => {
    // SIGKILL ends a frozen (SIGSTOPped) process too.
    for (const w of workers) if (w.alive) w.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    workers = [];
  });
  return {
    own,
    async start(size, config) {
      id = uniqueId('faults');
      workers = await startWorkers(size, { ...config, url: own.server.url, id });
      return workers;
    },
    state: () => stateOf(own.admin, id),
    async audit() {
      const entries = (await own.admin.xrange(breakerKeys(DEFAULTS.prefix, id).events, '-', '+')) as [string, string[]][];
      return entries.map(([entryId, list]) => {
        const fields: Record<string, string> = {};
        for (let n = 0; n + 1 < list.length; n += 2) fields[list[n] as string] = list[n + 1] as string;
        return { ...fields, id: entryId };
      });
    },
  };
}

/** The most onError reports any of the workers received (workers leave failed health checks out). */
export function mostReports(workers: readonly Worker[]): number {
  return Math.max(0, ...workers.map((w) => w.of('error').length));
}

/** Outcomes of `executed` calls that no worker's stats (read after its stop) account for. */
export function unaccounted(executed: number, stats: readonly (BreakerStats | undefined)[]): number {
  let accounted = 0;
  for (const s of stats) if (s) accounted += s.recorded + s.stale + s.local + s.overflowed + s.undelivered + s.ignored + s.trials;
  return Math.max(0, executed - accounted);
}

/** Waits, with a generous limit, until every one of `workers` reports `state`. */
export async function untilEvery(workers: readonly Worker[], state: string, timeout = 15_000): Promise<void> {
  await vi.waitFor(() => expect(workers.map((w) => w.state)).toEqual(workers.map(() => state)), { timeout, interval: 10 });
}

/**
 * The dependency heals: every worker's checks pass, and the recovery check of `holder`
 * closes the circuit under its `token`, for all of them: each saw it open once and
 * closed once, and the audit stream says so. Resolves with the time from the heal to the
 * last of them closed, and the audit stream.
 */
export async function healUnder(
  fleet: ProcessFleet,
  workers: readonly Worker[],
  holder: Worker,
  token: number,
): Promise<{ convergeMs: number; audit: AuditEntry[] }> {
  const healedAt = wallMs();
  await Promise.all(workers.map((w) => w.send({ cmd: 'healthy', value: true })));
  await untilEvery(workers, 'closed');
  const convergeMs = Math.max(...workers.map((w) => (w.of('state').at(-1)?.at ?? Number.NaN) - healedAt));
  const story = ['open:consecutive_failures', 'closed:recovery_check_passed'];
  for (const w of workers) expect(w.of('state').map((e) => `${e.state}:${e.reason}`)).toEqual(story);
  const audit = await fleet.audit();
  expect(audit.map((e) => `${e.to}:${e.reason}`)).toEqual(story);
  expect(audit.at(-1)).toMatchObject({ actor: holder.name, token: String(token) });
  return { convergeMs, audit };
}

/**
 * Waits until `leader` is the only one of the live `workers` that says it leads, and
 * Redis names it as the holder of a valid lease; resolves with its fencing token. (A
 * frozen process says what it said last: leave it out of `workers`.)
 */
export async function soleHolder(fleet: ProcessFleet, workers: readonly Worker[], leader: Worker): Promise<number> {
  return vi.waitFor(
    async () => {
      expect(workers.filter((w) => w.alive && w.role === 'leader').map((w) => w.name)).toEqual([leader.name]);
      const shared = await fleet.state();
      expect(shared.holder).toBe(leader.name);
      return Number(shared.token);
    },
    { timeout: 15_000, interval: 20 },
  );
}

/**
 * Trips the breaker of `workers` and waits until every one sees it open, one holds the
 * lease its recovery checks need (whichever), and the holder has run its first check;
 * resolves with the holder and its fencing token. Where the lease takeover scenarios
 * start from.
 */
export async function openUnderHolder(fleet: ProcessFleet, workers: Worker[]): Promise<{ holder: Worker; token: number }> {
  await workers[0]?.send({ cmd: 'fail', count: 3 });
  await untilEvery(workers, 'open');
  const holder = await leaderAmong(workers);
  await holder.next('check');
  return { holder, token: await soleHolder(fleet, workers, holder) };
}

/**
 * The figures of a lease takeover scenario (no load runs): detect is the longest time
 * from a fault of the holder (`what`) to another process's first recovery check.
 */
export function takeoverFigures(
  f: { injected: string; what: string; takeovers: number[]; convergeMs: number; audit: AuditEntry[]; workers: readonly Worker[]; note: string },
): FaultFigures {
  return {
    injected: f.injected,
    detectMs: Math.max(...f.takeovers),
    convergeMs: f.convergeMs,
    latencyBefore: undefined,
    latencyDuring: undefined,
    transitions: f.audit.length,
    outcomesLost: 0,
    reportsPerBreaker: mostReports(f.workers),
    note:
      `another process ran the next recovery check ${f.takeovers.map((t) => t.toFixed(0)).join(', ')} ms after each ${f.what} (detect: the longest); ` +
      `${f.note}; converge: from the dependency healing to every process closed; no load runs (outcomes not measured)`,
  };
}
