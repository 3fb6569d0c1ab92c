/**
 * The zenvark command on a Redis Cluster (3 primaries, a replica each) of the file's own:
 * given any node, a replica's too, it lists the breakers of every primary and reads and
 * watches each wherever it lives.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { breakerKeys, feedChannel } from '../../src/keys.js';
import { ownCluster } from '../support/own-topology.js';
import { recordCall, watchProcess, zenvark } from '../support/zenvark.js';

const own = ownCluster({ library: true });

describe('zenvark on a Redis Cluster', () => {
  it('ls, given a replica, lists the breakers of every primary; status and history read each on its own shard', async () => {
    const { cluster } = own;
    const prefix = `zvcluster-${randomBytes(4).toString('hex')}`;
    const client = cluster.client();
    const ids = Array.from({ length: 12 }, (_, i) => `breaker-${i}`);
    for (const id of ids) await recordCall(client, prefix, id, 'failure');
    const shards = await cluster.shards();
    const served = new Set(await Promise.all(ids.map(async (id) => (await cluster.primaryOf(breakerKeys(prefix, id).state)).address)));
    expect(served.size).toBe(shards.length);

    const given = shards[0]?.replicas[0];
    if (!given) throw new Error('the cluster has no replica');
    const args = ['--url', given.url, '--prefix', prefix];
    const ls = await zenvark([...args, '--json', 'ls']);
    expect(ls, ls.stderr).toMatchObject({ code: 0, stderr: '' });
    expect((JSON.parse(ls.stdout) as { id: string; state: string }[]).map(({ id, state }) => [id, state])).toEqual(
      [...ids].sort().map((id) => [id, 'open']),
    );

    for (const id of ids.slice(0, 3)) {
      const status = await zenvark([...args, 'status', id]);
      expect(status, status.stderr).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`^breaker ${id}: open for `)) });
      const history = await zenvark([...args, '--json', 'history', id]);
      expect(JSON.parse(history.stdout)).toMatchObject([{ from: 'closed', to: 'open', reason: 'consecutive_failures' }]);
    }
    const unknown = await zenvark([...args, 'status', 'nosuch']);
    expect(unknown).toMatchObject({ code: 1, stderr: expect.stringContaining("no breaker 'nosuch'") });
  });

  it('watch, connected to one node, hears the transitions of every shard', async () => {
    const { cluster } = own;
    const prefix = `zvcluster-${randomBytes(4).toString('hex')}`;
    const node = cluster.nodes[0];
    if (!node) throw new Error('no node');
    const watching = watchProcess(['--url', node.url, '--prefix', prefix, '--json', 'watch']);
    try {
      await vi.waitFor(
        async () => {
          const [, count] = (await node.admin.call('PUBSUB', 'NUMSUB', feedChannel(prefix))) as [string, number];
          expect(count).toBe(1);
        },
        { timeout: 20_000, interval: 50 },
      );
      const client = cluster.client();
      const ids = Array.from({ length: 6 }, (_, i) => `watched-${i}`);
      for (const id of ids) await recordCall(client, prefix, id, 'failure');
      await vi.waitFor(() => expect(watching.stdout().trimEnd().split('\n')).toHaveLength(ids.length), { timeout: 20_000 });
      const heard = watching.stdout().trimEnd().split('\n').map((line) => (JSON.parse(line) as { breakerId: string }).breakerId);
      expect(heard.sort()).toEqual([...ids].sort());
    } finally {
      watching.child.kill('SIGINT');
    }
    expect(await watching.exited).toBe(0);
  });
});
