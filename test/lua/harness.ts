/**
 * Runs the Lua case table through FCALL. Each case gets fresh keys (a random breaker id);
 * each step calls one function with raw KEYS and ARGV and decodes the reply, so that a
 * case reads as a list of calls and the answers expected.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import { sleep } from '../../harness/clock.js';
import { type BreakerKeys, breakerKeys, isolationKeyList, keyList, ruleKeyList } from '../../src/keys.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';

export const CHANNEL = 'zvtest:feed';
export const PREFIX = 'zvtest';

export type Fn =
  | 'zv1_record'
  | 'zv1_acquire'
  | 'zv1_renew'
  | 'zv1_release'
  | 'zv1_health'
  | 'zv1_permit'
  | 'zv1_trial'
  | 'zv1_state'
  | 'zv1_sync'
  | 'zv1_explain'
  | 'zv1_control'
  | 'zv1_revision'
  | 'zv1_isolate';

/**
 * A lease token granted earlier in the same case: its value is known only once the grant
 * answered (a token is drawn from the server's clock), so steps name it by rank.
 */
export class Granted {
  constructor(
    /** 1: the case's first token granted, 2: the next new one, ... */
    readonly rank: number,
    /** Added to the token: 1 names a token above it, one never granted. */
    readonly offset: number,
    /** As the audit entry and the feed write it (a string). */
    readonly asText: boolean,
  ) {}
}

/** The token of the case's `rank`-th grant (plus `offset`), as an argument or an expected value. */
export const granted = (rank: number, offset = 0): Granted => new Granted(rank, offset, false);
/** The same token as an audit entry holds it. */
export const grantedText = (rank: number): Granted => new Granted(rank, 0, true);

/**
 * In an expectation of zv1_acquire: a new token, the one the library's rule gives,
 * max(last token + 1, server time in ms): above the case's last token, at least the
 * server's time before the call and at most its time after. It becomes the next rank.
 */
export const NEW_TOKEN = Symbol('a new token');

export type Arg = string | number | Granted;

export interface CallStep {
  readonly fn: Fn;
  readonly args: readonly Arg[];
  /** Overrides the breaker's keys (to test the key count). */
  readonly keys?: readonly string[];
  /** The breaker's keys this step sends: 'rule' adds the instances hash (zv1_record with an
   * instance rule), 'isolation' both instance keys (zv1_isolate); default the two. */
  readonly keySet?: 'rule' | 'isolation';
  /** Partial shape of the decoded reply, checked with toMatchObject. */
  readonly expect?: Record<string, unknown>;
}

export type Step =
  | CallStep
  | { readonly sleepMs: number }
  | { readonly setup: (redis: Redis, keys: BreakerKeys) => Promise<unknown> }
  | { readonly check: (redis: Redis, keys: BreakerKeys, tokens: readonly number[]) => Promise<void> }
  | { readonly concurrently: readonly CallStep[] };

export interface LuaCase {
  readonly name: string;
  readonly steps: readonly Step[];
}

// ---- argument builders --------------------------------------------------------------

export const header = (actor = 'i1', retention = 100) => [CHANNEL, actor, String(retention)];

export const consecutive = (threshold: number) => `consecutive:${threshold}:0:0`;
export const count = (threshold: number, size: number, min = size) => `count:${threshold}:${size}:${min}`;
export const time = (threshold: number, durationMs: number, min = 1) => `time:${threshold}:${durationMs}:${min}`;

interface SummaryInput {
  ok?: number;
  fail?: number;
  slowOk?: number;
  slowFail?: number;
  head?: number;
  maxRun?: number;
  tail?: number;
}

/** Summary ARGV; runs default to "all failures in one run" when there is no success. */
export function summary(s: SummaryInput): string[] {
  const ok = s.ok ?? 0;
  const fail = s.fail ?? 0;
  const slowOk = s.slowOk ?? 0;
  const slowFail = s.slowFail ?? 0;
  const failures = fail + slowFail;
  const allFail = ok + slowOk === 0;
  const head = s.head ?? (allFail ? failures : 0);
  const tail = s.tail ?? (allFail ? failures : 0);
  const maxRun = s.maxRun ?? Math.max(head, tail, allFail ? failures : Math.min(failures, 1));
  return [ok, fail, slowOk, slowFail, head, maxRun, tail].map(String);
}

/**
 * Records a summary with an instance rule ('K:share', ARGV 14) and the instances key; lease
 * ttl '0' (none) unless given.
 */
