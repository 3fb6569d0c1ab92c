import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';

/**
 * A Redis server of the test file's own (for tests that stop, pause, flush or count
 * connections), started before its tests and disposed after them, with an admin client.
 * With `library`, the function library is loaded before each test, as an operator would
 * have loaded it (for users that may not load it themselves).
 */
export function ownRedis(options: { library?: boolean } = {}): {
  readonly server: RedisServer;
  readonly admin: Redis;
  /** The names of the connections the server has now (CLIENT LIST), '' for unnamed ones. */
  clientNames(): Promise<string[]>;
  /** The connections the library holds (named `zenvark:commands` and `zenvark:subscriber`). */
  zenvarkConnections(): Promise<string[]>;
} {
  let server: RedisServer | undefined;
  let admin: Redis | undefined;
  beforeAll(async () => {
    server = await startRedis();
    admin = server.client();
    // Ready before the first test: its commands go out when called, not from the offline queue.
    await admin.ping();
  });
  if (options.library) {
    beforeEach(async () => {
      await admin?.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
    });
  }
  afterAll(async () => {
    if (server) await disposeRedis(server);
  });
  const own = {
    get server() {
      if (!server) throw new Error('ownRedis() is only available inside tests');
      return server;
    },
    get admin() {
      if (!admin) throw new Error('ownRedis() is only available inside tests');
      return admin;
    },
    async clientNames(): Promise<string[]> {
      const list = (await own.admin.client('LIST')) as string;
      return list
        .trim()
        .split('\n')
        .map((line) => /name=(\S*)/.exec(line)?.[1] ?? '');
    },
    async zenvarkConnections(): Promise<string[]> {
      return (await own.clientNames()).filter((name) => name.startsWith('zenvark:'));
    },
  };
  return own;
}
