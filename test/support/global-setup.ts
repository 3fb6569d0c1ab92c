/**
 * One shared Redis server for the whole run, with the shipped library loaded: test files isolate themselves with fresh
 * random breaker ids, never with FLUSHALL. Tests that stop, pause or restart Redis start
 * servers of their own.
 */
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { type RedisServer, startRedis, stopAllRedis } from '../../harness/redis-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

let server: RedisServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  server = await startRedis({ shared: true });
  // As an operator would with scripts/deploy-functions; tests of loading use servers of their own.
  const client = server.client();
  await client.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
  client.disconnect();
  project.provide('redisUrl', server.url);
}

export async function teardown(): Promise<void> {
  if (server) await server.stop();
  await stopAllRedis();
}