export const recordWithRule = (
  gen: number,
  s: SummaryInput,
  strategy: string,
  rule: string,
  actor = 'i1',
  leaseTtlMs = 0,
): Omit<CallStep, 'expect'> => ({
  fn: 'zv1_record',
  args: [...header(actor), String(gen), ...summary(s), strategy, String(leaseTtlMs), rule],
  keySet: 'rule',
});
/** An instance isolating itself with its own window's figures. */
export const isolate = (actor: string, gen: number, failures: number, calls: number, slow = 0, retention = 100): Omit<CallStep, 'expect'> => ({
  fn: 'zv1_isolate',
  args: [...header(actor, retention), 'isolate', String(gen), String(failures), String(calls), String(slow)],
  keySet: 'isolation',
});
/** An isolated instance coming back. */
export const rejoin = (actor: string, gen: number, reason = 'recovered'): Omit<CallStep, 'expect'> => ({
  fn: 'zv1_isolate',
  args: [...header(actor), 'rejoin', String(gen), reason],
  keySet: 'isolation',
});

/** Records a summary; with `leaseTtlMs`, a trip grants `actor` the lease when it is free. */
export const record = (gen: number, s: SummaryInput, strategy: string, actor = 'i1', retention = 100, leaseTtlMs?: number): Omit<CallStep, 'expect'> => ({
  fn: 'zv1_record',
  args: [...header(actor, retention), String(gen), ...summary(s), strategy, ...(leaseTtlMs === undefined ? [] : [String(leaseTtlMs)])],
});
export const acquire = (actor: string, ttlMs: number): Omit<CallStep, 'expect'> => ({
  fn: 'zv1_acquire',
  args: [...header(actor), String(ttlMs)],
});
export const renew = (actor: string, token: number | Granted, ttlMs: number): Omit<CallStep, 'expect'> => ({
  fn: 'zv1_renew',
  args: [...header(actor), token, String(ttlMs)],
});
export const release = (actor: string, token: number | Granted): Omit<CallStep, 'expect'> => ({
  fn: 'zv1_release',
  args: [...header(actor), token],
});
export const health = (
  actor: string,
  token: number | Granted,
  gen: number,
  type: string,
  result: string,
  successThreshold = 1,
  permits = 0,
): Omit<CallStep, 'expect'> => ({
  fn: 'zv1_health',
  args: [...header(actor), token, String(gen), type, result, String(successThreshold), String(permits)],
});
/** Asks for a trial permit: `permits` per half-open period, `successes` close. */
export const permit = (gen: number, permits: number, successes: number, ttlMs = 10_000, actor = 'i1'): Omit<CallStep, 'expect'> => ({
  fn: 'zv1_permit',
  args: [...header(actor), String(gen), String(permits), String(successes), String(ttlMs)],
});
export const trial = (gen: number, id: number, result: string, permits: number, successes: number, actor = 'i1'): Omit<CallStep, 'expect'> => ({
  fn: 'zv1_trial',
  args: [...header(actor), String(gen), String(id), result, String(permits), String(successes)],
});
/**
 * An operator's control (zv1_control) by `actor`, retention 0 as an operator sends it; `create`
 * left off as a client that does not send it ('0': a breaker Redis does not know is 'unknown').
 */
export const control = (
  action: string,
  note = 'by hand',
  forMs = 0,
  { actor = 'op', retention = 0, create }: { actor?: string; retention?: number; create?: 0 | 1 } = {},
): Omit<CallStep, 'expect'> => ({
  fn: 'zv1_control',
  args: [...header(actor, retention), action, note, String(forMs), ...(create === undefined ? [] : [String(create)])],
});
/** The end of a mode whose expiry has passed, as an instance that knew it asks for it. */
export const expire = (actor = 'i1'): Omit<CallStep, 'expect'> => control('expire', '', 0, { actor });
export const state = (): Omit<CallStep, 'expect'> => ({ fn: 'zv1_state', args: [] });
export const sync = (strategy: string, actor = 'i1'): Omit<CallStep, 'expect'> => ({ fn: 'zv1_sync', args: [...header(actor), strategy] });
export const explain = (): Omit<CallStep, 'expect'> => ({ fn: 'zv1_explain', args: [] });

// ---- decoding -------------------------------------------------------------------------

/** A flat name/value list (a reply of pairs, the fields of a stream entry) as an object. */
export function pairs(list: readonly unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < list.length; i += 2) out[String(list[i])] = list[i + 1];
  return out;
}

function transition(json: unknown): Record<string, unknown> | undefined {
  return typeof json === 'string' && json !== '' ? (JSON.parse(json) as Record<string, unknown>) : undefined;
}

