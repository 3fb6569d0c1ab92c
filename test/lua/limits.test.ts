/**
 * The library at each bound of src/limits.ts: every function, every bounded argument, at
 * its maximum (accepted) and one above it (refused with ZV_BADARG, nothing written), and
 * at its minimum and one below it likewise. Runs against the shipped (minified) library;
 * the values the source library declares are checked against src/limits.ts as well.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type BreakerKeys, isolationKeyList, keyList, ruleKeyList } from '../../src/keys.js';
import * as limits from '../../src/limits.js';
import {
  MAX_ACTOR_BYTES,
  MAX_CHANNEL_BYTES,
  MAX_COUNT,
  MAX_COUNT_WINDOW,
  MAX_DURATION_MS,
  MAX_HEALTH_SUCCESS_THRESHOLD,
  MAX_INSTANCES,
  MAX_MODE_MS,
  MAX_NOTE_BYTES,
  MAX_RETENTION,
  MAX_TRIAL_PERMITS,
  MAX_TTL_MS,
  MIN_DURATION_MS,
  SAFE_INTEGER,
} from '../../src/limits.js';
import { CHANNEL, type Fn, consecutive, freshKeys, shippedLibrary, summary } from './harness.js';

/** Limits the client alone checks: no library argument is bounded by them. */
const CLIENT_ONLY = ['MIN_LEASE_TTL_MS', 'PERMIT_TIMEOUTS', 'MAX_PREFIX_LENGTH', 'MAX_DELAY_MS', 'MAX_PENDING_OUTCOMES'];

type Args = (string | number)[];
type Header = [channel: string, actor: string, retention: string];
const H = (change: Partial<{ channel: string; actor: string; retention: number }> = {}): Header => [
  change.channel ?? CHANNEL,
  change.actor ?? 'i1',
  String(change.retention ?? 100),
];

/** Valid arguments of each writing function after the header. */
const AFTER_HEADER: Record<Exclude<Fn, 'zv1_state' | 'zv1_explain' | 'zv1_revision'>, Args> = {
  zv1_record: ['0', ...summary({ fail: 1 }), consecutive(5)],
  zv1_acquire: ['1000'],
  zv1_renew: ['1', '1000'],
  zv1_release: ['1'],
  zv1_health: ['1', '0', 'recovery', 'success', '1', '0'],
  zv1_permit: ['0', '2', '2', '1000'],
  zv1_trial: ['0', '1', 'success', '2', '2'],
  zv1_sync: [consecutive(5)],
  zv1_control: ['open', 'why', '0', '1'],
  zv1_isolate: ['isolate', '0', '5', '5', '0'],
};

/** The keys each function takes: zv1_isolate four, zv1_record three with an instance rule (ARGV 14), the others two. */
function keysOf(fn: Fn, args: Args, keys: BreakerKeys): string[] {
  if (fn === 'zv1_isolate') return isolationKeyList(keys);
  if (fn === 'zv1_record' && args.length > 13) return ruleKeyList(keys);
  return keyList(keys);
}

interface Bounded {
  readonly fn: Fn;
  /** The argument as the library's messages name it. */
  readonly name: string;
  readonly min: number;
  readonly max: number;
  /** The whole ARGV, with the argument at `v` (a length in bytes for a text) and every other valid. */
  readonly args: (v: number) => Args;
}

/** A count clamped into its range, so that a summary stays consistent around a bound. */
const c = (v: number) => Math.min(Math.max(v, 0), MAX_COUNT);
const record = (summaryArgs: Args, spec = consecutive(5)): Args => [...H(), '0', ...summaryArgs, spec];

