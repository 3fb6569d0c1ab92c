/**
 * The breaker's own connections killed by the server (CLIENT KILL: an operator, a proxy
 * or a failover dropping them) while the breaker trips and recovers again and again. The
 * subscriber misses feed messages, the command connection drops calls in flight; each
 * instance reconnects, reads the state again and the missed transitions back from the
 * audit stream: onStateChange sees every generation once, in order, and every instance
 * ends on the shared state.
 */
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, vi } from 'vitest';
import { DEFAULTS, breakerKeys, feedChannel } from '../../src/index.js';
import { sleep } from '../../harness/clock.js';
import { type Instance, fleet, startAll, stopAll } from '../support/instances.js';
import { type RedisServer, disposeRedis, startRedis } from '../../harness/redis-server.js';
import { FaultRun, expectEveryOutageEnded, expectOnSharedState, expectSomeReported, generationsSeen, reported } from './fault-run.js';
import { scenario } from './scenario.js';

let server: RedisServer | undefined;
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
  if (server) await disposeRedis(server);
  server = undefined;
});

const RATE = 100;

/** The breaker as Redis has it: state and generation. */
async function stateOf(admin: Redis, id: string): Promise<{ state: string; gen: number }> {
  const keys = breakerKeys(DEFAULTS.prefix, id);
  const reply = (await admin.call('FCALL_RO', 'zv1_state', '2', keys.state, keys.events)) as unknown[];
  return { state: String(reply[1]), gen: Number(reply[3]) };
}

/**
 * Another process's report of three failures in a row (the instances' strategy): opens
 * the breaker if it is closed in `gen`. The lease holder's recovery check closes it again.
 */
async function trip(admin: Redis, id: string, gen: number): Promise<void> {
  const keys = breakerKeys(DEFAULTS.prefix, id);
  await admin.call(
    'FCALL', 'zv1_record', '2', keys.state, keys.events, feedChannel(DEFAULTS.prefix), 'another-process', String(DEFAULTS.auditRetention),
    String(gen), '0', '3', '0', '0', '3', '3', '3', 'consecutive:3:0:0',
  );
}

/** The connections named `name`, killed by id; returns how many. */
async function killNamed(admin: Redis, name: string): Promise<number> {
  const list = (await admin.client('LIST')) as string;
  const ids = list
    .trim()
    .split('\n')
    .filter((line) => new RegExp(`\\bname=${name}(\\s|$)`).test(line))
    .map((line) => /\bid=(\d+)/.exec(line)?.[1] as string);
  for (const id of ids) await admin.call('CLIENT', 'KILL', 'ID', id);
  return ids.length;
}

/** Which kind of connection each kill takes, in turn. */
const KILLS = [
  (admin: Redis) => killNamed(admin, 'zenvark:commands'),
  (admin: Redis) => admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'),
  async (admin: Redis) => {
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await killNamed(admin, 'zenvark:commands');
  },
];

describe('connections killed', () => {
  scenario('Subscriber and command connections killed (CLIENT KILL)', async (size) => {
    server = await startRedis();
    const admin = server.client();
    instances = fleet(server.url, 3);
    // Every recovery check passes: each trip is followed by a close, by whoever holds the lease.
    for (const i of instances) i.healthy = true;
    await startAll(instances);
    const id = (instances[0] as Instance).breaker.id;
    const run = await FaultRun.begin(instances, admin, size, RATE);
    const duration = size === 'long' ? 20_000 : 3000;
    const untilClosed = () =>
      vi.waitFor(
        async () => {
          const now = await stateOf(admin, id);
          expect(now.state).toBe('closed');
          return now;
        },
        { timeout: 20_000, interval: 20 },
      );

    // A command connection goes first: the instances have something to detect.
    run.inject();
    const started = performance.now();
    let kills = 0;
    const kill = async () => {
      await (KILLS[kills % KILLS.length] as (admin: Redis) => Promise<unknown>)(admin);
      kills += 1;
    };
    await kill();
    await run.detected(() => expectSomeReported(instances, 'ZV_REDIS_UNREACHABLE'));
    let killing = true;
    const killer = (async () => {
      while (killing) {
        await sleep(100 + ((kills * 37) % 200));
        await kill();
      }
    })();
    let tripped = 0;
    while (performance.now() - started < duration) {
      await sleep(50 + ((tripped * 53) % 150));
      const { gen } = await untilClosed();
      await trip(admin, id, gen);
      tripped += 1;
    }
    killing = false;
    await killer;
    const killedFor = performance.now() - started;
    run.heal();
    // The last trip is closed again by the lease holder.
    await untilClosed();
    const { gen: last } = await stateOf(admin, id);
    expect(last).toBe(2 * tripped);
    const every = Array.from({ length: last }, (_, n) => n + 1);
    await run.converged(async () => {
      // No transition is lost: each generation once, in order, live or read back.
      expect(instances.map(generationsSeen)).toEqual(instances.map(() => every));
      for (const i of instances) expectEveryOutageEnded(i);
      await expectOnSharedState(instances);
    }, 10_000);
    const figures = await run.finish({
      injected: `${kills} CLIENT KILLs (subscribers, command connections by name, or both) in ${(killedFor / 1000).toFixed(0)} s while another process tripped the breaker ${tripped} times`,
      note: 'each dropped command connection is an outage of its own (told once, and its end once); converge counts from the last kill to every instance having seen every generation',
    });
    // Every instance lost its command connection at least once.
    for (const i of instances) expect(reported(i, 'ZV_REDIS_UNREACHABLE')).toBeGreaterThan(0);
    return figures;
  });
});