export function decode(fn: Fn, reply: unknown): Record<string, unknown> {
  if (reply instanceof Error) return { error: reply.message };
  const r = reply as unknown[];
  switch (fn) {
    case 'zv1_revision':
      return { revision: reply };
    case 'zv1_state':
    case 'zv1_sync':
      return pairs(r);
    case 'zv1_explain': {
      // The newest audit entry as an object, so that its clock fields are normalized too.
      const decoded = pairs(r);
      return { ...decoded, last: pairs(decoded.last as unknown[]) };
    }
    case 'zv1_record':
      return {
        status: r[0],
        state: r[1],
        gen: r[2],
        epoch: r[3],
        transition: transition(r[4]),
        ...(r.length > 5 ? { token: r[5] } : {}),
        ...(r.length > 6 ? { instances: r[6], reporters: r[7] } : {}),
      };
    case 'zv1_isolate':
      return { status: r[0], state: r[1], gen: r[2], epoch: r[3], entry: r[4] === '' ? '' : '<id>' };
    case 'zv1_acquire':
      return { status: r[0], token: r[1], holder: r[2], leaseMs: r[3], snapshot: pairs(r.slice(4)) };
    case 'zv1_renew':
      return { status: r[0], token: r[1], holder: r[2], leaseMs: r[3] };
    case 'zv1_release':
      return { status: r[0] };
    case 'zv1_health':
      return { status: r[0], state: r[1], gen: r[2], epoch: r[3], recoveryFailures: r[4], transition: transition(r[5]) };
    case 'zv1_control':
      return { status: r[0], state: r[1], gen: r[2], epoch: r[3], transition: transition(r[4]) };
    case 'zv1_permit':
      return { status: r[0], state: r[1], gen: r[2], epoch: r[3], permit: r[4], ms: r[5] };
    case 'zv1_trial':
      return { status: r[0], state: r[1], gen: r[2], epoch: r[3], trialSuccesses: r[4], transition: transition(r[5]) };
  }
}

const VOLATILE = new Set([
  'epoch', 'time', 'id', 'last_id', 'age_ms', 'lease_ms', 'leaseMs', 'recovery_age_ms', 'idle_ms', 'ms',
  'until', 'mode_until', 'mode_since_ms', 'mode_left_ms',
]);

/**
 * Replaces values that depend on the clock, so that two runs can be compared: a lease
 * token the case was granted becomes its rank (`tokens`, in the order granted).
 */
export function normalize(value: unknown, tokens: readonly number[] = []): unknown {
  if (Array.isArray(value)) return value.map((v) => normalize(v, tokens));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      const rank = key === 'token' && v !== '' ? tokens.indexOf(Number(v)) + 1 : 0;
      if (rank > 0) out[key] = `<token ${rank}${typeof v === 'string' ? ' as text' : ''}>`;
      else out[key] = VOLATILE.has(key) && v !== '' && v !== -1 ? '<clock>' : normalize(v, tokens);
    }
    return out;
  }
  return value;
}

// ---- running ---------------------------------------------------------------------------

export function freshKeys(): BreakerKeys {
  return breakerKeys(PREFIX, `lua-${randomUUID()}`);
}

/** The functions registered no-writes: called with FCALL_RO, as clients do, so that the flag is tested too. */
const READ_ONLY: ReadonlySet<Fn> = new Set(['zv1_revision', 'zv1_state', 'zv1_explain']);

/** Calls one step's function with the breaker's keys (or the step's own); errors come back as `{ error }`. */
export async function callStep(redis: Redis, keys: BreakerKeys, step: Omit<CallStep, 'expect'>): Promise<Record<string, unknown>> {
  const k = step.keys ?? (step.keySet === 'rule' ? ruleKeyList(keys) : step.keySet === 'isolation' ? isolationKeyList(keys) : keyList(keys));
  const args = step.args.map((arg) => {
    if (arg instanceof Granted) throw new Error(`${step.fn}: granted(${arg.rank}) names a token only runCase knows`);
    return String(arg);
  });
  let reply: unknown;
  try {
    reply = await redis.call(READ_ONLY.has(step.fn) ? 'FCALL_RO' : 'FCALL', step.fn, String(k.length), ...k, ...args);
  } catch (error) {
    reply = error;
  }
  return decode(step.fn, reply);
}

/** The value `g` names among the tokens granted so far. */
function tokenOf(g: Granted, tokens: readonly number[]): number | string {
  const token = tokens[g.rank - 1];
  if (token === undefined) throw new Error(`granted(${g.rank}): the case was granted ${tokens.length} token(s) so far`);
  return g.asText ? String(token + g.offset) : token + g.offset;
}

/** The step with the tokens it names as their values. */
function withTokens<S extends Omit<CallStep, 'expect'>>(step: S, tokens: readonly number[]): S {
  return { ...step, args: step.args.map((arg) => (arg instanceof Granted ? tokenOf(arg, tokens) : arg)) };
}

/** An expectation with the tokens it names, and NEW_TOKEN, as their values (in plain objects and arrays). */
function expectedWith(value: unknown, tokens: readonly number[]): unknown {
  if (value === NEW_TOKEN) return tokens.at(-1);
  if (value instanceof Granted) return tokenOf(value, tokens);
  if (Array.isArray(value)) return value.map((v) => expectedWith(v, tokens));
  if (value && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expectedWith(v, tokens)]));
  }
  return value;
}

