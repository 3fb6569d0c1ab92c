/**
 * The breakers running in this process, for the metrics entry points
 * (`zenvark/prometheus`, `zenvark/opentelemetry`): they attach to every breaker that
 * runs, whenever it starts, without the application listing them. Only running breakers
 * are held, so a breaker that was stopped and dropped can be collected.
 */
import type { CircuitBreaker } from './circuit-breaker.js';
import type { Coordinator } from './coordinator.js';
import type { Subscription } from './events.js';

type Watcher = (breaker: CircuitBreaker) => void;

const running = new Set<Coordinator>();
let watchers: readonly Watcher[] = [];

/**
 * Calls `watcher` for every breaker running now, then for each one that starts later,
 * before its `stateChange` event for the state read at start(). A watcher that throws is
 * reported to that breaker's `error` event.
 */
export function watchBreakers(watcher: Watcher): Subscription {
  watchers = [...watchers, watcher];
  for (const core of running) tell(watcher, core);
  let active = true;
  return {
    dispose: () => {
      if (!active) return;
      active = false;
      watchers = watchers.filter((w) => w !== watcher);
    },
  };
}

/** The breaker runs from now: every watcher is told. */
export function breakerStarted(core: Coordinator): void {
  running.add(core);
  for (const watcher of watchers) tell(watcher, core);
}

export function breakerStopped(core: Coordinator): void {
  running.delete(core);
}

function tell(watcher: Watcher, core: Coordinator): void {
  try {
    watcher(core.owner);
  } catch (error) {
    core.notifier.report('ZV_CALLBACK_FAILED', 'a metrics entry point failed to attach', error);
  }
}
