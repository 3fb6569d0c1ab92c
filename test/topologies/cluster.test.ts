/**
 * Zenvark on a Redis Cluster of three primaries with a replica each, started from the
 * server binary (harness/cluster.ts) once for the file: breakers on every shard, a primary
 * killed and its replica promoted, a node without the library, a slot moved while breakers
 * run. Each instance has its own application client (an ioredis Cluster), as separate
 * processes would.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Cluster } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ClusterNode, RedisCluster } from '../../harness/cluster.js';
import { type CircuitBreakerOptions, ConsecutiveBreaker, DEFAULTS, breakerKeys, explainBreaker } from '../../src/index.js';
import { LIBRARY_REVISION } from '../../src/shipped-library.js';
import { installedRevision } from '../../src/library.js';
import { lostOutcomes, startLoad } from '../faults/load.js';
import { COUNTING, checkAfterFailover, span, watchFailover } from '../support/failover.js';
import { type Instance, errorCodes, fail, failing, instance, leaderOf, stateOf, startAll, stopAll, untilAll } from '../support/instances.js';
import { createUserOn } from '../support/acl.js';
import { deploy } from '../support/deploy-functions.js';
import { ownCluster } from '../support/own-topology.js';

const own = ownCluster({ library: true });
/** The library as revision 4 shipped it, the one before this package's. */
const PREVIOUS_REVISION = readFileSync(new URL('../support/zenvark_v1-revision-4.lua', import.meta.url), 'utf8');

let running: Instance[] = [];
afterEach(async () => {
  await stopAll(running);
  running = [];
});

/** The primary that serves breaker `id`'s keys. */
function primaryOf(cluster: RedisCluster, id: string): Promise<ClusterNode> {
  return cluster.primaryOf(breakerKeys(DEFAULTS.prefix, id).state);
}

/** `count` fresh breaker ids whose keys `primary` serves. */
async function idsOn(cluster: RedisCluster, primary: ClusterNode, count: number, label = 'cluster'): Promise<string[]> {
  const shard = (await cluster.shards()).find((s) => s.primary === primary);
  if (!shard) throw new Error(`${primary.address} serves no slot`);
  const ids: string[] = [];
  while (ids.length < count) {
    const id = `${label}-${randomUUID()}`;
    const slot = cluster.slotOf(breakerKeys(DEFAULTS.prefix, id).state);
    if (shard.slots.some(([first, last]) => first <= slot && slot <= last)) ids.push(id);
  }
  return ids;
}

/** One instance of breaker `id` per application client. */
function fleetOn(clients: Cluster[], id: string, options: Partial<CircuitBreakerOptions> = {}): Instance[] {
  const fleet = clients.map((client, n) => instance('', { ...options, id, instanceId: `app-${n}` }, client));
  running.push(...fleet);
  return fleet;
}

/** The library's connections on each node (CLIENT LIST), by name. */
async function connectionsByNode(cluster: RedisCluster): Promise<Map<string, string[]>> {
  const byNode = new Map<string, string[]>();
  for (const node of cluster.alive) {
    const list = (await node.admin.client('LIST')) as string;
    const names = [...list.matchAll(/name=(zenvark:\S+)/g)].map((m) => m[1] as string);
    byNode.set(node.address, names.sort());
  }
  return byNode;
}

