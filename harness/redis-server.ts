/**
 * Real Redis servers for the tests and the benchmarks. A server is, in order of preference:
 *   - REDIS_URL, when set (only for the shared server; it cannot be stopped or paused);
 *   - a server process of our own on a free loopback port, from the binary that
 *     ZV_REDIS_SERVER names (default `redis-server`; a `valkey-server` works the same);
 *   - a Docker container through testcontainers, when ZV_REDIS_SERVER is not set, there is
 *     no redis-server binary, and a Docker engine answers.
 * Otherwise the tests fail with a message that says how to get Redis.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { sleep } from './clock.js';

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** A plain client for test assertions (authenticated, for a server started with `--requirepass`); closed by stop(). */
  client(options?: Partial<RedisOptions>): Redis;
  /** Stops the server (SIGTERM, or SIGKILL with `kill`) and forgets everything it held. */
  stop(options?: { kill?: boolean }): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  /** Freezes the server (SIGSTOP) until resume(). */
  pause(): void;
  resume(): void;
}

/** How a server process of our own is started. */
export interface ServerOptions {
  /** Further command-line options, `['--name', 'value', ...]`. */
  args?: string[];
  /**
   * Cluster mode: `--cluster-enabled yes`, the node's nodes.conf in its own dir (kept across
   * restarts, so a restarted node rejoins as itself) and a free port of its own for the
   * cluster bus (the default, port + 10000, can be out of range for a free port).
   */
  cluster?: boolean;
  /**
   * Runs the binary as a sentinel with this configuration, written to sentinel.conf in the
   * server's own dir (the sentinel rewrites it, and a restart reads it back).
   */
  sentinel?: string;
  /** The server binary, for a test that needs what SERVER_BINARY may lack (TLS). Default: SERVER_BINARY. */
  binary?: string;
}

/** A server process of our own. */
export interface ServerProcess extends RedisServer {
  /** The process id while it runs. */
  readonly pid: number | undefined;
  /** The port of its cluster bus, in cluster mode. */
  readonly busPort: number | undefined;
  /** Whether the process runs (paused or not). */
  readonly running: boolean;
  /** What the server has logged (level notice) since it was first started, for failure messages. */
  log(): string;
}

const HOST = '127.0.0.1';

/** The one place that names the server binary: every server process comes from it. */
export const SERVER_BINARY = process.env.ZV_REDIS_SERVER || 'redis-server';

