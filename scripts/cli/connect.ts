/**
 * How the zenvark command reaches Redis: the URL (`redis://` or `rediss://`, credentials
 * in it or given apart), a CA for TLS, and bounded waits everywhere, so that a command
 * never hangs: one connection attempt of at most 3 s, no reconnection, every command
 * answered within 10 s (the admin API waits 5 s).
 */
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { redactText } from '../../src/redact.js';
import { RedisUnreachableError } from '../../src/errors.js';
import { answeredWithin, driverError, serverAddress, underlying } from '../../src/redis-failure.js';

/** The command line's words were wrong: exit code 3. */
export class UsageError extends Error {}

/** The server answered but is not a node of a Redis Cluster (deploy-functions --cluster). */
export class NotClusterNodeError extends Error {}

/** A TLS handshake failed: the server's certificate is not trusted, or the server speaks no TLS. */
export class TlsError extends Error {}

/** The global options that say where Redis is. */
export interface Target {
  url?: string;
  user?: string;
  password?: string;
  cacert?: string;
  insecure?: boolean;
}

/** Where Redis is, checked: the driver's options, and the secrets nothing may print. */
export interface Server {
  readonly options: RedisOptions;
  readonly secrets: readonly string[];
}

const CONNECT_TIMEOUT_MS = 3000;
/** Longest wait for a connection to be ready: the socket, TLS, AUTH and the driver's ready check (a cluster's slot map too). */
const READY_TIMEOUT_MS = 5000;
const COMMAND_TIMEOUT_MS = 10_000;

/** The options every connection of the command gets: one attempt, no queue while down, every command bounded. */
const BOUNDED: RedisOptions = {
  lazyConnect: true,
  connectTimeout: CONNECT_TIMEOUT_MS,
  commandTimeout: COMMAND_TIMEOUT_MS,
  maxRetriesPerRequest: 0,
  retryStrategy: () => null,
  disconnectTimeout: 0,
};

/** The server the options name (`--url`, else REDIS_URL), or a UsageError saying what is wrong. */
export function server(target: Target): Server {
  const url = target.url ?? process.env.REDIS_URL;
  if (!url) throw new UsageError('no server given: pass --url or set REDIS_URL');
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    // Told below.
  }
  const tls = parsed?.protocol === 'rediss:';
  if (!parsed || (!tls && parsed.protocol !== 'redis:')) {
    throw new UsageError(`not a Redis URL (redis://host:port, or rediss:// for TLS): ${redactText(url)}`);
  }
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new UsageError(`not a Redis database number in the URL: ${parsed.pathname.slice(1)}`);
  const username = target.user ?? (decodeURIComponent(parsed.username) || undefined);
  const password = target.password ?? (decodeURIComponent(parsed.password) || undefined);
  if ((target.cacert !== undefined || target.insecure) && !tls) throw new UsageError('--cacert and --insecure are for TLS: use a rediss:// URL');
  const options: RedisOptions = {
    ...BOUNDED,
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost',
    port: Number(parsed.port || 6379),
    db,
    username,
    password,
    tls: tls ? { ca: target.cacert === undefined ? undefined : caFile(target.cacert), rejectUnauthorized: !target.insecure } : undefined,
  };
  return { options, secrets: password ? [password] : [] };
}

function caFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new UsageError(`cannot read --cacert ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}

/** Connects a client; a failure is the driver's error in Zenvark's words, naming `node`'s server. */
async function connected<T extends Redis | Cluster>(client: T, node: Redis | T = client): Promise<T> {
  let lastError: Error | undefined;
  client.on('error', (error: Error) => {
    // A cluster that could not be reached says why through its last node's error.
    lastError = underlying(error);
  });
  try {
    // A server that accepts the connection but does not answer (paused, overloaded) is not
    // caught by connectTimeout, which ends at the socket's connect.
    await answeredWithin(READY_TIMEOUT_MS, node, 'a new connection', client.connect());
  } catch (error) {
    client.disconnect();
    if (error instanceof RedisUnreachableError) throw error;
    throw tlsFailure(lastError ?? error, node) ?? driverError(lastError ?? error, node);
  }
  return client;
}

/** Node's codes for a certificate it does not trust, or a handshake that failed. */
const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|UNABLE_TO_|CERT_|HOSTNAME_MISMATCH$)/;

function tlsFailure(error: unknown, node: Redis | Cluster): TlsError | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string' || !TLS_CODES.test(code)) return undefined;
  return new TlsError(
    `TLS to Redis at ${serverAddress(node)} failed (${code}): ${(error as Error).message}; ` +
      "pass --cacert <file> with the CA that signed the server's certificate",
  );
}

/** A plain connection to the server the URL names (the watch's subscriber). */
export function connectNode(s: Server): Promise<Redis> {
  return connected(new Redis(s.options));
}

/**
 * The server the URL names, or, when it is a node of a Redis Cluster, the whole cluster
 * (a breaker's keys are on one primary of it, the breakers of a prefix on all). With
 * `requireCluster`, a server that is not a cluster node is a NotClusterNodeError.
 */
export async function connect(s: Server, requireCluster = false): Promise<Redis | Cluster> {
  // One node first: it tells unreachable, refused credentials and a cluster node apart.
  const node = await connectNode(s);
  let info: string;
  try {
    info = await node.info('cluster');
  } catch (error) {
    node.disconnect();
    throw driverError(error, node);
  }
  if (!/^cluster_enabled:1\b/m.test(info)) {
    if (!requireCluster) return node;
    node.disconnect();
    throw new NotClusterNodeError(
      `Redis at ${serverAddress(node)} answered but is not a cluster node (cluster_enabled:0); run without --cluster to deploy to it alone`,
    );
  }
  node.disconnect();
  const { host, port, db: _clusterHasNone, ...redisOptions } = s.options;
  return connected(
    new Cluster([{ host, port }], { lazyConnect: true, clusterRetryStrategy: () => null, redisOptions }),
    node,
  );
}
