/**
 * The package as released before issue 12 (commit 3b69fa7, library revision 5), for tests
 * where its clients share Redis with today's. zenvark-previous.tgz beside this file is that
 * commit's `npm pack` (in `git worktree add /tmp/prev 3b69fa7`, node_modules linked) repacked
 * without maps, declarations and README: `tar -C <unpacked> --sort=name
 * --mtime=1985-10-26T08:15:00Z --owner=0 --group=0 --numeric-owner --exclude='*.map'
 * --exclude='*.d.ts' --exclude=README.md -cf - package | gzip -n9`, the same bytes every time.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as Zenvark from '../../src/index.js';

/**
 * What the tests use of the previous release, typed as today's package: its API is today's
 * without issue 12's additions, so a test must call only what revision 5 had.
 */
export type PreviousZenvark = Pick<
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

const TARBALL = fileURLToPath(new URL('zenvark-previous.tgz', import.meta.url));
/** Inside the repository, so that the package's `import 'ioredis'` finds the repository's. */
const CACHE = fileURLToPath(new URL('../../node_modules/.cache/zenvark-previous/', import.meta.url));

/**
 * The unpacked package, extracted once per tarball content: into a directory of its own,
 * renamed into place, so that test files loading it at once never see half of it.
 */
function unpacked(): string {
  const digest = createHash('sha256').update(readFileSync(TARBALL)).digest('hex').slice(0, 16);
  const dir = `${CACHE}${digest}`;
  if (existsSync(dir)) return dir;
  const scratch = `${dir}.${process.pid}`;
  mkdirSync(scratch, { recursive: true });
  execFileSync('tar', ['-xzf', TARBALL, '-C', scratch]);
  try {
    renameSync(scratch, dir);
  } catch (error) {
    // Another test process put its copy there first.
    rmSync(scratch, { recursive: true, force: true });
    if (!existsSync(dir)) throw error;
  }
  return dir;
}

let loaded: Promise<PreviousZenvark> | undefined;

/** The previous release's package, as an application that still depends on it imports it. */
export function previousZenvark(): Promise<PreviousZenvark> {
  loaded ??= import(pathToFileURL(`${unpacked()}/package/dist/src/index.js`).href) as Promise<PreviousZenvark>;
  return loaded;
}
