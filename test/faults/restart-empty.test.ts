/**
 * Redis restarted empty (no persistence): the function library is gone with the data.
 * Without auto-load every instance says, once, that the library is missing and how to
 * load it, keeps protecting itself alone, and rejoins as soon as an operator loads it;
 * with auto-load it loads the library itself.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { type Instance, fail, fleet, stopAll, untilAll } from '../support/instances.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';

let server: RedisServer;
let instances: Instance[] = [];

beforeEach(async () => {
  server = await startRedis();
  await server.client().call('FUNCTION', 'LOAD', LIBRARY_CODE);
});

afterEach(async () => {
  await stopAll(instances);
  instances = [];
  await disposeRedis(server);
});

const codes = (i: Instance) => i.seen.errors.map((e) => (e as { code?: string }).code);

describe('Redis restarted empty', () => {
  it('without auto-load: every instance says once that the library is missing, and rejoins once it is loaded', async () => {
    instances = fleet(server.url, 3, { loadFunctions: false });
    await Promise.all(instances.map((i) => i.breaker.start()));
    await server.restart();
    for (const i of instances) {
      await vi.waitFor(() => expect(codes(i)).toContain('ZV_LIBRARY_MISSING'), { timeout: 15_000 });
      const report = i.seen.errors.find((e) => (e as { code?: string }).code === 'ZV_LIBRARY_MISSING');
      expect(report?.message).toContain('zenvark-deploy-functions');
    }
    // Alone, each still protects itself.
    const [first] = instances as [Instance];
    await fail(first, 3);
    await untilAll([first], 'open');
    expect(first.seen.states.at(-1)?.transition).toMatchObject({ reason: 'local_failures', local: true });
    for (const i of instances) expect(codes(i).filter((c) => c === 'ZV_LIBRARY_MISSING')).toHaveLength(1);

    await server.client().call('FUNCTION', 'LOAD', LIBRARY_CODE);
    for (const i of instances) await vi.waitFor(() => expect(codes(i)).toContain('ZV_REDIS_RESTORED'), { timeout: 10_000 });
    await untilAll(instances, 'closed');
    await fail(first, 3);
    await untilAll(instances, 'open');
  });

  it('with auto-load: the library is loaded again and the fleet follows the new, closed life', async () => {
    instances = fleet(server.url, 2, { loadFunctions: true });
    await Promise.all(instances.map((i) => i.breaker.start()));
    const [first] = instances as [Instance];
    await fail(first, 3);
    await untilAll(instances, 'open');
    await server.restart();
    await vi.waitFor(async () => expect(Number(await server.client().call('FCALL_RO', 'zv1_revision', '0'))).toBeGreaterThan(0), { timeout: 15_000 });
    for (const i of instances) await vi.waitFor(() => expect(codes(i)).toContain('ZV_REDIS_RESTORED'), { timeout: 10_000 });
    await untilAll(instances, 'closed');
    await fail(first, 3);
    await untilAll(instances, 'open');
  });
});
