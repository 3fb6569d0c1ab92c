/**
 * Runs the zenvark command (scripts/zenvark.ts) as an operator would, without REDIS_URL
 * unless given; and its long-running `watch`, as a process the test reads and stops.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import type { Cluster, Redis } from 'ioredis';
import { BreakerFunctions } from '../../src/functions.js';
import { breakerKeys, feedChannel } from '../../src/keys.js';

const root = new URL('../../', import.meta.url);

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The environment of a run: this process's, without REDIS_URL, plus `env`. */
function environment(env: Record<string, string>): NodeJS.ProcessEnv {
  const { REDIS_URL: _ignored, ...rest } = process.env;
  return { ...rest, ...env };
}

/** Runs `script` (a file of scripts/) with `args`; its exit code and what it printed. */
export function runScript(script: string, args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', `scripts/${script}`, ...args],
      { cwd: root, env: environment(env), timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
    );
  });
}

/** `zenvark <args>`. */
export function zenvark(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return runScript('zenvark.ts', args, env);
}

/** A running `zenvark watch`: what it printed so far, and how it ended. */
export interface Watching {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Its exit code, once it exited. */
  readonly exited: Promise<number>;
}

export function watchProcess(args: readonly string[]): Watching {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/zenvark.ts', ...args], {
    cwd: root,
    env: environment({}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 0))));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/**
 * Records one call's result for breaker `id` as an instance would (zv1_record, the strategy
 * one consecutive failure): a success creates a closed breaker, a failure opens it.
 */
export async function recordCall(redis: Redis | Cluster, prefix: string, id: string, result: 'success' | 'failure', actor = 'test-instance'): Promise<void> {
  const functions = new BreakerFunctions(redis, breakerKeys(prefix, id), feedChannel(prefix), actor, 100, 'consecutive:1:0:0', 10_000);
  const snapshot = await functions.state();
  const fail = result === 'failure' ? 1 : 0;
  await functions.record(snapshot.generation, { ok: 1 - fail, fail, slowOk: 0, slowFail: 0, head: fail, maxRun: fail, tail: fail }, false);
}
