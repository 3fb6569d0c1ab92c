/**
 * Checks, loads and upgrades the function library on every primary. A server never gets
 * an older revision than the one it has.
 */
import { Cluster, type Redis } from 'ioredis';
import type { Connection } from './connections.js';
import { LibraryMissingError, LibraryOutdatedError } from './errors.js';
import { replyCode } from './redis-failure.js';
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

export function serverName(node: Redis): string {
  return `${node.options.host ?? 'localhost'}:${node.options.port ?? 6379}`;
}

/** The revision loaded on one server, or undefined when the library is not there. */
export async function installedRevision(node: Redis): Promise<number | undefined> {
  try {
    return Number(await node.fcall_ro('zv1_revision', 0));
  } catch (error) {
    // zv1_revision takes nothing and raises nothing: a plain ERR reply means the server
    // has no such function. Other codes (NOPERM, LOADING, ...) are not an answer.
    if (replyCode(error) === 'ERR') return undefined;
    throw error;
  }
}

/**
 * Whether a primary lacks the library or has an older revision than this package's: what
 * a function call that failed with a plain ERR reply is asked, since the reply's words
 * ("Function not found") are the server's to choose.
 */
export async function libraryMissingSomewhere(connection: Connection): Promise<boolean> {
  const revisions = await Promise.all(primaries(connection).map((node) => installedRevision(node)));
  return revisions.some((revision) => revision === undefined || revision < LIBRARY_REVISION);
}

async function installedCode(node: Redis): Promise<string | undefined> {
  const reply = (await node.call('FUNCTION', 'LIST', 'LIBRARYNAME', LIBRARY_NAME, 'WITHCODE')) as unknown[][];
  for (const library of reply) {
    for (let i = 0; i + 1 < library.length; i += 2) {
      if (library[i] === 'library_code') return String(library[i + 1]);
    }
  }
  return undefined;
}

async function load(node: Redis, replace: boolean): Promise<void> {
  try {
    await (replace ? node.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE) : node.call('FUNCTION', 'LOAD', LIBRARY_CODE));
  } catch (error) {
    // Another deployer may have loaded it first: fine when it is there now (the caller
    // checks that it is not older). The server is asked rather than its words read.
    if ((await installedRevision(node).catch(() => undefined)) === undefined) throw error;
  }
}

/** Loads or upgrades the library on one server; idempotent; refuses to downgrade. */
export async function deployToServer(node: Redis): Promise<DeployResult> {
  const installed = await installedRevision(node);
  const result = (action: DeployAction): DeployResult => ({
    server: serverName(node),
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
      if (installed === undefined) throw new LibraryMissingError(serverName(node), LIBRARY_REVISION);
      throw new LibraryOutdatedError(serverName(node), installed, LIBRARY_REVISION);
    }),
  );
}
