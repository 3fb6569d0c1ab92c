/**
 * Starts, drives and stops every process of the demo, and keeps what they report: a
 * Redis server of its own (or the one at REDIS_URL) with the function library loaded
 * as an operator would, the flaky dependency, and one worker per slot (a worker that is
 * killed or crashes is replaced in its slot). The dashboard and the scenario read this
 * model; neither talks to a process itself.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LIBRARY_NAME, deployLibrary } from 'zenvark';
import { wallMs } from '../harness/clock.js';
import { type RedisServer, disposeRedis, startRedis } from '../harness/redis-server.js';
import { type AuditEntry, AuditLog } from './audit-log.js';
import type { DependencyCommand, DependencyReport } from './dependency.js';
import type { Tuning, WorkerCommand, WorkerReport, WorkerSettings } from './worker.js';

export const BREAKER_ID = 'demo-dependency';
export const FLEET_SIZE = 5;
/** Every step shows within seconds: the lease fails over within 2 s, the holder checks
 * the dependency's health every second while the circuit is open. */
export const TUNING: Tuning = { callIntervalMs: 50, threshold: 5, leaseTtlMs: 2_000, backoffMs: 1_000, timeoutMs: 1_000 };
/** A slot whose worker dies this often within CRASH_WINDOW_MS, unasked, ends the demo. */
const CRASH_LIMIT = 3;
const CRASH_WINDOW_MS = 60_000;
const RESTART_DELAY_MS = 500;
/** How long a process may take to stop when asked before it is killed. */
const STOP_GRACE_MS = 4_000;
const LOG_LINES = 200;
/** Rates are taken over the reports of about the last second. */
const RATE_SAMPLES = 5;

const root = fileURLToPath(new URL('../', import.meta.url));

function forkChild(file: string, env: Record<string, string> = {}): ChildProcess {
  return fork(fileURLToPath(new URL(file, import.meta.url)), [], {
    cwd: root,
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    // A process group of its own: a Ctrl-C in the terminal reaches the launcher alone,
    // which stops the children in order. Each child also ends when the launcher is gone.
    detached: true,
  });
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Asks a child to stop (or sends SIGTERM); kills it when it has not stopped in time. */
async function stopChild(child: ChildProcess, command?: WorkerCommand): Promise<void> {
  if (!alive(child)) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (command && child.connected) child.send(command, () => {});
  else child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

/** Totals reported over time, for a rate per second over about the last second. */
class Rate {
  private readonly samples: { at: number; value: number }[] = [];

  add(at: number, value: number): void {
    this.samples.push({ at, value });
    if (this.samples.length > RATE_SAMPLES) this.samples.shift();
  }

  get perSecond(): number {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last.at <= first.at) return 0;
    return ((last.value - first.value) * 1000) / (last.at - first.at);
  }
}

type StateReport = Extract<WorkerReport, { type: 'state' }>;

/** One worker process, as its reports describe it. */
export class WorkerView {
  readonly startedAt = wallMs();
  readyAt: number | undefined;
  exitedAt: number | undefined;
  /** Killed on purpose or stopped: not a crash. */
  expectedExit = false;
  state = 'starting';
  /** The state it read at start. */
  joinedAs: string | undefined;
  role = 'follower';
  /** 'ok', or the code of the Redis failure it is degraded by. */
  redis = 'ok';
  /** How often it went into degraded mode. */
  degradations = 0;
  calls = 0;
  failures = 0;
  fastFails = 0;
  readonly callRate = new Rate();
  readonly checks = { ok: 0, failed: 0, last: undefined as { ok: boolean; at: number } | undefined };
  /** Every onStateChange, in order. */
  readonly changes: StateReport[] = [];
  /** When it saw each audit entry (wall ms), by entry id. */
  readonly seen = new Map<string, number>();
  /** Its last line of output or failure, for a crash report. */
  lastWords = '';

  constructor(
    readonly slot: number,
    readonly name: string,
    readonly child: ChildProcess,
  ) {}

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return alive(this.child);
  }
}

export interface LogLine {
  readonly at: number;
  readonly text: string;
  /** Worth a line of the script's log, not of the dashboard's short one. */
  readonly detail: boolean;
}

