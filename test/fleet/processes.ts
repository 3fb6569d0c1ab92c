import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { WorkerCommand, WorkerConfig, WorkerEvent } from './worker.js';

const workerPath = fileURLToPath(new URL('./worker.ts', import.meta.url));

type Command = WorkerCommand extends infer C ? (C extends { seq: number } ? Omit<C, 'seq'> : never) : never;

/** A breaker instance in a child process. */
export class Worker {
  readonly events: WorkerEvent[] = [];
  private readonly child: ChildProcess;
  private seq = 0;
  private readonly waiting = new Map<number, (result: unknown) => void>();
  readonly exited: Promise<void>;

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
      } else {
        this.events.push(event);
      }
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  get name(): string {
    return this.config.instanceId;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

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

  of<T extends WorkerEvent['type']>(type: T): Extract<WorkerEvent, { type: T }>[] {
    return this.events.filter((e): e is Extract<WorkerEvent, { type: T }> => e.type === type);
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

  async stop(): Promise<void> {
    if (!this.alive) return;
    await Promise.race([this.send({ cmd: 'stop' }), this.exited]);
    await this.exited;
  }
}
