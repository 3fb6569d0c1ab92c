/**
 * One shared Redis server for the whole run: test files isolate themselves with fresh
 * random breaker ids, never with FLUSHALL. Tests that stop, pause or restart Redis start
 * servers of their own.
 */
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { type RedisServer, startRedis, stopAllRedis } from './redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

let server: RedisServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  server = await startRedis({ shared: true });
  project.provide('redisUrl', server.url);
}

export async function teardown(): Promise<void> {
  if (server) await server.stop();
  await stopAllRedis();
}
