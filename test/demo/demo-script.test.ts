/**
 * `npm run demo -- --script` plays its scenario to the end, and every way it ends (its
 * own end, SIGTERM, a Ctrl-C, a worker crash loop) stops every process it started.
 *
 * What a run started is found by an environment variable that the test gives it and
 * that every process below it inherits (npm, tsx, the launcher, the workers, the
 * dependency), so nothing is missed however it was started; and its redis-server
 * (which writes its title over its environment) by the port the run names.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it, vi } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const TAG = 'ZV_DEMO_RUN';
/** The title a Redis or Valkey server gives its process. */
const SERVER_TITLE = /^(?:\S*\/)?(?:redis|valkey)-server 127\.0\.0\.1:\d+$/;

/** The processes a run started, as "pid command line". */
function processesOf(run: Run): string[] {
  const port = /Redis at 127\.0\.0\.1:(\d+) \(a redis-server of its own\)/.exec(run.output())?.[1];
  const found: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const command = readFileSync(`/proc/${pid}/cmdline`, 'latin1').replaceAll('\0', ' ').trim();
      const environment = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
      // The server writes its title over its environment: "redis-server 127.0.0.1:<port>"
      // (or valkey-server, whichever ZV_REDIS_SERVER names).
      const ours = environment.includes(`${TAG}=${run.tag}`) || (port !== undefined && SERVER_TITLE.test(command) && command.endsWith(`127.0.0.1:${port}`));
      if (ours) found.push(`${pid} ${command}`);
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}

interface Run {
  readonly tag: string;
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const runs: Run[] = [];

afterEach(() => {
  // A failed test must not leave its processes to the next one.
  for (const run of runs.splice(0)) {
    const left = processesOf(run);
    // Its process group first: the server the harness started is in it, whatever it is called.
    try {
      process.kill(-(run.child.pid as number), 'SIGKILL');
    } catch {
      // The group is gone already.
    }
    for (const line of left) {
      try {
        process.kill(Number(line.split(' ')[0]), 'SIGKILL');
      } catch {
        // Gone with its group.
      }
    }
  }
});

/** `npm run demo -- --script`, in a process group of its own (as a shell runs a job). */
function runScript(): Run {
  const tag = randomUUID();
  const child = spawn('npm', ['run', 'demo', '--', '--script'], {
    cwd: root,
    env: { ...process.env, [TAG]: tag },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const run = { tag, child, output: () => output, exited };
  runs.push(run);
  return run;
}

async function outputMatching(run: Run, pattern: RegExp): Promise<RegExpExecArray> {
  return vi.waitFor(
    () => {
      const match = pattern.exec(run.output());
      if (!match) throw new Error(`no ${pattern} in the output yet:\n${run.output()}`);
      return match;
    },
    { timeout: 60_000, interval: 50 },
  );
}

async function expectNothingLeft(run: Run): Promise<void> {
  // Once the run's own process is gone, what it started must be gone too; the poll only
  // gives the kernel time to reap.
  await vi.waitFor(() => expect(processesOf(run)).toEqual([]), { timeout: 5_000, interval: 100 });
}

it('plays the scenario to the end, exits 0, and leaves no process behind', async () => {
  const run = runScript();
  await outputMatching(run, /w5 started/);
  // Found while it runs: the launcher, the dependency, five workers and redis-server.
  const running = processesOf(run);
  expect(running.filter((p) => p.includes('demo/worker.ts'))).toHaveLength(5);
  expect(running.filter((p) => p.includes('demo/dependency.ts'))).toHaveLength(1);
  expect(running.filter((p) => p.includes('demo/run.ts'))).not.toHaveLength(0);
  if (!process.env.REDIS_URL) expect(running.filter((p) => SERVER_TITLE.test(p.slice(p.indexOf(' ') + 1)))).toHaveLength(1);

  const { code } = await run.exited;
  const output = run.output();
  expect(code, output).toBe(0);
  expect(output).toMatch(/every worker saw the circuit open \(w1, w2, w3, w4, w5\)/);
  // To another process: a survivor, or the killed one's replacement in its slot (w2 -> w2.2).
  const moved = /the lease moved from (w\d+(?:\.\d+)?) to (w\d+(?:\.\d+)?) /.exec(output);
  expect(moved, output).not.toBeNull();
  expect(moved?.[2]).not.toBe(moved?.[1]);
  expect(output).toMatch(/every worker saw the circuit closed \((w\d(\.\d)?, ){4}w\d(\.\d)?\)/);
  expect(output).toMatch(/demo --script passed in [\d.]+ s/);
  await expectNothingLeft(run);
}, 120_000);

it('stops everything on SIGTERM', async () => {
  const run = runScript();
  await outputMatching(run, /w5 ready/);
  run.child.kill('SIGTERM');
  const { code, signal } = await run.exited;
  expect(code ?? signal, run.output()).not.toBe(0);
  expect(run.output()).toMatch(/SIGTERM: stopping every process the demo started/);
  await expectNothingLeft(run);
}, 90_000);

it('stops everything on Ctrl-C, which the terminal sends to the whole process group', async () => {
  const run = runScript();
  await outputMatching(run, /w5 ready/);
  process.kill(-(run.child.pid as number), 'SIGINT');
  await run.exited;
  expect(run.output()).toMatch(/SIGINT: stopping every process the demo started/);
  await expectNothingLeft(run);
}, 90_000);

it('ends, and stops everything, when a worker keeps crashing', async () => {
  const run = runScript();
  // Kill whatever runs in slot 1 as soon as it has started, three times.
  for (const name of ['w1', 'w1.2', 'w1.3']) {
    const [, pid] = await outputMatching(run, new RegExp(`${name.replace('.', '\\.')} started \\(pid (\\d+)\\)`));
    process.kill(Number(pid), 'SIGKILL');
  }
  const { code } = await run.exited;
  expect(code, run.output()).toBe(1);
  expect(run.output()).toMatch(/slot w1 crashed 3 times within 60 s/);
  await expectNothingLeft(run);
}, 90_000);
