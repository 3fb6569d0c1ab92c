#!/usr/bin/env node
/**
 * Loads or upgrades the zenvark_v1 function library on every primary of a Redis server or
 * cluster (a URL naming any node of a cluster deploys to all its primaries). Idempotent;
 * never replaces a newer revision with an older one.
 *
 *   npm run deploy-functions -- --url redis://127.0.0.1:6379
 *   npm run deploy-functions -- --url redis://127.0.0.1:7000 --cluster
 *   npm run deploy-functions -- --check          (REDIS_URL from the environment)
 *
 * Exit codes: 0 done (or, with --check, every primary is current); 1 with --check, a
 * primary lacks the library or has an older one; 2 refused to downgrade; 3 bad usage or
 * Redis unreachable; 4 Redis refused the credentials (authentication failed) or the ACL
 * refused a command (permission denied); 5 the server cannot hold the library: it has no
 * Redis Functions, or, with --cluster, it is not a cluster node.
 *
 * What it prints names servers by host:port and never carries a password (src/redact.ts).
 */
import { parseArgs } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { FunctionsUnsupportedError, RedisAuthError, RedisRefusedError } from '../src/errors.js';
import {
  LIBRARY_NAME,
  LIBRARY_REVISION,
  type DeployResult,
  deployToServer,
  functionsUnsupported,
  installedRevision,
  primaries,
} from '../src/library.js';
import { redactError, redactText } from '../src/redact.js';
import { driverError, serverAddress, underlying } from '../src/redis-failure.js';

const EXIT = { DONE: 0, NOT_CURRENT: 1, NO_DOWNGRADE: 2, USAGE_OR_UNREACHABLE: 3, DENIED: 4, UNSUITABLE: 5 } as const;

/** The server answered but is not a node of a Redis Cluster (--cluster). */
class NotClusterNodeError extends Error {}

const USAGE = `usage: deploy-functions [--url <redis-url>] [--cluster] [--check]
  --url      the server (default: $REDIS_URL)
  --cluster  require the server to be a node of a Redis Cluster (a cluster node is always
             deployed to as a whole: every primary)
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

/** The password of the URL, masked in everything printed. */
let secrets: string[] = [];

function print(stream: 'out' | 'err', text: string): void {
  const safe = redactText(text, secrets);
  if (stream === 'out') console.log(safe);
  else console.error(safe);
}

/** The exit code for what went wrong. */
function exitCode(error: unknown): number {
  if (error instanceof RedisAuthError || (error instanceof RedisRefusedError && error.code === 'ZV_NOPERM')) return EXIT.DENIED;
  if (error instanceof FunctionsUnsupportedError || error instanceof NotClusterNodeError) return EXIT.UNSUITABLE;
  return EXIT.USAGE_OR_UNREACHABLE;
}

/** Connects a client; a failure is the driver's error in Zenvark's words, naming `node`'s server. */
async function connected<T extends Redis | Cluster>(client: T, node: Redis | T = client): Promise<T> {
  let lastError: Error | undefined;
  client.on('error', (error: Error) => {
    // A cluster that could not be reached says why through its last node's error.
    lastError = underlying(error);
  });
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    throw driverError(lastError ?? error, node);
  }
  return client;
}

/**
 * The server the URL names, or, when it is a node of a Redis Cluster, the whole cluster:
 * the library must be on every primary, whichever node the URL names. `--cluster` only
 * asserts that it is one.
 */
async function connect(url: string, cluster: boolean): Promise<Redis | Cluster> {
  const options = { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 1, commandTimeout: 10_000, disconnectTimeout: 0 };
  // One node first: it tells unreachable, refused credentials and a cluster node apart.
  const node = await connected(new Redis(url, { ...options, retryStrategy: () => null }));
  let info: string;
  try {
    info = await node.info('cluster');
  } catch (error) {
    node.disconnect();
    throw driverError(error, node);
  }
  if (!/^cluster_enabled:1\b/m.test(info)) {
    if (!cluster) return node;
    node.disconnect();
    const server = serverAddress(node);
    throw new NotClusterNodeError(
      `Redis at ${server} answered but is not a cluster node (cluster_enabled:0); run without --cluster to deploy to it alone`,
    );
  }
  node.disconnect();
  const { hostname, port, username, password } = new URL(url);
  return connected(
    new Cluster([{ host: hostname, port: Number(port || 6379) }], {
      lazyConnect: true,
      clusterRetryStrategy: () => null,
      redisOptions: { ...options, username: decodeURIComponent(username) || undefined, password: decodeURIComponent(password) || undefined },
    }),
    node,
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
    print('err', `${(error as Error).message}\n${USAGE}`);
    return EXIT.USAGE_OR_UNREACHABLE;
  }
  if (values.help) {
    print('out', USAGE);
    return EXIT.DONE;
  }
  const url = values.url ?? process.env.REDIS_URL;
  if (!url) {
    print('err', `no server given: pass --url or set REDIS_URL\n${USAGE}`);
    return EXIT.USAGE_OR_UNREACHABLE;
  }
  try {
    secrets = [decodeURIComponent(new URL(url).password)].filter((secret) => secret !== '');
  } catch {
    print('err', `not a Redis URL: ${url}\n${USAGE}`);
    return EXIT.USAGE_OR_UNREACHABLE;
  }

  let connection: Redis | Cluster;
  try {
    connection = await connect(url, values.cluster ?? false);
  } catch (error) {
    print('err', `cannot deploy: ${messageOf(error)}`);
    return exitCode(error);
  }
  try {
    let status: number = EXIT.DONE;
    for (const node of primaries(connection)) {
      const server = serverAddress(node);
      if (values.check) {
        const installed = await installedRevision(node);
        if (installed === undefined) {
          const unsupported = await functionsUnsupported(node);
          if (unsupported) throw unsupported;
          print('out', `${server}: ${LIBRARY_NAME} is not loaded (this package ships revision ${LIBRARY_REVISION})`);
          status = EXIT.NOT_CURRENT;
        } else if (installed < LIBRARY_REVISION) {
          print('out', `${server}: ${LIBRARY_NAME} revision ${installed} is older than this package's ${LIBRARY_REVISION}`);
          status = EXIT.NOT_CURRENT;
        } else {
          print('out', `${server}: ${LIBRARY_NAME} revision ${installed} (this package ships ${LIBRARY_REVISION})`);
        }
        continue;
      }
      const result = await deployToServer(node);
      print('out', `${server}: ${describe(result)}`);
      if (result.action === 'refused') status = EXIT.NO_DOWNGRADE;
    }
    return status;
  } catch (error) {
    print('err', `failed: ${messageOf(error)}`);
    return exitCode(error);
  } finally {
    connection.disconnect();
  }
}

/** An error's message, in Zenvark's words when it is the driver's. */
function messageOf(error: unknown): string {
  return error instanceof Error ? (redactError(error, secrets) as Error).message : redactText(String(error), secrets);
}

process.exitCode = await main();
