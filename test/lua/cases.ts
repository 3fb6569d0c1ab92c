/**
 * The Lua case table: every function, each strategy and threshold edge, each transition,
 * stale generations and tokens, expired leases, and bad arguments and keys. The same table
 * runs against the shipped (minified) library with its expectations, and against the
 * source library to prove that minifying changed nothing.
 */
import { expect } from 'vitest';
import { keyList } from '../../src/keys.js';
import { LIBRARY_REVISION } from '../../src/shipped-library.js';
import {
  type CallStep,
  type LuaCase,
  type Step,
  acquire,
  callStep,
  consecutive,
  count,
  dumps,
  existingKeys,
  explain,
  granted,
  grantedText,
  header,
  health,
  permit,
  record,
  release,
  renew,
  state,
  sync,
  summary,
  time,
  trial,
  NEW_TOKEN,
} from './harness.js';


const error = (pattern: RegExp) => ({ error: expect.stringMatching(pattern) });
const opened = (gen: number, reason: string) => ({
  status: 'opened',
  state: 'open',
  gen,
  transition: expect.objectContaining({ from: 'closed', to: 'open', reason, gen: String(gen) }),
});

/** Nothing of the breaker exists: a refused call wrote nothing. */
const nothingWritten: Step = {
  check: async (redis, keys) => {
    expect(await existingKeys(redis, keys)).toEqual([]);
  },
};

const streamLength = (n: number): Step => ({
  check: async (redis, keys) => {
    expect(await redis.xlen(keys.events)).toBe(n);
  },
});

/** Calls `step` and checks that neither key of the breaker changed (a read writes nothing). */
const unchangedBy = (step: Omit<CallStep, 'expect'>): Step => ({
  check: async (redis, keys) => {
    const before = await dumps(redis, keys);
    await callStep(redis, keys, step);
    expect(await dumps(redis, keys)).toEqual(before);
  },
});

/**
 * A time window of 2 s: three successes, a second later `later` (two calls that reach no
 * rule among five), and 2.2 s after the successes what explain reads once they expired.
 */
function expiring(name: string, spec: string, later: Parameters<typeof summary>[0], left: Record<string, number>): LuaCase {
  return {
    name,
    steps: [
      { ...record(0, { ok: 3 }, spec), expect: { status: 'ok' } },
      { sleepMs: 1000 },
      { ...record(0, later, spec), expect: { status: 'ok', state: 'closed' } },
      { ...explain(), expect: { calls: 5, slow: left.slow, failure_reached: 0, slow_reached: 0 } },
      { sleepMs: 1200 },
      { ...explain(), expect: { state: 'closed', ...left } },
      unchangedBy(explain()),
    ],
  };
}

