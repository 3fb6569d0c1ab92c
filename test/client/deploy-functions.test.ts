import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployToServer } from '../../src/library.js';
import { LIBRARY_REVISION } from '../../src/shipped-library.js';
import { createUser } from '../support/acl.js';
import { deploy } from '../support/deploy-functions.js';
import { ownRedis } from '../support/own-redis.js';
import { type RedisServer, disposeRedis, freePort, startRedis } from '../../harness/redis-server.js';

const root = new URL('../../', import.meta.url);
const source = readFileSync(new URL('lua/zenvark_v1.lua', root), 'utf8');
const own = ownRedis();

const withRevision = (n: number) => source.replace(/^local REVISION = \d+$/m, `local REVISION = ${n}`);

describe('zenvark-deploy-functions (scripts/deploy-functions.ts)', () => {
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
    expect(await deploy([])).toEqual({ code: 3, out: 'error: no server given: pass --url or set REDIS_URL\n' });
    expect(await deploy(['--bogus'])).toEqual({ code: 3, out: "error: unknown option '--bogus'\n" });
    const port = await freePort();
    // Unreachable is 6 (it was 3, with bad usage, before the zenvark command).
    expect(await deploy(['--url', `redis://127.0.0.1:${port}`])).toEqual({
      code: 6,
      out: `error: Redis at 127.0.0.1:${port} is not reachable (connection refused)\n`,
    });
  });
});

describe('zenvark-deploy-functions against a server it cannot use', () => {
  const password = `right-${randomBytes(8).toString('hex')}`;
  const wrong = `wrong-${randomBytes(8).toString('hex')}`;
  let guarded: RedisServer;
  let bare: RedisServer;
  beforeAll(async () => {
    [guarded, bare] = await Promise.all([
      startRedis({ args: ['--requirepass', password] }),
      startRedis({ args: ['--rename-command', 'FUNCTION', '', '--rename-command', 'FCALL', '', '--rename-command', 'FCALL_RO', ''] }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([guarded, bare].filter(Boolean).map((server) => disposeRedis(server)));
  });

  it.each([
    ['in the URL', () => `redis://:${wrong}@127.0.0.1:${guarded.port}`, 'default'],
    ['of a user:password URL', () => `redis://operator:${wrong}@127.0.0.1:${guarded.port}`, 'operator'],
  ])('a wrong password %s: authentication failed, exit code 4, no password printed', async (_where, url, user) => {
    for (const args of [['--url', url()], ['--url', url(), '--check'], ['--url', url(), '--cluster']]) {
      const run = await deploy(args);
      expect(run, args.join(' ')).toEqual({
        code: 4,
        out:
          `error: authentication to Redis at 127.0.0.1:${guarded.port} failed (WRONGPASS): the server refused user '${user}' ` +
          "with the password given; check the username and password in the client's URL or options\n",
      });
      expect(run.out).not.toContain(wrong);
      expect(run.out).not.toContain(password);
    }
  });

  it('--cluster against a server that is not a cluster node: it answered, but is no cluster node, exit code 5', async () => {
    expect(await deploy(['--url', own.server.url, '--cluster'])).toEqual({
      code: 5,
      out:
        `error: Redis at 127.0.0.1:${own.server.port} answered but is not a cluster node (cluster_enabled:0); ` +
        'run without --cluster to deploy to it alone\n',
    });
    // With the right password, it gets as far as the same answer, and shows no password.
    const run = await deploy(['--url', `redis://:${password}@127.0.0.1:${guarded.port}`, '--cluster']);
    expect(run).toMatchObject({ code: 5, out: expect.stringContaining('answered but is not a cluster node') });
    expect(run.out).not.toContain(password);
  });

  it('a server without Redis Functions: says so and names the minimum, exit code 5', async () => {
    for (const args of [['--url', bare.url], ['--url', bare.url, '--check']]) {
      const run = await deploy(args);
      expect(run.code, run.out).toBe(5);
      expect(run.out).toMatch(/^error: Redis at 127\.0\.0\.1:\d+ has no Redis Functions: FUNCTION, FCALL, FCALL_RO are not commands there/);
      expect(run.out).toContain('Zenvark needs Redis 7.0 or later, or Valkey 7.2 or later');
    }
  });

  it('a user whose ACL lacks a right it needs: permission denied, naming the command, exit code 4', async () => {
    const url = await createUser(own.admin, own.server, 'operator', '+function|load');
    await own.admin.function('FLUSH');
    const run = await deploy(['--url', url]);
    expect(run.code, run.out).toBe(4);
    expect(run.out).toMatch(new RegExp(`^error: Redis at 127\\.0\\.0\\.1:${own.server.port} refused FUNCTION for user '${new URL(url).username}' \\(NOPERM `));
    expect(run.out).not.toContain(new URL(url).password);
  });
});
