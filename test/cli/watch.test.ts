/**
 * `zenvark watch` against a server of the file's own: the breakers at start, then each
 * transition as it is published; --json for scripts; the end of the connection ends it.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { feedChannel } from '../../src/keys.js';
import { ownRedis } from '../support/own-redis.js';
import { recordCall, watchProcess } from '../support/zenvark.js';

const own = ownRedis({ library: true });
const freshPrefix = () => `zvwatch-${randomBytes(4).toString('hex')}`;

/** Waits until the watch listens on the feed (a signal Redis gives: its subscriber count). */
async function listening(prefix: string): Promise<void> {
  await vi.waitFor(
    async () => {
      const [, count] = (await own.admin.call('PUBSUB', 'NUMSUB', feedChannel(prefix))) as [string, number];
      expect(count).toBe(1);
    },
    { timeout: 20_000, interval: 50 },
  );
}


describe('zenvark watch', () => {
  it('prints the breakers, then a line for each transition as it happens; Ctrl-C ends it, exit code 0', async () => {
    const prefix = freshPrefix();
    await recordCall(own.admin, prefix, 'search', 'success');
    const watching = watchProcess(['--url', own.server.url, '--prefix', prefix, 'watch']);
    try {
      await listening(prefix);
      await vi.waitFor(() => expect(watching.stdout()).toContain('no transitions yet'), { timeout: 20_000 });
      expect(watching.stdout()).toMatch(/^ID +STATE +MODE +GEN +FOR +REASON\nsearch +closed +- +0 /);

      await recordCall(own.admin, prefix, 'payments', 'failure', 'instance-3');
      await vi.waitFor(
        () => expect(watching.stdout()).toMatch(/\npayments +\d{4}-\d\d-\d\dT[\d:.]+Z +closed +open +consecutive_failures +1 +instance-3 +failures 1 calls 1/),
        { timeout: 20_000 },
      );
    } finally {
      watching.child.kill('SIGINT');
    }
    expect(await watching.exited).toBe(0);
    expect(watching.stderr()).toBe('');
  });

  it('--json: one JSON line per transition', async () => {
    const prefix = freshPrefix();
    const watching = watchProcess(['--url', own.server.url, '--prefix', prefix, '--json', 'watch']);
    try {
      await listening(prefix);
      await recordCall(own.admin, prefix, 'payments', 'failure');
      await recordCall(own.admin, prefix, 'search {eu}', 'failure');
      await vi.waitFor(() => expect(watching.stdout().trimEnd().split('\n')).toHaveLength(2), { timeout: 20_000 });
      const lines = watching.stdout().trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(lines).toMatchObject([
        { breakerId: 'payments', from: 'closed', to: 'open', reason: 'consecutive_failures', generation: 1 },
        { breakerId: 'search {eu}', from: 'closed', to: 'open', reason: 'consecutive_failures', generation: 1 },
      ]);
    } finally {
      watching.child.kill('SIGTERM');
    }
    expect(await watching.exited).toBe(0);
  });

  it('a lost connection ends it with one line, exit code 6', async () => {
    const prefix = freshPrefix();
    const watching = watchProcess(['--url', own.server.url, '--prefix', prefix, 'watch']);
    await listening(prefix);
    await own.admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    expect(await watching.exited).toBe(6);
    expect(watching.stderr()).toBe(`error: lost the connection to Redis at 127.0.0.1:${own.server.port} while watching\n`);
  });
});
