import { Redis } from 'ioredis';
import { expect, it, vi } from 'vitest';
import { type Instance, instance, stopAll, uniqueId } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';

const own = ownRedis();

it('100 breakers on one application client hold 2 connections of their own', async () => {
  const redis = new Redis(own.server.url);
  const instances: Instance[] = Array.from({ length: 100 }, () => instance(own.server.url, { id: uniqueId() }, redis));
  await Promise.all(instances.map((i) => i.breaker.start()));
  const names = await own.clientNames();
  expect(names.filter((n) => n === 'zenvark:commands')).toHaveLength(1);
  expect(names.filter((n) => n === 'zenvark:subscriber')).toHaveLength(1);
  // The application's own client, the admin client, and the two above.
  expect(names).toHaveLength(4);

  await Promise.all(instances.slice(0, 99).map((i) => i.breaker.stop()));
  expect(await own.zenvarkConnections()).toHaveLength(2);
  await stopAll(instances);
  expect(await own.zenvarkConnections()).toEqual([]);
});

it('the library ignores the application client key prefix and keeps its own keys', async () => {
  const redis = new Redis(own.server.url, { keyPrefix: 'app:' });
  const id = uniqueId();
  const i = instance(own.server.url, { id }, redis);
  await i.breaker.start();
  await i.breaker.execute(async () => Promise.reject(new Error('x'))).catch(() => undefined);
  await vi.waitFor(async () => expect(await own.admin.exists(`zenvark:{${id}}:state`)).toBe(1));
  expect(await own.admin.exists(`app:zenvark:{${id}}:state`)).toBe(0);
  await stopAll([i]);
});