/** A token granted by this reply (an acquire, or a trip) that the case had not seen: the next rank. */
function noteGrant(fn: Fn, reply: Record<string, unknown>, tokens: number[]): void {
  const grant = (fn === 'zv1_acquire' && reply.status === 'granted') || (fn === 'zv1_record' && reply.status === 'opened');
  if (grant && typeof reply.token === 'number' && reply.token > 0 && !tokens.includes(reply.token)) tokens.push(reply.token);
}

async function serverMs(redis: Redis): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

/**
 * Runs a case; returns the decoded replies in order. With `assert`, each reply is checked
 * against its step's expectation as it comes.
 */
export async function runCase(redis: Redis, c: LuaCase, assert: boolean, keys = freshKeys()): Promise<unknown[]> {
  const transcript: unknown[] = [];
  const tokens: number[] = [];
  for (const [index, step] of c.steps.entries()) {
    if ('sleepMs' in step) {
      await sleep(step.sleepMs);
    } else if ('setup' in step) {
      await step.setup(redis, keys);
    } else if ('check' in step) {
      if (assert) await step.check(redis, keys, tokens);
    } else if ('concurrently' in step) {
      const replies = await Promise.all(step.concurrently.map((s) => callStep(redis, keys, withTokens(s, tokens))));
      replies.forEach((reply, i) => noteGrant((step.concurrently[i] as CallStep).fn, reply, tokens));
      transcript.push(replies.map((r) => normalize(r, tokens)));
    } else {
      const where = `step ${index + 1} (${step.fn})`;
      const fresh = assert && step.expect?.token === NEW_TOKEN;
      const last = tokens.at(-1) ?? 0;
      const before = fresh ? await serverMs(redis) : 0;
      const decoded = await callStep(redis, keys, withTokens(step, tokens));
      const after = fresh ? await serverMs(redis) : 0;
      const known = tokens.length;
      noteGrant(step.fn, decoded, tokens);
      transcript.push(normalize(decoded, tokens));
      if (fresh) {
        expect(tokens.length, `${where}: a token not granted before in this case`).toBe(known + 1);
        expect(decoded.token, `${where}: max(last token + 1, server time)`).toBeGreaterThanOrEqual(Math.max(last + 1, before));
        expect(decoded.token, `${where}: max(last token + 1, server time)`).toBeLessThanOrEqual(Math.max(last + 1, after));
      }
      if (assert && step.expect) {
        expect(decoded, where).toMatchObject(expectedWith(step.expect, tokens) as Record<string, unknown>);
      }
    }
  }
  return transcript;
}

/** A hash's fields and values in field order: the order HGETALL or DUMP give is the server's
 * (Valkey's changes on reads alone, while it rehashes a table). */
export function sortedHash(hash: Record<string, Buffer>): string | null {
  const fields = Object.keys(hash).sort();
  return fields.length === 0 ? null : `hash ${fields.map((field) => `${field}=${(hash[field] as Buffer).toString('base64')}`).join(' ')}`;
}

/** A key's contents, in a form that does not depend on how the server orders a hash or a set; null: no key. */
export async function contents(redis: Redis, key: string): Promise<string | null> {
  const type = await redis.type(key);
  if (type === 'none') return null;
  if (type === 'hash') return sortedHash(await redis.hgetallBuffer(key));
  if (type === 'set') return `set ${(await redis.smembersBuffer(key)).map((member) => member.toString('base64')).sort().join(' ')}`;
  return `${type} ${(await redis.dumpBuffer(key))?.toString('base64') ?? ''}`;
}

/** The contents of a breaker's keys (see contents()), to tell whether a call changed anything. */
export async function dumps(redis: Redis, keys: BreakerKeys): Promise<(string | null)[]> {
  return Promise.all(isolationKeyList(keys).map((key) => contents(redis, key)));
}

/** The keys of a breaker that exist. */
export async function existingKeys(redis: Redis, keys: BreakerKeys): Promise<string[]> {
  const out: string[] = [];
  for (const key of isolationKeyList(keys)) if ((await redis.exists(key)) === 1) out.push(key);
  return out;
}

export async function loadLibrary(redis: Redis, code: string): Promise<void> {
  await redis.call('FUNCTION', 'LOAD', 'REPLACE', code);
}

/**
 * A client of the shared test server with the shipped library loaded, for the tests of
 * the calling file: connected before them, disconnected after. Returns a getter.
 */
export function shippedLibrary(): () => Redis {
  let redis: Redis | undefined;
  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'));
    await loadLibrary(redis, LIBRARY_CODE);
  });
  afterAll(() => redis?.disconnect());
  return () => redis as Redis;
}
