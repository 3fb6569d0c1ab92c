import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { deployToServer } from '../../src/library.js';
import { LIBRARY_REVISION } from '../../src/shipped-library.js';
import { ownRedis } from '../support/own-redis.js';
import { freePort } from '../../harness/redis-server.js';

const root = new URL('../../', import.meta.url);
const source = readFileSync(new URL('lua/zenvark_v1.lua', root), 'utf8');
const own = ownRedis();

function deploy(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const { REDIS_URL: _ignored, ...rest } = process.env;
    execFile(
      process.execPath,
      ['--import', 'tsx', 'scripts/deploy-functions.ts', ...args],
      { cwd: root, env: { ...rest, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, out: `${stdout}${stderr}` }),
    );
  });
}

const withRevision = (n: number) => source.replace(/^local REVISION = \d+$/m, `local REVISION = ${n}`);

describe('scripts/deploy-functions', () => {
  it('loads a missing library, then has nothing to do; --check tells both apart', async () => {
    await own.admin.function('FLUSH');
    expect(await deploy(['--check', '--url', own.server.url])).toMatchObject({ code: 1, out: expect.stringContaining('zenvark_v1 is not loaded') });
    expect(await deploy(['--url', own.server.url])).toMatchObject({
      code: 0,
      out: expect.stringContaining(`loaded zenvark_v1 revision ${LIBRARY_REVISION} (it was missing)`),
    });
    expect(await deploy([], { REDIS_URL: own.server.url })).toMatchObject({ code: 0, out: expect.stringContaining('nothing to do') });
    expect(await deploy(['--check', '--url', own.server.url])).toMatchObject({
      code: 0,
      out: expect.stringContaining(`zenvark_v1 revision ${LIBRARY_REVISION} (this package ships ${LIBRARY_REVISION})`),
    });
  });

  it('deployers racing on an empty server all succeed: the one that loses finds the library there', async () => {
    await own.admin.function('FLUSH');
    const nodes = Array.from({ length: 4 }, () => own.server.client());
    await Promise.all(nodes.map((node) => node.ping()));
    // All four ask at once, hear "missing" and load: all but one are refused, and ask again.
    const results = await Promise.all(nodes.map((node) => deployToServer(node)));
    for (const r of results) expect(['loaded', 'unchanged']).toContain(r.action);
    expect(Number(await own.admin.call('FCALL_RO', 'zv1_revision', '0'))).toBe(LIBRARY_REVISION);
  });

  it('upgrades an older revision', async () => {
    await own.admin.function('LOAD', 'REPLACE', withRevision(0));
    expect(await deploy(['--check', '--url', own.server.url])).toMatchObject({ code: 1, out: expect.stringContaining('revision 0 is older') });
    expect(await deploy(['--url', own.server.url])).toMatchObject({
      code: 0,
      out: expect.stringContaining(`upgraded zenvark_v1 from revision 0 to ${LIBRARY_REVISION}`),
    });
    expect(Number(await own.admin.call('FCALL_RO', 'zv1_revision', '0'))).toBe(LIBRARY_REVISION);
  });

  it('refuses to downgrade a newer revision', async () => {
    await own.admin.function('LOAD', 'REPLACE', withRevision(LIBRARY_REVISION + 5));
    expect(await deploy(['--url', own.server.url])).toMatchObject({ code: 2, out: expect.stringContaining('refused') });
    expect(Number(await own.admin.call('FCALL_RO', 'zv1_revision', '0'))).toBe(LIBRARY_REVISION + 5);
    expect((await deploy(['--check', '--url', own.server.url])).code).toBe(0);
  });

  it('says what is wrong with its arguments or the server', async () => {
    expect(await deploy([])).toMatchObject({ code: 3, out: expect.stringContaining('no server given: pass --url or set REDIS_URL') });
    expect(await deploy(['--bogus'])).toMatchObject({ code: 3, out: expect.stringContaining("Unknown option '--bogus'") });
    const port = await freePort();
    expect(await deploy(['--url', `redis://127.0.0.1:${port}`])).toMatchObject({ code: 3, out: expect.stringContaining('ECONNREFUSED') });
  });
});