const BOUNDED: readonly Bounded[] = [
  ...(Object.keys(AFTER_HEADER) as (keyof typeof AFTER_HEADER)[]).flatMap((fn): Bounded[] => [
    { fn, name: 'channel', min: 1, max: MAX_CHANNEL_BYTES, args: (v) => [...H({ channel: 'c'.repeat(v) }), ...AFTER_HEADER[fn]] },
    { fn, name: 'actor', min: 1, max: MAX_ACTOR_BYTES, args: (v) => [...H({ actor: 'a'.repeat(v) }), ...AFTER_HEADER[fn]] },
    // An operator's control takes 0: it trims nothing.
    { fn, name: 'retention', min: fn === 'zv1_control' || fn === 'zv1_isolate' ? 0 : 1, max: MAX_RETENTION, args: (v) => [...H({ retention: v }), ...AFTER_HEADER[fn]] },
  ]),

  { fn: 'zv1_record', name: 'generation', min: 0, max: SAFE_INTEGER, args: (v) => [...H(), v, ...summary({ fail: 1 }), consecutive(5)] },
  // Each count of the summary, with the others chosen so that the summary holds together.
  { fn: 'zv1_record', name: 'successes', min: 0, max: MAX_COUNT, args: (v) => record([v, 0, 1, 0, 0, 0, 0]) },
  { fn: 'zv1_record', name: 'failures', min: 0, max: MAX_COUNT, args: (v) => record([1, v, 0, 0, c(v), c(v), 0]) },
  { fn: 'zv1_record', name: 'slow successes', min: 0, max: MAX_COUNT, args: (v) => record([1, 0, v, 0, 0, 0, 0]) },
  { fn: 'zv1_record', name: 'slow failures', min: 0, max: MAX_COUNT, args: (v) => record([1, 0, 0, v, c(v), c(v), 0]) },
  { fn: 'zv1_record', name: 'head run', min: 0, max: MAX_COUNT, args: (v) => record([1, c(v), 0, 0, v, c(v), 0]) },
  { fn: 'zv1_record', name: 'longest run', min: 0, max: MAX_COUNT, args: (v) => record([1, c(v), 0, 0, 0, v, 0]) },
  { fn: 'zv1_record', name: 'tail run', min: 0, max: MAX_COUNT, args: (v) => record([1, c(v), 0, 0, 0, c(v), v]) },
  // The parts of the strategy spec.
  { fn: 'zv1_record', name: 'threshold', min: 1, max: MAX_COUNT, args: (v) => record(summary({ fail: 1 }), `consecutive:${v}:0:0`) },
  { fn: 'zv1_record', name: 'window', min: 0, max: 0, args: (v) => record(summary({ fail: 1 }), `consecutive:5:${v}:0`) },
  { fn: 'zv1_record', name: 'minimum calls', min: 0, max: 0, args: (v) => record(summary({ fail: 1 }), `consecutive:5:0:${v}`) },
  { fn: 'zv1_record', name: 'window', min: 1, max: MAX_COUNT_WINDOW, args: (v) => record(summary({ fail: 1 }), `count:0.5:${v}:1`) },
  {
    fn: 'zv1_record',
    name: 'minimum calls',
    min: 1,
    max: MAX_COUNT_WINDOW,
    args: (v) => record(summary({ fail: 1 }), `count:0.5:${MAX_COUNT_WINDOW}:${v}`),
  },
  { fn: 'zv1_record', name: 'window', min: MIN_DURATION_MS, max: MAX_DURATION_MS, args: (v) => record(summary({ fail: 1 }), `time:0.5:${v}:1`) },
  { fn: 'zv1_record', name: 'minimum calls', min: 1, max: MAX_COUNT, args: (v) => record(summary({ fail: 1 }), `time:0.5:1000:${v}`) },

  // 0: no lease wanted (so that an instance rule can follow).
  { fn: 'zv1_record', name: 'lease ttl', min: 0, max: MAX_TTL_MS, args: (v) => [...H(), '0', ...summary({ fail: 1 }), consecutive(5), v] },
  {
    fn: 'zv1_record',
    name: 'minimum instances',
    min: 0,
    max: MAX_INSTANCES,
    args: (v) => [...H(), '0', ...summary({ fail: 1 }), 'count:0.5:10:5', '0', `${v}:0.5`],
  },
  { fn: 'zv1_acquire', name: 'ttl', min: 1, max: MAX_TTL_MS, args: (v) => [...H(), v] },

  { fn: 'zv1_renew', name: 'token', min: 1, max: SAFE_INTEGER, args: (v) => [...H(), v, '1000'] },
  { fn: 'zv1_renew', name: 'ttl', min: 1, max: MAX_TTL_MS, args: (v) => [...H(), '1', v] },

  { fn: 'zv1_release', name: 'token', min: 1, max: SAFE_INTEGER, args: (v) => [...H(), v] },

  { fn: 'zv1_health', name: 'token', min: 1, max: SAFE_INTEGER, args: (v) => [...H(), v, '0', 'recovery', 'success', '1', '0'] },
  { fn: 'zv1_health', name: 'generation', min: 0, max: SAFE_INTEGER, args: (v) => [...H(), '1', v, 'recovery', 'success', '1', '0'] },
  {
    fn: 'zv1_health',
    name: 'success threshold',
    min: 1,
    max: MAX_HEALTH_SUCCESS_THRESHOLD,
    args: (v) => [...H(), '1', '0', 'recovery', 'success', v, '0'],
  },
  { fn: 'zv1_health', name: 'trial permits', min: 0, max: MAX_TRIAL_PERMITS, args: (v) => [...H(), '1', '0', 'recovery', 'success', '1', v] },

  { fn: 'zv1_permit', name: 'generation', min: 0, max: SAFE_INTEGER, args: (v) => [...H(), v, '2', '2', '1000'] },
  { fn: 'zv1_permit', name: 'trial permits', min: 1, max: MAX_TRIAL_PERMITS, args: (v) => [...H(), '0', v, '1', '1000'] },
  { fn: 'zv1_permit', name: 'trial successes', min: 1, max: MAX_TRIAL_PERMITS, args: (v) => [...H(), '0', MAX_TRIAL_PERMITS, v, '1000'] },
  { fn: 'zv1_permit', name: 'permit ttl', min: 1, max: MAX_TTL_MS, args: (v) => [...H(), '0', '2', '2', v] },

  { fn: 'zv1_trial', name: 'generation', min: 0, max: SAFE_INTEGER, args: (v) => [...H(), v, '1', 'success', '2', '2'] },
  { fn: 'zv1_trial', name: 'permit', min: 1, max: SAFE_INTEGER, args: (v) => [...H(), '0', v, 'success', '2', '2'] },
  { fn: 'zv1_trial', name: 'trial permits', min: 1, max: MAX_TRIAL_PERMITS, args: (v) => [...H(), '0', '1', 'success', v, '1'] },
  { fn: 'zv1_trial', name: 'trial successes', min: 1, max: MAX_TRIAL_PERMITS, args: (v) => [...H(), '0', '1', 'success', MAX_TRIAL_PERMITS, v] },

  { fn: 'zv1_control', name: 'note', min: 1, max: MAX_NOTE_BYTES, args: (v) => [...H(), 'open', 'n'.repeat(v), '0', '1'] },
  { fn: 'zv1_control', name: 'for', min: 0, max: MAX_MODE_MS, args: (v) => [...H(), 'monitor', 'why', v, '1'] },

  { fn: 'zv1_isolate', name: 'generation', min: 0, max: SAFE_INTEGER, args: (v) => [...H(), 'isolate', v, '5', '5', '0'] },
  { fn: 'zv1_isolate', name: 'failures', min: 0, max: MAX_COUNT, args: (v) => [...H(), 'isolate', '0', v, MAX_COUNT, '0'] },
  { fn: 'zv1_isolate', name: 'calls', min: 0, max: MAX_COUNT, args: (v) => [...H(), 'isolate', '0', '0', v, '0'] },
  { fn: 'zv1_isolate', name: 'slow', min: 0, max: MAX_COUNT, args: (v) => [...H(), 'isolate', '0', '0', MAX_COUNT, v] },
  { fn: 'zv1_isolate', name: 'generation', min: 0, max: SAFE_INTEGER, args: (v) => [...H(), 'rejoin', v, 'recovered'] },
];