/** What `SERVER_BINARY --version` prints, or undefined when it cannot be run. */
export function serverVersion(): string | undefined {
  try {
    return execFileSync(SERVER_BINARY, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return undefined;
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Waits until the redis-server with process id `pid` answers on `port`. Other suites on
 * the machine start servers too: a port can be taken between choosing it and binding it
 * (or between a stop and a restart), and then another process's server answers there.
 */
async function waitForServer(port: number, pid: number | undefined, password: string | undefined, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const probe = new Redis({ host: HOST, port, password, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    let info: string;
    try {
      await probe.connect();
      info = await probe.info('server');
    } catch (error) {
      lastError = error;
      await sleep(50);
      continue;
    } finally {
      probe.disconnect();
    }
    const answering = Number(/process_id:(\d+)/.exec(info)?.[1]);
    if (answering === pid) return;
    throw new Error(`port ${port} is answered by another redis-server (pid ${answering}), not ours (pid ${pid})`);
  }
  throw new Error(`redis-server on port ${port} did not answer within ${timeoutMs} ms: ${String(lastError)}`);
}

class ProcessServer implements ServerProcess {
  readonly host = HOST;
  private child: ChildProcess | undefined;
  private readonly clients: Redis[] = [];
  private readonly dir = mkdtempSync(join(tmpdir(), 'zenvark-redis-'));
  private readonly logFile = join(this.dir, 'server.log');
  private readonly modeArgs: string[] = [];

  /** The default user's password, when the server is started with `--requirepass`. */
  private readonly password: string | undefined;

  constructor(
    readonly port: number,
    private readonly options: ServerOptions,
    readonly busPort: number | undefined,
  ) {
    const extraArgs = options.args ?? [];
    const at = extraArgs.indexOf('--requirepass');
    this.password = at >= 0 ? extraArgs[at + 1] : undefined;
    if (options.sentinel !== undefined) {
      // The configuration file comes first, and must be writable: the sentinel rewrites it.
      const config = join(this.dir, 'sentinel.conf');
      writeFileSync(config, options.sentinel);
      this.modeArgs.push(config, '--sentinel');
    }
    if (busPort !== undefined) {
      this.modeArgs.push('--cluster-enabled', 'yes', '--cluster-config-file', join(this.dir, 'nodes.conf'), '--cluster-port', String(busPort));
    }
  }

  get url(): string {
    return `redis://${HOST}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    const child = this.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  async launch(): Promise<void> {
    const args = [
      ...this.modeArgs,
      '--port', String(this.port), '--bind', HOST, '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--daemonize', 'no', '--loglevel', 'notice', '--logfile', this.logFile, ...(this.options.args ?? []),
    ];
    const binary = this.options.binary ?? SERVER_BINARY;
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    this.child = child;
    tellReaper('+', child.pid);
    child.once('exit', () => tellReaper('-', child.pid));
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`${binary} exited with ${code} before answering`))),
    );
    exited.catch(() => {});
    await Promise.race([waitForServer(this.port, child.pid, this.password), exited]);
  }

  client(options: Partial<RedisOptions> = {}): Redis {
    const client = new Redis({ host: HOST, port: this.port, password: this.password, ...options });
    client.on('error', () => {});
    this.clients.push(client);
    return client;
  }

  async stop(options: { kill?: boolean } = {}): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGCONT');
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(options.kill ? 'SIGKILL' : 'SIGTERM');
    await exited;
  }

  async restart(): Promise<void> {
    await this.stop({ kill: true });
    await this.launch();
  }

  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** For process exit, where nothing asynchronous runs any more. */
  killNow(): void {
    this.child?.kill('SIGKILL');
  }

  async dispose(): Promise<void> {
    for (const client of this.clients.splice(0)) client.disconnect();
    await this.stop({ kill: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

class UrlServer implements RedisServer {
  readonly host: string;
  readonly port: number;
  private readonly clients: Redis[] = [];

  constructor(readonly url: string) {
    const parsed = new URL(url);
    this.host = parsed.hostname;
    this.port = Number(parsed.port || 6379);
  }

  client(options: Partial<RedisOptions> = {}): Redis {
    const client = new Redis(this.url, options);
    client.on('error', () => {});
    this.clients.push(client);
    return client;
  }

  async stop(): Promise<void> {
    for (const client of this.clients.splice(0)) client.disconnect();
  }

  restart(): Promise<void> {
    return Promise.reject(new Error(`cannot restart ${this.url}: it is not a server these tests started`));
  }

  pause(): void {
    throw new Error(`cannot pause ${this.url}: it is not a server these tests started`);
  }

  resume(): void {}
}

const started: ProcessServer[] = [];
// A test process that dies must not leave servers behind.
process.once('exit', () => {
  for (const server of started) server.killNow();
});

/**
 * Kills the servers after this process died where no 'exit' handler runs (a signal,
 * SIGKILL included): a shell, started with the first server, reads the process ids of
 * servers that start (`+ pid`) and end (`- pid`, so that it never kills a reused id) from
 * a pipe; when the pipe closes, this process is gone, and it kills the rest.
 */
const REAPER = `
pids=' '
while read -r op pid; do
  case $op in
    +) pids="$pids$pid " ;;
    -) pids=$(printf '%s' "$pids" | sed "s/ $pid / /") ;;
  esac
done
kill -9 $pids 2>/dev/null
`;
let reaper: ChildProcess | undefined;

function tellReaper(op: '+' | '-', pid: number | undefined): void {
  if (pid === undefined) return;
  if (!reaper) {
    reaper = spawn('sh', ['-c', REAPER], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    reaper.unref();
    reaper.stdin?.on('error', () => {});
    (reaper.stdin as unknown as { unref(): void } | null)?.unref();
  }
  reaper.stdin?.write(`${op} ${pid}\n`);
}
const containers: { stop(): Promise<unknown> }[] = [];

async function startContainer(): Promise<RedisServer> {
  const { GenericContainer } = await import('testcontainers');
  const container = await new GenericContainer('redis:7.0').withExposedPorts(6379).start();
  containers.push(container);
  return new UrlServer(`redis://${container.getHost()}:${container.getMappedPort(6379)}`);
}

async function dockerReachable(): Promise<boolean> {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * A server process of our own from SERVER_BINARY, on free loopback ports, killed when this
 * process exits or dies. Ports can be taken by other suites between choosing and binding them: a
 * start that fails is tried again on other ports.
 */
export async function startServer(options: ServerOptions = {}): Promise<ServerProcess> {
  for (let attempt = 1; ; attempt += 1) {
    const server = new ProcessServer(await freePort(), options, options.cluster ? await freePort() : undefined);
    try {
      await server.launch();
      started.push(server);
      return server;
    } catch (error) {
      const log = server.log();
      await server.dispose();
      if (attempt >= 3) throw new Error(`${String(error)}; its log:\n${log.slice(-2000)}`, { cause: error });
    }
  }
}

/**
 * A Redis server of the tests' own. `shared` servers may come from REDIS_URL; others are
 * always our own processes (or containers), since tests stop, pause and restart them.
 */
export async function startRedis(options: { shared?: boolean; args?: string[] } = {}): Promise<RedisServer> {
  if (options.shared && process.env.REDIS_URL) return new UrlServer(process.env.REDIS_URL);
  if (serverVersion() !== undefined) return startServer({ args: options.args });
  if (process.env.ZV_REDIS_SERVER) {
    throw new Error(`ZV_REDIS_SERVER names ${SERVER_BINARY}, which cannot be run (\`${SERVER_BINARY} --version\` failed)`);
  }
  if (await dockerReachable()) return startContainer();
  throw new Error(
    'These tests need Redis 7: install redis-server (Debian/Ubuntu: `apt-get install redis-server`), ' +
      'set ZV_REDIS_SERVER to the path of a redis-server or valkey-server binary, ' +
      'set REDIS_URL to a Redis 7 server you can flush, or run a Docker engine for testcontainers.',
  );
}

/** Stops every server started by this process. */
export async function stopAllRedis(): Promise<void> {
  await Promise.all(started.splice(0).map((s) => s.dispose()));
  await Promise.all(containers.splice(0).map((c) => c.stop()));
}

/** Stops one server started by startRedis. */
export async function disposeRedis(server: RedisServer): Promise<void> {
  const index = started.indexOf(server as ProcessServer);
  if (index >= 0) {
    started.splice(index, 1);
    await (server as ProcessServer).dispose();
  } else {
    await server.stop();
  }
}
