/**
 * Released packages, for tests where their clients share Redis with today's. Each fixture
 * beside this file, `zenvark-revision-<n>.tgz`, is the package as released at library
 * revision n:
 * - 5: commit 3b69fa7, before issue 12;
 * - 6: commit 97a137c, before issue 13 (e661298 packs to the same bytes: only .ci/ differs).
 *
 * Each is that commit's `npm pack` (in `git worktree add --detach /tmp/rev <commit>`,
 * node_modules linked: `npm pack` builds it) repacked without maps, declarations and
 * README: `tar -xzf zenvark-0.1.0.tgz -C <unpacked>`, then `tar -C <unpacked> --sort=name
 * --mtime=1985-10-26T08:15:00Z --owner=0 --group=0 --numeric-owner --exclude='*.map'
 * --exclude='*.d.ts' --exclude=README.md -cf - package | gzip -n9`, the same bytes every
 * time (remaking revision 5's this way gives its bytes again).
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as Zenvark from '../../src/index.js';

/** The library revisions a fixture is kept for. */
export type ReleasedRevision = 5 | 6;

/**
 * What the tests use of a released package, typed as today's package: its API is today's
 * without what came after it, so a test must call only what that release had.
 */
export type ReleasedZenvark = Pick<
  typeof Zenvark,
  | 'CircuitBreaker'
  | 'ConsecutiveBreaker'
  | 'CountBreaker'
  | 'ConstantBackoff'
  | 'CircuitOpenError'
  | 'explainBreaker'
  | 'deployLibrary'
  | 'LIBRARY_REVISION'
>;

/** Inside the repository, so that the package's `import 'ioredis'` finds the repository's. */
const CACHE = fileURLToPath(new URL('../../node_modules/.cache/zenvark-released/', import.meta.url));

/**
 * The unpacked package, extracted once per tarball content: into a directory of its own,
 * renamed into place, so that test files loading it at once never see half of it.
 */
function unpacked(revision: ReleasedRevision): string {
  const tarball = fileURLToPath(new URL(`zenvark-revision-${revision}.tgz`, import.meta.url));
  const digest = createHash('sha256').update(readFileSync(tarball)).digest('hex').slice(0, 16);
  const dir = `${CACHE}${digest}`;
  if (existsSync(dir)) return dir;
  const scratch = `${dir}.${process.pid}`;
  mkdirSync(scratch, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', scratch]);
  try {
    renameSync(scratch, dir);
  } catch (error) {
    // Another test process put its copy there first.
    rmSync(scratch, { recursive: true, force: true });
    if (!existsSync(dir)) throw error;
  }
  return dir;
}

const loaded = new Map<ReleasedRevision, Promise<ReleasedZenvark>>();

/** The package released at library revision `revision`, as an application that still depends on it imports it. */
export function releasedZenvark(revision: ReleasedRevision): Promise<ReleasedZenvark> {
  let zenvark = loaded.get(revision);
  if (!zenvark) {
    zenvark = import(pathToFileURL(`${unpacked(revision)}/package/dist/src/index.js`).href) as Promise<ReleasedZenvark>;
    loaded.set(revision, zenvark);
  }
  return zenvark;
}
