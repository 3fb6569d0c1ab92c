/**
 * The README's ACL lines, applied as written: the application user runs breakers through
 * a whole cycle, the operator user loads the library, and a user lacking a right hears
 * which one, with nothing half written.
 */
import { execFile } from 'node:child_process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { breakerKeys, explainBreaker } from '../../src/index.js';
import { type Instance, fail, fleet, leaderOf, sharedState, startAll, stopAll, uniqueId, untilAll } from '../support/instances.js';
import { createUser as createReadmeUser, createUserOn } from '../support/acl.js';
import { ownRedis } from '../support/own-redis.js';

const root = new URL('../../', import.meta.url);
// The library is there, as an operator would have loaded it: the application user may not.
const own = ownRedis({ library: true });
let instances: Instance[] = [];

afterEach(async () => {
  await stopAll(instances);
  instances = [];
});

/** Creates the README's user (with `drop` rules removed from it) and returns its URL. */
const createUser = (name: string, ...drop: string[]) => createReadmeUser(own.admin, own.server, name, ...drop);

const codes = (i: Instance) => i.seen.errors.map((e) => (e as { code?: string }).code);

describe('least privilege, as the README gives it', () => {
  it('the application user runs breakers through a trip, a recovery check and a release', async () => {
    const url = await createUser('app');
    // A lease of a minute: only a release frees it within the test.
    instances = fleet(url, 2, { loadFunctions: false, leaseTtlMs: 60_000 });
    await startAll(instances);
    await fail(instances[0] as Instance, 3);
    await untilAll(instances, 'open');
    // Open, the breaker has a duty: one instance takes the lease and runs the checks.
    const leader = await leaderOf(instances);
    leader.healthy = true;
    await untilAll(instances, 'closed');
    // Closed, the duty is over: the holder releases the lease.
    await vi.waitFor(async () => expect((await sharedState(leader)).holder).toBe(''), { timeout: 10_000 });
    expect(leader.breaker.role).toBe('follower');
    await stopAll(instances);
    for (const i of instances) expect(i.seen.errors).toEqual([]);
    expect(await own.admin.call('ACL', 'LOG')).toEqual([]);
  });

  it('the application user runs the instance rule: an instance isolates itself and rejoins, then two instances open the fleet', async () => {
    const url = await createUser('app');
    instances = fleet(url, 2, { loadFunctions: false, minimumInstances: 2 });
    const [a, b] = instances as [Instance, Instance];
    await startAll(instances);
    await own.admin.call('ACL', 'LOG', 'RESET');
    await fail(a, 3);
    await vi.waitFor(() => expect(a.breaker.state).toBe('isolated'));
    a.healthy = true;
    await vi.waitFor(() => expect(a.breaker.state).toBe('closed'));
    // Failures from both instances in the fleet open it.
    await fail(a, 2);
    await vi.waitFor(() => expect(a.breaker.stats.recorded).toBe(5));
    await fail(b, 2);
    await untilAll(instances, 'open');
    await stopAll(instances);
    // The failing checks of the isolated instance are all it was told of.
    for (const i of instances) expect(codes(i).filter((code) => code !== 'ZV_HEALTH_CHECK_FAILED')).toEqual([]);
    expect(await own.admin.call('ACL', 'LOG')).toEqual([]);
  });

  it('refused the instance-events stream, an instance isolates itself alone, says so once, and rejoins alone', async () => {
    const id = uniqueId('alone');
    const keys = breakerKeys('zenvark', id);
    // The application user of the README, but with the breaker's keys other than its instance-events stream.
    const allowed = [keys.state, keys.events, keys.instances].map((key) => `~${key}`);
    const { username, password } = await createUserOn([own.admin], 'app', { drop: ['~zenvark:*'], add: allowed, unique: true });
    const url = `redis://${username}:${password}@${own.server.host}:${own.server.port}`;
    instances = fleet(url, 2, { id, loadFunctions: false, minimumInstances: 2 });
    const [a, b] = instances as [Instance, Instance];
    await startAll(instances);
    await fail(a, 3);
    await vi.waitFor(() => expect(a.breaker.state).toBe('isolated'));
    await vi.waitFor(() => expect(a.seen.states.at(-1)?.transition).toMatchObject({ scope: 'instance', to: 'isolated', reason: 'consecutive_failures', local: true, id: '' }));
    expect(codes(a)).toEqual(['ZV_NOPERM']);
    await expect(b.breaker.execute(async () => 'ok')).resolves.toBe('ok');
    a.healthy = true;
    await vi.waitFor(() => expect(a.breaker.state).toBe('closed'));
    await vi.waitFor(() => expect(a.seen.states.at(-1)?.transition).toMatchObject({ scope: 'instance', from: 'isolated', to: 'closed', reason: 'recovered', local: true }));
    expect(codes(a).filter((code) => code === 'ZV_NOPERM')).toEqual(['ZV_NOPERM']);
  });

  it('the application user explains its breaker; the observer user reads it, and may write nothing', async () => {
    const app = await createUser('app');
    const observer = new URL(await createUser('observer'));
    instances = fleet(app, 1, { loadFunctions: false });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await own.admin.call('ACL', 'LOG', 'RESET');
    await fail(i, 3);
    await untilAll(instances, 'open');
    expect((await i.breaker.explain()).lastTransition?.reason).toBe('consecutive_failures');
    const reader = own.server.client({ username: observer.username, password: observer.password });
    const e = await explainBreaker(reader, i.breaker.id);
    expect(e).toMatchObject({ state: 'open', auditEntries: 1, lastTransition: { reason: 'consecutive_failures' } });
    expect(await reader.xrange(breakerKeys('zenvark', i.breaker.id).events, '-', '+')).toHaveLength(1);
    expect(await own.admin.call('ACL', 'LOG')).toEqual([]);
    const keys = breakerKeys('zenvark', i.breaker.id);
    await expect(reader.call('FCALL', 'zv1_record', '2', keys.state, keys.events, 'zenvark:feed', 'x', '100', '1', '0', '1', '0', '0', '1', '1', '1', 'consecutive:3:0:0')).rejects.toThrow(/^NOPERM/);
    await expect(reader.hset(keys.state, 'state', 'closed')).rejects.toThrow(/^NOPERM/);
  });

  it('a user without XADD hears ZV_NOPERM naming it, and the trip writes nothing', async () => {
    const url = await createUser('app', '+xadd');
    instances = fleet(url, 1, { loadFunctions: false });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await fail(i, 3);
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_NOPERM'));
    const report = i.seen.errors.find((e) => (e as { code?: string }).code === 'ZV_NOPERM');
    expect(report?.message).toMatch(/may not run XADD on zenvark:\{.*\}:events/);
    expect(report?.message).not.toMatch(/user_function|:\d+:/);
    // Deciding alone (its window starts from the outcomes Redis refused), it opens for
    // itself; Redis holds no half-written transition.
    await fail(i, 3);
    await untilAll(instances, 'open');
    expect(i.seen.states.at(-1)?.transition).toMatchObject({ reason: 'local_failures', local: true });
    const keys = breakerKeys('zenvark', i.breaker.id);
    expect(await own.admin.exists(keys.events)).toBe(0);
    expect(await own.admin.hmget(keys.state, 'state', 'gen')).toEqual(['closed', '0']);
    expect(codes(i).filter((c) => c === 'ZV_NOPERM')).toHaveLength(1);
  });

  it('a right taken away while running (FCALL) is told once as ZV_NOPERM, and its return once', async () => {
    const url = await createUser('app');
    const user = new URL(url).username;
    instances = fleet(url, 1, { loadFunctions: false });
    const [i] = instances as [Instance];
    await i.breaker.start();
    await own.admin.call('ACL', 'SETUSER', user, '-fcall');
    await fail(i, 3);
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_NOPERM'));
    const report = i.seen.errors.find((e) => (e as { code?: string }).code === 'ZV_NOPERM');
    expect(report?.message).toMatch(/NOPERM/);
    await fail(i, 3);
    await own.admin.call('ACL', 'SETUSER', user, '+fcall');
    await vi.waitFor(() => expect(codes(i)).toContain('ZV_REDIS_RESTORED'), { timeout: 10_000 });
    expect(codes(i).filter((c) => c === 'ZV_NOPERM')).toHaveLength(1);
    expect(codes(i)).not.toContain('ZV_REDIS_REFUSED');
  });

  it('a user without HMGET cannot start a breaker, and hears which right it lacks', async () => {
    const url = await createUser('app', '+hmget');
    instances = fleet(url, 1, { loadFunctions: false });
    const [i] = instances as [Instance];
    const error = await i.breaker.start().then(
      () => undefined,
      (caught: unknown) => caught as { code?: string; message?: string },
    );
    expect(error?.code).toBe('ZV_NOPERM');
    expect(error?.message).toMatch(/may not run HMGET on zenvark:\{.*\}:state/);
  });

  it('the operator user loads the library; the application user cannot', async () => {
    const operator = await createUser('operator');
    const app = await createUser('app');
    await own.admin.function('FLUSH');
    await own.admin.call('ACL', 'LOG', 'RESET');
    const result = await new Promise<{ code: number; out: string }>((resolve) => {
      const { REDIS_URL: _ignored, ...env } = process.env;
      execFile(
        process.execPath,
        ['--import', 'tsx', 'scripts/deploy-functions.ts', '--url', operator],
        { cwd: root, env, timeout: 60_000 },
        (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, out: `${stdout}${stderr}` }),
      );
    });
    expect(result).toMatchObject({ code: 0, out: expect.stringContaining('loaded zenvark_v1') });
    // Nothing the operator's tool sent was refused, not even by the driver on connecting.
    expect(await own.admin.call('ACL', 'LOG')).toEqual([]);
    const appUser = own.server.client({ username: new URL(app).username, password: new URL(app).password });
    await expect(appUser.call('FUNCTION', 'FLUSH')).rejects.toThrow(/^NOPERM/);
  });
});
