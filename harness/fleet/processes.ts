/**
 * Breaker instances in child processes (harness/fleet/worker.ts), for the fleet tests and
 * the fleet benchmarks.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BreakerStats } from '../../src/index.js';
import { sleep } from '../clock.js';
import type { WorkerCommand, WorkerConfig, WorkerEvent } from './worker.js';

const workerPath = fileURLToPath(new URL('./worker.ts', import.meta.url));

type Command = WorkerCommand extends infer C ? (C extends { seq: number } ? Omit<C, 'seq'> : never) : never;
type Event<T extends WorkerEvent['type']> = Extract<WorkerEvent, { type: T }>;

export class Worker {
  readonly events: WorkerEvent[] = [];
  readonly exited: Promise<void>;
  private readonly child: ChildProcess;
  private seq = 0;
  private readonly waiting = new Map<number, (result: unknown) => void>();
  private wakers: (() => void)[] = [];

  constructor(readonly config: WorkerConfig) {
    this.child = fork(workerPath, [], {
      execArgv: ['--import', 'tsx', '--unhandled-rejections=strict'],
      env: { ...process.env, ZV_WORKER: JSON.stringify(config) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (event: WorkerEvent) => {
      if (event.type === 'done') {
        this.waiting.get(event.seq)?.(event.result);
        this.waiting.delete(event.seq);
        return;
      }
      this.events.push(event);
      for (const wake of this.wakers.splice(0)) wake();
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  get name(): string {
    return this.config.instanceId;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends a command; resolves with the worker's answer. */
  send(command: Command): Promise<unknown> {
    this.seq += 1;
    const seq = this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, resolve);
      this.child.send({ ...command, seq } as WorkerCommand, (error) => {
        if (error) reject(error);
      });
    });
  }

  of<T extends WorkerEvent['type']>(type: T): Event<T>[] {
    return this.events.filter((e): e is Event<T> => e.type === type);
  }

  /** The first event of `type` from index `from` on that matches, waiting for it. */
  async next<T extends WorkerEvent['type']>(
    type: T,
    from = 0,
    match: (e: Event<T>) => boolean = () => true,
    timeoutMs = 30_000,
  ): Promise<Event<T>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.slice(from).find((e): e is Event<T> => e.type === type && match(e as Event<T>));
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`${this.name}: no '${type}' event within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.wakers.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The role this worker reported last. */
  get role(): string {
    return this.of('role').at(-1)?.role ?? 'follower';
  }

  get state(): string {
    return this.of('state').at(-1)?.state ?? 'closed';
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Stops the breaker and the process; resolves with the breaker's stats after its stop
   * (undefined when the process was gone). */
  async stop(): Promise<BreakerStats | undefined> {
    if (!this.alive) return undefined;
    const stats = await Promise.race([this.send({ cmd: 'stop' }) as Promise<BreakerStats>, this.exited.then(() => undefined)]);
    await this.exited;
    return stats;
  }
}

/** Starts `size` workers of one breaker; rejects as soon as one cannot start. */
export async function startWorkers(size: number, config: Omit<WorkerConfig, 'instanceId'>): Promise<Worker[]> {
  const workers = Array.from({ length: size }, (_, n) => new Worker({ ...config, instanceId: `proc-${n}` }));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const failed = workers.find((w) => !w.alive || w.of('error').length > 0);
    if (failed) {
      for (const w of workers) w.kill('SIGKILL');
      throw new Error(`${failed.name} could not start: ${JSON.stringify(failed.of('error'))}`);
    }
    if (workers.every((w) => w.of('ready').length > 0)) return workers;
    if (Date.now() > deadline) throw new Error('workers did not start within 60 s');
    await sleep(20);
  }
}

/** The earliest event of `type` any of the workers reports after its index in `from`. */
export async function firstAmong<T extends WorkerEvent['type']>(
  workers: Worker[],
  type: T,
  from: number[],
  timeoutMs = 30_000,
): Promise<{ worker: Worker; event: Event<T> }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = workers.flatMap((worker, n) =>
      worker.events
        .slice(from[n])
        .filter((e): e is Event<T> => e.type === type)
        .map((event) => ({ worker, event })),
    );
    const at = (e: WorkerEvent) => ('at' in e ? e.at : 0);
    const earliest = seen.sort((a, b) => at(a.event) - at(b.event))[0];
    if (earliest) return earliest;
    if (Date.now() > deadline) throw new Error(`no '${type}' event within ${timeoutMs} ms`);
    await sleep(5);
  }
}

/** Waits until exactly one of the workers is the leader. */
export async function leaderAmong(workers: Worker[], timeoutMs = 15_000): Promise<Worker> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const leaders = workers.filter((w) => w.alive && w.role === 'leader');
    if (leaders.length === 1) return leaders[0] as Worker;
    if (Date.now() > deadline) throw new Error(`expected one leader, found ${leaders.length}`);
    await sleep(10);
  }
}