export class Launcher {
  redis: RedisServer | undefined;
  /** SIGSTOP needs a redis-server process of our own: not so with REDIS_URL. */
  canPause = !process.env.REDIS_URL;
  pausedUntil: number | undefined;
  dependencyPort: number | undefined;
  dependencyHealthy = true;
  readonly dependencyCalls = new Rate();
  readonly dependencyChecks = new Rate();
  /** Every worker started, in order; `slots` holds the current one of each slot. */
  readonly workers: WorkerView[] = [];
  readonly slots: (WorkerView | undefined)[] = Array.from({ length: FLEET_SIZE }, () => undefined);
  readonly audit: AuditEntry[] = [];
  readonly log: LogLine[] = [];
  private readonly announced = new Set<string>();
  private readonly crashes = new Map<number, number[]>();
  private dependency: ChildProcess | undefined;
  private auditLog: AuditLog | undefined;
  private pauseTimer: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;

  constructor(private readonly onLog: (line: LogLine) => void = () => {}) {}

  /** Where Redis is, without any credentials the URL may hold. */
  get redisAddress(): string {
    return this.redis ? `${this.redis.host}:${this.redis.port}` : 'starting';
  }

  note(text: string, detail = false): void {
    const line = { at: wallMs(), text, detail };
    this.log.push(line);
    if (this.log.length > LOG_LINES) this.log.shift();
    this.onLog(line);
  }

  /** Starts (or joins) Redis and loads the function library, as an operator would. */
  async startRedis(): Promise<void> {
    this.redis = await startRedis({ shared: true });
    const admin = this.redis.client();
    const [result] = await deployLibrary(admin);
    admin.disconnect();
    const own = this.canPause ? 'a redis-server of its own' : 'REDIS_URL: it cannot be paused';
    this.note(`Redis at ${this.redisAddress} (${own}); library ${LIBRARY_NAME} revision ${result?.shipped} ${result?.action}`);
  }

  /** Starts the dependency, follows the audit log and starts a worker in every slot. */
  async startFleet(): Promise<void> {
    const redis = this.redis;
    if (!redis) throw new Error('startRedis() first');
    try {
      this.dependencyPort = await this.startDependency();
    } catch (error) {
      if (this.stopping) return; // stopped while it started
      throw error;
    }
    this.auditLog = new AuditLog(redis.url, BREAKER_ID);
    this.auditLog.follow(
      (entry) => this.onAuditEntry(entry),
      (error) => this.note(`reading the audit log failed: ${error.message}`),
    );
    this.note(`following ${this.auditLog.key} (XREAD BLOCK)`);
    for (let slot = 0; slot < FLEET_SIZE; slot += 1) this.startWorker(slot);
  }

  private async startDependency(): Promise<number> {
    const child = forkChild('./dependency.ts');
    this.dependency = child;
    this.echo(child, 'dependency');
    const port = await new Promise<number>((resolve, reject) => {
      child.once('exit', (code, signal) => reject(new Error(`the dependency exited (${signal ?? code}) before listening`)));
      child.on('message', (report: DependencyReport) => {
        if (report.type === 'listening') resolve(report.port);
        else if (report.type === 'served') {
          const at = wallMs();
          this.dependencyCalls.add(at, report.work);
          this.dependencyChecks.add(at, report.health);
        }
      });
    });
    child.once('exit', (code, signal) => {
      if (this.stopping) return;
      // Nothing can go on without it: thrown like any other exception, it ends the demo
      // through run.ts's handler, which stops every process.
      throw new Error(`the dependency exited unexpectedly (${signal ?? `code ${code}`})`);
    });
    this.note(`dependency listening on 127.0.0.1:${port} (GET /work, GET /health), healthy`);
    return port;
  }

