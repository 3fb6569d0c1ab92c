/**
 * What start() says when it cannot run: a server that is down, refused credentials (in the
 * URL, in the options, a user:password URL, none given), an ACL without a right start()
 * needs, a server without Redis Functions. Each is a ZenvarkError with its code, names the
 * server by host:port, comes at once where waiting cannot help, never shows a password
 * (not in its message, not in what util.inspect or console.error print of it and its
 * causes), and leaves nothing running: a process whose start() failed exits by itself.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type RedisServer, disposeRedis, freePort, startRedis } from '../../harness/redis-server.js';
import {
  type CircuitBreakerOptions,
  FunctionsUnsupportedError,
  RedisAuthError,
  RedisRefusedError,
  RedisUnreachableError,
  ZenvarkError,
} from '../../src/index.js';
import { driverError } from '../../src/redis-failure.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { createUser } from '../support/acl.js';
import { type Instance, errorCodes, instance, stopAll, uniqueId } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';
import { printedByConsoleError } from '../support/printed.js';

const root = new URL('../../', import.meta.url);
const secret = (label: string) => `${label}-${randomBytes(8).toString('hex')}`;
/** The password of the server started with --requirepass, and one that is not. */
const PASSWORD = secret('right');
const WRONG = secret('wrong');
const NO_FUNCTIONS = ['--rename-command', 'FUNCTION', '', '--rename-command', 'FCALL', '', '--rename-command', 'FCALL_RO', ''];

// A server with the library, for ACL users.
const own = ownRedis({ library: true });
let guarded: RedisServer;
let guardedAdmin: Redis;
let bare: RedisServer;

beforeAll(async () => {
  [guarded, bare] = await Promise.all([startRedis({ args: ['--requirepass', PASSWORD] }), startRedis({ args: NO_FUNCTIONS })]);
  guardedAdmin = guarded.client();
  await guardedAdmin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
});

afterAll(async () => {
  await Promise.all([guarded, bare].filter(Boolean).map((server) => disposeRedis(server)));
});

/** Neither the message, nor util.inspect, nor console.error shows any of `secrets`. */
function expectNoSecret(error: unknown, ...secrets: string[]): void {
  const shown = [(error as Error).message, inspect(error, { depth: 10 }), printedByConsoleError(error)];
  for (const text of shown) for (const s of secrets) expect(text).not.toContain(s);
}

/** What start() threw, for one breaker on its own client. */
async function startFailure(url: string, options: Partial<RedisOptions> = {}, breaker: Partial<CircuitBreakerOptions> = {}): Promise<ZenvarkError> {
  const i = instance(url, { id: uniqueId(), loadFunctions: false, ...breaker }, new Redis(url, options));
  try {
    const error = await i.breaker.start().then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ZenvarkError);
    return error as ZenvarkError;
  } finally {
    await stopAll([i]);
  }
}

/** Failed authentications the server logged since the last ACL LOG RESET. */
async function failedLogins(admin: Redis): Promise<number> {
  const entries = (await admin.call('ACL', 'LOG')) as unknown[][];
  let count = 0;
  for (const entry of entries) {
    const fields = new Map<unknown, unknown>();
    for (let n = 0; n + 1 < entry.length; n += 2) fields.set(entry[n], entry[n + 1]);
    if (fields.get('reason') === 'auth') count += Number(fields.get('count'));
  }
  return count;
}

const at = (server: RedisServer) => `127\\.0\\.0\\.1:${server.port}`;

