/**
 * The zenvark command's reading subcommands (ls, status, history) against a server of the
 * file's own, as people and scripts see them: tables, --json, exit codes; its help on every
 * subcommand; bad usage; an unknown breaker (controls too); a server without the library.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TransitionReason } from '../../src/constants.js';
import { BreakerFunctions } from '../../src/functions.js';
import { breakerKeys, feedChannel } from '../../src/keys.js';
import type { Transition } from '../../src/transition.js';
import { ownRedis } from '../support/own-redis.js';
import { recordCall, zenvark } from '../support/zenvark.js';

const own = ownRedis({ library: true });
const url = () => own.server.url;
const fresh = (name: string) => `${name}-${randomBytes(4).toString('hex')}`;

/** A prefix of the test's own: ls lists only its breakers. */
const freshPrefix = () => fresh('zvcli');

/** Opens an open breaker's circuit again as its lease holder would: a passed recovery check closes it. */
async function recover(prefix: string, id: string): Promise<void> {
  const functions = new BreakerFunctions(own.admin, breakerKeys(prefix, id), feedChannel(prefix), 'checker', 100, 'consecutive:1:0:0', 10_000);
  const { token, snapshot } = await functions.acquire();
  const reply = await functions.health(token, snapshot.generation, 'recovery', 'success', 1, 0);
  expect(reply.status).toBe('closed');
}

const SUBCOMMANDS = ['ls', 'status', 'history', 'open', 'close', 'monitor', 'release', 'reset', 'deploy-functions', 'watch'];

describe('zenvark --help', () => {
  it('lists every subcommand and the exit codes', async () => {
    const run = await zenvark(['--help']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    for (const name of SUBCOMMANDS) expect(run.stdout).toMatch(new RegExp(`^  ${name} `, 'm'));
    expect(run.stdout).toContain('Exit codes:');
  });

  it.each(SUBCOMMANDS)('%s --help (and help %s) says how to use it', async (name) => {
    for (const args of [[name, '--help'], ['help', name]]) {
      const run = await zenvark(args);
      expect(run, args.join(' ')).toMatchObject({ code: 0, stderr: '' });
      expect(run.stdout).toMatch(new RegExp(`^Usage: zenvark ${name} `));
    }
  });
});

describe('zenvark ls', () => {
  it('lists the breakers of the prefix with their states, as a table and as JSON', async () => {
    const prefix = freshPrefix();
    const ids = ['payments', 'search {eu}', '100% sure'];
    await recordCall(own.admin, prefix, ids[0] as string, 'failure');
    await recordCall(own.admin, prefix, ids[1] as string, 'success');
    await recordCall(own.admin, prefix, ids[2] as string, 'success');
    // Another prefix's breaker, and a key that only looks like one, are not listed.
    await recordCall(own.admin, freshPrefix(), 'elsewhere', 'failure');
    await own.admin.set(`${prefix}:{lookalike}:state`, 'a string, not a hash');

    const run = await zenvark(['--url', url(), '--prefix', prefix, 'ls']);
    expect(run, run.stderr).toMatchObject({ code: 0, stderr: '' });
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID +STATE +MODE +GEN +FOR +REASON$/);
    expect(lines.slice(1).map((line) => line.split(/ {2,}/).slice(0, 4))).toEqual([
      ['100% sure', 'closed', '-', '0'],
      ['payments', 'open', '-', '1'],
      ['search {eu}', 'closed', '-', '0'],
    ]);
    expect(lines[2]).toMatch(/consecutive_failures$/);

    const json = await zenvark(['--url', url(), '--prefix', prefix, '--json', 'ls']);
    expect(json.code).toBe(0);
    const rows = JSON.parse(json.stdout) as { id: string; state: string; generation: number; last?: Transition }[];
    expect(rows.map(({ id, state, generation }) => ({ id, state, generation }))).toEqual([
      { id: '100% sure', state: 'closed', generation: 0 },
      { id: 'payments', state: 'open', generation: 1 },
      { id: 'search {eu}', state: 'closed', generation: 0 },
    ]);
    expect(rows[1]?.last).toMatchObject({ from: 'closed', to: 'open', reason: 'consecutive_failures', actor: 'test-instance' });
  });

  it("takes the prefix literally: its glob characters match only themselves (REDIS_URL from the environment)", async () => {
    const base = fresh('zv');
    await recordCall(own.admin, `${base}*`, 'starred', 'success');
    await recordCall(own.admin, `${base}x`, 'plain', 'success');
    const run = await zenvark(['--prefix', `${base}*`, '--json', 'ls'], { REDIS_URL: url() });
    expect(run.code, run.stderr).toBe(0);
    expect((JSON.parse(run.stdout) as { id: string }[]).map((row) => row.id)).toEqual(['starred']);
  });

  it('says when a prefix has no breakers; --json gives an empty list', async () => {
    const prefix = freshPrefix();
    expect(await zenvark(['--url', url(), '--prefix', prefix, 'ls'])).toEqual({ code: 0, stdout: `no breakers under prefix '${prefix}'\n`, stderr: '' });
    expect(await zenvark(['--url', url(), '--prefix', prefix, '--json', 'ls'])).toEqual({ code: 0, stdout: '[]\n', stderr: '' });
  });
});

