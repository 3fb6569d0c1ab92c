/**
 * The admin API (src/admin.ts) called from a program, as the zenvark command calls it:
 * its arguments checked before anything reaches Redis, what it answers, and its bound on
 * a server that does not answer.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ControlAction, ZenvarkError, breakerHistory, breakerKeys, breakerStatus, controlBreaker, listBreakers } from '../../src/index.js';
import { ownRedis } from '../support/own-redis.js';
import { recordCall } from '../support/zenvark.js';

const own = ownRedis({ library: true });
const freshPrefix = () => `zvadmin-${randomBytes(4).toString('hex')}`;

describe('the admin API', () => {
  it('lists, reads, controls and reads back a breaker through the application client', async () => {
    const prefix = freshPrefix();
    const redis = own.server.client();
    await recordCall(redis, prefix, 'payments', 'success');
    expect(await listBreakers(redis, { prefix })).toEqual(['payments']);

    const result = await controlBreaker(redis, 'payments', ControlAction.MONITOR, { prefix, reason: 'new threshold', forMs: 60_000, actor: 'ci' });
    expect(result).toMatchObject({ status: 'applied', state: 'closed', generation: 1, transition: { reason: 'monitored', actor: 'ci', mode: 'monitor' } });
    expect((await breakerStatus(redis, 'payments', { prefix })).mode).toMatchObject({ mode: 'monitor', actor: 'ci', note: 'new threshold' });
    const history = await breakerHistory(redis, 'payments', { prefix, reason: 'monitored', since: new Date(Date.now() - 60_000), limit: 5 });
    expect(history.map((t) => t.id)).toEqual([result.transition?.id]);

    expect(await controlBreaker(redis, 'payments', ControlAction.RELEASE, { prefix, reason: 'done' })).toMatchObject({ status: 'applied', state: 'closed' });
    expect(await controlBreaker(redis, 'payments', ControlAction.RELEASE, { prefix, reason: 'again' })).toEqual({
      status: 'no_mode',
      state: 'closed',
      generation: 2,
      transition: undefined,
    });
  });

  it('an unknown id is ZV_UNKNOWN_BREAKER for every call but the list, and nothing is written', async () => {
    const prefix = freshPrefix();
    const calls = [
      () => breakerStatus(own.admin, 'nosuch', { prefix }),
      () => breakerHistory(own.admin, 'nosuch', { prefix }),
      () => controlBreaker(own.admin, 'nosuch', ControlAction.OPEN, { prefix, reason: 'r' }),
    ];
    for (const call of calls) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ZenvarkError);
      expect(error).toMatchObject({ code: 'ZV_UNKNOWN_BREAKER' });
    }
    const keys = breakerKeys(prefix, 'nosuch');
    expect(await own.admin.exists(keys.state, keys.events)).toBe(0);
    expect(await listBreakers(own.admin, { prefix })).toEqual([]);
  });

  it.each([
    ['a client that is not one', () => listBreakers({} as never), TypeError, 'listBreakers() redis must be an ioredis Redis or Cluster client'],
    ['an unknown option', () => listBreakers(own.admin, { prefx: 'a' } as never), TypeError, "listBreakers() options has no option 'prefx'"],
    ['a prefix with a brace', () => listBreakers(own.admin, { prefix: 'a{' }), RangeError, "listBreakers() options.prefix must not contain '{' or '}'"],
    ['a timeout of 0', () => breakerHistory(own.admin, 'x', { timeoutMs: 0 }), RangeError, 'breakerHistory() options.timeoutMs must be'],
    ['an empty id', () => breakerHistory(own.admin, ''), TypeError, 'breakerHistory() id must be a non-empty string'],
    ['a limit of 0', () => breakerHistory(own.admin, 'x', { limit: 0 }), RangeError, 'breakerHistory() options.limit must be an integer in [1, '],
    ['a time that is not one', () => breakerHistory(own.admin, 'x', { since: new Date('soon') }), RangeError, 'breakerHistory() options.since must be a Date or'],
    ['no options', () => controlBreaker(own.admin, 'x', ControlAction.OPEN, undefined as never), TypeError, 'controlBreaker() options is required and must be an object'],
    ['no reason', () => controlBreaker(own.admin, 'x', ControlAction.OPEN, {} as never), TypeError, 'controlBreaker() options.reason must be a non-empty string'],
    ['a reason too long', () => controlBreaker(own.admin, 'x', ControlAction.OPEN, { reason: 'x'.repeat(513) }), RangeError, 'controlBreaker() options.reason must be at most 512 bytes long, got 513'],
    ['an unknown action', () => controlBreaker(own.admin, 'x', 'expire' as never, { reason: 'r' }), RangeError, 'controlBreaker() action must be one of open, close, monitor, release, reset, got "expire"'],
    ['an expiry on release', () => controlBreaker(own.admin, 'x', ControlAction.RELEASE, { reason: 'r', forMs: 1000 }), TypeError, 'controlBreaker() options.forMs is for open, close, monitor, not release'],
    ['an expiry over 30 days', () => controlBreaker(own.admin, 'x', ControlAction.OPEN, { reason: 'r', forMs: 2_592_000_001 }), RangeError, 'controlBreaker() options.forMs must be an integer in [1, 2592000000]'],
    ['an actor too long', () => controlBreaker(own.admin, 'x', ControlAction.OPEN, { reason: 'r', actor: 'a'.repeat(257) }), RangeError, 'controlBreaker() options.actor must be at most 256 bytes long'],
  ])('refuses %s before calling Redis', async (_what, call, type, message) => {
    const error = await call().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(type);
    expect((error as Error).message).toContain(message);
  });

  it('gives up on a server that does not answer after timeoutMs', async () => {
    const redis = own.server.client();
    await redis.ping();
    own.server.pause();
    try {
      const error = await breakerHistory(redis, 'payments', { timeoutMs: 300 }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'ZV_REDIS_UNREACHABLE', message: `Redis at 127.0.0.1:${own.server.port} did not answer the history within 300 ms` });
    } finally {
      own.server.resume();
    }
  });
});
