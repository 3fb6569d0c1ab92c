/**
 * Checks, loads and upgrades the function library on every primary. A server never gets
 * an older revision than the one it has.
 */
import { Cluster, type Redis } from 'ioredis';
import type { Connection } from './connections.js';
import { FunctionsUnsupportedError, LibraryMissingError, LibraryOutdatedError } from './errors.js';
import { driverError, replyCode, serverAddress } from './redis-failure.js';
import { LIBRARY_CODE, LIBRARY_NAME, LIBRARY_REVISION } from './shipped-library.js';

export { LIBRARY_CODE, LIBRARY_NAME, LIBRARY_REVISION };

export type DeployAction = 'loaded' | 'upgraded' | 'replaced' | 'unchanged' | 'refused';

export interface DeployResult {
  /** host:port of the server. */
  readonly server: string;
  readonly action: DeployAction;
  /** Revision found before; undefined when the library was missing. */
  readonly installed: number | undefined;
  readonly shipped: number;
}

/** Every primary a connection writes to: the server itself, or each master of a cluster. */
export function primaries(connection: Connection): Redis[] {
  return connection instanceof Cluster ? connection.nodes('master') : [connection];
}

/** The commands of Redis Functions: the library is loaded with one, and called with the others. */
const FUNCTION_COMMANDS = ['FUNCTION', 'FCALL', 'FCALL_RO'] as const;
/** The first releases with Redis Functions, named in messages. */
const MINIMUM = 'Redis 7.0 or later, or Valkey 7.2 or later';

/**
 * The revision loaded on one server, or undefined when the library is not there. Throws
 * FunctionsUnsupportedError for a server without Redis Functions.
 */
export async function installedRevision(node: Redis): Promise<number | undefined> {
  try {
    return Number(await node.fcall_ro('zv1_revision', 0));
  } catch (error) {
    // zv1_revision takes nothing and raises nothing: a plain ERR reply means the server
    // has no such function (or no FCALL_RO at all: functionsUnsupported tells, where that
    // matters). Other codes (NOPERM, LOADING, ...) are not an answer.
    if (replyCode(error) !== 'ERR') throw driverError(error, node);
    return undefined;
  }
}

/**
 * Asks a server without the library whether it lacks Redis Functions altogether: COMMAND
 * INFO answers nil for a command it does not have (Redis before 7.0, or a server without
 * them); where COMMAND is not allowed, the version INFO reports decides. Asked only once
 * the library is found missing, so a user without COMMAND is refused it (and the ACL log
 * shows that) only when something is wrong already.
 */
export async function functionsUnsupported(node: Redis): Promise<FunctionsUnsupportedError | undefined> {
  const server = serverAddress(node);
  const info = await node.info('server').catch(() => '');
  // Valkey and Dragonfly report a redis_version for compatibility, and their own too.
  const version = /^((?:valkey|dragonfly)_version):(\S+)/m.exec(info) ?? /^(redis_version):(\S+)/m.exec(info);
  const reports = version ? ` (it reports ${version[1]} ${version[2]})` : '';
  let missing: string[];
  try {
    const known = (await node.call('COMMAND', 'INFO', ...FUNCTION_COMMANDS)) as unknown[];
    missing = FUNCTION_COMMANDS.filter((_, i) => known[i] === null || known[i] === undefined);
  } catch {
    if (!version || version[1] !== 'redis_version' || Number.parseInt(version[2] as string, 10) >= 7) return undefined;
    return new FunctionsUnsupportedError(server, `Redis at ${server} has no Redis Functions${reports}; Zenvark needs ${MINIMUM}`);
  }
  if (missing.length === 0) return undefined;
  const are = missing.length === 1 ? 'is not a command' : 'are not commands';
  return new FunctionsUnsupportedError(server, `Redis at ${server} has no Redis Functions: ${missing.join(', ')} ${are} there${reports}; Zenvark needs ${MINIMUM}`);
}

/** A plain command to one server; the driver's errors say what happened. */
export async function ask(node: Redis, ...args: (string | number)[]): Promise<unknown> {
  try {
    return await node.call(args[0] as string, ...args.slice(1));
  } catch (error) {
    throw driverError(error, node);
  }
}

/**
 * The deploy command's arguments for `node`, a primary of `connection`: its address, and
 * `--cluster` for a cluster's node (deploy-functions then loads every primary).
 */
