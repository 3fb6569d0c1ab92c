/**
 * The Lua case table: every function, each strategy and threshold edge, each transition,
 * stale generations and tokens, expired leases, and bad arguments and keys. The same table
 * runs against the shipped (minified) library with its expectations, and against the
 * source library to prove that minifying changed nothing.
 */
import { expect } from 'vitest';
import type { Redis } from 'ioredis';
import { type BreakerKeys, keyList } from '../../src/keys.js';
import { LIBRARY_REVISION } from '../../src/shipped-library.js';
import {
  type CallStep,
  type LuaCase,
  type Step,
  acquire,
  callStep,
  consecutive,
  control,
  count,
  dumps,
  existingKeys,
  expire,
  explain,
  granted,
  grantedText,
  header,
  health,
  pairs,
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
import { INSTANCE_BAD_ARGUMENTS, INSTANCE_CASES } from './instance-cases.js';


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

/** Controls that must be refused with ZV_BADARG before anything is written. */
const controlArguments: [string, CallStep, RegExp][] = [
  ['control: two keys are required', { ...control('open'), keys: ['only-one'] }, /^ZV_BADARG expected 2 keys \(state, events\), got 1/],
  ['control: an action is required', { fn: 'zv1_control', args: header('op', 0) }, /^ZV_BADARG action is missing \(ARGV\[4\]\)/],
  ['control: the action must be known', control('pause'), /^ZV_BADARG action must be one of close, expire, monitor, open, release, reset, got 'pause'/],
  ['control: a note is required', { fn: 'zv1_control', args: [...header('op', 0), 'open'] }, /^ZV_BADARG note is missing \(ARGV\[5\]\)/],
  ['control: a note is not empty', control('close', ''), /^ZV_BADARG note must be 1 to 512 bytes long, got 0/],
  ['control: a note is at most 512 bytes', control('monitor', 'n'.repeat(513)), /^ZV_BADARG note must be 1 to 512 bytes long, got 513/],
  ['control: a release needs a note too', control('release', ''), /^ZV_BADARG note must be 1 to 512 bytes long, got 0/],
  ['control: expire takes no note', control('expire', 'why'), /^ZV_BADARG expire takes no note \(''\), got 'why'/],
  ['control: an expiry is required', { fn: 'zv1_control', args: [...header('op', 0), 'open', 'why'] }, /^ZV_BADARG for is missing \(ARGV\[6\]\)/],
  ['control: an expiry is >= 0', control('open', 'why', -1), /^ZV_BADARG for must be in \[0, 2592000000\], got -1/],
  ['control: an expiry is at most 30 days', control('close', 'why', 2_592_000_001), /^ZV_BADARG for must be in \[0, 2592000000\], got 2592000001/],
  ['control: an expiry is an integer', { fn: 'zv1_control', args: [...header('op', 0), 'monitor', 'why', '1.5'] }, /^ZV_BADARG for must be an integer, got '1.5'/],
  ['control: release takes no expiry', control('release', 'why', 1000), /^ZV_BADARG only open, close and monitor take an expiry, got release for 1000 ms/],
  ['control: reset takes no expiry', control('reset', 'why', 1), /^ZV_BADARG only open, close and monitor take an expiry, got reset for 1 ms/],
  ['control: expire takes no expiry', control('expire', '', 5), /^ZV_BADARG only open, close and monitor take an expiry, got expire for 5 ms/],
  ['control: create is 0 or 1', { fn: 'zv1_control', args: [...control('open').args, '2'] }, /^ZV_BADARG create must be one of 0, 1, got '2'/],
  ['control: create is not a word', { fn: 'zv1_control', args: [...control('open').args, 'yes'] }, /^ZV_BADARG create must be one of 0, 1, got 'yes'/],
  ['control: retention is >= 0', control('open', 'why', 0, { retention: -1 }), /^ZV_BADARG retention must be in \[0, 1000000\], got -1/],
  ['control: extra arguments are refused', { fn: 'zv1_control', args: [...control('open', 'why', 0, { create: 1 }).args, 'more'] }, /^ZV_BADARG expected at most 7 arguments, got 8/],
];

/** Half-open (see halfOpen) with one successful trial (permit 1) and permit 2 out. */
const halfOpenWithTrials: Step[] = [
  ...halfOpen,
  { ...permit(2, 2, 2), expect: { status: 'granted', permit: '1' } },
  { ...trial(2, 1, 'success', 2, 2), expect: { status: 'counted' } },
  { ...permit(2, 2, 2), expect: { status: 'granted', permit: '2' } },
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
  ...controlArguments,
  ...INSTANCE_BAD_ARGUMENTS,
];

// ---- operator controls (zv1_control) and the modes they set ----

/** A control's answer: applied, the state after it, and its entry (as published). */
const applied = (gen: number, state: string, entry: Record<string, unknown>) => ({
  status: 'applied',
  state,
  gen,
  transition: expect.objectContaining({ to: state, gen: String(gen), kind: 'transition', ...entry }),
});

/** The audit entries, oldest first, each as an object of its fields. */
async function auditEntries(redis: Redis, keys: BreakerKeys) {
  return (await redis.xrange(keys.events, '-', '+')).map(([, fields]) => pairs(fields) as Record<string, string>);
}

/** The reasons of the audit entries, oldest first. */
const reasons = (...expected: string[]): Step => ({
  check: async (redis, keys) => expect((await auditEntries(redis, keys)).map((e) => e.reason)).toEqual(expected),
});

/** The entry that ended an expired mode (the last) names the end the mode's own entry (the one before) set. */
const endedAtItsExpiry: Step = {
  check: async (redis, keys) => {
    const entries = await auditEntries(redis, keys);
    const [set, ended] = entries.slice(-2);
    expect(set?.until).toMatch(/^\d+$/);
    expect(ended).toMatchObject({ reason: 'expired', until: set?.until, mode: '', note: '' });
  },
};

/** Fields of the state hash as stored. */
const stored = (fields: Record<string, unknown>): Step => ({
  check: async (redis, keys) => expect(await redis.hgetall(keys.state)).toMatchObject(fields),
});

/** `steps`, then a check that the breaker's keys are as they were before them: they changed nothing. */
function changingNothing(steps: readonly Step[]): Step[] {
  let before: (string | null)[] = [];
  return [
    { check: async (redis, keys) => void (before = await dumps(redis, keys)) },
    ...steps,
    { check: async (redis, keys) => expect(await dumps(redis, keys)).toEqual(before) },
  ];
}

/** Every health report a lease holder can make, in generation `gen` (the wait with 2 trial permits). */
const everyReport = (gen: number) => [
  health('leader', granted(1), gen, 'recovery', 'success'),
  health('leader', granted(1), gen, 'recovery', 'failure'),
  health('leader', granted(1), gen, 'idle', 'success'),
  health('leader', granted(1), gen, 'idle', 'failure'),
  health('leader', granted(1), gen, 'wait', 'success', 1, 2),
];

/** A closed breaker with a recorded success (consecutive(3)), leased to 'leader' (the case's first token). */
const closedAndLeased: Step[] = [
  { ...record(0, { ok: 1 }, consecutive(3)), expect: { status: 'ok' } },
  { ...acquire('leader', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
];

const MODES = [
  { action: 'open', mode: 'forced_open', state: 'open' },
  { action: 'close', mode: 'forced_closed', state: 'closed' },
  { action: 'monitor', mode: 'monitor', state: 'closed' },
] as const;

/** The functions that read the state hash, each called validly (the lease 'leader' took is the first token). */
const readersOfTheHash: Omit<CallStep, 'expect'>[] = [
  record(0, { ok: 1 }, consecutive(3)),
  acquire('other', 1000),
  renew('leader', granted(1), 1000),
  release('leader', granted(1)),
  health('leader', granted(1), 0, 'idle', 'failure'),
  permit(0, 2, 2),
  trial(0, 1, 'success', 2, 2),
  state(),
  sync(consecutive(3)),
  explain(),
  control('open'),
  expire(),
];

const controlCases: LuaCase[] = [
  {
    name: 'control: open forces the circuit open with one entry, the window and the lease kept; the snapshot shows the mode',
    steps: [
      { ...record(0, { fail: 2 }, consecutive(3)), expect: { status: 'ok' } },
      { ...acquire('leader', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      {
        ...control('open', 'db migration'),
        expect: applied(1, 'open', {
          from: 'closed', reason: 'forced_open', mode: 'forced_open', note: 'db migration', until: '', rule: '', actor: 'op', token: '', holder: 'leader',
        }),
      },
      {
        ...state(),
        expect: {
          state: 'open', gen: 1, holder: 'leader', token: granted(1), mode: 'forced_open', mode_actor: 'op', mode_note: 'db migration',
          mode_since_ms: expect.any(Number), mode_until: 0, mode_left_ms: 0,
        },
      },
      { ...explain(), expect: { failures: 2, calls: 2, mode: 'forced_open', last: { reason: 'forced_open', mode: 'forced_open', note: 'db migration' } } },
      { ...record(1, { fail: 1 }, consecutive(3)), expect: { status: 'not_closed', state: 'open', gen: 1 } },
      streamLength(1),
    ],
  },
  {
    name: 'control: close forces an open circuit closed; outcomes count, no rule trips it, and no lease is granted',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(1)), expect: opened(1, 'consecutive_failures') },
      { ...control('close', 'let it through'), expect: applied(2, 'closed', { from: 'open', reason: 'forced_closed', mode: 'forced_closed', note: 'let it through' }) },
      { ...state(), expect: { state: 'closed', gen: 2, mode: 'forced_closed', recovery_failures: 0 } },
      { ...record(2, { fail: 5 }, consecutive(1)), expect: { status: 'ok', state: 'closed', gen: 2, transition: undefined } },
      { ...record(2, { fail: 1 }, consecutive(1), 'i1', 100, 10_000), expect: { status: 'ok', state: 'closed', gen: 2, transition: undefined } },
      { ...explain(), expect: { state: 'closed', failures: 6, calls: 6, failure_reached: 1, holder: '', token: 0 } },
      streamLength(2),
    ],
  },
  {
    name: 'control: monitor keeps the circuit closed; a rule reached is a would_open entry, closed to closed, the window emptied, no lease granted',
    steps: [
      { ...record(0, { ok: 1 }, count(0.5, 4)), expect: { status: 'ok' } },
      { ...control('monitor', 'watch it'), expect: applied(1, 'closed', { from: 'closed', reason: 'monitored', mode: 'monitor', note: 'watch it' }) },
      {
        ...record(1, { fail: 3 }, count(0.5, 4), 'i1', 100, 10_000),
        expect: {
          status: 'ok',
          state: 'closed',
          gen: 2,
          transition: expect.objectContaining({
            from: 'closed', to: 'closed', reason: 'would_open', rule: 'failure_rate', mode: 'monitor', note: '', gen: '2', actor: 'i1',
            failures: '3', calls: '4', rate: '0.7500', threshold: '0.5', window: 'count:4', kind: 'transition',
          }),
        },
      },
      { ...state(), expect: { state: 'closed', gen: 2, mode: 'monitor', mode_note: 'watch it', holder: '', token: 0 } },
      { ...explain(), expect: { failures: 0, calls: 0, last: { reason: 'would_open', rule: 'failure_rate' } } },
      { ...record(1, { fail: 1 }, count(0.5, 4)), expect: { status: 'stale_gen', state: 'closed', gen: 2 } },
      { ...record(2, { fail: 2 }, count(0.5, 4)), expect: { status: 'ok', state: 'closed', gen: 2, transition: undefined } },
      reasons('monitored', 'would_open'),
    ],
  },
  {
    name: 'control: monitor names each rule reached: consecutive failures, the slow-call rate',
    steps: [
      { ...record(0, { ok: 1 }, consecutive(2)), expect: { status: 'ok' } },
      { ...control('monitor', 'watch it'), expect: applied(1, 'closed', { reason: 'monitored' }) },
      {
        ...record(1, { fail: 2 }, consecutive(2)),
        expect: { status: 'ok', gen: 2, transition: expect.objectContaining({ reason: 'would_open', rule: 'consecutive_failures', failures: '2', threshold: '2' }) },
      },
      // Another shape: the window starts over, and the call reaches the slow-call rule.
      {
        ...record(2, { ok: 2, slowOk: 2 }, 'count:0.9:4:4:0.5'),
        expect: { status: 'ok', gen: 3, transition: expect.objectContaining({ reason: 'would_open', rule: 'slow_call_rate', slow: '2', rate: '0.5000' }) },
      },
      { ...state(), expect: { state: 'closed', gen: 3, mode: 'monitor' } },
    ],
  },
  {
    name: 'control: forcing again replaces the mode, its note and its expiry',
    steps: [
      { ...control('open', 'first', 60_000, { create: 1 }), expect: applied(1, 'open', { reason: 'forced_open', until: expect.stringMatching(/^\d+$/) }) },
      { ...state(), expect: { mode: 'forced_open', mode_note: 'first', mode_until: expect.any(Number), mode_left_ms: expect.any(Number) } },
      {
        check: async (redis, keys) => {
          const view = pairs((await redis.call('FCALL_RO', 'zv1_state', '2', ...keyList(keys))) as unknown[]);
          expect(view.mode_until).toBe((view.time as number) + (view.mode_left_ms as number));
          expect(view.mode_left_ms).toBeGreaterThan(0);
          expect(view.mode_left_ms).toBeLessThanOrEqual(60_000);
        },
      },
      { ...control('open', 'second', 0, { actor: 'op2' }), expect: applied(2, 'open', { from: 'open', reason: 'forced_open', note: 'second', until: '', actor: 'op2' }) },
      { ...state(), expect: { state: 'open', mode: 'forced_open', mode_actor: 'op2', mode_note: 'second', mode_until: 0, mode_left_ms: 0 } },
      { ...control('monitor', 'third'), expect: applied(3, 'closed', { from: 'open', reason: 'monitored', mode: 'monitor' }) },
      { ...acquire('a', 1000), expect: { status: 'granted', snapshot: expect.objectContaining({ state: 'closed', mode: 'monitor', mode_note: 'third' }) } },
      { ...sync(consecutive(1)), expect: { mode: 'monitor', mode_actor: 'op' } },
      stored({ mode: 'monitor:0', ma: 'op', mn: 'third' }),
    ],
  },
  {
    name: 'control: a breaker Redis does not know is unknown, and nothing is written, unless create is 1',
    steps: [
      { ...control('open'), expect: { status: 'unknown', state: 'closed', gen: 0, epoch: '', transition: undefined } },
      { ...control('close', 'why', 1000, { create: 0 }), expect: { status: 'unknown', gen: 0 } },
      { ...expire(), expect: { status: 'unknown' } },
      nothingWritten,
      // Nothing to end: no_mode, and still nothing written.
      { ...control('release', 'why', 0, { create: 1 }), expect: { status: 'no_mode', state: 'closed', gen: 0, epoch: '' } },
      { ...control('expire', '', 0, { create: 1 }), expect: { status: 'no_mode', gen: 0 } },
      nothingWritten,
      {
        ...control('open', 'before the first call', 0, { create: 1 }),
        expect: { ...applied(1, 'open', { from: 'closed', reason: 'forced_open' }), epoch: expect.stringMatching(/^\d+$/) },
      },
      { ...state(), expect: { state: 'open', gen: 1, mode: 'forced_open', mode_note: 'before the first call' } },
    ],
  },
  {
    name: 'control: release of a breaker without a mode is no_mode and writes nothing',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(3)), expect: { status: 'ok' } },
      unchangedBy(control('release')),
      { ...control('release'), expect: { status: 'no_mode', state: 'closed', gen: 0, transition: undefined } },
      streamLength(0),
    ],
  },
  {
    name: 'control: release with a window that reaches no rule closes, the window kept',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(3)), expect: { status: 'ok' } },
      { ...control('open'), expect: applied(1, 'open', { reason: 'forced_open' }) },
      {
        ...control('release', 'back to normal'),
        expect: applied(2, 'closed', {
          from: 'open', reason: 'released', mode: '', note: 'back to normal', until: '', rule: '', failures: '1', calls: '1', window: 'consecutive',
        }),
      },
      { ...state(), expect: { state: 'closed', gen: 2, mode: '', mode_actor: '', mode_note: '', mode_since_ms: 0, mode_until: 0, mode_left_ms: 0 } },
      stored({ mode: '', ma: '', mn: '', mt: '0', run: '1' }),
      // The kept run of one failure and two more reach the threshold of 3.
      { ...record(2, { fail: 2 }, consecutive(3)), expect: opened(3, 'consecutive_failures') },
    ],
  },
  {
    name: 'control: release with a count window that reaches a rule opens: the rule named, the window emptied, recovery from the start',
    steps: [
      { ...record(0, { ok: 1 }, count(0.5, 4)), expect: { status: 'ok' } },
      { ...acquire('leader', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      { ...control('close'), expect: applied(1, 'closed', { reason: 'forced_closed' }) },
      { ...record(1, { fail: 3 }, count(0.5, 4)), expect: { status: 'ok', state: 'closed' } },
      {
        ...control('release', 'done'),
        expect: applied(2, 'open', {
          from: 'closed', reason: 'released', rule: 'failure_rate', failures: '3', calls: '4', rate: '0.7500', threshold: '0.5', mode: '', note: 'done',
        }),
      },
      { ...explain(), expect: { state: 'open', mode: '', calls: 0, recovery_failures: 0, holder: 'leader', token: granted(1) } },
      // Health checks count again.
      { ...health('leader', granted(1), 2, 'recovery', 'success'), expect: { status: 'closed', state: 'closed', gen: 3 } },
    ],
  },
  {
    name: 'control: release with a consecutive run that reaches the threshold opens',
    steps: [
      { ...record(0, { ok: 1 }, consecutive(2)), expect: { status: 'ok' } },
      { ...control('close'), expect: applied(1, 'closed', { reason: 'forced_closed' }) },
      { ...record(1, { fail: 3 }, consecutive(2)), expect: { status: 'ok', state: 'closed' } },
      { ...control('release'), expect: applied(2, 'open', { reason: 'released', rule: 'consecutive_failures', failures: '3', threshold: '2' }) },
      stored({ run: '0', mode: '' }),
    ],
  },
  {
    name: 'control: release with a time window: its failures within the window open',
    steps: [
      { ...record(0, { ok: 1 }, time(0.5, 60_000, 2)), expect: { status: 'ok' } },
      { ...control('close'), expect: applied(1, 'closed', { reason: 'forced_closed' }) },
      { ...record(1, { fail: 3 }, time(0.5, 60_000, 2)), expect: { status: 'ok' } },
      { ...control('release'), expect: applied(2, 'open', { reason: 'released', rule: 'failure_rate', failures: '3', calls: '4', window: 'time:60000' }) },
    ],
  },
  {
    name: 'control: release with a time window whose buckets expired closes',
    steps: [
      { ...record(0, { ok: 1 }, time(0.5, 200, 2)), expect: { status: 'ok' } },
      { ...control('close'), expect: applied(1, 'closed', { reason: 'forced_closed' }) },
      { ...record(1, { fail: 3 }, time(0.5, 200, 2)), expect: { status: 'ok' } },
      { sleepMs: 350 },
      { ...control('release'), expect: applied(2, 'closed', { reason: 'released', rule: '', failures: '0', calls: '0', window: 'time:200' }) },
    ],
  },
  {
    name: 'control: release before any recorded call (no strategy stored) closes',
    steps: [
      { ...control('open', 'why', 0, { create: 1 }), expect: applied(1, 'open', { reason: 'forced_open' }) },
      { ...control('release'), expect: applied(2, 'closed', { from: 'open', reason: 'released', rule: '', failures: '', calls: '' }) },
    ],
  },
  {
    name: 'control: reset closes and clears the window, with or without a mode',
    steps: [
      { ...record(0, { fail: 2 }, consecutive(3)), expect: { status: 'ok' } },
      { ...control('reset', 'clean slate'), expect: applied(1, 'closed', { from: 'closed', reason: 'reset', mode: '', note: 'clean slate', until: '' }) },
      { ...explain(), expect: { failures: 0, calls: 0 } },
      // The run starts over: two failures do not reach 3.
      { ...record(1, { fail: 2 }, consecutive(3)), expect: { status: 'ok', state: 'closed' } },
      { ...control('monitor', 'watch', 60_000), expect: applied(2, 'closed', { reason: 'monitored' }) },
      { ...control('reset', 'enough'), expect: applied(3, 'closed', { reason: 'reset', mode: '' }) },
      { ...state(), expect: { mode: '', mode_until: 0 } },
      { ...record(3, { fail: 2 }, consecutive(3)), expect: { status: 'ok' } },
      { ...record(3, { fail: 1 }, consecutive(3)), expect: opened(4, 'consecutive_failures') },
    ],
  },
  {
    name: 'control: reset of a half-open breaker clears the trial permits and successes',
    steps: [
      ...halfOpenWithTrials,
      { ...control('reset'), expect: applied(3, 'closed', { from: 'half_open', reason: 'reset' }) },
      { ...explain(), expect: { state: 'closed', trial_successes: 0, permits_out: 0 } },
      { ...trial(2, 2, 'success', 2, 2), expect: { status: 'stale_gen', state: 'closed', gen: 3 } },
    ],
  },
  {
    name: 'control: reset of a forced open breaker ends the mode and clears the recovery progress',
    steps: [
      ...openAndLeased,
      { ...health('leader', granted(1), 1, 'recovery', 'failure', 2), expect: { status: 'counted', recoveryFailures: 1 } },
      { ...health('leader', granted(1), 1, 'recovery', 'success', 2), expect: { status: 'counted' } },
      { ...control('open'), expect: applied(2, 'open', { from: 'open', reason: 'forced_open' }) },
      { ...control('reset'), expect: applied(3, 'closed', { from: 'open', reason: 'reset', mode: '' }) },
      { ...state(), expect: { state: 'closed', mode: '', recovery_failures: 0, recovery_successes: 0, holder: 'leader' } },
      stored({ hcf: '0', hcs: '0', tp: '', ts: '0', run: '0', w: '' }),
    ],
  },
  {
    name: 'control: expire with no mode is no_mode; before the expiry, or of a mode without one, not_due; neither writes',
    steps: [
      { ...record(0, { ok: 1 }, consecutive(3)), expect: { status: 'ok' } },
      unchangedBy(expire()),
      { ...expire(), expect: { status: 'no_mode', state: 'closed', gen: 0, transition: undefined } },
      { ...control('open', 'why', 60_000), expect: applied(1, 'open', { reason: 'forced_open' }) },
      unchangedBy(expire()),
      { ...expire(), expect: { status: 'not_due', state: 'open', gen: 1, transition: undefined } },
      { ...control('close'), expect: applied(2, 'closed', { reason: 'forced_closed', until: '' }) },
      unchangedBy(expire()),
      { ...expire(), expect: { status: 'not_due', state: 'closed', gen: 2 } },
      streamLength(2),
    ],
  },
  {
    name: 'control: expire after the expiry writes the expired entry, by the actor that asked; the window decides',
    steps: [
      { ...record(0, { ok: 1 }, count(0.5, 4)), expect: { status: 'ok' } },
      { ...control('close', 'for a while', 300), expect: applied(1, 'closed', { reason: 'forced_closed', until: expect.stringMatching(/^\d+$/) }) },
      { ...record(1, { fail: 3 }, count(0.5, 4)), expect: { status: 'ok', gen: 1 } },
      { sleepMs: 450 },
      // As stored until a writing call ends it: over (0 left), its entry not written yet.
      { ...state(), expect: { state: 'closed', gen: 1, mode: 'forced_closed', mode_until: expect.any(Number), mode_left_ms: 0 } },
      {
        ...expire('i2'),
        expect: applied(2, 'open', { from: 'closed', reason: 'expired', actor: 'i2', mode: '', note: '', rule: 'failure_rate', failures: '3', calls: '4' }),
      },
      endedAtItsExpiry,
      { ...expire(), expect: { status: 'no_mode', state: 'open', gen: 2 } },
      { ...state(), expect: { mode: '', mode_until: 0, mode_left_ms: 0 } },
    ],
  },
  {
    name: 'control: an expired mode is ended by the next record first, which then answers as for the old generation',
    steps: [
      { ...control('open', 'why', 100, { create: 1 }), expect: applied(1, 'open', { reason: 'forced_open' }) },
      { sleepMs: 250 },
      { ...record(1, { fail: 1 }, consecutive(3)), expect: { status: 'stale_gen', state: 'closed', gen: 2, transition: undefined } },
      reasons('forced_open', 'expired'),
      endedAtItsExpiry,
      { check: async (redis, keys) => expect((await auditEntries(redis, keys))[1]).toMatchObject({ from: 'open', to: 'closed', actor: 'i1', gen: '2' }) },
      { ...state(), expect: { state: 'closed', mode: '' } },
      { ...record(2, { fail: 1 }, consecutive(3)), expect: { status: 'ok', gen: 2 } },
    ],
  },
  {
    name: 'control: an expired mode is ended by the next health report first (the window deciding), which then is stale_gen',
    steps: [
      { ...record(0, { ok: 1 }, count(0.5, 4)), expect: { status: 'ok' } },
      { ...acquire('leader', 10_000), expect: { status: 'granted', token: NEW_TOKEN } },
      { ...control('close', 'why', 300), expect: applied(1, 'closed', { reason: 'forced_closed' }) },
      { ...record(1, { fail: 3 }, count(0.5, 4)), expect: { status: 'ok', gen: 1 } },
      { sleepMs: 450 },
      { ...health('leader', granted(1), 1, 'idle', 'failure'), expect: { status: 'stale_gen', state: 'open', gen: 2, recoveryFailures: 0, transition: undefined } },
      reasons('forced_closed', 'expired'),
      endedAtItsExpiry,
      { check: async (redis, keys) => expect((await auditEntries(redis, keys))[1]).toMatchObject({ to: 'open', rule: 'failure_rate', actor: 'leader' }) },
      { ...health('leader', granted(1), 2, 'recovery', 'success'), expect: { status: 'closed', state: 'closed', gen: 3 } },
    ],
  },
  {
    name: 'control: an expired mode is ended by the next control first: two entries, the answer the control\'s',
    steps: [
      { ...control('monitor', 'why', 100, { create: 1 }), expect: applied(1, 'closed', { reason: 'monitored' }) },
      { sleepMs: 250 },
      { ...control('open', 'again', 0, { actor: 'op2' }), expect: applied(3, 'open', { from: 'closed', reason: 'forced_open', note: 'again' }) },
      reasons('monitored', 'expired', 'forced_open'),
      { check: async (redis, keys) => expect((await auditEntries(redis, keys))[1]).toMatchObject({ from: 'closed', to: 'closed', actor: 'op2', gen: '2' }) },
    ],
  },
  {
    name: 'control: an expired mode is ended by the lease holder\'s next renewal first (a client of revision 5 renews, and never controls)',
    steps: [
      ...closedAndLeased,
      { ...control('open', 'why', 100), expect: applied(1, 'open', { reason: 'forced_open' }) },
      { sleepMs: 250 },
      { ...renew('leader', granted(1), 10_000), expect: { status: 'renewed', token: granted(1), holder: 'leader' } },
      reasons('forced_open', 'expired'),
      endedAtItsExpiry,
      { check: async (redis, keys) => expect((await auditEntries(redis, keys))[1]).toMatchObject({ from: 'open', to: 'closed', actor: 'leader', gen: '2' }) },
      { ...state(), expect: { state: 'closed', gen: 2, mode: '', holder: 'leader' } },
    ],
  },
  {
    name: 'control: an expired mode is ended by the next acquire first, whose snapshot is the state after it',
    steps: [
      { ...control('close', 'why', 100, { create: 1 }), expect: applied(1, 'closed', { reason: 'forced_closed' }) },
      { sleepMs: 250 },
      {
        ...acquire('i2', 10_000),
        expect: { status: 'granted', token: NEW_TOKEN, snapshot: expect.objectContaining({ state: 'closed', gen: 2, mode: '', mode_until: 0 }) },
      },
      reasons('forced_closed', 'expired'),
      endedAtItsExpiry,
    ],
  },
  {
    name: 'control: release of a mode that expired ends it as expired and answers no_mode with that entry',
    steps: [
      { ...control('open', 'why', 100, { create: 1 }), expect: applied(1, 'open', { reason: 'forced_open' }) },
      { sleepMs: 250 },
      {
        ...control('release', 'too late'),
        expect: { status: 'no_mode', state: 'closed', gen: 2, transition: expect.objectContaining({ reason: 'expired', from: 'open', to: 'closed' }) },
      },
      { ...control('reset', 'anyway'), expect: applied(3, 'closed', { reason: 'reset' }) },
      reasons('forced_open', 'expired', 'reset'),
    ],
  },
  ...MODES.map(({ action, mode, state: forced }): LuaCase => ({
    name: `control: under ${mode}, every health report of the lease holder is ignored and changes nothing`,
    steps: [
      ...closedAndLeased,
      { ...control(action), expect: applied(1, forced, { mode }) },
      ...changingNothing(
        everyReport(1).map((report) => ({
          ...report,
          expect: { status: 'ignored', state: forced, gen: 1, recoveryFailures: 0, transition: undefined },
        })),
      ),
    ],
  })),
  {
    name: 'control: a mode field zenvark did not write is corrupt for every function that reads the state hash',
    steps: [
      ...closedAndLeased,
      { setup: (redis, keys) => redis.hset(keys.state, 'mode', 'paused:0') },
      ...changingNothing([
        ...readersOfTheHash.map((step) => ({ ...step, expect: error(/^ZV_CORRUPT .*:state field mode holds 'paused:0', not written by zenvark/) })),
        ...['forced_open', 'forced_open:soon', 'Monitor:0', 'monitor:-1', 'monitor:1:2'].flatMap((value): Step[] => [
          { setup: (redis, keys) => redis.hset(keys.state, 'mode', value) },
          { ...control('release'), expect: error(/^ZV_CORRUPT .*:state field mode holds/) },
          { ...state(), expect: error(/^ZV_CORRUPT .*:state field mode holds/) },
        ]),
        { setup: (redis, keys) => redis.hset(keys.state, 'mode', 'paused:0') },
      ]),
    ],
  },
  {
    name: 'control: a mode time that is not a number is corrupt where the mode is read in full',
    steps: [
      { ...control('open', 'why', 0, { create: 1 }), expect: applied(1, 'open', { reason: 'forced_open' }) },
      { setup: (redis, keys) => redis.hset(keys.state, 'mt', 'noon') },
      { ...state(), expect: error(/^ZV_CORRUPT .*:state field mt holds 'noon'/) },
      { ...control('release'), expect: error(/^ZV_CORRUPT .*:state field mt holds 'noon'/) },
      { ...explain(), expect: error(/^ZV_CORRUPT .*:state field mt holds 'noon'/) },
      { ...record(1, { ok: 1 }, consecutive(3)), expect: { status: 'not_closed' } },
      stored({ mode: 'forced_open:0', mt: 'noon' }),
    ],
  },
  {
    name: 'control: keys of another type are refused and left alone',
    steps: [
      { setup: (redis, keys) => redis.rpush(keys.state, 'x') },
      { ...control('open'), expect: error(/^ZV_WRONGTYPE .*:state is a list, expected a hash/) },
      { ...control('open', 'why', 0, { create: 1 }), expect: error(/^ZV_WRONGTYPE .*:state is a list, expected a hash/) },
      { check: async (redis, keys) => expect(await redis.lrange(keys.state, 0, -1)).toEqual(['x']) },
      { setup: (redis, keys) => redis.del(keys.state) },
      { setup: (redis, keys) => redis.set(keys.events, 'not a stream') },
      // A breaker Redis does not know: unknown before any key is looked at further.
      { ...control('open'), expect: { status: 'unknown' } },
      { ...control('open', 'why', 0, { create: 1 }), expect: error(/^ZV_WRONGTYPE .*:events is a string, expected a stream/) },
      { ...record(0, { fail: 1 }, consecutive(3)), expect: { status: 'ok' } },
      { ...control('close'), expect: error(/^ZV_WRONGTYPE .*:events is a string, expected a stream/) },
      { ...expire(), expect: error(/^ZV_WRONGTYPE .*:events is a string, expected a stream/) },
      { ...state(), expect: { state: 'closed', gen: 0, mode: '' } },
      { check: async (redis, keys) => expect(await redis.get(keys.events)).toBe('not a stream') },
    ],
  },
  {
    name: 'control: an events stream that cannot take another entry stops a control before any write',
    steps: [
      { ...record(0, { fail: 1 }, consecutive(3)), expect: { status: 'ok' } },
      { setup: (redis, keys) => redis.xadd(keys.events, '18446744073709551615-18446744073709551615', 'owner', 'x') },
      { ...control('open', 'why', 60_000), expect: error(/^ZV_REFUSED XADD on .*:events was refused/) },
      { ...state(), expect: { state: 'closed', gen: 0, mode: '', mode_note: '' } },
      stored({ mode: '', run: '1' }),
    ],
  },
  {
    name: 'control: an events stream with room for one entry more refuses, before any write, a call that would end an expired mode and may write another',
    steps: [
      ...closedAndLeased,
      { ...control('close', 'why', 100), expect: applied(1, 'closed', { reason: 'forced_closed' }) },
      { sleepMs: 250 },
      // Written by another client: the next entry takes the last id there is.
      { setup: (redis, keys) => redis.xadd(keys.events, '18446744073709551615-18446744073709551614', 'owner', 'x') },
      // Reports of the generation after the mode's end, which would trip: a second entry.
      ...changingNothing([
        { ...control('open'), expect: error(/^ZV_REFUSED XADD on .*:events would be refused: the stream has room for one more entry/) },
        { ...record(2, { fail: 5 }, consecutive(3)), expect: error(/^ZV_REFUSED XADD on .*:events would be refused/) },
        { ...health('leader', granted(1), 2, 'idle', 'failure'), expect: error(/^ZV_REFUSED XADD on .*:events would be refused/) },
        { ...expire(), expect: error(/^ZV_REFUSED XADD on .*:events would be refused/) },
      ]),
      // Without an expired mode to end, a call writes one entry at most, and takes the last id.
      { setup: (redis, keys) => redis.hset(keys.state, 'mode', 'forced_closed:0') },
      { ...control('open'), expect: applied(2, 'open', { reason: 'forced_open', id: '18446744073709551615-18446744073709551615' }) },
    ],
  },
  {
    name: 'control: bad arguments are refused on a breaker under a mode, and change nothing',
    steps: [
      { ...record(0, { ok: 1 }, consecutive(3)), expect: { status: 'ok' } },
      { ...control('open', 'why', 60_000), expect: applied(1, 'open', { reason: 'forced_open' }) },
      ...changingNothing(controlArguments.map(([, step, pattern]) => ({ ...step, expect: error(pattern) }))),
    ],
  },
  {
    name: 'control: retention 0 trims nothing; a retention does',
    steps: [
      {
        check: async (redis, keys) => {
          const k = keyList(keys);
          for (let i = 0; i < 150; i++) {
            await redis.call('FCALL', 'zv1_control', '2', ...k, ...header('op', 0), i % 2 === 0 ? 'open' : 'close', 'flap', '0', '1');
          }
          expect(await redis.xlen(keys.events)).toBe(150);
          await redis.call('FCALL', 'zv1_control', '2', ...k, ...header('op', 1), 'open', 'flap', '0', '1');
          expect(await redis.xlen(keys.events)).toBeLessThan(151);
        },
      },
    ],
  },
  {
    name: 'upgrade: a hash written by revision 5 (without the mode fields) reads as normal operation, and a control writes them',
    steps: [
      {
        setup: (redis, keys) =>
          redis.hset(keys.state, {
            state: 'closed', gen: '0', epoch: '1700000000000000', since: '1700000000000', run: '0', cfg: consecutive(2), w: '',
            last: '-1', lh: '', lt: '0', lu: '0', hcf: '0', hca: '1700000000000', hcs: '0', tp: '', ts: '0', pn: '0',
          }),
      },
      { ...state(), expect: { state: 'closed', mode: '', mode_actor: '', mode_note: '', mode_since_ms: 0, mode_until: 0, mode_left_ms: 0 } },
      { ...record(0, { fail: 1 }, consecutive(2)), expect: { status: 'ok' } },
      { ...expire(), expect: { status: 'no_mode' } },
      { ...control('monitor', 'watch'), expect: applied(1, 'closed', { reason: 'monitored', mode: 'monitor' }) },
      stored({ mode: 'monitor:0', ma: 'op', mn: 'watch', mt: expect.stringMatching(/^\d+$/) }),
      { ...record(1, { fail: 2 }, consecutive(2)), expect: { status: 'ok', gen: 2, transition: expect.objectContaining({ reason: 'would_open' }) } },
    ],
  },
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
      ...halfOpenWithTrials,
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

  ...controlCases,
  ...INSTANCE_CASES,

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
            'mode', 'note', 'until', 'rule', 'instances', 'reporters',
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


