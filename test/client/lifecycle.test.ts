import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { LibraryMissingError, LibraryOutdatedError } from '../../src/index.js';
import { LIBRARY_CODE, LIBRARY_REVISION } from '../../src/shipped-library.js';
import { freePort } from '../../harness/redis-server.js';
import { watchHandles } from '../support/handles.js';
import { ownRedis } from '../support/own-redis.js';
import { type Instance, fail, instance, stopAll, uniqueId, untilAll } from '../support/instances.js';

const own = ownRedis();

const source = readFileSync(new URL('../../lua/zenvark_v1.lua', import.meta.url), 'utf8');

const library = fileURLToPath(new URL('../../src/', import.meta.url));

describe('start() and the function library', () => {
  it('fails without the library, says how to load it, and leaves nothing running', async () => {
    await own.admin.function('FLUSH');
    const i = instance(own.server.url, { id: uniqueId(), loadFunctions: false });
    const error = await i.breaker.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LibraryMissingError);
    expect((error as Error).message).toMatch(/zenvark_v1 is not loaded on 127\.0\.0\.1:\d+/);
    expect((error as Error).message).toContain('npx zenvark deploy-functions');
    expect((error as Error).message).toContain('loadFunctions: true');
    await vi.waitFor(async () => expect(await own.zenvarkConnections()).toEqual([]));
    await stopAll([i]);
  });

  it('fails on an older revision with an upgrade instruction', async () => {
    await own.admin.function('LOAD', 'REPLACE', source.replace(/^local REVISION = \d+$/m, 'local REVISION = 0'));
    const i = instance(own.server.url, { id: uniqueId(), loadFunctions: false });
    const error = await i.breaker.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LibraryOutdatedError);
    expect((error as Error).message).toContain(`at revision 0, this package needs ${LIBRARY_REVISION}`);
    await stopAll([i]);
  });

  it('accepts a newer revision', async () => {
    await own.admin.function('LOAD', 'REPLACE', source.replace(/^local REVISION = \d+$/m, `local REVISION = ${LIBRARY_REVISION + 1}`));
    const i = instance(own.server.url, { id: uniqueId(), loadFunctions: false });
    await i.breaker.start();
    expect(Number(await own.admin.call('FCALL_RO', 'zv1_revision', '0'))).toBe(LIBRARY_REVISION + 1);
    await stopAll([i]);
  });

  it('loads the library itself when the application allows it', async () => {
    await own.admin.function('FLUSH');
    const i = instance(own.server.url, { id: uniqueId(), loadFunctions: true });
    await i.breaker.start();
    expect(Number(await own.admin.call('FCALL_RO', 'zv1_revision', '0'))).toBe(LIBRARY_REVISION);
    await stopAll([i]);
  });

  it('fails within a bounded time when Redis cannot be reached', async () => {
    const port = await freePort();
    const i = instance(`redis://127.0.0.1:${port}`, { id: uniqueId() });
    const startedAt = Date.now();
    await expect(i.breaker.start()).rejects.toThrow(/^Redis at 127\.0\.0\.1:\d+ is not reachable \(connection refused\); start\(\) gave up after 5000 ms/);
    expect(Date.now() - startedAt).toBeLessThan(30_000);
    await stopAll([i]);
  });
});

