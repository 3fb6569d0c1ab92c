/**
 * The fixed scenario of `npm run demo -- --script`: steady (closed: no worker holds the
 * lease, no duty needs it) -> break the dependency -> every worker sees open, one takes
 * the lease for the recovery checks -> kill the lease holder -> another takes the lease ->
 * pause Redis -> resume -> heal -> every worker sees closed. Each step waits for what the
 * workers report, within a bound; the result lists what did not happen.
 */
import { sleep, wallMs } from '../harness/clock.js';
import { FLEET_SIZE, type Launcher, type WorkerView } from './launcher.js';

export const SCRIPT_PAUSE_MS = 3_000;
const POLL_MS = 50;
/** Successful calls each worker makes before the fleet counts as steady. */
const STEADY_CALLS = 10;

/** Whether `worker` saw an audited transition to `state` after wall-clock time `since`. */
function sawAudited(worker: WorkerView, state: string, since: number): boolean {
  return worker.changes.some((c) => c.to === state && c.id !== '' && c.at > since);
}

/** Plays the scenario until `deadline` (wall ms); resolves with what was missing (none: it passed). */
export async function playScenario(launcher: Launcher, deadline: number): Promise<string[]> {
  const missing: string[] = [];
  const step = (text: string) => launcher.note(`--- ${text}`);

  /** Polls `done` until it holds, the step's `limitMs` or the deadline; false if it never did. */
  const until = async (done: () => boolean, limitMs: number): Promise<boolean> => {
    const end = Math.min(deadline, wallMs() + limitMs);
    for (;;) {
      if (done()) return true;
      if (wallMs() > end) return false;
      await sleep(POLL_MS);
    }
  };
  const missed = (what: string) => {
    missing.push(what);
    launcher.note(`MISSING: ${what}`);
  };
  const names = (workers: WorkerView[]) => workers.map((w) => w.name).join(', ');
  /** Switches the dependency; then every worker alive now must see an audited transition to `state`. */
  const everyWorkerSees = async (healthy: boolean, state: string, limitMs: number): Promise<void> => {
    const since = wallMs();
    const fleet = launcher.live();
    launcher.setDependency(healthy);
    const notYet = () => fleet.filter((w) => !sawAudited(w, state, since));
    if (await until(() => notYet().length === 0, limitMs)) step(`every worker saw the circuit ${state} (${names(fleet)})`);
    else missed(`the circuit ${state}, seen by every worker: not by ${names(notYet())}`);
  };

  step(`steady: ${FLEET_SIZE} workers call the dependency through one breaker`);
  const steady = () => {
    const live = launcher.live();
    return (
      live.length === FLEET_SIZE &&
      live.every((w) => w.readyAt !== undefined && w.state === 'closed' && w.calls - w.failures >= STEADY_CALLS)
    );
  };
  if (!(await until(steady, 40_000))) {
    missed(`a steady fleet: ${launcher.live().map((w) => `${w.name} ${w.state}, ${w.calls} calls`).join('; ')}`);
    return missing;
  }
  const holder = launcher.leaseHolder();
  step(holder ? `${holder.name} holds the lease while closed` : 'closed, no duty needs the lease: no worker holds it');

  step('break the dependency');
  await everyWorkerSees(false, 'open', 15_000);

  step('kill the lease holder');
  await until(() => launcher.leaseHolder() !== undefined, 10_000);
  const killedAt = wallMs();
  const killed = launcher.killLeaseHolder();
  const newHolder = () => launcher.live().find((w) => w !== killed && w.role === 'leader' && w.readyAt !== undefined);
  if (!killed) {
    missed('a lease holder to kill');
  } else if (!(await until(() => newHolder() !== undefined, 15_000))) {
    missed(`the lease moving from ${killed.name} to another worker`);
  } else {
    step(`the lease moved from ${killed.name} to ${newHolder()?.name} in ${Math.round(wallMs() - killedAt)} ms`);
  }
  if (!(await until(() => launcher.live().length === FLEET_SIZE && launcher.live().every((w) => w.readyAt !== undefined), 30_000))) {
    missed(`a replacement for ${killed?.name} in its slot`);
  }

  if (launcher.canPause) {
    step(`pause Redis for ${SCRIPT_PAUSE_MS / 1000} s`);
    const before = new Map(launcher.live().map((w) => [w, w.degradations]));
    launcher.pauseRedis(SCRIPT_PAUSE_MS);
    await until(() => launcher.pausedUntil === undefined, SCRIPT_PAUSE_MS + 5_000);
    const degraded = launcher.live().filter((w) => w.degradations > (before.get(w) ?? 0));
    step(`Redis resumed; degraded meanwhile: ${degraded.length > 0 ? names(degraded) : 'none'}`);
    if (!(await until(() => launcher.live().every((w) => w.redis === 'ok'), 20_000))) {
      missed(`every worker back on Redis: not ${names(launcher.live().filter((w) => w.redis !== 'ok'))}`);
    }
  } else {
    step('skipping the pause: REDIS_URL is not a server the demo started');
  }

  step('heal the dependency');
  await everyWorkerSees(true, 'closed', 20_000);
  return missing;
}
