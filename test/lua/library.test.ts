import { describe, expect, inject, it } from 'vitest';
import { keyList } from '../../src/keys.js';
import { CASES } from './cases.js';
import { CHANNEL, consecutive, freshKeys, header, runCase, shippedLibrary, summary } from './harness.js';
import { Redis as RedisClient } from 'ioredis';

const redis = shippedLibrary();

describe('the shipped library, case by case', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      await runCase(redis(), c, true);
    });
  }
});

describe('the shipped library under concurrency', () => {
  it('20 instances reporting failures at the same moment write exactly one transition', async () => {
    const keys = freshKeys();
    const clients = Array.from({ length: 20 }, () => new RedisClient(inject('redisUrl')));
    try {
      await Promise.all(clients.map((c) => c.ping()));
      const replies = (await Promise.all(
        clients.map((c, i) =>
          c.call('FCALL', 'zv1_record', '2', ...keyList(keys), ...header(`i${i}`), '0', ...summary({ fail: 1 }), consecutive(1)),
        ),
      )) as unknown[][];
      const statuses = replies.map((r) => r[0]);
      expect(statuses.filter((s) => s === 'opened')).toHaveLength(1);
      expect(statuses.filter((s) => s === 'stale_gen')).toHaveLength(19);
      expect(await redis().xlen(keys.events)).toBe(1);
      expect(await redis().hget(keys.state, 'gen')).toBe('1');
    } finally {
      for (const c of clients) c.disconnect();
    }
  });

  it('publishes each transition on the channel, as the audit entry says it', async () => {
    const keys = freshKeys();
    const subscriber = new RedisClient(inject('redisUrl'));
    try {
      const messages: string[] = [];
      subscriber.on('message', (_channel: string, message: string) => messages.push(message));
      await subscriber.subscribe(CHANNEL);
      await redis().call('FCALL', 'zv1_record', '2', ...keyList(keys), ...header('pub'), '0', ...summary({ fail: 1 }), consecutive(1));
      await expect.poll(() => messages.filter((m) => m.includes(keys.state)).length).toBe(1);
      const message = JSON.parse(messages.find((m) => m.includes(keys.state)) as string) as Record<string, string>;
      const [[id, list]] = (await redis().xrange(keys.events, '-', '+')) as [[string, string[]]];
      const entry = Object.fromEntries(list.flatMap((v, i) => (i % 2 === 0 ? [[v, list[i + 1]]] : [])));
      expect(message).toMatchObject({ ...entry, id, kind: 'transition', key: keys.state });
      expect(message.epoch).toMatch(/^\d+$/);
    } finally {
      subscriber.disconnect();
    }
  });
});
