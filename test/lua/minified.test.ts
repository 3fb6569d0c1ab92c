/**
 * luamin is known to change behaviour in two cases (parentheses that truncate a call to
 * one value; a `;` before a line starting with `(`). This runs the whole case table
 * against the source library and the shipped, minified one and compares every answer.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { minifyLibrary } from '../../scripts/minify.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import { CASES } from './cases.js';
import { freshKeys, loadLibrary, runCase } from './harness.js';

const source = readFileSync(new URL('../../lua/zenvark_v1.lua', import.meta.url), 'utf8');
let sourceServer: RedisServer;
let minified: Redis;
let original: Redis;

beforeAll(async () => {
  sourceServer = await startRedis();
  original = sourceServer.client();
  await loadLibrary(original, source);
  minified = new Redis(inject('redisUrl'));
  await loadLibrary(minified, LIBRARY_CODE);
});

afterAll(async () => {
  minified.disconnect();
  await disposeRedis(sourceServer);
});

it('what ships is the current source, minified, with its header', () => {
  expect(LIBRARY_CODE).toBe(minifyLibrary(source).code);
  expect(LIBRARY_CODE.startsWith('#!lua name=zenvark_v1\n')).toBe(true);
  expect(LIBRARY_CODE.length).toBeLessThan(source.length / 1.5);
});

it('the minified and the source library give the same answers on the whole case table', async () => {
  for (const c of CASES) {
    const keys = freshKeys();
    const [fromSource, fromMinified] = await Promise.all([
      runCase(original, c, false, keys),
      runCase(minified, c, false, keys),
    ]);
    expect(fromMinified, c.name).toEqual(fromSource);
  }
});