/** A breaker opened by one consecutive failure, leased to 'leader' (the case's first token). */
const openAndLeased: Step[] = [
  { ...record(0, { fail: 1 }, consecutive(1)), expect: opened(1, 'consecutive_failures') },
  { ...acquire('leader', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
];

/** A breaker opened by one failure, leased to 'leader', then half-open (2 permits, 2 successes close). */
const halfOpen: Step[] = [
  ...openAndLeased,
  {
    ...health('leader', granted(1), 1, 'wait', 'success', 1, 2),
    expect: { status: 'half_open', state: 'half_open', gen: 2, transition: expect.objectContaining({ reason: 'open_wait_elapsed', from: 'open', to: 'half_open' }) },
  },
];

/** Calls that must be refused with ZV_BADARG before anything is written. */
const badArguments: [string, Step, RegExp][] = [
  ['two keys are required', { fn: 'zv1_record', keys: ['only-one'], args: [...header(), '0', ...summary({ fail: 1 }), consecutive(1)] }, /^ZV_BADARG expected 2 keys \(state, events\), got 1/],
  ['channel must be given', { fn: 'zv1_acquire', args: ['', 'i1', '100', '1000'] }, /^ZV_BADARG channel must be 1 to 1024 bytes/],
  ['actor must be given', { fn: 'zv1_acquire', args: ['c', '', '100', '1000'] }, /^ZV_BADARG actor must be 1 to 256 bytes/],
  ['retention must be an integer', { fn: 'zv1_acquire', args: ['c', 'i1', 'lots', '1000'] }, /^ZV_BADARG retention must be an integer, got 'lots'/],
  ['retention must be >= 1', { fn: 'zv1_acquire', args: ['c', 'i1', '0', '1000'] }, /^ZV_BADARG retention must be in \[1, 1000000\], got 0/],
  ['ttl is required', { fn: 'zv1_acquire', args: header() }, /^ZV_BADARG ttl is missing \(ARGV\[4\]\)/],
  ['ttl must be >= 1', acquire('i1', 0), /^ZV_BADARG ttl must be in \[1, 3600000\], got 0/],
  ['ttl must be an integer', { fn: 'zv1_acquire', args: [...header(), '1.5'] }, /^ZV_BADARG ttl must be an integer, got '1.5'/],
  ['generation must be an integer', { fn: 'zv1_record', args: [...header(), 'x', ...summary({ fail: 1 }), consecutive(1)] }, /^ZV_BADARG generation must be an integer, got 'x'/],
  ['generation must be a whole number', { fn: 'zv1_record', args: [...header(), '1.5', ...summary({ fail: 1 }), consecutive(1)] }, /^ZV_BADARG generation must be an integer, got '1.5'/],
  ['generation must be >= 0', record(-1, { fail: 1 }, consecutive(1)), /^ZV_BADARG generation must be in/],
  ['counts must be >= 0', { fn: 'zv1_record', args: [...header(), '0', '-1', '1', '0', '0', '1', '1', '1', consecutive(1)] }, /^ZV_BADARG successes must be in/],
  ['a strategy spec is required', { fn: 'zv1_record', args: [...header(), '0', ...summary({ fail: 1 })] }, /^ZV_BADARG strategy is missing \(ARGV\[12\]\)/],
  ['a strategy spec has four parts', record(0, { fail: 1 }, 'consecutive:3'), /^ZV_BADARG strategy must be 'kind:threshold:window:minimum\[:slow\]', got 'consecutive:3'/],
  ['a summary must hold an outcome', record(0, {}, consecutive(1)), /^ZV_BADARG the summary holds no outcome/],
  ['runs cannot exceed failures', record(0, { ok: 1, fail: 1, head: 0, maxRun: 2, tail: 0 }, consecutive(1)), /^ZV_BADARG runs must satisfy/],
  ['head and tail cannot overlap', record(0, { ok: 1, fail: 2, head: 2, maxRun: 2, tail: 1 }, consecutive(1)), /^ZV_BADARG head and tail runs overlap/],
  ['all-failure batches are one run', record(0, { fail: 3, head: 1, maxRun: 1, tail: 1 }, consecutive(1)), /^ZV_BADARG without successes every run must equal failures/],
  ['failures need a run', record(0, { ok: 1, fail: 1, head: 0, maxRun: 0, tail: 0 }, consecutive(1)), /^ZV_BADARG longest run must be at least 1/],
  ['strategy must be known', record(0, { fail: 1 }, 'leaky:1:0:0'), /^ZV_BADARG strategy must be one of consecutive, count, time, got 'leaky'/],
  ['consecutive threshold >= 1', record(0, { fail: 1 }, consecutive(0)), /^ZV_BADARG threshold must be in \[1, 1000000000\], got 0/],
  ['a rate above 1 is refused', record(0, { fail: 1 }, count(1.5, 10)), /^ZV_BADARG threshold must be in \(0, 1\], got 1.5/],
  ['a rate of 0 is refused', record(0, { fail: 1 }, count(0, 10)), /^ZV_BADARG threshold must be in \(0, 1\], got 0/],
  ['a rate must be a number', record(0, { fail: 1 }, 'count:nan:10:10'), /^ZV_BADARG threshold must be a number, got 'nan'/],
  ['count size >= 1', record(0, { fail: 1 }, count(0.5, 0, 1)), /^ZV_BADARG window must be in \[1, 10000\], got 0/],
  ['count size <= 10000', record(0, { fail: 1 }, count(0.5, 10_001, 1)), /^ZV_BADARG window must be in \[1, 10000\], got 10001/],
  ['minimum calls <= size', record(0, { fail: 1 }, count(0.5, 10, 11)), /^ZV_BADARG minimum calls must be in \[1, 10\], got 11/],
  ['duration >= 10 ms', record(0, { fail: 1 }, time(0.5, 5)), /^ZV_BADARG window must be in \[10, 86400000\], got 5/],
  ['renew needs a token', { fn: 'zv1_renew', args: [...header(), 'abc', '1000'] }, /^ZV_BADARG token must be an integer, got 'abc'/],
  ['release needs a token >= 1', release('i1', 0), /^ZV_BADARG token must be in/],
  ['health type must be known', health('i1', 1, 0, 'deep', 'success'), /^ZV_BADARG type must be one of idle, recovery, wait, got 'deep'/],
  ['health result must be known', health('i1', 1, 0, 'recovery', 'maybe'), /^ZV_BADARG result must be one of failure, success, got 'maybe'/],
  ['success threshold >= 1', health('i1', 1, 0, 'recovery', 'success', 0), /^ZV_BADARG success threshold must be in \[1, 100\], got 0/],
  ['trial permits >= 0', health('i1', 1, 0, 'recovery', 'success', 1, -1), /^ZV_BADARG trial permits must be in \[0, 10000\], got -1/],
  ["'wait' needs trial permits", health('i1', 1, 0, 'wait', 'success', 1, 0), /^ZV_BADARG type 'wait' needs trial permits and result 'success'/],
  ['a slow-call rate needs a window', record(0, { fail: 1 }, 'consecutive:3:0:0:0.5'), /^ZV_BADARG a slow-call rate needs a count or time window/],
  ['a slow-call rate is in (0, 1]', record(0, { fail: 1 }, 'count:0.5:10:10:2'), /^ZV_BADARG slow-call rate must be in \(0, 1\], got 2/],
  ['permit: successes <= permits', permit(0, 2, 3), /^ZV_BADARG trial successes must be in \[1, 2\], got 3/],
  ['permit: permits >= 1', permit(0, 0, 1), /^ZV_BADARG trial permits must be in \[1, 10000\], got 0/],
  ['permit: ttl >= 1', permit(0, 2, 2, 0), /^ZV_BADARG permit ttl must be in \[1, 3600000\], got 0/],
  ['trial: the result must be known', trial(0, 1, 'great', 2, 2), /^ZV_BADARG result must be one of failure, ignored, success, got 'great'/],
  ['extra arguments are refused: record', { fn: 'zv1_record', args: [...header(), '0', ...summary({ fail: 1 }), consecutive(1), '1000', 'more'] }, /^ZV_BADARG expected at most 13 arguments, got 14/],
  ['record: a lease ttl >= 1', record(0, { fail: 1 }, consecutive(1), 'i1', 100, 0), /^ZV_BADARG lease ttl must be in \[1, 3600000\], got 0/],
  ['record: a lease ttl is an integer', { fn: 'zv1_record', args: [...header(), '0', ...summary({ fail: 1 }), consecutive(1), 'soon'] }, /^ZV_BADARG lease ttl must be an integer, got 'soon'/],
  ['extra arguments are refused: acquire', { fn: 'zv1_acquire', args: [...header(), '1000', 'more'] }, /^ZV_BADARG expected at most 4 arguments, got 5/],
  ['extra arguments are refused: renew', { fn: 'zv1_renew', args: [...header(), '1', '1000', 'more'] }, /^ZV_BADARG expected at most 5 arguments, got 6/],
  ['extra arguments are refused: release', { fn: 'zv1_release', args: [...header(), '1', 'more'] }, /^ZV_BADARG expected at most 4 arguments, got 5/],
  ['extra arguments are refused: health', { ...health('i1', 1, 0, 'recovery', 'success', 1, 0), args: [...health('i1', 1, 0, 'recovery', 'success', 1, 0).args, 'more'] }, /^ZV_BADARG expected at most 9 arguments, got 10/],
  ['extra arguments are refused: permit', { fn: 'zv1_permit', args: [...permit(0, 2, 2).args, 'more'] }, /^ZV_BADARG expected at most 7 arguments, got 8/],
  ['extra arguments are refused: trial', { fn: 'zv1_trial', args: [...trial(0, 1, 'success', 2, 2).args, 'more'] }, /^ZV_BADARG expected at most 8 arguments, got 9/],
  ['extra arguments are refused: state', { fn: 'zv1_state', args: ['more'] }, /^ZV_BADARG expected at most 0 arguments, got 1/],
  ['extra arguments are refused: sync', { fn: 'zv1_sync', args: [...header(), consecutive(1), 'more'] }, /^ZV_BADARG expected at most 4 arguments, got 5/],
  ['sync needs a strategy', { fn: 'zv1_sync', args: header() }, /^ZV_BADARG strategy is missing \(ARGV\[4\]\)/],
  ['sync needs the header', { fn: 'zv1_sync', args: [] }, /^ZV_BADARG channel is missing \(ARGV\[1\]\)/],
  ['revision takes no keys', { fn: 'zv1_revision', keys: ['k'], args: [] }, /^ZV_BADARG expected no keys and no arguments, got 1 keys and 0 arguments/],
  ['revision takes no arguments', { fn: 'zv1_revision', keys: [], args: ['x'] }, /^ZV_BADARG expected no keys and no arguments, got 0 keys and 1 arguments/],
  ['extra arguments are refused: explain', { fn: 'zv1_explain', args: ['more'] }, /^ZV_BADARG expected at most 0 arguments, got 1/],
  ['explain takes the two keys', { fn: 'zv1_explain', keys: ['only-one'], args: [] }, /^ZV_BADARG expected 2 keys \(state, events\), got 1/],
  ['trial: a permit id is an integer', { fn: 'zv1_trial', args: [...header(), '0', 'p1', 'success', '2', '2'] }, /^ZV_BADARG permit must be an integer, got 'p1'/],
];

export const CASES: LuaCase[] = [
  {
    name: 'revision answers the shipped revision',
    steps: [{ fn: 'zv1_revision', args: [], keys: [], expect: { revision: LIBRARY_REVISION } }],
  },
  {
    name: 'reading a breaker that was never written answers closed, generation 0, and writes nothing',
    steps: [
      {
        ...state(),
        expect: { state: 'closed', gen: 0, epoch: '', holder: '', token: 0, lease_ms: 0, idle_ms: -1, revision: LIBRARY_REVISION },
      },
      nothingWritten,
    ],
  },

  // ---- consecutive ----
  {
    name: 'consecutive: threshold - 1 failures stay closed, the threshold-th opens once',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(3)), expect: { status: 'ok', state: 'closed', gen: 0, transition: undefined } },
      { ...record(0, { fail: 1 }, consecutive(3)), expect: { status: 'ok', state: 'closed', gen: 0 } },
      {
        ...record(0, { fail: 1 }, consecutive(3)),
        expect: {
          ...opened(1, 'consecutive_failures'),
          transition: expect.objectContaining({
            failures: '3', calls: '3', threshold: '3', window: 'consecutive', actor: 'i1', token: '', kind: 'transition',
          }),
        },
      },
      streamLength(1),
      { ...state(), expect: { state: 'open', gen: 1 } },
    ],
  },
  {
    name: 'consecutive: a success resets the run',
    steps: [
      { ...record(0, { fail: 2 }, consecutive(3)), expect: { status: 'ok' } },
      { ...record(0, { ok: 1 }, consecutive(3)), expect: { status: 'ok' } },
      { ...record(0, { fail: 2 }, consecutive(3)), expect: { status: 'ok', state: 'closed' } },
      { ...record(0, { fail: 1 }, consecutive(3)), expect: opened(1, 'consecutive_failures') },
    ],
  },
  {
    name: 'consecutive: the head run of a batch continues the stored run',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(3)), expect: { status: 'ok' } },
      // f f s f: head 2 continues the run of 1 to 3.
      { ...record(0, { ok: 1, fail: 3, head: 2, maxRun: 2, tail: 1 }, consecutive(3)), expect: opened(1, 'consecutive_failures') },
    ],
  },
  {
    name: 'consecutive: a run inside a batch trips even when the batch ends with a success',
    steps: [
      // s f f f s
      {
        ...record(0, { ok: 2, fail: 3, head: 0, maxRun: 3, tail: 0 }, consecutive(3)),
        expect: { ...opened(1, 'consecutive_failures'), transition: expect.objectContaining({ failures: '3' }) },
      },
    ],
  },
  {
    name: 'consecutive: the tail run of a batch is carried to the next',
    steps: [
      // f s f f: tail 2
      { ...record(0, { ok: 1, fail: 3, head: 1, maxRun: 2, tail: 2 }, consecutive(3)), expect: { status: 'ok' } },
      { ...record(0, { fail: 1 }, consecutive(3)), expect: opened(1, 'consecutive_failures') },
    ],
  },

  // ---- count window ----
  {
    name: 'count: below the minimum number of calls nothing trips, at the minimum the rate decides',
    steps: [
      { ...record(0, { fail: 5, ok: 4, head: 0, maxRun: 5, tail: 5 }, count(0.5, 10, 10)), expect: { status: 'ok' } },
      // 5 failures in 10 calls = 0.5 = threshold.
      {
        ...record(0, { ok: 1 }, count(0.5, 10, 10)),
        expect: {
          ...opened(1, 'failure_rate'),
          transition: expect.objectContaining({ failures: '5', calls: '10', rate: '0.5000', threshold: '0.5', window: 'count:10' }),
        },
      },
    ],
  },
  {
    name: 'count: a rate just below the threshold stays closed',
    steps: [
      { ...record(0, { ok: 6, fail: 4, head: 0, maxRun: 4, tail: 4 }, count(0.5, 10, 10)), expect: { status: 'ok', state: 'closed' } },
      { ...record(0, { ok: 10 }, count(0.5, 10, 10)), expect: { status: 'ok', state: 'closed' } },
    ],
  },
  {
    name: 'count: the window holds only the last `size` calls',
    steps: [
      { ...record(0, { fail: 2 }, count(0.75, 4, 4)), expect: { status: 'ok' } },
      // The two failures slide out behind four successes.
      { ...record(0, { ok: 4 }, count(0.75, 4, 4)), expect: { status: 'ok' } },
      { ...record(0, { fail: 2 }, count(0.75, 4, 4)), expect: { status: 'ok', state: 'closed' } },
      { ...record(0, { fail: 1 }, count(0.75, 4, 4)), expect: opened(1, 'failure_rate') },
    ],
  },
  {
    name: 'count: a batch larger than the window keeps its last outcomes, failures last',
    steps: [{ ...record(0, { ok: 20, fail: 5, head: 0, maxRun: 5, tail: 5 }, count(1, 5, 5)), expect: opened(1, 'failure_rate') }],
  },
  {
    name: 'count: the minimum can be lower than the size',
    steps: [{ ...record(0, { fail: 2 }, count(1, 100, 2)), expect: opened(1, 'failure_rate') }],
  },

  // ---- time window ----
  {
    name: 'time: the rate over the window opens at the threshold',
    steps: [
      { ...record(0, { ok: 3, fail: 2, head: 0, maxRun: 2, tail: 2 }, time(0.5, 60_000, 6)), expect: { status: 'ok' } },
      {
        ...record(0, { fail: 1 }, time(0.5, 60_000, 6)),
        expect: {
          ...opened(1, 'failure_rate'),
          transition: expect.objectContaining({ failures: '3', calls: '6', window: 'time:60000' }),
        },
      },
    ],
  },
  {
    name: 'time: calls older than the window no longer count',
    steps: [
      { ...record(0, { fail: 3 }, time(0.5, 300, 4)), expect: { status: 'ok' } },
      { sleepMs: 450 },
      // Only these two calls are in the window: below the minimum of 4.
      { ...record(0, { ok: 1, fail: 1, head: 0, maxRun: 1, tail: 1 }, time(0.5, 300, 4)), expect: { status: 'ok', state: 'closed' } },
    ],
  },
  {
    name: 'time: calls within the window add up across records',
    steps: [
      { ...record(0, { fail: 2 }, time(1, 60_000, 4)), expect: { status: 'ok' } },
      { ...record(0, { fail: 1 }, time(1, 60_000, 4)), expect: { status: 'ok' } },
      { ...record(0, { fail: 1 }, time(1, 60_000, 4)), expect: opened(1, 'failure_rate') },
    ],
  },

  // ---- window shape and generations ----
  {
    name: 'a window of another shape is reset and says so',
    steps: [
      { ...record(0, { fail: 3 }, count(0.5, 10, 10)), expect: { status: 'ok' } },
      { ...record(0, { fail: 1 }, count(0.5, 20, 10)), expect: { status: 'reshaped', state: 'closed' } },
      { ...record(0, { fail: 8 }, count(0.5, 20, 10)), expect: { status: 'ok', state: 'closed' } },
      { ...record(0, { fail: 1 }, count(0.5, 20, 10)), expect: opened(1, 'failure_rate') },
    ],
  },
  {
    name: 'outcomes of an older generation are not counted',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(1)), expect: opened(1, 'consecutive_failures') },
      { ...record(0, { fail: 5 }, consecutive(1)), expect: { status: 'stale_gen', state: 'open', gen: 1, transition: undefined } },
      streamLength(1),
    ],
  },
  {
    name: 'outcomes reported while the circuit is open are not counted',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(1)), expect: opened(1, 'consecutive_failures') },
      { ...record(1, { fail: 1 }, consecutive(1)), expect: { status: 'not_closed', state: 'open', gen: 1 } },
      streamLength(1),
    ],
  },
  {
    name: 'a transition resets the window: outcomes of the new generation start from zero',
    steps: [
      ...openAndLeased,
      { ...health('leader', granted(1), 1, 'recovery', 'success'), expect: { status: 'closed', state: 'closed', gen: 2 } },
      { ...record(2, { fail: 2 }, consecutive(3)), expect: { status: 'ok', state: 'closed' } },
      { ...record(2, { fail: 1 }, consecutive(3)), expect: opened(3, 'consecutive_failures') },
    ],
  },
  {
    name: 'a generation ahead of the server (a client that saw an older life of the keys) is stale',
    steps: [{ ...record(7, { fail: 1 }, consecutive(1)), expect: { status: 'stale_gen', state: 'closed', gen: 0, epoch: '' } }, nothingWritten],
  },

  // ---- leases ----
  {
    name: 'lease: a trip with a lease ttl grants the reporter the lease, and its entry tells who holds it',
    steps: [
      {
        ...record(0, { fail: 1 }, consecutive(1), 'i1', 100, 10_000),
        expect: {
          status: 'opened',
          token: NEW_TOKEN,
          transition: expect.objectContaining({ from: 'closed', to: 'open', reason: 'consecutive_failures', holder: 'i1', lease_ms: '10000' }),
        },
      },
      { ...state(), expect: { state: 'open', holder: 'i1', token: granted(1) } },
      { ...acquire('b', 10_000), expect: { status: 'held', holder: 'i1', token: granted(1) } },
      { ...health('i1', granted(1), 1, 'recovery', 'success'), expect: { status: 'closed', state: 'closed' } },
    ],
  },
  {
    name: 'lease: a trip while another instance holds the lease leaves it there, and its entry tells who holds it',
    steps: [
      { ...acquire('prober', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      {
        ...record(0, { fail: 1 }, consecutive(1), 'i1', 100, 10_000),
        expect: { status: 'opened', token: 0, transition: expect.objectContaining({ to: 'open', holder: 'prober' }) },
      },
      { ...state(), expect: { holder: 'prober', token: granted(1) } },
    ],
  },
  {
    name: 'lease: the holder tripping the breaker keeps its lease and its token',
    steps: [
      { ...acquire('i1', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      { ...record(0, { fail: 1 }, consecutive(1), 'i1', 100, 10_000), expect: { status: 'opened', token: granted(1) } },
      { ...state(), expect: { holder: 'i1', token: granted(1) } },
    ],
  },
  {
    name: 'lease: a trip grants a token above the last one, once the lease has expired',
    steps: [
      { ...acquire('a', 100), expect: { status: 'granted', token: NEW_TOKEN } },
      { sleepMs: 150 },
      { ...record(0, { fail: 1 }, consecutive(1), 'b', 100, 10_000), expect: { status: 'opened', token: NEW_TOKEN } },
      { ...renew('a', granted(1), 10_000), expect: { status: 'lost', holder: 'b', token: granted(2) } },
    ],
  },
  {
    name: 'lease: a trip without a lease ttl (a client of an earlier revision) grants nothing',
    steps: [
      {
        ...record(0, { fail: 1 }, consecutive(1)),
        expect: { status: 'opened', token: 0, transition: expect.objectContaining({ to: 'open', holder: '', lease_ms: '0' }) },
      },
      { ...state(), expect: { holder: '', token: 0, lease_ms: 0 } },
    ],
  },
  {
    name: 'lease: a free lease is granted with a token drawn from the server clock; another instance learns who holds it',
    steps: [
      { ...acquire('a', 10_000), expect: { status: 'granted', token: NEW_TOKEN, holder: 'a', leaseMs: 10_000 } },
      {
        ...acquire('b', 10_000),
        expect: { status: 'held', token: granted(1), holder: 'a', leaseMs: expect.any(Number), snapshot: { holder: 'a', token: granted(1) } },
      },
      { ...state(), expect: { holder: 'a', token: granted(1) } },
    ],
  },
  {
    name: 'lease: the holder asking again keeps its token',
    steps: [
      { ...acquire('a', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      { ...acquire('a', 10_000), expect: { status: 'granted', token: granted(1), holder: 'a' } },
    ],
  },
  {
    name: 'lease: renew extends only for the holder with its token',
    steps: [
      { ...acquire('a', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      { ...renew('a', granted(1), 10_000), expect: { status: 'renewed', token: granted(1), holder: 'a', leaseMs: 10_000 } },
      { ...renew('a', granted(1, 1), 10_000), expect: { status: 'lost', token: granted(1), holder: 'a' } },
      { ...renew('a', granted(1, -1), 10_000), expect: { status: 'lost', token: granted(1), holder: 'a' } },
      { ...renew('b', granted(1), 10_000), expect: { status: 'lost', token: granted(1), holder: 'a' } },
    ],
  },
  {
    name: 'lease: an expired lease cannot be renewed and goes to the next instance with a larger token',
    steps: [
      { ...acquire('a', 100), expect: { status: 'granted', token: NEW_TOKEN } },
      { sleepMs: 250 },
      { ...renew('a', granted(1), 100), expect: { status: 'lost', holder: '', leaseMs: 0 } },
      { ...acquire('b', 10_000), expect: { status: 'granted', token: NEW_TOKEN, holder: 'b' } },
      { ...renew('a', granted(1), 10_000), expect: { status: 'lost', token: granted(2), holder: 'b' } },
    ],
  },
  {
    name: 'lease: release frees the lease at once, announces it, and only the holder may release',
    steps: [
      { ...acquire('a', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      { ...release('b', granted(1)), expect: { status: 'not_holder' } },
      { ...release('a', granted(1, 1)), expect: { status: 'not_holder' } },
      { ...release('a', granted(1)), expect: { status: 'released' } },
      { ...state(), expect: { holder: '', lease_ms: 0, token: granted(1) } },
      // At once after the release: the same millisecond, maybe, and still a larger token.
      { ...acquire('b', 10_000), expect: { status: 'granted', token: NEW_TOKEN, holder: 'b' } },
      { ...release('a', granted(1)), expect: { status: 'not_holder' } },
    ],
  },
  {
    name: 'lease: the last holder may release a lapsed lease, as long as no other instance was granted one',
    steps: [
      { ...acquire('a', 100), expect: { status: 'granted', token: NEW_TOKEN } },
      { sleepMs: 250 },
      { ...release('b', granted(1)), expect: { status: 'not_holder' } },
      { ...release('a', granted(1)), expect: { status: 'released' } },
      { ...state(), expect: { holder: '', lease_ms: 0, token: granted(1) } },
      { ...acquire('a', 100), expect: { status: 'granted', token: NEW_TOKEN } },
      { sleepMs: 250 },
      { ...acquire('b', 10_000), expect: { status: 'granted', token: NEW_TOKEN, holder: 'b' } },
      { ...release('a', granted(2)), expect: { status: 'not_holder' } },
    ],
  },
  {
    name: 'lease: a last token ahead of the clock (granted by a server whose clock was ahead) is followed by the next integer',
    steps: [
      { ...acquire('a', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      { ...release('a', granted(1)), expect: { status: 'released' } },
      { setup: (redis, keys) => redis.hset(keys.state, 'lt', '9000000000000') },
      { ...acquire('b', 10_000), expect: { status: 'granted', token: 9_000_000_000_001, holder: 'b' } },
      { ...acquire('b', 10_000), expect: { status: 'granted', token: 9_000_000_000_001, holder: 'b' } },
    ],
  },
  {
    name: 'lease: release and renew of a breaker never written answer as data and write nothing',
    steps: [
      { ...release('a', 1), expect: { status: 'not_holder' } },
      { ...renew('a', 1, 1000), expect: { status: 'lost', token: 0, holder: '' } },
      nothingWritten,
    ],
  },
  {
    name: 'lease: concurrent acquirers, exactly one granted',
    steps: [
      {
        concurrently: ['a', 'b', 'c', 'd', 'e'].map((actor) => acquire(actor, 10_000)),
      },
      {
        check: async (redis, keys, tokens) => {
          const holder = await redis.hget(keys.state, 'lh');
          expect(['a', 'b', 'c', 'd', 'e']).toContain(holder);
          // One token granted (a second grant would have taken a larger one), and kept.
          expect(tokens).toHaveLength(1);
          expect(await redis.hget(keys.state, 'lt')).toBe(String(tokens[0]));
        },
      },
    ],
  },

  // ---- health reports ----
  {
    name: 'health: a recovery success from the holder closes the circuit, with its token in the audit entry',
    steps: [
      ...openAndLeased,
      {
        ...health('leader', granted(1), 1, 'recovery', 'success'),
        expect: {
          status: 'closed',
          state: 'closed',
          gen: 2,
          recoveryFailures: 0,
          transition: {
            from: 'open', to: 'closed', reason: 'recovery_check_passed', actor: 'leader', token: grantedText(1), gen: '2',
            failures: '0', calls: '1',
          },
        },
      },
      streamLength(2),
    ],
  },
  {
    name: 'health: failed recovery checks are counted and reported in the state',
    steps: [
      ...openAndLeased,
      { ...health('leader', granted(1), 1, 'recovery', 'failure'), expect: { status: 'counted', state: 'open', recoveryFailures: 1 } },
      { ...health('leader', granted(1), 1, 'recovery', 'failure'), expect: { status: 'counted', recoveryFailures: 2 } },
      { ...state(), expect: { recovery_failures: 2, state: 'open' } },
      {
        ...health('leader', granted(1), 1, 'recovery', 'success'),
        expect: { status: 'closed', transition: expect.objectContaining({ failures: '2', calls: '3' }) },
      },
    ],
  },
  {
    name: 'health: a revision-1 report (no success threshold, no trial permits) closes on one success',
    steps: [
      ...openAndLeased,
      {
        fn: 'zv1_health',
        args: health('leader', granted(1), 1, 'recovery', 'success').args.slice(0, -2),
        expect: { status: 'closed', state: 'closed', transition: expect.objectContaining({ reason: 'recovery_check_passed' }) },
      },
    ],
  },
  {
    name: 'health: a success threshold without trial permits means no half-open',
    steps: [
      ...openAndLeased,
      { fn: 'zv1_health', args: health('leader', granted(1), 1, 'recovery', 'success', 2).args.slice(0, -1), expect: { status: 'counted' } },
      { fn: 'zv1_health', args: health('leader', granted(1), 1, 'recovery', 'success', 2).args.slice(0, -1), expect: { status: 'closed' } },
    ],
  },
  {
    name: 'health: a report with a stale token changes nothing',
    steps: [
      ...openAndLeased,
      { ...health('leader', granted(1, 1), 1, 'recovery', 'success'), expect: { status: 'stale_token', state: 'open', gen: 1 } },
      { ...health('leader', granted(1, -1), 1, 'recovery', 'success'), expect: { status: 'stale_token', state: 'open', gen: 1 } },
      { ...health('other', granted(1), 1, 'recovery', 'success'), expect: { status: 'stale_token', state: 'open' } },
      streamLength(1),
    ],
  },
  {
    name: 'health: a holder whose lease expired cannot close the circuit',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(1)), expect: opened(1, 'consecutive_failures') },
      { ...acquire('leader', 100), expect: { status: 'granted', token: NEW_TOKEN } },
      { sleepMs: 250 },
      { ...health('leader', granted(1), 1, 'recovery', 'success'), expect: { status: 'stale_token', state: 'open' } },
      { ...acquire('next', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      { ...health('leader', granted(1), 1, 'recovery', 'success'), expect: { status: 'stale_token', state: 'open' } },
      { ...health('next', granted(2), 1, 'recovery', 'success'), expect: { status: 'closed' } },
    ],
  },
  {
    name: 'health: a report for an older generation changes nothing',
    steps: [
      ...openAndLeased,
      { ...health('leader', granted(1), 0, 'recovery', 'success'), expect: { status: 'stale_gen', state: 'open', gen: 1 } },
      streamLength(1),
    ],
  },
  {
    name: 'health: a failed idle probe opens a closed circuit; a successful one changes nothing',
    steps: [
      { ...acquire('leader', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      { ...health('leader', granted(1), 0, 'idle', 'success'), expect: { status: 'ignored', state: 'closed', gen: 0 } },
      {
        ...health('leader', granted(1), 0, 'idle', 'failure'),
        expect: {
          status: 'opened',
          state: 'open',
          gen: 1,
          transition: { reason: 'idle_probe_failed', token: grantedText(1), actor: 'leader' },
        },
      },
      { ...health('leader', granted(1), 1, 'idle', 'failure'), expect: { status: 'ignored', state: 'open' } },
    ],
  },
  {
    name: 'health: a recovery report while closed is ignored',
    steps: [
      { ...acquire('leader', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      { ...health('leader', granted(1), 0, 'recovery', 'success'), expect: { status: 'ignored', state: 'closed', gen: 0 } },
      { ...health('leader', granted(1), 0, 'recovery', 'failure'), expect: { status: 'ignored', state: 'closed', recoveryFailures: 0 } },
    ],
  },

  // ---- slow calls ----
  {
    name: 'slow calls: a share of slow calls at the threshold opens the circuit, every call a success',
    steps: [
      { ...record(0, { ok: 5, slowOk: 4 }, 'count:0.5:10:10:0.5'), expect: { status: 'ok' } },
      {
        ...record(0, { slowOk: 1 }, 'count:0.5:10:10:0.5'),
        expect: {
          ...opened(1, 'slow_call_rate'),
          transition: expect.objectContaining({ failures: '0', calls: '10', slow: '5', rate: '0.5000', threshold: '0.5', window: 'count:10' }),
        },
      },
    ],
  },
  {
    name: 'slow calls: slow failures count for both rules; the failure rate is judged first',
    steps: [
      {
        ...record(0, { ok: 4, slowFail: 6, head: 0, maxRun: 6, tail: 6 }, 'count:0.5:10:10:0.5'),
        expect: { ...opened(1, 'failure_rate'), transition: expect.objectContaining({ failures: '6', slow: '6', rate: '0.6000' }) },
      },
    ],
  },
  {
    name: 'slow calls: in a time window',
    steps: [
      { ...record(0, { ok: 3, slowOk: 2 }, 'time:0.9:60000:5:0.4'), expect: opened(1, 'slow_call_rate') },
    ],
  },
  {
    name: 'slow calls: below the slow-call rate, or without the rule, nothing trips',
    steps: [
      { ...record(0, { ok: 6, slowOk: 4 }, 'count:0.5:10:10:0.5'), expect: { status: 'ok', state: 'closed' } },
      // The same window without the slow rule (same shape: the window is kept).
      { ...record(0, { slowOk: 10 }, 'count:0.5:10:10'), expect: { status: 'ok', state: 'closed' } },
    ],
  },

  {
    name: 'slow calls: a summary longer than a count window leaves its newest outcomes, slow successes laid down first',
    steps: [
      // Codes '222' (slow successes) then '000' then '1': the newest four stay.
      { ...record(0, { slowOk: 3, ok: 3, fail: 1, maxRun: 1, tail: 1 }, 'count:0.9:4:4:0.9'), expect: { status: 'ok' } },
      { check: async (redis, keys) => expect(await redis.hget(keys.state, 'w')).toBe('0001') },
      { ...explain(), expect: { failures: 1, calls: 4, slow: 0 } },
      // The oldest stored code falls out; the slow failure comes in.
      { ...record(0, { slowFail: 1 }, 'count:0.9:4:4:0.9'), expect: { status: 'ok' } },
      { check: async (redis, keys) => expect(await redis.hget(keys.state, 'w')).toBe('0013') },
      { ...explain(), expect: { failures: 2, calls: 4, slow: 1 } },
      { ...record(0, { slowOk: 2, ok: 1 }, 'count:0.9:4:4:0.9'), expect: { status: 'ok' } },
      { check: async (redis, keys) => expect(await redis.hget(keys.state, 'w')).toBe('3220') },
      { ...explain(), expect: { failures: 1, calls: 4, slow: 3 } },
      // Failures alone longer than the window: '33' and '11' of '33311' stay.
      {
        ...record(0, { slowFail: 3, fail: 2 }, 'count:0.9:4:4:0.9'),
        expect: { ...opened(1, 'failure_rate'), transition: expect.objectContaining({ failures: '4', calls: '4', slow: '2' }) },
      },
    ],
  },

  // ---- recovery with a success threshold ----
  {
    name: 'recovery: with a success threshold of 2, one success is counted and the second closes',
    steps: [
      ...openAndLeased,
      { ...health('leader', granted(1), 1, 'recovery', 'success', 2), expect: { status: 'counted', state: 'open' } },
      { ...state(), expect: { recovery_successes: 1 } },
      { ...health('leader', granted(1), 1, 'recovery', 'success', 2), expect: { status: 'closed', state: 'closed' } },
    ],
  },
  {
    name: 'recovery: a failure between successes starts the run again',
    steps: [
      ...openAndLeased,
      { ...health('leader', granted(1), 1, 'recovery', 'success', 2), expect: { status: 'counted' } },
      { ...health('leader', granted(1), 1, 'recovery', 'failure', 2), expect: { status: 'counted', recoveryFailures: 1 } },
      { ...state(), expect: { recovery_successes: 0, recovery_failures: 1 } },
      { ...health('leader', granted(1), 1, 'recovery', 'success', 2), expect: { status: 'counted', state: 'open' } },
      { ...health('leader', granted(1), 1, 'recovery', 'success', 2), expect: { status: 'closed' } },
    ],
  },

  // ---- half-open ----
  {
    name: 'half-open: a passing recovery check leads to half-open when trial calls are configured',
    steps: [
      ...openAndLeased,
      {
        ...health('leader', granted(1), 1, 'recovery', 'success', 1, 3),
        expect: { status: 'half_open', state: 'half_open', transition: expect.objectContaining({ reason: 'recovery_check_passed', to: 'half_open' }) },
      },
      { ...health('leader', granted(1), 2, 'wait', 'success', 1, 3), expect: { status: 'ignored', state: 'half_open' } },
    ],
  },
  {
    name: 'half-open: at most the permitted calls, then exhausted until one is reported',
    steps: [
      ...halfOpen,
      { ...permit(2, 2, 2), expect: { status: 'granted', permit: '1', ms: 10_000 } },
      { ...permit(2, 2, 2, 10_000, 'i2'), expect: { status: 'granted', permit: '2' } },
      { ...permit(2, 2, 2, 10_000, 'i3'), expect: { status: 'exhausted', permit: '', ms: expect.any(Number) } },
      { ...trial(2, 1, 'success', 2, 2), expect: { status: 'counted', state: 'half_open', trialSuccesses: 1 } },
      // A successful trial still uses up its permit: the period allows 2 trials in all.
      { ...permit(2, 2, 2, 10_000, 'i3'), expect: { status: 'exhausted' } },
      {
        ...trial(2, 2, 'success', 2, 2),
        expect: { status: 'closed', state: 'closed', gen: 3, transition: expect.objectContaining({ reason: 'trial_calls_passed', from: 'half_open', to: 'closed', calls: '2' }) },
      },
      { ...permit(3, 2, 2), expect: { status: 'not_half_open', state: 'closed' } },
    ],
  },
  {
    name: 'half-open: a failed trial reopens, and the next open period counts one more failure',
    steps: [
      ...halfOpen,
      { ...permit(2, 2, 2), expect: { status: 'granted' } },
      {
        ...trial(2, 1, 'failure', 2, 2),
        expect: { status: 'opened', state: 'open', gen: 3, transition: expect.objectContaining({ reason: 'trial_call_failed', from: 'half_open', to: 'open' }) },
      },
      { ...state(), expect: { state: 'open', recovery_failures: 1 } },
    ],
  },
  {
    name: 'half-open: a duplicate, stale or misplaced report is answered as data and changes nothing',
    steps: [
      ...halfOpen,
      { ...permit(2, 2, 2), expect: { status: 'granted', permit: '1' } },
      { ...trial(2, 1, 'success', 2, 2), expect: { status: 'counted', trialSuccesses: 1 } },
      { ...trial(2, 1, 'success', 2, 2), expect: { status: 'unknown_permit', trialSuccesses: 1, state: 'half_open' } },
      { ...trial(2, 7, 'failure', 2, 2), expect: { status: 'unknown_permit', state: 'half_open' } },
      { ...trial(1, 1, 'success', 2, 2), expect: { status: 'stale_gen', gen: 2 } },
      { ...permit(1, 2, 2), expect: { status: 'stale_gen', gen: 2 } },
      { ...state(), expect: { state: 'half_open', trial_successes: 1 } },
      streamLength(2),
    ],
  },
  {
    name: 'half-open: an ignored trial gives its permit back',
    steps: [
      ...halfOpen,
      { ...permit(2, 1, 1), expect: { status: 'granted', permit: '1' } },
      { ...permit(2, 1, 1), expect: { status: 'exhausted' } },
      { ...trial(2, 1, 'ignored', 1, 1), expect: { status: 'released', state: 'half_open', trialSuccesses: 0 } },
      { ...permit(2, 1, 1), expect: { status: 'granted', permit: '2' } },
    ],
  },
  {
    name: 'half-open: a permit not reported in time is reclaimed: reported late, it changes nothing',
    steps: [
      ...halfOpen,
      { ...permit(2, 1, 1, 100), expect: { status: 'granted', permit: '1', ms: 100 } },
      { sleepMs: 250 },
      // Nobody asked for it since, yet it is gone: the rule does not depend on who asked.
      { ...trial(2, 1, 'failure', 1, 1), expect: { status: 'unknown_permit', state: 'half_open' } },
      { ...trial(2, 1, 'success', 1, 1), expect: { status: 'unknown_permit', state: 'half_open', trialSuccesses: 0 } },
      { ...permit(2, 1, 1), expect: { status: 'granted', permit: '2' } },
    ],
  },
  {
    name: 'half-open: an expired permit goes to the next instance that asks',
    steps: [
      ...halfOpen,
      { ...permit(2, 1, 1, 100), expect: { status: 'granted', permit: '1' } },
      { ...permit(2, 1, 1, 100, 'i2'), expect: { status: 'exhausted' } },
      { sleepMs: 250 },
      { ...permit(2, 1, 1, 10_000, 'i2'), expect: { status: 'granted', permit: '2' } },
      { ...trial(2, 1, 'success', 1, 1), expect: { status: 'unknown_permit' } },
      { ...trial(2, 2, 'success', 1, 1), expect: { status: 'closed' } },
    ],
  },
  {
    name: 'half-open: outcomes recorded while half-open are not counted',
    steps: [...halfOpen, { ...record(2, { fail: 3 }, consecutive(1)), expect: { status: 'not_closed', state: 'half_open' } }],
  },
  {
    name: 'upgrade: a hash written by revision 1 (without the later fields) is read with their defaults',
    steps: [
      {
        setup: (redis, keys) =>
          redis.hset(keys.state, {
            state: 'closed', gen: '0', epoch: '1700000000000000', since: '1700000000000', run: '0', cfg: '', w: '',
            last: '-1', lh: '', lt: '0', lu: '0', hcf: '0', hca: '1700000000000',
          }),
      },
      { ...acquire('a', 10_000), expect: { status: 'granted', token: NEW_TOKEN, snapshot: expect.objectContaining({ recovery_successes: 0, trial_successes: 0 }) } },
      { ...record(0, { fail: 1 }, consecutive(1)), expect: opened(1, 'consecutive_failures') },
    ],
  },

  // ---- explain ----
  {
    name: 'explain: a breaker never written is closed, with nothing recorded and no audit entry, and stays unwritten',
    steps: [
      {
        ...explain(),
        expect: {
          state: 'closed', gen: 0, epoch: '', holder: '', revision: LIBRARY_REVISION,
          cfg: '', failures: 0, calls: 0, slow: 0, failure_reached: 0, slow_reached: 0, permits_out: 0, entries: 0, last_id: '', last: {},
        },
      },
      nothingWritten,
    ],
  },
  {
    name: 'explain: consecutive: the failure run against the stored spec',
    steps: [
      { ...record(0, { fail: 2 }, consecutive(5)), expect: { status: 'ok' } },
      { ...explain(), expect: { state: 'closed', cfg: consecutive(5), failures: 2, calls: 2, slow: 0, failure_reached: 0, slow_reached: 0 } },
      // f s f: the run is the tail.
      { ...record(0, { ok: 1, fail: 2, head: 1, maxRun: 1, tail: 1 }, consecutive(5)), expect: { status: 'ok' } },
      { ...explain(), expect: { failures: 1, calls: 1, idle_ms: expect.any(Number) } },
      unchangedBy(explain()),
    ],
  },
  {
    name: 'explain: count: the failures, calls and slow calls of the window, below the minimum',
    steps: [
      { ...record(0, { ok: 3, fail: 1, slowOk: 1 }, 'count:0.5:10:8:0.5'), expect: { status: 'ok' } },
      { ...explain(), expect: { cfg: 'count:0.5:10:8:0.5', failures: 1, calls: 5, slow: 1, failure_reached: 0, slow_reached: 0 } },
      unchangedBy(explain()),
    ],
  },
  // Three successes, then a second later two more calls that trip nothing; 2.2 s after the
  // successes they have expired, and what is left may reach a rule alone.
  expiring(
    'explain: time: buckets that expired are not counted, and the failure rate of what is left may reach its threshold',
    'time:0.5:2000:2:0.6',
    { fail: 1, slowOk: 1 },
    { failures: 1, calls: 2, slow: 1, failure_reached: 1, slow_reached: 0 },
  ),
  expiring(
    'explain: time: the slow-call rate of what is left may reach its threshold alone',
    'time:0.5:2000:2:0.5',
    { ok: 1, slowOk: 1 },
    { failures: 0, calls: 2, slow: 1, failure_reached: 0, slow_reached: 1 },
  ),
  {
    name: 'explain: open and leased: the newest audit entry as stored, the lease and the recovery progress',
    steps: [
      ...openAndLeased,
      { ...health('leader', granted(1), 1, 'recovery', 'failure', 2), expect: { status: 'counted' } },
      { ...health('leader', granted(1), 1, 'recovery', 'success', 2), expect: { status: 'counted' } },
      {
        ...explain(),
        expect: {
          state: 'open', gen: 1, holder: 'leader', token: granted(1), lease_ms: expect.any(Number), recovery_failures: 1, recovery_successes: 1,
          recovery_age_ms: expect.any(Number), cfg: consecutive(1), failures: 0, calls: 0, entries: 1, last_id: expect.stringMatching(/^\d+-\d+$/),
          last: { from: 'closed', to: 'open', reason: 'consecutive_failures', gen: '1', failures: '1', calls: '1', threshold: '1', window: 'consecutive', actor: 'i1' },
        },
      },
      {
        // The newest entry as stored: its id, and its fields in their order.
        check: async (redis, keys) => {
          const [[id, fields]] = (await redis.xrevrange(keys.events, '+', '-', 'COUNT', 1)) as [[string, string[]]];
          const reply = (await redis.call('FCALL_RO', 'zv1_explain', '2', ...keyList(keys))) as unknown[];
          expect(reply.slice(-4)).toEqual(['last_id', id, 'last', fields]);
        },
      },
      unchangedBy(explain()),
      { ...release('leader', granted(1)), expect: { status: 'released' } },
      { ...explain(), expect: { holder: '', token: granted(1), lease_ms: 0 } },
    ],
  },
  {
    name: 'explain: half-open: the successful trials and the permits out',
    steps: [
      ...halfOpen,
      { ...permit(2, 2, 2), expect: { status: 'granted', permit: '1' } },
      { ...trial(2, 1, 'success', 2, 2), expect: { status: 'counted' } },
      { ...permit(2, 2, 2), expect: { status: 'granted', permit: '2' } },
      {
        ...explain(),
        expect: { state: 'half_open', gen: 2, trial_successes: 1, permits_out: 1, entries: 2, last: { reason: 'open_wait_elapsed' } },
      },
      unchangedBy(explain()),
    ],
  },
  {
    name: 'explain: a stored spec the library would have refused is corrupt, and is left as it is',
    steps: [
      { ...record(0, { ok: 1 }, count(0.5, 10)), expect: { status: 'ok' } },
      { setup: (redis, keys) => redis.hset(keys.state, 'cfg', 'count:7:1:1') },
      { ...explain(), expect: error(/^ZV_CORRUPT .*:state field cfg holds 'count:7:1:1', not written by zenvark/) },
      { setup: (redis, keys) => redis.hset(keys.state, 'cfg', 'garbage') },
      { ...explain(), expect: error(/^ZV_CORRUPT .*:state field cfg holds 'garbage'/) },
      unchangedBy(explain()),
      { check: async (redis, keys) => expect(await redis.hget(keys.state, 'cfg')).toBe('garbage') },
    ],
  },
  {
    name: 'explain: a window or trial permits holding foreign data are corrupt',
    steps: [
      { ...record(0, { fail: 1 }, count(0.5, 10)), expect: { status: 'ok' } },
      { setup: (redis, keys) => redis.hset(keys.state, 'w', 'hello') },
      { ...explain(), expect: error(/^ZV_CORRUPT .*:state field w holds 'hello'/) },
      { ...record(0, { fail: 1 }, time(0.5, 1000, 10)), expect: { status: 'reshaped' } },
      { setup: (redis, keys) => redis.hset(keys.state, 'w', 'xyz') },
      { ...explain(), expect: error(/^ZV_CORRUPT .*:state field w holds '<3 bytes>'/) },
      { setup: (redis, keys) => redis.hset(keys.state, 'w', '', 'tp', 'garbage!') },
      { ...explain(), expect: error(/^ZV_CORRUPT .*:state field tp holds 'garbage!'/) },
    ],
  },
  {
    name: 'explain: keys of another type are refused and left alone',
    steps: [
      { setup: (redis, keys) => redis.set(keys.events, 'not a stream') },
      { ...explain(), expect: error(/^ZV_WRONGTYPE .*:events is a string, expected a stream/) },
      { setup: (redis, keys) => redis.rpush(keys.state, 'x') },
      { ...explain(), expect: error(/^ZV_WRONGTYPE .*:state is a list, expected a hash/) },
      {
        check: async (redis, keys) => {
          expect(await redis.lrange(keys.state, 0, -1)).toEqual(['x']);
          expect(await redis.get(keys.events)).toBe('not a stream');
        },
      },
    ],
  },

  // ---- bad arguments ----
  ...badArguments.map(([name, step, pattern]) => ({
    name: `bad argument: ${name}`,
    steps: [{ ...step, expect: error(pattern) }, nothingWritten],
  })),

  // ---- keys of the wrong type, and data zenvark did not write ----
  {
    name: 'wrong type: a state key that is not a hash is refused and left alone',
    steps: [
      { setup: (redis, keys) => redis.rpush(keys.state, 'x') },
      { ...record(0, { fail: 1 }, consecutive(1)), expect: error(/^ZV_WRONGTYPE .*:state is a list, expected a hash/) },
      { ...acquire('a', 1000), expect: error(/^ZV_WRONGTYPE/) },
      { ...state(), expect: error(/^ZV_WRONGTYPE/) },
      {
        check: async (redis, keys) => {
          expect(await redis.lrange(keys.state, 0, -1)).toEqual(['x']);
          expect(await existingKeys(redis, keys)).toEqual([keys.state]);
        },
      },
    ],
  },
  {
    name: 'sync: reads the state as zv1_state does, and writes nothing',
    steps: [
      { ...sync(consecutive(1)), expect: { state: 'closed', gen: 0, epoch: '', revision: LIBRARY_REVISION } },
      nothingWritten,
      { ...record(0, { fail: 1 }, consecutive(1)), expect: opened(1, 'consecutive_failures') },
      { ...sync(consecutive(1)), expect: { state: 'open', gen: 1, recovery_failures: 0 } },
    ],
  },
  {
    name: 'sync: refused while the events key is of another type, which a transition would need',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(2)), expect: { status: 'ok' } },
      { setup: (redis, keys) => redis.set(keys.events, 'not a stream') },
      { ...state(), expect: { state: 'closed', gen: 0 } },
      { ...sync(consecutive(2)), expect: error(/^ZV_WRONGTYPE .*:events is a string, expected a stream/) },
    ],
  },
  {
    name: 'sync: refused while the window or the trial permits hold foreign data, which the next writes would read',
    steps: [
      { ...record(0, { ok: 1 }, count(0.5, 4)), expect: { status: 'ok' } },
      { setup: (redis, keys) => redis.hset(keys.state, 'w', 'xyz') },
      { ...sync(count(0.5, 4)), expect: error(/^ZV_CORRUPT .*:state field w holds 'xyz'/) },
      // A window of another shape is reset by the next record, not read: no refusal.
      { ...sync(count(0.5, 8)), expect: { state: 'closed' } },
      { setup: (redis, keys) => redis.hset(keys.state, 'w', '', 'tp', 'garbage!') },
      { ...sync(count(0.5, 4)), expect: error(/^ZV_CORRUPT .*:state field tp holds 'garbage!'/) },
    ],
  },
  {
    name: 'wrong type: an events key that is not a stream stops a transition before any write',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(2)), expect: { status: 'ok' } },
      { setup: (redis, keys) => redis.set(keys.events, 'not a stream') },
      { ...record(0, { fail: 1 }, consecutive(2)), expect: error(/^ZV_WRONGTYPE .*:events is a string, expected a stream/) },
      { ...state(), expect: { state: 'closed', gen: 0 } },
      {
        check: async (redis, keys) => {
          expect(await redis.hget(keys.state, 'run')).toBe('1');
          expect(await redis.get(keys.events)).toBe('not a stream');
        },
      },
    ],
  },
  {
    name: 'wrong type: an events stream that cannot take another entry stops a transition before any write',
    steps: [
      { ...acquire('leader', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      { setup: (redis, keys) => redis.xadd(keys.events, '18446744073709551615-18446744073709551615', 'owner', 'x') },
      { ...health('leader', granted(1), 0, 'idle', 'failure'), expect: error(/^ZV_REFUSED XADD on .*:events was refused/) },
      { ...record(0, { fail: 1 }, consecutive(1)), expect: error(/^ZV_REFUSED XADD on .*:events was refused/) },
      { ...state(), expect: { state: 'closed', gen: 0 } },
      { check: async (redis, keys) => expect(await redis.xlen(keys.events)).toBe(1) },
    ],
  },
  {
    name: 'corrupt: an unknown state is reported, not acted on',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(5)), expect: { status: 'ok' } },
      { setup: (redis, keys) => redis.hset(keys.state, 'state', 'banana') },
      { ...record(0, { fail: 1 }, consecutive(5)), expect: error(/^ZV_CORRUPT .*:state field state holds 'banana'/) },
      { ...state(), expect: error(/^ZV_CORRUPT/) },
    ],
  },
  {
    name: 'corrupt: a generation that is not a number is reported',
    steps: [
      { ...acquire('a', 1000), expect: { status: 'granted' } },
      { setup: (redis, keys) => redis.hset(keys.state, 'gen', 'x') },
      { ...acquire('a', 1000), expect: error(/^ZV_CORRUPT .*field gen holds 'x'/) },
    ],
  },
  {
    name: 'corrupt: a foreign hash at the state key is reported and left alone',
    steps: [
      { setup: (redis, keys) => redis.hset(keys.state, 'owner', 'someone else') },
      { ...acquire('a', 1000), expect: error(/^ZV_CORRUPT .*is a hash without zenvark fields/) },
      { check: async (redis, keys) => expect(await redis.hgetall(keys.state)).toEqual({ owner: 'someone else' }) },
    ],
  },
  {
    name: 'corrupt: a count window with foreign bytes is reported',
    steps: [
      { ...record(0, { fail: 1 }, count(0.5, 10, 10)), expect: { status: 'ok' } },
      { setup: (redis, keys) => redis.hset(keys.state, 'w', 'hello') },
      { ...record(0, { fail: 1 }, count(0.5, 10, 10)), expect: error(/^ZV_CORRUPT .*:state field w holds 'hello'/) },
    ],
  },
  {
    name: 'corrupt: a time window of the wrong length is reported',
    steps: [
      { ...record(0, { fail: 1 }, time(0.5, 1000, 10)), expect: { status: 'ok' } },
      {
        setup: async (redis, keys) =>
          redis.hset(keys.state, 'w', Buffer.concat([(await redis.hgetBuffer(keys.state, 'w')) ?? Buffer.alloc(0), Buffer.from('xyz')])),
      },
      { ...record(0, { fail: 1 }, time(0.5, 1000, 10)), expect: error(/^ZV_CORRUPT .*:state field w holds '<35 bytes>'/) },
    ],
  },
  {
    name: 'corrupt: a missing field of a zenvark hash is reported',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(5)), expect: { status: 'ok' } },
      { setup: (redis, keys) => redis.hdel(keys.state, 'run') },
      { ...record(0, { fail: 1 }, consecutive(5)), expect: error(/^ZV_CORRUPT .*:state has no field run/) },
    ],
  },

  // ---- the audit stream ----
  {
    name: 'audit: each transition is one entry with every documented field',
    steps: [
      ...openAndLeased,
      { ...health('leader', granted(1), 1, 'recovery', 'success'), expect: { status: 'closed' } },
      {
        check: async (redis, keys) => {
          const entries = await redis.xrange(keys.events, '-', '+');
          expect(entries).toHaveLength(2);
          const fields = entries.map(([, list]) => list.filter((_, i) => i % 2 === 0));
          const names = [
            'from', 'to', 'reason', 'gen', 'failures', 'calls', 'slow', 'rate', 'threshold', 'window', 'actor', 'token', 'time',
            'mode', 'note', 'until', 'rule',
          ];
          expect(fields).toEqual([names, names]);
          const [first] = entries;
          const values = Object.fromEntries(
            (first?.[1] ?? []).flatMap((v, i, list) => (i % 2 === 0 ? [[v, list[i + 1]]] : [])),
          );
          expect(values).toMatchObject({ from: 'closed', to: 'open', reason: 'consecutive_failures', gen: '1', actor: 'i1', mode: '', note: '', until: '', rule: '' });
          expect(Number(values.time)).toBeGreaterThan(1.6e12);
        },
      },
    ],
  },
  {
    name: 'audit: retention trims the stream approximately',
    steps: [
      {
        check: async (redis, keys) => {
          // 300 transitions with retention 10: MAXLEN ~ trims whole stream nodes.
          for (let gen = 0; gen < 300; gen += 2) {
            const k = keyList(keys);
            await redis.call('FCALL', 'zv1_record', '2', ...k, ...header('i1', 10), String(gen), ...summary({ fail: 1 }), consecutive(1));
            await redis.call('FCALL', 'zv1_acquire', '2', ...k, ...header('h', 10), '10000');
            const token = await redis.hget(keys.state, 'lt');
            await redis.call('FCALL', 'zv1_health', '2', ...k, ...header('h', 10), String(token), String(gen + 1), 'recovery', 'success', '1', '0');
          }
          const length = await redis.xlen(keys.events);
          expect(length).toBeGreaterThanOrEqual(10);
          expect(length).toBeLessThan(200);
        },
      },
    ],
  },
];


