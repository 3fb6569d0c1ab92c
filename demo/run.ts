/**
 * `npm run demo`: five worker processes share one circuit breaker in Redis; break the
 * dependency, kill the lease holder, pause Redis and heal, on a live dashboard.
 * `npm run demo -- --script`: the fixed scenario of scenario.ts with a line log, no
 * terminal needed; exits 0 only if every step happened.
 *
 * Every way out (q, Ctrl-C, SIGINT/SIGTERM/SIGHUP, an exception anywhere, a worker crash
 * loop, the script's end or its timeout) goes through finish(), which gives the terminal
 * back and stops every process the demo started; the 'exit' handler kills whatever is
 * still alive, in case stopping did not finish.
 */
import { wallMs } from '../harness/clock.js';
import { Dashboard } from './dashboard.js';
import { FLEET_SIZE, Launcher } from './launcher.js';
import { playScenario } from './scenario.js';

/** The script's bound, from start to its last step. */
const SCRIPT_TIMEOUT_MS = 120_000;
/** Stopping takes a few seconds at most; past this the processes are killed. */
const STOP_TIMEOUT_MS = 10_000;
/** A second signal this soon after the first is the same Ctrl-C delivered twice (by the
 * terminal and by npm); a later one kills everything at once. */
const REPEAT_SIGNAL_MS = 1_000;

const scripted = process.argv.includes('--script');
const began = wallMs();
const stamp = (at: number) => `${((at - began) / 1000).toFixed(1).padStart(6)} s`;
const seconds = () => ((wallMs() - began) / 1000).toFixed(1);

let dashboard: Dashboard | undefined;
const launcher = new Launcher((line) => {
  // The dashboard shows the log itself once it is open.
  if (!dashboard && (scripted || !line.detail)) console.log(`${stamp(line.at)}  ${line.text}`);
});

let finishing: number | undefined;
function finish(code: number, message?: string): void {
  if (finishing !== undefined) return;
  finishing = wallMs();
  dashboard?.close();
  if (message) (code === 0 ? process.stdout : process.stderr).write(`${message}\n`);
  setTimeout(() => {
    process.stderr.write('stopping took too long: killing every process the demo started\n');
    process.exit(code || 1);
  }, STOP_TIMEOUT_MS).unref();
  launcher.shutdown().then(
    () => {
      console.log(`stopped every process the demo started (${launcher.workers.length} workers, the dependency${launcher.canPause ? ", redis-server" : ""})`);
      process.exit(code);
    },
    (error: unknown) => {
      process.stderr.write(`stopping failed: ${String(error)}\n`);
      process.exit(code || 1);
    },
  );
}

function onSignal(signal: NodeJS.Signals, code: number): void {
  if (finishing !== undefined) {
    if (wallMs() - finishing < REPEAT_SIGNAL_MS) return;
    launcher.killNow();
    process.exit(code);
  }
  finish(code, `${signal}: stopping every process the demo started`);
}
process.on('SIGINT', () => onSignal('SIGINT', 130));
process.on('SIGTERM', () => onSignal('SIGTERM', 143));
process.on('SIGHUP', () => onSignal('SIGHUP', 129));

function onFailure(error: unknown): void {
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  if (finishing !== undefined) process.stderr.write(`while stopping: ${text}\n`);
  else finish(1, `demo failed after ${seconds()} s: ${text}`);
}
process.on('uncaughtException', onFailure);
process.on('unhandledRejection', onFailure);
process.on('exit', () => {
  dashboard?.close();
  launcher.killNow();
});

async function main(): Promise<void> {
  if (!scripted && !(process.stdin.isTTY && process.stdout.isTTY)) {
    finish(2, 'npm run demo draws a dashboard and reads keys: run it in a terminal, or run `npm run demo -- --script`.');
    return;
  }
  if (scripted) {
    setTimeout(() => finish(1, `demo --script timed out after ${SCRIPT_TIMEOUT_MS / 1000} s`), SCRIPT_TIMEOUT_MS + 5_000).unref();
  }
  await launcher.startRedis();
  if (finishing !== undefined) return;
  if (!scripted) {
    dashboard = new Dashboard(launcher, () => finish(0));
    dashboard.open();
    await launcher.startFleet();
    return;
  }
  launcher.note(`starting the dependency and ${FLEET_SIZE} workers`);
  await launcher.startFleet();
  if (finishing !== undefined) return;
  const missing = await playScenario(launcher, began + SCRIPT_TIMEOUT_MS);
  if (missing.length === 0) {
    finish(0, `demo --script passed in ${seconds()} s: every worker saw the trip and the recovery, and the lease moved`);
  } else {
    finish(1, `demo --script FAILED after ${seconds()} s; missing:\n${missing.map((m) => `  - ${m}`).join('\n')}`);
  }
}

main().catch(onFailure);
