/**
 * The zenvark command's controls (open, close, monitor, release, reset) against a server of
 * the file's own: what each writes and how status and history show it; and what it refuses
 * before writing anything: no --reason, a bad --for, an unknown breaker, an ACL without it.
 */
import { randomBytes } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { describe, expect, it, vi } from 'vitest';
import { freePort } from '../../harness/redis-server.js';
import { breakerKeys } from '../../src/keys.js';
import type { Transition } from '../../src/transition.js';
import { createUser, createUserOn } from '../support/acl.js';
import { ownRedis } from '../support/own-redis.js';
import { recordCall, watchProcess, zenvark } from '../support/zenvark.js';

const own = ownRedis({ library: true });
const freshPrefix = () => `zvctl-${randomBytes(4).toString('hex')}`;

/** Everything Redis holds of a breaker: its state hash and its audit stream. */
async function stored(prefix: string, id: string): Promise<unknown> {
  const keys = breakerKeys(prefix, id);
  return { state: await own.admin.hgetall(keys.state), entries: await own.admin.xrange(keys.events, '-', '+') };
}

async function lastEntry(prefix: string, id: string): Promise<Transition> {
  const run = await zenvark(['--url', own.server.url, '--prefix', prefix, '--json', 'history', id, '--limit', '1']);
  expect(run.code, run.stderr).toBe(0);
  return (JSON.parse(run.stdout) as Transition[])[0] as Transition;
}

const ISO = String.raw`\d{4}-\d\d-\d\dT[\d:.]+Z`;