  private echo(child: ChildProcess, name: string, view?: WorkerView): void {
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        if (view) view.lastWords = line;
        this.note(`${name}: ${line}`, true);
      });
    }
  }

  private startWorker(slot: number): void {
    if (this.stopping || this.dependencyPort === undefined || !this.redis) return;
    const incarnation = this.workers.filter((w) => w.slot === slot).length + 1;
    const name = incarnation === 1 ? `w${slot + 1}` : `w${slot + 1}.${incarnation}`;
    const settings: WorkerSettings = {
      redisUrl: this.redis.url,
      dependencyUrl: `http://127.0.0.1:${this.dependencyPort}`,
      breakerId: BREAKER_ID,
      instanceId: name,
      tuning: TUNING,
    };
    const child = forkChild('./worker.ts', { ZV_DEMO_WORKER: JSON.stringify(settings) });
    const view = new WorkerView(slot, name, child);
    this.workers.push(view);
    this.slots[slot] = view;
    this.echo(child, name, view);
    child.on('message', (report: WorkerReport) => this.onReport(view, report));
    child.once('exit', (code, signal) => this.onExit(view, signal ?? `code ${code}`));
    this.note(`${name} started (pid ${child.pid})`, true);
  }

  private onExit(view: WorkerView, how: string): void {
    view.exitedAt = wallMs();
    view.state = 'exited';
    view.role = 'follower';
    this.checkReach();
    if (this.stopping) return;
    if (view.expectedExit) {
      this.startWorker(view.slot);
      return;
    }
    this.note(`${view.name} exited unexpectedly (${how})${view.lastWords ? `: ${view.lastWords}` : ''}`);
    const now = wallMs();
    const recent = (this.crashes.get(view.slot) ?? []).filter((at) => now - at < CRASH_WINDOW_MS);
    recent.push(now);
    this.crashes.set(view.slot, recent);
    if (recent.length >= CRASH_LIMIT) {
      // Thrown like any other exception, it ends the demo through run.ts's handler,
      // which stops every process.
      throw new Error(
        `slot w${view.slot + 1} crashed ${recent.length} times within ${CRASH_WINDOW_MS / 1000} s ` +
          `(last: ${view.name}, ${how}${view.lastWords ? `: ${view.lastWords}` : ''}); giving up`,
      );
    }
    setTimeout(() => this.startWorker(view.slot), RESTART_DELAY_MS);
  }

  private onReport(view: WorkerView, report: WorkerReport): void {
    switch (report.type) {
      case 'ready':
        view.readyAt = report.at;
        view.joinedAs = report.state;
        this.note(`${view.name} ready`, true);
        break;
      case 'tick':
        view.state = report.state;
        view.role = report.role;
        view.calls = report.calls;
        view.failures = report.failures;
        view.fastFails = report.fastFails;
        view.callRate.add(report.at, report.calls);
        break;
      case 'state':
        view.state = report.to;
        view.changes.push(report);
        if (report.id) {
          view.seen.set(report.id, report.at);
          this.checkReach();
        } else {
          this.note(`${view.name}: ${report.from} -> ${report.to} (${report.reason}), decided in the process, not audited`);
        }
        break;
      case 'role':
        if (report.role === 'leader') this.note(`${view.name} holds the lease`);
        else if (view.role === 'leader') this.note(`${view.name} no longer holds the lease`);
        view.role = report.role;
        break;
      case 'check':
        if (report.ok) view.checks.ok += 1;
        else view.checks.failed += 1;
        view.checks.last = { ok: report.ok, at: report.at };
        this.note(`${view.name}: ${report.checkType} health check ${report.ok ? 'passed' : 'failed'}`, true);
        break;
      case 'error':
        if (report.code === 'ZV_REDIS_RESTORED') view.redis = 'ok';
        else if (report.code === 'ZV_REDIS_UNREACHABLE' || report.code === 'ZV_REDIS_REFUSED') {
          if (view.redis === 'ok') view.degradations += 1;
          view.redis = report.code;
        }
        // The message's first clause says what failed; the rest is in the README.
        this.note(`${view.name}: ${report.code}: ${report.message.replace(`breaker '${BREAKER_ID}': `, '').split('; ')[0]}`);
        break;
      case 'failed':
        view.lastWords = report.message;
        break;
    }
  }

  private onAuditEntry(entry: AuditEntry): void {
    this.audit.push(entry);
    this.note(
      `audit ${entry.id}: ${entry.from} -> ${entry.to} (${entry.reason}), gen ${entry.generation}, by ${entry.actor}` +
        (entry.token ? ` with lease token ${entry.token}` : ''),
      true,
    );
    this.checkReach();
  }

  /**
   * How far an audit entry has got: the workers that saw it, of those that should (it
   * was written after they started, and they are alive or saw it before they died), and
   * the longest time from the entry's server time to a worker's onStateChange.
   */
  reach(entry: AuditEntry): { seen: number; expected: number; slowestMs: number; slowest: string } {
    let seen = 0;
    let expected = 0;
    let slowestMs = 0;
    let slowest = '';
    for (const worker of this.workers) {
      const at = worker.seen.get(entry.id);
      if (at !== undefined) {
        seen += 1;
        expected += 1;
        if (at - entry.time >= slowestMs) {
          slowestMs = at - entry.time;
          slowest = worker.name;
        }
      } else if (worker.alive && worker.readyAt !== undefined && worker.readyAt < entry.time) {
        expected += 1;
      }
    }
    return { seen, expected, slowestMs, slowest };
  }

  private checkReach(): void {
    for (const entry of this.audit) {
      if (this.announced.has(entry.id)) continue;
      const { seen, expected, slowestMs, slowest } = this.reach(entry);
      if (expected === 0 || seen < expected) continue;
      this.announced.add(entry.id);
      this.note(`${entry.to} (gen ${entry.generation}) reached all ${seen} workers within ${Math.round(slowestMs)} ms (${slowest} last)`);
    }
  }

  /** The current workers, alive. */
  live(): WorkerView[] {
    return this.slots.filter((w): w is WorkerView => w !== undefined && w.alive);
  }

  /** The live worker that last said it took the lease. */
  leaseHolder(): WorkerView | undefined {
    return this.live().find((w) => w.role === 'leader');
  }

  setDependency(healthy: boolean): void {
    this.dependencyHealthy = healthy;
    const command: DependencyCommand = { type: 'set', healthy };
    if (this.dependency?.connected) this.dependency.send(command, () => {});
    this.note(healthy ? 'dependency healed: it answers 200 again' : 'dependency broken: every request now answers 503');
  }

  /** SIGKILLs the lease holder (no release: the others take over when its lease expires);
   * a replacement starts in its slot. */
  killLeaseHolder(): WorkerView | undefined {
    const holder = this.leaseHolder();
    if (!holder) {
      const closed = this.live().every((w) => w.state === 'closed');
      this.note(`no worker holds the lease right now${closed ? ': a closed breaker has no duty that needs it (press b to break the dependency)' : ''}`);
      return undefined;
    }
    holder.expectedExit = true;
    holder.child.kill('SIGKILL');
    this.note(`killed ${holder.name} (pid ${holder.pid}), the lease holder, with SIGKILL; a replacement starts in its slot`);
    return holder;
  }

  /** Freezes Redis (SIGSTOP) for `ms`; false when it cannot. */
  pauseRedis(ms: number): boolean {
    if (!this.canPause || !this.redis) {
      this.note('cannot pause Redis: REDIS_URL is not a server the demo started');
      return false;
    }
    if (this.pausedUntil !== undefined) return false;
    try {
      this.redis.pause();
    } catch (error) {
      this.canPause = false;
      this.note(`cannot pause Redis: ${(error as Error).message}`);
      return false;
    }
    this.pausedUntil = wallMs() + ms;
    this.pauseTimer = setTimeout(() => this.resumeRedis(), ms);
    this.note(`Redis paused (SIGSTOP) for ${ms / 1000} s`);
    return true;
  }

  private resumeRedis(): void {
    clearTimeout(this.pauseTimer);
    this.pausedUntil = undefined;
    this.redis?.resume();
    this.note('Redis resumed (SIGCONT)');
  }

  /** Stops every process the demo started, in order; idempotent. */
  shutdown(): Promise<void> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  private async stopAll(): Promise<void> {
    if (this.pausedUntil !== undefined) this.resumeRedis();
    // Workers first, so that they can release the lease while Redis is there. One that has
    // not reported ready may not listen for messages yet (a message sent then is lost, and
    // the worker would start after the demo ended): SIGTERM ends it, whenever it comes.
    await Promise.all(this.workers.map((w) => stopChild(w.child, w.readyAt === undefined ? undefined : { type: 'stop' })));
    if (this.dependency) await stopChild(this.dependency);
    await this.auditLog?.stop();
    if (this.redis) await disposeRedis(this.redis);
  }

  /** For process exit, where nothing asynchronous runs any more (the harness kills its
   * redis-server on exit by itself). */
  killNow(): void {
    for (const child of [...this.workers.map((w) => w.child), this.dependency]) {
      if (child && alive(child)) child.kill('SIGKILL');
    }
  }
}
