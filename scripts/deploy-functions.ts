#!/usr/bin/env node
/**
 * Loads or upgrades the zenvark_v1 function library on every primary of a Redis server or
 * cluster. Idempotent; never replaces a newer revision with an older one.
 *
 *   npm run deploy-functions -- --url redis://127.0.0.1:6379
 *   npm run deploy-functions -- --url redis://127.0.0.1:7000 --cluster
 *   npm run deploy-functions -- --check          (REDIS_URL from the environment)
 *
 * Exit codes: 0 done (or, with --check, every primary is current); 1 with --check, a
 * primary lacks the library or has an older one; 2 refused to downgrade; 3 bad usage or
 * Redis unreachable.
 */
import { parseArgs } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import {
  LIBRARY_NAME,
  LIBRARY_REVISION,
  type DeployResult,
  deployToServer,
  installedRevision,
  primaries,
} from '../src/library.js';
import { serverAddress } from '../src/redis-failure.js';

const USAGE = `usage: deploy-functions [--url <redis-url>] [--cluster] [--check]
  --url      the server (default: $REDIS_URL)
  --cluster  treat the server as one node of a Redis Cluster and deploy to every primary
  --check    only print the installed revision; exit 1 if missing or older than ${LIBRARY_REVISION}`;

function describe(r: DeployResult): string {
  const lib = `${LIBRARY_NAME} revision ${r.shipped}`;
  switch (r.action) {
    case 'loaded':
      return `loaded ${lib} (it was missing)`;
    case 'upgraded':
      return `upgraded ${LIBRARY_NAME} from revision ${r.installed} to ${r.shipped}`;
    case 'replaced':
      return `replaced ${lib} (same revision, different code)`;
    case 'unchanged':
      return `${lib} is already loaded; nothing to do`;
    case 'refused':
      return `refused: revision ${r.installed} is loaded, newer than this package's ${r.shipped}; not downgrading`;
  }
}

async function connect(url: string, cluster: boolean): Promise<Redis | Cluster> {
  const options = { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 1, commandTimeout: 10_000 };
  let lastError: Error | undefined;
  const remember = (error: Error) => {
    lastError = error;
  };
  const connected = async <T extends Redis | Cluster>(client: T): Promise<T> => {
    client.on('error', remember);
    try {
      await client.connect();
    } catch (error) {
      client.disconnect();
      throw lastError ?? error;
    }
    return client;
  };
  if (!cluster) return connected(new Redis(url, { ...options, retryStrategy: () => null }));
  const { hostname, port, username, password } = new URL(url);
  return connected(
    new Cluster([{ host: hostname, port: Number(port || 6379) }], {
      lazyConnect: true,
      clusterRetryStrategy: () => null,
      redisOptions: { ...options, username: username || undefined, password: password || undefined },
    }),
  );
}

async function main(): Promise<number> {
  let values: { url?: string; cluster?: boolean; check?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: 'string' },
        cluster: { type: 'boolean' },
        check: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 3;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const url = values.url ?? process.env.REDIS_URL;
  if (!url) {
    console.error(`no server given: pass --url or set REDIS_URL\n${USAGE}`);
    return 3;
  }

  let connection: Redis | Cluster;
  try {
    connection = await connect(url, values.cluster ?? false);
  } catch (error) {
    console.error(`cannot reach ${url}: ${(error as Error).message}`);
    return 3;
  }
  try {
    let status = 0;
    for (const node of primaries(connection)) {
      const server = serverAddress(node);
      if (values.check) {
        const installed = await installedRevision(node);
        if (installed === undefined) {
          console.log(`${server}: ${LIBRARY_NAME} is not loaded (this package ships revision ${LIBRARY_REVISION})`);
          status = 1;
        } else if (installed < LIBRARY_REVISION) {
          console.log(`${server}: ${LIBRARY_NAME} revision ${installed} is older than this package's ${LIBRARY_REVISION}`);
          status = 1;
        } else {
          console.log(`${server}: ${LIBRARY_NAME} revision ${installed} (this package ships ${LIBRARY_REVISION})`);
        }
        continue;
      }
      const result = await deployToServer(node);
      console.log(`${server}: ${describe(result)}`);
      if (result.action === 'refused') status = 2;
    }
    return status;
  } catch (error) {
    console.error(`failed: ${(error as Error).message}`);
    return 3;
  } finally {
    connection.disconnect();
  }
}

process.exitCode = await main();