function deployArgs(node: Redis, connection: Connection): string {
  const options = node.options;
  if (options.sentinels || ('path' in options && options.path)) return '--url <redis-url>';
  const scheme = options.tls ? 'rediss' : 'redis';
  return `--url ${scheme}://${options.host ?? 'localhost'}:${options.port ?? 6379}${connection instanceof Cluster ? ' --cluster' : ''}`;
}

/**
 * The first primary that lacks the library or has an older revision than this package's,
 * as the error that says so (naming the node and the command that deploys it there);
 * undefined when every primary is current. What a function call that failed with a plain
 * ERR reply is asked, since the reply's words ("Function not found") are the server's to
 * choose.
 */
export async function libraryNotCurrent(connection: Connection): Promise<LibraryMissingError | LibraryOutdatedError | undefined> {
  const nodes = primaries(connection);
  const revisions = await Promise.all(nodes.map((node) => installedRevision(node)));
  const at = revisions.findIndex((revision) => revision === undefined || revision < LIBRARY_REVISION);
  if (at < 0) return undefined;
  const node = nodes[at] as Redis;
  const revision = revisions[at];
  const how = deployArgs(node, connection);
  if (revision === undefined) return new LibraryMissingError(serverAddress(node), LIBRARY_REVISION, how);
  return new LibraryOutdatedError(serverAddress(node), revision, LIBRARY_REVISION, how);
}

async function installedCode(node: Redis): Promise<string | undefined> {
  const reply = (await ask(node, 'FUNCTION', 'LIST', 'LIBRARYNAME', LIBRARY_NAME, 'WITHCODE')) as unknown[][];
  for (const library of reply) {
    for (let i = 0; i + 1 < library.length; i += 2) {
      if (library[i] === 'library_code') return String(library[i + 1]);
    }
  }
  return undefined;
}

async function load(node: Redis, replace: boolean): Promise<void> {
  try {
    await (replace ? ask(node, 'FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE) : ask(node, 'FUNCTION', 'LOAD', LIBRARY_CODE));
  } catch (error) {
    // Another deployer may have loaded it first: fine when it is there now (the caller
    // checks that it is not older). The server is asked rather than its words read.
    if ((await installedRevision(node).catch(() => undefined)) === undefined) throw (await functionsUnsupported(node)) ?? error;
  }
}

/** Loads or upgrades the library on one server; idempotent; refuses to downgrade. */
export async function deployToServer(node: Redis): Promise<DeployResult> {
  const installed = await installedRevision(node);
  const result = (action: DeployAction): DeployResult => ({
    server: serverAddress(node),
    action,
    installed,
    shipped: LIBRARY_REVISION,
  });
  if (installed === undefined) {
    await load(node, false);
    const now = await installedRevision(node);
    if (now !== undefined && now > LIBRARY_REVISION) return result('refused');
    return result('loaded');
  }
  if (installed > LIBRARY_REVISION) return result('refused');
  if (installed < LIBRARY_REVISION) {
    await load(node, true);
    return result('upgraded');
  }
  if ((await installedCode(node)) === LIBRARY_CODE) return result('unchanged');
  await load(node, true);
  return result('replaced');
}

/** Deploys to every primary of the connection. */
export async function deployLibrary(connection: Connection): Promise<DeployResult[]> {
  return Promise.all(primaries(connection).map((node) => deployToServer(node)));
}

/**
 * Makes sure every primary has this package's revision or a newer one. With `load`, a
 * missing or older library is loaded; without, start() fails with instructions.
 */
export async function verifyLibrary(connection: Connection, loadIfNeeded: boolean): Promise<void> {
  await Promise.all(
    primaries(connection).map(async (node) => {
      const installed = await installedRevision(node);
      if (installed !== undefined && installed >= LIBRARY_REVISION) return;
      if (loadIfNeeded) {
        await deployToServer(node);
        return;
      }
      const how = deployArgs(node, connection);
      if (installed === undefined) {
        throw (await functionsUnsupported(node)) ?? new LibraryMissingError(serverAddress(node), LIBRARY_REVISION, how);
      }
      throw new LibraryOutdatedError(serverAddress(node), installed, LIBRARY_REVISION, how);
    }),
  );
}