describe('start() fails with a ZenvarkError that says why', () => {
  it('a server that is down: ZV_REDIS_UNREACHABLE after the 5 s wait, naming host:port and why', async () => {
    const port = await freePort();
    const error = await startFailure(`redis://127.0.0.1:${port}`);
    expect(error).toBeInstanceOf(RedisUnreachableError);
    expect(error.code).toBe('ZV_REDIS_UNREACHABLE');
    expect(error.message).toBe(
      `Redis at 127.0.0.1:${port} is not reachable (connection refused); start() gave up after 5000 ms — check the address and that the server is up`,
    );
    expect((error.cause as { code?: string }).code).toBe('ECONNREFUSED');
  });

  it('a wrong password in the URL: ZV_AUTH_FAILED at once (not retried until the wait ends), no password shown', async () => {
    await guardedAdmin.call('ACL', 'LOG', 'RESET');
    const error = await startFailure(`redis://:${WRONG}@127.0.0.1:${guarded.port}`);
    expect(error).toBeInstanceOf(RedisAuthError);
    expect(error.code).toBe('ZV_AUTH_FAILED');
    expect(error.message).toMatch(new RegExp(`^authentication to Redis at ${at(guarded)} failed \\(WRONGPASS\\): the server refused user 'default'`));
    expectNoSecret(error, WRONG, PASSWORD);
    // The driver's error is kept, redacted: its command's name, not its arguments.
    expect(error.cause).toMatchObject({ name: 'ReplyError', command: { name: 'hello' } });
    // One attempt per connection: retrying until the 5 s wait ends would make many more.
    expect(await failedLogins(guardedAdmin)).toBeLessThanOrEqual(4);
  });

  it('a wrong password in the options, the same', async () => {
    const error = await startFailure(guarded.url, { password: WRONG });
    expect(error).toBeInstanceOf(RedisAuthError);
    expect(error.message).toMatch(/failed \(WRONGPASS\)/);
    expectNoSecret(error, WRONG, PASSWORD);
  });

  it('a user:password URL with a wrong password names the user, not the password', async () => {
    const right = secret('alice');
    await guardedAdmin.call('ACL', 'SETUSER', 'alice', 'reset', 'on', `>${right}`, '~*', '&*', '+@all');
    const error = await startFailure(`redis://alice:${WRONG}@127.0.0.1:${guarded.port}`);
    expect(error).toBeInstanceOf(RedisAuthError);
    expect(error.message).toContain("the server refused user 'alice' with the password given");
    expectNoSecret(error, WRONG, right, PASSWORD);
  });

  it('no password where one is required: ZV_AUTH_FAILED (NOAUTH)', async () => {
    const error = await startFailure(guarded.url);
    expect(error).toBeInstanceOf(RedisAuthError);
    expect(error.message).toMatch(new RegExp(`^authentication to Redis at ${at(guarded)} failed \\(NOAUTH\\): the server requires a password`));
  });

  it.each([false, true])('a server without Redis Functions (loadFunctions: %s): ZV_FUNCTIONS_UNSUPPORTED, naming what it lacks and the minimum', async (loadFunctions) => {
    const error = await startFailure(bare.url, {}, { loadFunctions });
    expect(error).toBeInstanceOf(FunctionsUnsupportedError);
    expect(error.code).toBe('ZV_FUNCTIONS_UNSUPPORTED');
    expect(error.message).toMatch(
      new RegExp(
        `^Redis at ${at(bare)} has no Redis Functions: FUNCTION, FCALL, FCALL_RO are not commands there \\(it reports (?:redis|valkey)_version [\\d.]+\\); ` +
          'Zenvark needs Redis 7\\.0 or later, or Valkey 7\\.2 or later$',
      ),
    );
  });

  it.each([
    ['+fcall_ro', 'FCALL_RO'],
    ['+subscribe', 'SUBSCRIBE'],
  ])('an ACL without %s: ZV_NOPERM naming %s and the user, no password shown', async (rule, command) => {
    const url = await createUser(own.admin, own.server, 'app', rule);
    const { username, password } = new URL(url);
    const error = await startFailure(url);
    expect(error).toBeInstanceOf(RedisRefusedError);
    expect(error.code).toBe('ZV_NOPERM');
    expect(error.message).toMatch(new RegExp(`^Redis at ${at(own.server)} refused ${command} for user '${username}' \\(NOPERM `));
    expect(error.message).toContain('Least privilege');
    expectNoSecret(error, password);
  });
});

/** Runs test/support/failed-start.ts in a process of its own. */
function failedStart(scenario: { url: string; options?: Partial<RedisOptions>; loadFunctions?: boolean }): Promise<{
  exit: number | string | null;
  result: { code?: string; message?: string; inspected: string; printed: string; active: string[] };
  exitMs: number | undefined;
  output: string;
}> {
  return new Promise((resolve) => {
    const { REDIS_URL: _ignored, ...env } = process.env;
    execFile(
      process.execPath,
      ['--import', 'tsx', 'test/support/failed-start.ts', JSON.stringify(scenario)],
      // Generous: a process that lingers is killed at this limit, and fails the test.
      { cwd: root, env, timeout: 30_000 },
      (error, stdout, stderr) => {
        const lines = stdout.trim().split('\n').filter(Boolean);
        resolve({
          exit: error ? (error.code ?? error.signal ?? null) : 0,
          result: JSON.parse(lines[0] ?? '{}'),
          exitMs: lines[1] ? (JSON.parse(lines[1]) as { exitMs: number }).exitMs : undefined,
          output: `${stdout}${stderr}`,
        });
      },
    );
  });
}