describe('zenvark open, release', () => {
  it('forces a breaker open until an expiry, with the actor and reason in status and history; release returns it to what the window implies', async () => {
    const prefix = freshPrefix();
    const args = ['--url', own.server.url, '--prefix', prefix];
    await recordCall(own.admin, prefix, 'payments', 'success');

    const open = await zenvark([...args, 'open', 'payments', '--reason', 'deploying v2', '--for', '30m', '--actor', 'ops@bastion']);
    expect(open, open.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(open.stdout).toMatch(new RegExp(`^breaker payments: forced_open by ops@bastion until ${ISO}; now open, generation 1\\n$`));

    const status = await zenvark([...args, 'status', 'payments']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^breaker payments: open for .+ \(generation 1\): forced open by an operator: "deploying v2", reported by ops@bastion at /);
    expect(status.stdout).toMatch(/\nmode: forced open \(calls fail fast, recovery checks pause\), set by ops@bastion .+ ago: "deploying v2"; ends in (29 min \d+ s|30 min) \(at /);
    expect(status.stdout).toContain('\nnext recovery check: none while forced open; when the mode ends, the window decides\n');
    const json = JSON.parse((await zenvark([...args, '--json', 'status', 'payments'])).stdout) as { mode: { leftMs: number; until: number } };
    expect(json.mode).toMatchObject({ mode: 'forced_open', actor: 'ops@bastion', note: 'deploying v2' });
    expect(json.mode.leftMs).toBeGreaterThan(29 * 60_000);
    expect(json.mode.leftMs).toBeLessThanOrEqual(30 * 60_000);

    const ls = await zenvark([...args, 'ls']);
    expect(ls.stdout.split('\n')[1]).toMatch(/^payments +open +forced_open +1 +\S+ +forced_open$/);

    const entry = await lastEntry(prefix, 'payments');
    expect(entry).toMatchObject({ from: 'closed', to: 'open', reason: 'forced_open', actor: 'ops@bastion', note: 'deploying v2', mode: 'forced_open', until: String(json.mode.until) });
    const table = await zenvark([...args, 'history', 'payments']);
    expect(table.stdout.trimEnd().split('\n').at(-1)).toMatch(new RegExp(`^${ISO} +fleet +closed +open +forced_open +1 +ops@bastion +note "deploying v2" until ${ISO}$`));

    const release = await zenvark([...args, 'release', 'payments', '--reason', 'deploy done', '--actor', 'ops@bastion']);
    expect(release).toEqual({ code: 0, stdout: 'breaker payments: released by ops@bastion; now closed, generation 2\n', stderr: '' });
    expect(await lastEntry(prefix, 'payments')).toMatchObject({ from: 'open', to: 'closed', reason: 'released', note: 'deploy done', mode: '', rule: '' });

    // Nothing left to release: exit code 1, nothing written.
    const before = await stored(prefix, 'payments');
    expect(await zenvark([...args, 'release', 'payments', '--reason', 'again'])).toEqual({
      code: 1,
      stdout: 'breaker payments: neither forced nor monitored; nothing to release (closed, generation 2)\n',
      stderr: '',
    });
    expect(await stored(prefix, 'payments')).toEqual(before);
  });

  it('release opens the circuit when the window reached a rule meanwhile, and says which', async () => {
    const prefix = freshPrefix();
    const args = ['--url', own.server.url, '--prefix', prefix];
    await recordCall(own.admin, prefix, 'search', 'success');
    expect((await zenvark([...args, 'close', 'search', '--reason', 'hold', '--actor', 'ops'])).code).toBe(0);
    // Forced closed, the failure counts (one in a row reaches the rule) but opens nothing.
    await recordCall(own.admin, prefix, 'search', 'failure');
    expect(await zenvark([...args, 'release', 'search', '--reason', 'let it decide', '--actor', 'ops'])).toEqual({
      code: 0,
      stdout: 'breaker search: released by ops; now open (the window reached consecutive_failures), generation 2\n',
      stderr: '',
    });
    expect(await lastEntry(prefix, 'search')).toMatchObject({ from: 'closed', to: 'open', reason: 'released', rule: 'consecutive_failures', mode: '' });
  });

  it('records the operator as <user>@<hostname> by default; --json gives the result and its transition', async () => {
    const prefix = freshPrefix();
    await recordCall(own.admin, prefix, 'payments', 'success');
    const run = await zenvark(['--url', own.server.url, '--prefix', prefix, '--json', 'open', 'payments', '--reason', 'incident 42']);
    expect(run, run.stderr).toMatchObject({ code: 0, stderr: '' });
    const actor = `${userInfo().username}@${hostname()}`;
    expect(JSON.parse(run.stdout)).toMatchObject({
      status: 'applied',
      state: 'open',
      generation: 1,
      transition: { reason: 'forced_open', actor, note: 'incident 42', mode: 'forced_open', until: '' },
    });
  });
});

describe('zenvark close, monitor, reset', () => {
  it('each writes one transition with its reason, and status shows the mode', async () => {
    const prefix = freshPrefix();
    const args = ['--url', own.server.url, '--prefix', prefix];
    await recordCall(own.admin, prefix, 'search', 'failure');

    expect(await zenvark([...args, 'close', 'search', '--reason', 'false alarm', '--actor', 'ops'])).toEqual({
      code: 0,
      stdout: 'breaker search: forced_closed by ops; now closed, generation 2\n',
      stderr: '',
    });
    // Forced closed: a failure is counted, but does not open it.
    await recordCall(own.admin, prefix, 'search', 'failure');
    const closed = await zenvark([...args, 'status', 'search']);
    expect(closed.stdout).toMatch(/^breaker search: closed for .+ \(generation 2\)/);
    expect(closed.stdout).toMatch(/\nmode: forced closed \(failures are counted, nothing opens it\), set by ops .+; until released\n/);

    const monitor = await zenvark([...args, 'monitor', 'search', '--reason', 'trying a new threshold', '--for', '2h', '--actor', 'ops']);
    expect(monitor.stdout).toMatch(new RegExp(`^breaker search: monitored by ops until ${ISO}; now closed, generation 3\\n$`));
    expect((await zenvark([...args, 'status', 'search'])).stdout).toMatch(/\nmode: monitor \(calls pass; a rule reached is written as would_open instead of opening\), set by ops/);

    expect(await zenvark([...args, 'reset', 'search', '--reason', 'start over', '--actor', 'ops'])).toEqual({
      code: 0,
      stdout: 'breaker search: reset by ops; now closed, generation 4\n',
      stderr: '',
    });
    const status = JSON.parse((await zenvark([...args, '--json', 'status', 'search'])).stdout) as Record<string, unknown>;
    expect(status).toMatchObject({ state: 'closed', generation: 4, mode: { mode: '' }, window: { failures: 0, calls: 0 } });

    const history = JSON.parse((await zenvark([...args, '--json', 'history', 'search'])).stdout) as Transition[];
    expect(history.map((t) => [t.reason, t.note, t.mode])).toEqual([
      ['consecutive_failures', '', ''],
      ['forced_closed', 'false alarm', 'forced_closed'],
      ['monitored', 'trying a new threshold', 'monitor'],
      ['reset', 'start over', ''],
    ]);
  });
});

describe('what a control refuses, writing nothing', () => {
  const CONTROLS = ['open', 'close', 'monitor', 'release', 'reset'];

  it.each(CONTROLS)('%s without --reason, or with an empty or too long one: bad usage, exit code 3', async (action) => {
    const prefix = freshPrefix();
    await recordCall(own.admin, prefix, 'payments', 'failure');
    const before = await stored(prefix, 'payments');
    const args = ['--url', own.server.url, '--prefix', prefix, action, 'payments'];
    expect(await zenvark(args)).toEqual({ code: 3, stdout: '', stderr: "error: required option '--reason <text>' not specified\n" });
    expect(await zenvark([...args, '--reason', ' '])).toEqual({ code: 3, stdout: '', stderr: 'error: --reason must say why, got an empty text\n' });
    expect(await zenvark([...args, '--reason', 'é'.repeat(257)])).toEqual({ code: 3, stdout: '', stderr: 'error: --reason must be at most 512 bytes long, got 514\n' });
    expect(await stored(prefix, 'payments')).toEqual(before);
  });

  it.each(['0s', '0ms', '-5m', '10x', '1.5h', 'soon', '', '31d'])('--for %j: not a positive duration (of at most 30 days), exit code 3', async (value) => {
    const prefix = freshPrefix();
    await recordCall(own.admin, prefix, 'payments', 'failure');
    const before = await stored(prefix, 'payments');
    const run = await zenvark(['--url', own.server.url, '--prefix', prefix, 'open', 'payments', '--reason', 'r', '--for', value]);
    const why = value === '31d' ? 'must be at most 30d' : 'must be a positive duration such as 500ms, 45s, 30m, 2h or 1d';
    expect(run).toEqual({ code: 3, stdout: '', stderr: `error: --for ${why}, got ${JSON.stringify(value)}\n` });
    expect(await stored(prefix, 'payments')).toEqual(before);
  });

  it('--for on release or reset: no such option; checked before connecting', async () => {
    for (const action of ['release', 'reset']) {
      expect(await zenvark(['--url', own.server.url, action, 'payments', '--reason', 'r', '--for', '5m'])).toEqual({
        code: 3,
        stdout: '',
        stderr: "error: unknown option '--for'\n",
      });
    }
    const port = await freePort();
    expect(await zenvark(['--url', `redis://127.0.0.1:${port}`, 'open', 'payments', '--reason', 'r', '--for', 'soon'])).toMatchObject({ code: 3 });
  });

  it("the on-call user of the README's Least privilege runs every subcommand but deploy-functions", async () => {
    // The README's line, as written: the default prefix, a breaker of the test's own.
    const id = `oncall-${randomBytes(4).toString('hex')}`;
    await recordCall(own.admin, 'zenvark', id, 'failure');
    const { username, password } = await createUserOn([own.admin], 'oncall', { unique: true });
    const url = `redis://${username}:${password}@127.0.0.1:${own.server.port}`;
    const watching = watchProcess(['--url', url, '--json', 'watch']);
    try {
      // Listening once Redis counts its subscription (no other watch runs on this server now).
      await vi.waitFor(async () => expect(await own.admin.call('PUBSUB', 'NUMSUB', 'zenvark:feed')).toEqual(['zenvark:feed', 1]), {
        timeout: 20_000,
        interval: 50,
      });
      const runs = [
        ['ls'],
        ['status', id],
        ['open', id, '--reason', 'on-call test', '--for', '10m'],
        ['close', id, '--reason', 'on-call test'],
        ['monitor', id, '--reason', 'on-call test'],
        ['release', id, '--reason', 'on-call test'],
        ['reset', id, '--reason', 'on-call test'],
        ['history', id],
      ];
      for (const args of runs) {
        const run = await zenvark(['--url', url, ...args]);
        expect(run, args.join(' ')).toMatchObject({ code: 0, stderr: '' });
      }
      const reasons = ['forced_open', 'forced_closed', 'monitored', 'released', 'reset'];
      await vi.waitFor(() => expect(watching.stdout().trimEnd().split('\n').filter((line) => line.includes(`"${id}"`))).toHaveLength(reasons.length), {
        timeout: 20_000,
      });
      const heard = watching
        .stdout()
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line) as { breakerId: string; reason: string })
        .filter((t) => t.breakerId === id);
      expect(heard.map((t) => t.reason)).toEqual(reasons);
    } finally {
      watching.child.kill('SIGINT');
    }
    expect(await watching.exited).toBe(0);
    expect(watching.stderr()).toBe('');
  });

  it('a user whose ACL lacks FCALL (the observer): permission denied, exit code 4, one line, no password', async () => {
    const prefix = freshPrefix();
    await recordCall(own.admin, prefix, 'payments', 'failure');
    const before = await stored(prefix, 'payments');
    const url = await createUser(own.admin, own.server, 'observer');
    const run = await zenvark(['--url', url, '--prefix', prefix, 'open', 'payments', '--reason', 'r']);
    expect(run).toMatchObject({ code: 4, stdout: '' });
    expect(run.stderr).toMatch(new RegExp(`^error: Redis at 127\\.0\\.0\\.1:${own.server.port} refused FCALL for user '${new URL(url).username}' \\(NOPERM `));
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).not.toContain(new URL(url).password);
    expect(await stored(prefix, 'payments')).toEqual(before);
  });
});