describe('the lifecycle', () => {
  it('start() and stop() are idempotent, and execute() passes calls through when not started', async () => {
    const i = instance(own.server.url, { id: uniqueId() });
    await expect(i.breaker.execute(async () => 'before')).resolves.toBe('before');
    await i.breaker.stop();
    await Promise.all([i.breaker.start(), i.breaker.start()]);
    await i.breaker.start();
    await Promise.all([i.breaker.stop(), i.breaker.stop()]);
    await i.breaker.stop();
    await expect(i.breaker.execute(async () => 'after')).resolves.toBe('after');
    // It can be started again.
    await i.breaker.start();
    await fail(i, 3);
    await untilAll([i], 'open');
    await stopAll([i]);
    expect(i.seen.errors).toEqual([]);
  });

  it('start() called while stop() is still running starts the breaker again afterwards', async () => {
    const i = instance(own.server.url, { id: uniqueId() });
    await i.breaker.start();
    const stopping = i.breaker.stop();
    const starting = i.breaker.start();
    await Promise.all([stopping, starting]);
    // Running again: it records, trips, and takes the lease for the open breaker's duty.
    await fail(i, 3);
    await untilAll([i], 'open');
    await vi.waitFor(() => expect(i.breaker.role).toBe('leader'));
    await stopAll([i]);
  });

  it('stop() waits for a lease grant in flight and releases it, so another instance takes over at once', async () => {
    const id = uniqueId();
    const stateKey = `zenvark:{${id}}:state`;
    // Idle probes (an hour apart: none runs here) are a duty of the closed breaker, so each
    // instance asks for the lease as soon as it starts.
    const leaver = instance(own.server.url, { id, instanceId: 'leaver', leaseTtlMs: 30_000, idleDuty: true });
    await own.admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
    // Redis holds writes (the lease acquisition) until unpaused, but answers reads (start()).
    await own.admin.call('CLIENT', 'PAUSE', '30000', 'WRITE');
    let stopping: Promise<void> | undefined;
    try {
      await leaver.breaker.start();
      // The acquisition has gone out, and Redis holds it (flags=b: blocked).
      await vi.waitFor(
        async () => {
          const list = (await own.admin.client('LIST')) as string;
          expect(list).toMatch(/ name=zenvark:commands .*flags=b\b.* cmd=fcall /);
        },
        { timeout: 5_000, interval: 5 },
      );
      stopping = leaver.breaker.stop();
    } finally {
      // Well within the command timeout (1 s) of the held call.
      await own.admin.call('CLIENT', 'UNPAUSE');
    }
    await stopping;
    // stop() waited for the grant (a token was granted) and released it.
    expect(await own.admin.hget(stateKey, 'lh')).toBe('');
    expect(Number(await own.admin.hget(stateKey, 'lt'))).toBeGreaterThan(0);
    const stayer = instance(own.server.url, { id, instanceId: 'stayer', leaseTtlMs: 30_000, idleDuty: true });
    await stayer.breaker.start();
    await vi.waitFor(() => expect(stayer.breaker.role).toBe('leader'), { timeout: 5_000 });
    expect(leaver.seen.roles).toEqual([]);
    await stopAll([stayer, leaver]);
  });

  it('stop() leaves no timers and no connections', async () => {
    const redis = new Redis(own.server.url);
    await redis.ping();
    const timers = watchHandles(['Timeout']);
    const id = uniqueId();
    const instances: Instance[] = [
      instance(own.server.url, { id, instanceId: 'a', health: { backoff: { getDelayMs: () => 20 }, check: async () => {
        throw new Error('down');
      }, idleProbeIntervalMs: 50 } }, redis),
      instance(own.server.url, { id, instanceId: 'b' }, redis),
    ];
    await Promise.all(instances.map((i) => i.breaker.start()));
    expect(await own.zenvarkConnections()).toHaveLength(2);
    // Leave everything busy: outcomes pending, a lease held, checks running.
    await fail(instances[0] as Instance, 3);
    await instances[1]?.breaker.execute(async () => 1).catch(() => undefined);
    await vi.waitFor(() => expect(instances.some((i) => i.breaker.role === 'leader')).toBe(true));
    expect((await timers.pending()).filter((stack) => stack.includes(library)).length).toBeGreaterThan(0);
    await Promise.all(instances.map((i) => i.breaker.stop()));
    const left = await timers.pending();
    timers.stop();
    expect(left).toEqual([]);
    expect(await own.zenvarkConnections()).toEqual([]);
    expect(instances.map((i) => i.breaker.role)).toEqual(['follower', 'follower']);
    redis.disconnect();
  });
});
