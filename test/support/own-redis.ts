import type { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';

/**
 * A Redis server of the test file's own (for tests that stop, pause, flush or count
 * connections), started before its tests and disposed after them, with an admin client.
 */
export function ownRedis(): { readonly server: RedisServer; readonly admin: Redis } {
  let server: RedisServer | undefined;
  let admin: Redis | undefined;
  beforeAll(async () => {
    server = await startRedis();
    admin = server.client();
  });
  afterAll(async () => {
    if (server) await disposeRedis(server);
  });
  return {
    get server() {
      if (!server) throw new Error('ownRedis() is only available inside tests');
      return server;
    },
    get admin() {
      if (!admin) throw new Error('ownRedis() is only available inside tests');
      return admin;
    },
  };
}
