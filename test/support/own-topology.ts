import { afterAll, beforeAll, beforeEach } from 'vitest';
import { type ClusterSetup, type RedisCluster, startCluster } from '../../harness/cluster.js';
import { type RedisSentinel, type SentinelSetup, startSentinel } from '../../harness/sentinel.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';

interface Topology {
  loadLibrary(code: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A topology of the test file's own, started before its tests and stopped after them;
 * with `library`, the function library is loaded on its primaries before each test, as an
 * operator would have loaded it.
 */
function ownTopology<T extends Topology>(what: string, start: () => Promise<T>, library: boolean | undefined): () => T {
  let topology: T | undefined;
  beforeAll(async () => {
    topology = await start();
  });
  if (library) {
    beforeEach(async () => {
      await topology?.loadLibrary(LIBRARY_CODE);
    });
  }
  afterAll(async () => {
    await topology?.stop();
  });
  return () => {
    if (!topology) throw new Error(`${what} is only available inside tests`);
    return topology;
  };
}

/** A Redis Cluster (3 primaries with a replica each, unless `setup` says otherwise) of the test file's own. */
export function ownCluster(setup: ClusterSetup & { library?: boolean } = {}): { readonly cluster: RedisCluster } {
  const cluster = ownTopology('ownCluster()', () => startCluster(setup), setup.library);
  return {
    get cluster() {
      return cluster();
    },
  };
}

/** A primary, its replica and three sentinels of the test file's own. */
export function ownSentinel(setup: SentinelSetup & { library?: boolean } = {}): { readonly sentinel: RedisSentinel } {
  const sentinel = ownTopology('ownSentinel()', () => startSentinel(setup), setup.library);
  return {
    get sentinel() {
      return sentinel();
    },
  };
}
