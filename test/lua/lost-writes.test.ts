/**
 * Redis losing writes. Replication is asynchronous: a primary can grant a lease and die
 * before its replica has the grant, and the replica promoted in its place knows only the
 * grants before. A server restarted without persistence knows none. Their next grant must
 * still take a token above the lost one, and the instance that holds the lost token must
 * be refused there.
 */
import type { Redis } from 'ioredis';
import { afterEach, expect, it, vi } from 'vitest';
import type { BreakerKeys } from '../../src/keys.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import { acquire, callStep, freshKeys, health, loadLibrary, release, renew, state } from './harness.js';

let servers: RedisServer[] = [];

async function server(args: string[] = []): Promise<RedisServer> {
  const started = await startRedis({ args });
  servers.push(started);
  return started;
}

afterEach(async () => {
  for (const s of servers.splice(0)) await disposeRedis(s);
});

/** b, holding the lost token, is refused where c now holds the lease with `token`. */
async function expectLostTokenRefused(redis: Redis, keys: BreakerKeys, lost: number, token: unknown): Promise<void> {
  expect(await callStep(redis, keys, renew('b', lost, 60_000))).toMatchObject({ status: 'lost', holder: 'c', token });
  expect(await callStep(redis, keys, health('b', lost, 0, 'idle', 'failure'))).toMatchObject({ status: 'stale_token', state: 'closed', gen: 0 });
  expect(await callStep(redis, keys, health('c', Number(token), 0, 'idle', 'failure'))).toMatchObject({ status: 'opened' });
}

async function replication(redis: Redis, field: string): Promise<string | undefined> {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(await redis.info('replication'))?.[1]?.trim();
}

it('after a failover to a replica that missed the last grant, the next token is above the lost one', async () => {
  // No wait for other replicas before a full sync (the default waits 5 s).
  const primary = await server(['--repl-diskless-sync-delay', '0']);
  const onPrimary = primary.client();
  await loadLibrary(onPrimary, LIBRARY_CODE);
  const replica = await server(['--replicaof', primary.host, String(primary.port)]);
  const keys = freshKeys();
  const onReplica = replica.client();
  await vi.waitFor(async () => expect(await replication(onReplica, 'master_link_status')).toBe('up'), { timeout: 20_000, interval: 100 });

  // A grant, and its release, that the replica has.
  const kept = await callStep(onPrimary, keys, acquire('a', 60_000));
  expect(kept).toMatchObject({ status: 'granted', holder: 'a' });
  expect(await callStep(onPrimary, keys, release('a', Number(kept.token)))).toMatchObject({ status: 'released' });
  expect(await onPrimary.call('WAIT', '1', '10000')).toBe(1);
  expect(await callStep(onReplica, keys, state())).toMatchObject({ holder: '', token: kept.token });

  // The replica stops taking the stream. Frozen alone, it would still read, once resumed,
  // what the primary had sent it before dying (the bytes wait in its socket): the link is
  // cut too, and the frozen replica cannot connect again.
  replica.pause();
  await onPrimary.call('CLIENT', 'KILL', 'TYPE', 'replica');
  await vi.waitFor(async () => expect(await replication(onPrimary, 'connected_slaves')).toBe('0'), { timeout: 10_000, interval: 50 });
  const lost = await callStep(onPrimary, keys, acquire('b', 60_000));
  expect(lost).toMatchObject({ status: 'granted', holder: 'b' });
  expect(Number(lost.token)).toBeGreaterThan(Number(kept.token));
  await primary.stop({ kill: true });

  // What Sentinel does: the replica becomes the primary. It never had b's grant.
  replica.resume();
  expect(await onReplica.call('REPLICAOF', 'NO', 'ONE')).toBe('OK');
  expect(await replication(onReplica, 'role')).toBe('master');
  expect(await callStep(onReplica, keys, state())).toMatchObject({ holder: '', token: kept.token });

  const next = await callStep(onReplica, keys, acquire('c', 60_000));
  expect(next).toMatchObject({ status: 'granted', holder: 'c' });
  expect(Number(next.token), 'the token granted after the failover').toBeGreaterThan(Number(lost.token));
  // b still believes it holds the lease with the lost token: the new primary refuses it.
  await expectLostTokenRefused(onReplica, keys, Number(lost.token), next.token);
});

it('after a restart without persistence, the next token is above every one granted before', async () => {
  const redis = await server();
  const client = redis.client();
  await loadLibrary(client, LIBRARY_CODE);
  const keys = freshKeys();
  const lost = await callStep(client, keys, acquire('b', 60_000));
  expect(lost).toMatchObject({ status: 'granted', holder: 'b' });

  await redis.restart();
  await loadLibrary(client, LIBRARY_CODE);
  expect(await callStep(client, keys, state())).toMatchObject({ epoch: '', holder: '', token: 0 });
  const next = await callStep(client, keys, acquire('c', 60_000));
  expect(next).toMatchObject({ status: 'granted', holder: 'c' });
  expect(Number(next.token), 'the token granted after the restart').toBeGreaterThan(Number(lost.token));
  await expectLostTokenRefused(client, keys, Number(lost.token), next.token);
});