describe('zenvark status', () => {
  it("explains a breaker's state; --json gives the explanation's fields", async () => {
    const prefix = freshPrefix();
    await recordCall(own.admin, prefix, 'payments', 'failure', 'instance-7');
    const run = await zenvark(['--url', url(), '--prefix', prefix, 'status', 'payments']);
    expect(run, run.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^breaker payments: open for .+ \(generation 1\): 1 consecutive failures reached threshold 1, reported by instance-7 at /);
    expect(run.stdout).toContain('lease: never granted');

    const json = await zenvark(['--url', url(), '--prefix', prefix, '--json', 'status', 'payments']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      breakerId: 'payments',
      state: 'open',
      generation: 1,
      lastTransition: { reason: 'consecutive_failures', actor: 'instance-7' },
      lease: { holder: '', token: 0 },
      recovery: { failedChecks: 0 },
    });
  });
});

describe('an isolated instance (the instance rule)', () => {
  it("status lists it; history shows its entries beside the fleet's, with their scope", async () => {
    const prefix = freshPrefix();
    const id = fresh('isolating');
    const args = ['--url', url(), '--prefix', prefix];
    // Instance 'lonely' fails alone (3 in a row, the strategy's rule): the instance rule
    // (2 instances) holds the fleet, and it isolates itself.
    const lonely = new BreakerFunctions(own.admin, breakerKeys(prefix, id), feedChannel(prefix), 'lonely', 100, 'consecutive:3:0:0', 10_000);
    const held = await lonely.record(0, { ok: 0, fail: 3, slowOk: 0, slowFail: 0, head: 3, maxRun: 3, tail: 3 }, false, '2:0');
    expect(held.status).toBe('held');
    expect((await lonely.isolate(0, { failures: 3, calls: 3, slow: 0 })).status).toBe('isolated');

    const status = await zenvark([...args, 'status', id]);
    expect(status, status.stderr).toMatchObject({ code: 0 });
    expect(status.stdout).toMatch(/\ninstances: 1 reported in this generation; isolated \(.*\): lonely \(for [\d.]+ m?s\)$/m);
    const json = JSON.parse((await zenvark([...args, '--json', 'status', id])).stdout) as { reporters: number; isolated: { instanceId: string }[] };
    expect(json).toMatchObject({ reporters: 1, isolated: [{ instanceId: 'lonely' }] });

    await recordCall(own.admin, prefix, id, 'failure', 'other');
    const table = await zenvark([...args, 'history', id]);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(/^\S+ +instance +closed +isolated +consecutive_failures +0 +lonely +failures 3 calls 3 threshold 3 consecutive$/);
    expect(lines[2]).toMatch(/^\S+ +fleet +closed +open +consecutive_failures +1 +other /);
    const entries = JSON.parse((await zenvark([...args, '--json', 'history', id])).stdout) as Transition[];
    expect(entries.map((t) => t.scope)).toEqual(['instance', 'fleet']);
  });
});

describe('zenvark history', () => {
  it('lists the transitions oldest first; filters by reason, time and limit; --json for export', async () => {
    const prefix = freshPrefix();
    const id = 'payments';
    await recordCall(own.admin, prefix, id, 'failure');
    await recover(prefix, id);
    await recordCall(own.admin, prefix, id, 'failure');
    const args = ['--url', url(), '--prefix', prefix];

    const all = await zenvark([...args, '--json', 'history', id]);
    expect(all, all.stderr).toMatchObject({ code: 0, stderr: '' });
    const entries = JSON.parse(all.stdout) as Transition[];
    expect(entries.map((t) => [t.from, t.to, t.reason, t.generation])).toEqual([
      ['closed', 'open', 'consecutive_failures', 1],
      ['open', 'closed', 'recovery_check_passed', 2],
      ['closed', 'open', 'consecutive_failures', 3],
    ]);
    // The stream itself, as redis-cli's XRANGE has it: the same entries.
    const stream = (await own.admin.xrange(breakerKeys(prefix, id).events, '-', '+')) as [string, string[]][];
    expect(entries.map((t) => t.id)).toEqual(stream.map(([entryId]) => entryId));

    const table = await zenvark([...args, 'history', id]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME +SCOPE +FROM +TO +REASON +GEN +ACTOR +FIGURES$/);
    expect(lines[1]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z +fleet +closed +open +consecutive_failures +1 +test-instance +failures 1 calls 1 threshold 1 consecutive$/);
    expect(lines).toHaveLength(4);

    const ids = async (...filters: string[]) => {
      const run = await zenvark([...args, '--json', 'history', id, ...filters]);
      expect(run, run.stderr).toMatchObject({ code: 0 });
      return (JSON.parse(run.stdout) as Transition[]).map((t) => t.id);
    };
    const [first, second, third] = entries as [Transition, Transition, Transition];
    expect(await ids('--reason', 'consecutive_failures')).toEqual([first.id, third.id]);
    expect(await ids('--reason', 'recovery_check_passed')).toEqual([second.id]);
    expect(await ids('--limit', '2')).toEqual([second.id, third.id]);
    expect(await ids('--reason', 'consecutive_failures', '--limit', '1')).toEqual([third.id]);
    // Times select by entry id: the time Redis appended the entry (within a ms of its time field).
    const appended = (t: Transition) => Number(t.id.split('-')[0]);
    const iso = (t: Transition) => new Date(appended(t)).toISOString();
    expect(await ids('--since', iso(second))).toEqual(entries.filter((t) => appended(t) >= appended(second)).map((t) => t.id));
    expect(await ids('--until', iso(second))).toEqual(entries.filter((t) => appended(t) <= appended(second)).map((t) => t.id));
    expect(await ids('--since', '1h')).toEqual(entries.map((t) => t.id));
    expect(await ids('--until', '1h')).toEqual([]);
    expect(await zenvark([...args, 'history', id, '--reason', 'forced_open'])).toEqual({ code: 0, stdout: 'no transitions match\n', stderr: '' });
  });
});