describe('on a Redis Cluster', () => {
  it('breakers on every shard trip and recover on every instance, with one subscriber per process and a command connection per primary used', async () => {
    const { cluster } = own;
    const shards = await cluster.shards();
    expect(shards).toHaveLength(3);
    const clients = [cluster.client(), cluster.client(), cluster.client()];
    const fleets = await Promise.all(shards.map(async (s) => fleetOn(clients, ((await idsOn(cluster, s.primary, 1)) as [string])[0])));
    await startAll(fleets.flat());

    for (const fleet of fleets) await fail(fleet[0] as Instance, 3);
    for (const fleet of fleets) {
      await untilAll(fleet, 'open');
      // The instance whose report tripped it took the lease with the trip; the others heard it from the feed.
      expect((await leaderOf(fleet)).breaker.instanceId).toBe('app-0');
      for (const i of fleet) expect(i.seen.states.map((s) => s.transition.reason)).toEqual(['consecutive_failures']);
    }

    const byNode = await connectionsByNode(cluster);
    console.log(`cluster connections of ${clients.length} processes, by node: ${JSON.stringify(Object.fromEntries(byNode))}`);
    const all = [...byNode.values()].flat();
    expect(all.filter((name) => name === 'zenvark:subscriber')).toHaveLength(clients.length);
    for (const [node, names] of byNode) {
      // At most one command connection per process on each node: every primary, and a replica the driver asked for the slot map.
      expect(names.filter((name) => name === 'zenvark:commands').length, node).toBeLessThanOrEqual(clients.length);
    }
    for (const s of shards) expect(byNode.get(s.primary.address)?.filter((name) => name === 'zenvark:commands')).toHaveLength(clients.length);

    for (const i of fleets.flat()) i.healthy = true;
    for (const fleet of fleets) {
      await untilAll(fleet, 'closed');
      // Closed, no duty needs the lease: its holder gave it back.
      await vi.waitFor(() => expect(fleet.map((i) => i.breaker.role)).toEqual(fleet.map(() => 'follower')), { timeout: 10_000 });
      expect((await stateOf(clients[0] as Cluster, fleet[0]?.breaker.id as string)).holder).toBe('');
    }
    expect(fleets.flat().flatMap((i) => i.seen.errors)).toEqual([]);
  });

  // With full coverage (Redis's default) every node answers CLUSTERDOWN until the promotion,
  // and the driver retries those itself; without it only the dead shard's slots fail, and the
  // slot map is followed (src/cluster-topology.ts).
  it.each([
    ['with cluster-require-full-coverage yes', 'yes'],
    ['with cluster-require-full-coverage no', 'no'],
  ])('a primary killed and its replica promoted (%s): the breakers converge, one instance holds each lease, and no outcome counts twice', async (_, coverage) => {
    const { cluster } = own;
    for (const node of cluster.alive) await node.admin.config('SET', 'cluster-require-full-coverage', coverage);
    const victim = (await cluster.shards())[0]?.primary as ClusterNode;
    const clients = [cluster.client(), cluster.client(), cluster.client()];
    const [openId] = (await idsOn(cluster, victim, 1, 'open')) as [string];
    const opened = fleetOn(clients, openId, { leaseTtlMs: 2000 });
    const busy = (await idsOn(cluster, victim, 2, 'load')).flatMap((id) => fleetOn(clients, id, { breaker: COUNTING }));
    const watch = await watchFailover(opened, busy);
    const failover = await cluster.failover(victim);
    const result = await watch.settle();
    await cluster.rejoin(victim);

    expect(watch.restoredAt.size).toBeGreaterThan(0);
    console.log(
      `cluster failover (full coverage ${coverage}): the replica was primary ${(failover.promotedAt - failover.killedAt).toFixed(0)} ms after ` +
        `the kill; the instances of the shard's breakers (${watch.restoredAt.size}) reported again ${span(watch.restoredAt.values(), failover.promotedAt)} ` +
        `after the promotion (seen within ${failover.promotedWithinMs.toFixed(0)} ms of it)`,
    );
    await checkAfterFailover(clients[0] as Cluster, opened, busy, result);
  });

  // A primary flushed (or restarted empty), or one left at the previous revision (added
  // later, or promoted after missing an upgrade): revision 4 refuses this client's
  // zv1_record, which sends one argument more.
  it.each([
    ['lost the library', 'ZV_LIBRARY_MISSING', (node: ClusterNode) => own.cluster.flushLibrary(node)],
    ['has the previous revision', 'ZV_LIBRARY_OUTDATED', (node: ClusterNode) => node.admin.call('FUNCTION', 'LOAD', 'REPLACE', PREVIOUS_REVISION)],
  ])('a primary that %s gets the current one from a breaker allowed to load it; one not allowed says once where and how to deploy it', async (_, code, damage) => {
    const { cluster } = own;
    const victim = (await cluster.shards())[1]?.primary as ClusterNode;
    const [id] = (await idsOn(cluster, victim, 1)) as [string];
    const allowed = fleetOn([cluster.client()], id, { loadFunctions: true });
    const [otherId] = (await idsOn(cluster, victim, 1)) as [string];
    const refused = fleetOn([cluster.client()], otherId, { loadFunctions: false });
    await startAll([...refused, ...allowed]);
    await damage(victim);

    await fail(refused[0] as Instance, 1);
    await vi.waitFor(() => expect(errorCodes(refused[0] as Instance)).toContain(code), { timeout: 10_000 });
    const told = (refused[0] as Instance).seen.errors.find((e) => (e as { code?: string }).code === code) as Error;
    expect(told.message).toContain(victim.address);
    expect(told.message).toContain(`npx zenvark deploy-functions --url redis://${victim.address} --cluster`);

    await fail(allowed[0] as Instance, 1);
    await vi.waitFor(async () => expect(await installedRevision(victim.admin)).toBe(LIBRARY_REVISION), { timeout: 10_000 });
    // The breaker allowed to load it, and the other one too, work on that shard again.
    await vi.waitFor(() => expect([...allowed, ...refused].filter((i) => i.breaker.degraded)).toEqual([]), { timeout: 10_000 });
    await fail(allowed[0] as Instance, 3);
    await untilAll(allowed, 'open');
    // Told once while it lasted.
    expect(errorCodes(refused[0] as Instance).filter((c) => c === code)).toHaveLength(1);
  });

  it("the README's application user, with the cluster's two rules, runs a breaker through a trip and a recovery; without them start() says which is missing", async () => {
    const { cluster } = own;
    const admins = cluster.alive.map((n) => n.admin);
    const cautious = await createUserOn(admins, 'app', { add: ['+cluster|slots', '+cluster|info'], unique: true });
    const [shard] = await cluster.shards();
    const [id] = (await idsOn(cluster, shard?.primary as ClusterNode, 1)) as [string];
    const fleet = fleetOn([cluster.client({ redisOptions: cautious })], id, { loadFunctions: false });
    await startAll(fleet);
    await fail(fleet[0] as Instance, 3);
    await untilAll(fleet, 'open');
    (fleet[0] as Instance).healthy = true;
    await untilAll(fleet, 'closed');
    expect((fleet[0] as Instance).seen.errors).toEqual([]);

    const plain = await createUserOn(admins, 'app', { unique: true });
    const refused = fleetOn([cluster.client({ redisOptions: plain })], id, { loadFunctions: false });
    const started = Date.now();
    const error = await (refused[0] as Instance).breaker.start().then(() => undefined, (e: unknown) => e as Error & { code?: string });
    expect(error?.code).toBe('ZV_NOPERM');
    expect(error?.message).toContain('cluster|slots');
    expect(Date.now() - started).toBeLessThan(4000);

    // The operator deploys, and the observer explains, with the same two rules added.
    const node = shard?.primary as ClusterNode;
    const operator = await createUserOn(admins, 'operator', { add: ['+cluster|slots', '+cluster|info'], unique: true });
    const url = `redis://${operator.username}:${operator.password}@${node.address}`;
    expect(await deploy(['--check', '--url', url])).toMatchObject({ code: 0, out: expect.stringContaining(`${node.address}: zenvark_v1 revision ${LIBRARY_REVISION}`) });
    const observer = await createUserOn(admins, 'observer', { add: ['+cluster|slots', '+cluster|info'], unique: true });
    const explained = await explainBreaker(cluster.client({ redisOptions: observer }), id);
    expect(explained).toMatchObject({ state: 'closed', generation: 2 });
  });

  it('deploy-functions, given any node, checks and deploys every primary', async () => {
    const { cluster } = own;
    const shards = await cluster.shards();
    const flushed = shards[0]?.primary as ClusterNode;
    const given = shards[1]?.replicas[0] as ClusterNode;
    await cluster.flushLibrary(flushed);
    const check = await deploy(['--check', '--url', given.url]);
    expect(check.code).toBe(1);
    for (const { primary } of shards) expect(check.out).toContain(`${primary.address}: zenvark_v1`);
    expect(check.out).toContain(`${flushed.address}: zenvark_v1 is not loaded`);
    const deployed = await deploy(['--url', given.url]);
    expect(deployed).toMatchObject({ code: 0, out: expect.stringContaining(`${flushed.address}: loaded zenvark_v1 revision ${LIBRARY_REVISION}`) });
    expect(deployed.out.match(/nothing to do/g)).toHaveLength(shards.length - 1);
    expect(await deploy(['--check', '--url', given.url, '--cluster'])).toMatchObject({ code: 0 });
  });

  it('a slot moved to a new primary while its breakers run: the new primary gets the library, and the breakers go on without a lost outcome', async () => {
    const { cluster } = own;
    const from = (await cluster.shards())[2]?.primary as ClusterNode;
    const clients = [cluster.client(), cluster.client()];
    const [id] = (await idsOn(cluster, from, 1)) as [string];
    const strategy = new ConsecutiveBreaker({ threshold: 1_000_000 });
    const fleet = fleetOn(clients, id, { breaker: strategy, loadFunctions: true });
    await startAll(fleet);
    const load = startLoad(
      fleet.map((i) => i.breaker),
      50,
      failing,
    );
    const added = await cluster.addPrimary();
    expect(await installedRevision(added.admin)).toBeUndefined();
    const slot = cluster.slotOf(breakerKeys(DEFAULTS.prefix, id).state);
    const moved = await cluster.moveSlot(slot, added, { midway: async () => undefined });
    expect(moved.keys).toBeGreaterThan(0);
    expect(await primaryOf(cluster, id)).toBe(added);
    // The breakers' next calls find the library missing on the new primary and load it.
    await vi.waitFor(async () => expect(await installedRevision(added.admin)).toBe(LIBRARY_REVISION), { timeout: 10_000 });
    await vi.waitFor(() => expect(fleet.filter((i) => i.breaker.degraded)).toEqual([]), { timeout: 10_000 });
    const recorded = fleet.map((i) => i.breaker.stats.recorded);
    await vi.waitFor(() => expect(fleet.map((i, n) => i.breaker.stats.recorded > (recorded[n] as number))).toEqual([true, true]), { timeout: 10_000 });
    const result = await load.stop();
    // Outcomes still pending (a summary waits for the report in flight) are sent within a round trip.
    await vi.waitFor(() => expect(lostOutcomes(result.executed, fleet.map((i) => i.breaker))).toBe(0));
    // It still trips and recovers there, through the new primary.
    const tripped = fleetOn(clients, ((await idsOn(cluster, added, 1)) as [string])[0]);
    await startAll(tripped);
    await fail(tripped[0] as Instance, 3);
    await untilAll(tripped, 'open');
    for (const i of tripped) i.healthy = true;
    await untilAll(tripped, 'closed');
  });
});