describe('a failed start() leaves nothing running: the process exits by itself', () => {
  const scenarios: [string, () => Promise<{ url: string; options?: Partial<RedisOptions> }>, string][] = [
    ['a closed port', async () => ({ url: `redis://127.0.0.1:${await freePort()}` }), 'ZV_REDIS_UNREACHABLE'],
    ['a wrong password', async () => ({ url: `redis://:${WRONG}@127.0.0.1:${guarded.port}` }), 'ZV_AUTH_FAILED'],
    ['a server without functions', async () => ({ url: bare.url }), 'ZV_FUNCTIONS_UNSUPPORTED'],
    ['an ACL without FCALL_RO', async () => ({ url: await createUser(own.admin, own.server, 'app', '+fcall_ro') }), 'ZV_NOPERM'],
  ];

  it.each(scenarios)('%s', async (_name, scenario, code) => {
    const { url, options } = await scenario();
    const run = await failedStart({ url, options });
    expect(run.exit, run.output).toBe(0);
    expect(run.result.code, run.output).toBe(code);
    // Right after the rejection: no timer, no socket (the pipes are stdout and stderr).
    expect(run.result.active.filter((name) => !['PipeWrap', 'TTYWrap'].includes(name))).toEqual([]);
    expect(run.exitMs, run.output).toBeTypeOf('number');
    const password = new URL(url).password;
    for (const text of [run.result.message ?? '', run.result.inspected, run.result.printed]) {
      if (password) expect(text).not.toContain(password);
      expect(text).not.toContain(PASSWORD);
    }
  });
});

describe("the driver's words are translated", () => {
  it('a command sent while the connection is down: "the connection to host:port is down", with the driver\'s error as the cause', async () => {
    const port = await freePort();
    const down = new Redis({ port, host: '127.0.0.1', enableOfflineQueue: false, retryStrategy: () => 100 });
    down.on('error', () => {});
    try {
      const raw = await down.get('any').catch((error: unknown) => error);
      const error = driverError(raw, down) as ZenvarkError;
      expect(error).toBeInstanceOf(RedisUnreachableError);
      expect(error.message).toBe(`the connection to 127.0.0.1:${port} is down`);
      expect(error.cause).toBeInstanceOf(Error);
    } finally {
      down.disconnect();
    }
  });

  it("a Redis that goes away is reported once, in Zenvark's words, naming host:port", async () => {
    const server = await startRedis();
    let i: Instance | undefined;
    try {
      i = instance(server.url, { id: uniqueId() });
      await i.breaker.start();
      await server.stop({ kill: true });
      await i.breaker.execute(async () => Promise.reject(new Error('dependency failed'))).catch(() => undefined);
      await vi.waitFor(() => expect(errorCodes(i as Instance)).toContain('ZV_REDIS_UNREACHABLE'), { timeout: 10_000 });
      const report = i.seen.errors.find((e) => (e as ZenvarkError).code === 'ZV_REDIS_UNREACHABLE') as ZenvarkError;
      expect(report.message).toMatch(new RegExp(`the command connection to ${at(server)} (was lost|is down)`));
      expect(report.cause).toBeInstanceOf(RedisUnreachableError);
      for (const e of i.seen.errors) expect(e.message).not.toMatch(/enableOfflineQueue|Stream isn't writeable|Connection is closed/);
    } finally {
      if (i) await stopAll([i]);
      await disposeRedis(server);
    }
  });

  it('a reconnect refused for its password (rotated meanwhile) is told once as ZV_AUTH_FAILED, no password shown; its end as ZV_REDIS_RESTORED', async () => {
    const before = secret('before');
    const after = secret('after');
    const user = `rotating-${randomBytes(3).toString('hex')}`;
    await guardedAdmin.call('ACL', 'SETUSER', user, 'reset', 'on', `>${before}`, '~*', '&*', '+@all');
    const i = instance(`redis://${user}:${before}@127.0.0.1:${guarded.port}`, { id: uniqueId() });
    try {
      await i.breaker.start();
      await guardedAdmin.call('ACL', 'SETUSER', user, 'resetpass', `>${after}`);
      await guardedAdmin.call('CLIENT', 'KILL', 'USER', user);
      await vi.waitFor(() => expect(errorCodes(i)).toContain('ZV_AUTH_FAILED'), { timeout: 10_000 });
      const report = i.seen.errors.find((e) => (e as ZenvarkError).code === 'ZV_AUTH_FAILED') as ZenvarkError;
      expect(report.message).toMatch(new RegExp(`authentication to Redis at ${at(guarded)} failed \\(WRONGPASS\\): the server refused user '${user}'`));
      await guardedAdmin.call('ACL', 'SETUSER', user, `>${before}`);
      await vi.waitFor(() => expect(errorCodes(i)).toContain('ZV_REDIS_RESTORED'), { timeout: 10_000 });
      expect(errorCodes(i).filter((code) => code === 'ZV_AUTH_FAILED')).toHaveLength(1);
      for (const e of i.seen.errors) expectNoSecret(e, before, after);
    } finally {
      await stopAll([i]);
    }
  });
});