describe('an unknown breaker, read or controlled', () => {
  const controls = ['open', 'close', 'monitor', 'release', 'reset'].map((action) => [action, '--reason', 'r']);
  it.each([['status'], ['history'], ['history', '--limit', '5'], ...controls])('%s: says so, exit code 1, and writes nothing', async (...words) => {
    const prefix = freshPrefix();
    const [command, ...options] = words;
    const run = await zenvark(['--url', url(), '--prefix', prefix, command as string, 'nosuch', ...options]);
    expect(run).toEqual({
      code: 1,
      stdout: '',
      stderr: `error: no breaker 'nosuch' under prefix '${prefix}': Redis has no state for it (${prefix}:{nosuch}:state)\n`,
    });
    const keys = breakerKeys(prefix, 'nosuch');
    expect(await own.admin.exists(keys.state, keys.events)).toBe(0);
  });
});

describe('bad usage: one line, exit code 3', () => {
  it.each([
    [['frobnicate'], "error: unknown command 'frobnicate'"],
    [['ls', '--bogus'], "error: unknown option '--bogus'"],
    [['status'], "error: missing required argument 'id'"],
    [['history', 'x', '--reason', 'failure-rate'], `error: --reason must be one of ${Object.values(TransitionReason).join(', ')}; got "failure-rate"`],
    [['history', 'x', '--limit', '0'], 'error: --limit must be a positive whole number, got "0"'],
    [['history', 'x', '--limit', 'ten'], 'error: --limit must be a positive whole number, got "ten"'],
    [['history', 'x', '--since', 'yesterday'], 'error: --since must be an ISO 8601 time (2026-12-06T10:00:00Z) or a duration ago (30m, 2h), got "yesterday"'],
    [['history', 'x', '--until', '-5m'], 'error: --until must be an ISO 8601 time (2026-12-06T10:00:00Z) or a duration ago (30m, 2h), got "-5m"'],
    [['--prefix', 'a{b', 'ls'], "error: listBreakers() options.prefix must not contain '{' or '}', got \"a{b\""],
  ])('%j', async (args, line) => {
    // A server is given, so that only the usage is wrong.
    expect(await zenvark(['--url', url(), ...args])).toEqual({ code: 3, stdout: '', stderr: `${line}\n` });
  });

  it('no server: neither --url nor REDIS_URL', async () => {
    expect(await zenvark(['ls'])).toEqual({ code: 3, stdout: '', stderr: 'error: no server given: pass --url or set REDIS_URL\n' });
  });

  it('no subcommand: the help, on stderr, exit code 3', async () => {
    const run = await zenvark(['--url', url()]);
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/^Usage: zenvark /);
  });
});

describe('a server without the library', () => {
  it('says to run deploy-functions, exit code 5', async () => {
    const prefix = freshPrefix();
    await recordCall(own.admin, prefix, 'payments', 'failure');
    await own.admin.function('FLUSH');
    for (const args of [['status', 'payments'], ['ls'], ['history', 'payments']]) {
      const run = await zenvark(['--url', url(), '--prefix', prefix, ...args]);
      expect(run, args.join(' ')).toMatchObject({ code: 5, stdout: '' });
      expect(run.stderr).toMatch(/^error: the Zenvark function library zenvark_v1 is not loaded on 127\.0\.0\.1:\d+; load revision \d+ with `npx zenvark deploy-functions --url redis:\/\/127\.0\.0\.1:\d+`/);
      expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    }
  });
});
