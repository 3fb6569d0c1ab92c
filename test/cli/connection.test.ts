/**
 * How the zenvark command reaches Redis, and what it says when it cannot: an invalid URL,
 * a refused connection, a server that does not answer, a wrong password, an ACL refusal,
 * TLS with a certificate of a test CA. Each failure is one line on stderr, with its exit
 * code and no password, and none hangs.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServerProcess, SERVER_BINARY, disposeRedis, freePort, startRedis, startServer } from '../../harness/redis-server.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { createUser, createUserOn } from '../support/acl.js';
import { ownRedis } from '../support/own-redis.js';
import { recordCall, zenvark } from '../support/zenvark.js';

const own = ownRedis({ library: true });

describe('where Redis is', () => {
  it('an invalid URL: says so without its password, exit code 3', async () => {
    expect(await zenvark(['--url', 'http://127.0.0.1:6379', 'ls'])).toEqual({
      code: 3,
      stdout: '',
      stderr: 'error: not a Redis URL (redis://host:port, or rediss:// for TLS): http://127.0.0.1:6379\n',
    });
    const run = await zenvark(['--url', 'redis://:hunter2@127.0.0.1:port', 'ls']);
    expect(run).toEqual({
      code: 3,
      stdout: '',
      stderr: 'error: not a Redis URL (redis://host:port, or rediss:// for TLS): redis://:***@127.0.0.1:port\n',
    });
  });

  it('a refused connection: exit code 6', async () => {
    const port = await freePort();
    expect(await zenvark(['--url', `redis://127.0.0.1:${port}`, 'status', 'payments'])).toEqual({
      code: 6,
      stdout: '',
      stderr: `error: Redis at 127.0.0.1:${port} is not reachable (connection refused)\n`,
    });
  });

  it('a server that accepts the connection but does not answer: gives up, exit code 6', async () => {
    own.server.pause();
    try {
      expect(await zenvark(['--url', own.server.url, 'ls'])).toEqual({
        code: 6,
        stdout: '',
        stderr: `error: Redis at 127.0.0.1:${own.server.port} did not answer a new connection within 5000 ms\n`,
      });
    } finally {
      own.server.resume();
    }
  });

  it('the database of the URL', async () => {
    const prefix = `zvdb-${randomBytes(4).toString('hex')}`;
    const db3 = own.server.client({ db: 3 });
    await recordCall(db3, prefix, 'in-db-3', 'success');
    const list = async (url: string) => JSON.parse((await zenvark(['--url', url, '--prefix', prefix, '--json', 'ls'])).stdout) as { id: string }[];
    expect((await list(`${own.server.url}/3`)).map((row) => row.id)).toEqual(['in-db-3']);
    expect(await list(own.server.url)).toEqual([]);
  });
});

describe('credentials', () => {
  const password = `right-${randomBytes(8).toString('hex')}`;
  const wrong = `wrong-${randomBytes(8).toString('hex')}`;
  let guarded: Awaited<ReturnType<typeof startRedis>>;
  beforeAll(async () => {
    guarded = await startRedis({ args: ['--requirepass', password] });
    await guarded.client().call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
  });
  afterAll(async () => {
    if (guarded) await disposeRedis(guarded);
  });

  it.each([
    ['in the URL', () => ['--url', `redis://:${wrong}@127.0.0.1:${guarded.port}`], 'default'],
    ['given apart', () => ['--url', `redis://127.0.0.1:${guarded.port}`, '--password', wrong], 'default'],
    ['with a user, given apart', () => ['--url', `redis://127.0.0.1:${guarded.port}`, '--user', 'operator', '--password', wrong], 'operator'],
  ])('a wrong password %s: authentication failed, exit code 4, no password printed', async (_how, args, user) => {
    const run = await zenvark([...args(), 'ls']);
    expect(run).toEqual({
      code: 4,
      stdout: '',
      stderr:
        `error: authentication to Redis at 127.0.0.1:${guarded.port} failed (WRONGPASS): the server refused user '${user}' ` +
        "with the password given; check the username and password in the client's URL or options\n",
    });
    expect(`${run.stdout}${run.stderr}`).not.toContain(wrong);
  });

  it('no password where one is needed: exit code 4', async () => {
    const run = await zenvark(['--url', `redis://127.0.0.1:${guarded.port}`, 'ls']);
    expect(run).toMatchObject({ code: 4, stdout: '' });
    expect(run.stderr).toMatch(/^error: authentication to Redis at 127\.0\.0\.1:\d+ failed \(NOAUTH\)/);
  });

  it('the right password, in the URL or given apart: it reads', async () => {
    for (const args of [['--url', `redis://:${password}@127.0.0.1:${guarded.port}`], ['--url', `redis://127.0.0.1:${guarded.port}`, '--password', password]]) {
      expect(await zenvark([...args, 'ls']), args.join(' ')).toEqual({ code: 0, stdout: "no breakers under prefix 'zenvark'\n", stderr: '' });
    }
  });

  it("the observer user of the README's Least privilege, with +scan: ls, status and history read", async () => {
    const prefix = `zvobs-${randomBytes(4).toString('hex')}`;
    await recordCall(own.admin, prefix, 'payments', 'failure');
    const { username, password: secret } = await createUserOn([own.admin], 'observer', { add: [`%R~${prefix}:*`, '+scan'], unique: true });
    const url = `redis://${username}:${secret}@127.0.0.1:${own.server.port}`;
    for (const args of [['ls'], ['status', 'payments'], ['history', 'payments']]) {
      const run = await zenvark(['--url', url, '--prefix', prefix, '--json', ...args]);
      expect(run, args.join(' ')).toMatchObject({ code: 0, stderr: '' });
    }
  });

  it('an ACL that refuses a command: permission denied, naming it, exit code 4, no password printed', async () => {
    const url = await createUser(own.admin, own.server, 'observer', '+fcall_ro');
    const run = await zenvark(['--url', url, 'status', 'payments']);
    expect(run).toMatchObject({ code: 4, stdout: '' });
    expect(run.stderr).toMatch(new RegExp(`^error: Redis at 127\\.0\\.0\\.1:${own.server.port} refused FCALL_RO for user '${new URL(url).username}' \\(NOPERM `));
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).not.toContain(new URL(url).password);
  });
});

/**
 * A CA and a server certificate it signed for 127.0.0.1, made with openssl for this file;
 * a server that listens with TLS beside its plain port (which the harness checks it by).
 */
