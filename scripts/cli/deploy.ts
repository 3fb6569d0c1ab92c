/**
 * `zenvark deploy-functions` (also the `zenvark-deploy-functions` command): loads or
 * upgrades the zenvark_v1 function library on every primary of a Redis server or cluster
 * (a URL naming any node of a cluster deploys to all its primaries). Idempotent; never
 * replaces a newer revision with an older one. With --check it only reads each primary's
 * revision.
 */
import type { Cluster, Redis } from 'ioredis';
import {
  LIBRARY_NAME,
  LIBRARY_REVISION,
  type DeployResult,
  deployToServer,
  functionsUnsupported,
  installedRevision,
  primaries,
} from '../../src/library.js';
import { serverAddress } from '../../src/redis-failure.js';
import { EXIT, type ExitCode } from './exit.js';
import type { Output } from './output.js';

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

/** The revision on one primary, one line; whether it is current. */
async function check(node: Redis, out: Output): Promise<boolean> {
  const server = serverAddress(node);
  const installed = await installedRevision(node);
  if (installed === undefined) {
    const unsupported = await functionsUnsupported(node);
    if (unsupported) throw unsupported;
    out.say(`${server}: ${LIBRARY_NAME} is not loaded (this package ships revision ${LIBRARY_REVISION})`);
    return false;
  }
  if (installed < LIBRARY_REVISION) {
    out.say(`${server}: ${LIBRARY_NAME} revision ${installed} is older than this package's ${LIBRARY_REVISION}`);
    return false;
  }
  out.say(`${server}: ${LIBRARY_NAME} revision ${installed} (this package ships ${LIBRARY_REVISION})`);
  return true;
}

/** Deploys to (or with `checkOnly` reads) every primary of `connection`, one line each. */
export async function deployFunctions(connection: Redis | Cluster, checkOnly: boolean, out: Output): Promise<ExitCode> {
  let status: ExitCode = EXIT.DONE;
  for (const node of primaries(connection)) {
    if (checkOnly) {
      if (!(await check(node, out))) status = EXIT.NOT_FOUND;
      continue;
    }
    const result = await deployToServer(node);
    out.say(`${serverAddress(node)}: ${describe(result)}`);
    if (result.action === 'refused') status = EXIT.REFUSED;
  }
  return status;
}