const redis = shippedLibrary();

async function fcall(keys: BreakerKeys, fn: Fn, args: Args): Promise<unknown> {
  try {
    const k = keysOf(fn, args, keys);
    return await redis().call('FCALL', fn, String(k.length), ...k, ...args.map(String));
  } catch (error) {
    return error;
  }
}

/** A closed breaker with a state hash (one recorded success, a lease held by 'seed'). */
async function seeded(): Promise<BreakerKeys> {
  const keys = freshKeys();
  expect(await fcall(keys, 'zv1_record', [...H(), '0', ...summary({ ok: 1 }), consecutive(5)])).toBeInstanceOf(Array);
  expect(await fcall(keys, 'zv1_acquire', [...H({ actor: 'seed' }), '60000'])).toBeInstanceOf(Array);
  return keys;
}

/** Whether each key exists, and its serialized value. */
async function snapshot(keys: BreakerKeys): Promise<unknown[]> {
  return Promise.all(isolationKeyList(keys).flatMap((key) => [redis().exists(key), redis().dumpBuffer(key)]));
}

async function accepted(b: Bounded, v: number): Promise<void> {
  const reply = await fcall(await seeded(), b.fn, b.args(v));
  expect(reply instanceof Error ? reply.message : reply, `${b.name} = ${v}`).toBeInstanceOf(Array);
}

async function refused(b: Bounded, v: number): Promise<void> {
  const keys = await seeded();
  const before = await snapshot(keys);
  const reply = await fcall(keys, b.fn, b.args(v));
  expect(reply, `${b.name} = ${v}`).toBeInstanceOf(Error);
  expect((reply as Error).message).toMatch(new RegExp(`^ZV_BADARG ${b.name} must `));
  expect(await snapshot(keys)).toEqual(before);
}

describe('the shipped library at each limit', () => {
  const rows = BOUNDED.map((b) => [`${b.fn} ${b.name} in [${b.min}, ${b.max}]`, b] as const);

  it.each(rows)('%s: the maximum is taken, one above is refused and writes nothing', async (_name, b) => {
    await accepted(b, b.max);
    await refused(b, b.max + 1);
  });

  it.each(rows)('%s: the minimum is taken, one below is refused and writes nothing', async (_name, b) => {
    await accepted(b, b.min);
    await refused(b, b.min - 1);
  });
});

describe('the library source declares the limits of src/limits.ts', () => {
  const source = readFileSync(new URL('../../lua/zenvark_v1.lua', import.meta.url), 'utf8');
  const block = /^-- Limits:[^\n]*\n(?:--[^\n]*\n)*((?:local \w+ = [^\n]+\n)+)/m.exec(source)?.[1] ?? '';
  const declared = Object.fromEntries(
    [...block.matchAll(/^local (\w+) = (\d+)/gm)].map(([, name, value]) => [name as string, Number(value)]),
  );

  it('under the same names, with the same values', () => {
    const shared = Object.fromEntries(Object.entries(limits).filter(([name]) => !CLIENT_ONLY.includes(name)));
    expect(declared).toEqual(shared);
  });

  it('once: no copy of a limit elsewhere in the library', () => {
    const rest = source.replace(block, '');
    for (const [name, value] of Object.entries(declared)) {
      if (value < 1000) continue; // small numbers stand for other things too
      expect(rest, name).not.toMatch(new RegExp(`(?<![\\w.])${value}(?![\\w.])`));
    }
  });
});