describe('TLS (rediss://)', () => {
  let dir: string;
  let tlsPort: number;
  let server: ServerProcess;
  /** Which binary serves TLS: SERVER_BINARY, or redis-server where that one was built without TLS. */
  let binary: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'zenvark-tls-'));
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=zenvark test CA');
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
    writeFileSync(join(dir, 'san.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.cnf');
    tlsPort = await freePort();
    const args = [
      '--tls-port', String(tlsPort), '--tls-cert-file', join(dir, 'server.pem'), '--tls-key-file', join(dir, 'server.key'),
      '--tls-ca-cert-file', join(dir, 'ca.pem'), '--tls-auth-clients', 'no',
    ];
    try {
      server = await startServer({ args });
      binary = SERVER_BINARY;
    } catch {
      // A server built without TLS (BUILD_TLS=no) refuses --tls-port: Debian's redis-server has it.
      server = await startServer({ args, binary: 'redis-server' });
      binary = 'redis-server';
    }
    const admin = server.client();
    await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
    await recordCall(admin, 'zenvark', 'over-tls', 'failure');
  }, 120_000);
  afterAll(async () => {
    if (server) await disposeRedis(server);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const tlsUrl = () => `rediss://127.0.0.1:${tlsPort}`;

  it('with the CA given by --cacert: it reads (or with --insecure, unverified)', async () => {
    console.info(`TLS served by ${binary}`);
    for (const trust of [['--cacert', join(dir, 'ca.pem')], ['--insecure']]) {
      const run = await zenvark(['--url', tlsUrl(), ...trust, '--json', 'ls']);
      expect(run, run.stderr).toMatchObject({ code: 0, stderr: '' });
      expect(JSON.parse(run.stdout)).toMatchObject([{ id: 'over-tls', state: 'open' }]);
    }
  });

  it("without the CA: the certificate is not trusted, says to pass --cacert, exit code 6", async () => {
    expect(await zenvark(['--url', tlsUrl(), 'ls'])).toEqual({
      code: 6,
      stdout: '',
      stderr:
        `error: TLS to Redis at 127.0.0.1:${tlsPort} failed (SELF_SIGNED_CERT_IN_CHAIN): self-signed certificate in certificate chain; ` +
        "pass --cacert <file> with the CA that signed the server's certificate\n",
    });
  });

  it('--cacert without rediss://, or a file that is not there: bad usage, exit code 3', async () => {
    expect(await zenvark(['--url', `redis://127.0.0.1:${tlsPort}`, '--cacert', join(dir, 'ca.pem'), 'ls'])).toEqual({
      code: 3,
      stdout: '',
      stderr: 'error: --cacert and --insecure are for TLS: use a rediss:// URL\n',
    });
    expect(await zenvark(['--url', tlsUrl(), '--cacert', join(dir, 'missing.pem'), 'ls'])).toEqual({
      code: 3,
      stdout: '',
      stderr: `error: cannot read --cacert ${join(dir, 'missing.pem')}: ENOENT\n`,
    });
  });
});
