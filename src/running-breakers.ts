/**
 * The breakers running in this process, for the metrics entry points
 * (`zenvark/prometheus`, `zenvark/opentelemetry`): they attach to every breaker that
 * runs, whenever it starts, without the application listing them. Only running breakers
 * are held, so a breaker that was stopped and dropped can be collected.
 */
import type { CircuitBreaker } from './circuit-breaker.js';
import type { Subscription } from './events.js';

type Watcher = (breaker: CircuitBreaker) => void;

/** Each running breaker, with where a watcher that throws is reported. */
const running = new Map<CircuitBreaker, (error: unknown) => void>();
let watchers: readonly Watcher[] = [];

/**
 * Calls `watcher` for every breaker running now, then for each one that starts later,
 * before its `stateChange` event for the state read at start(). A watcher that throws is
 * the caller's bug: it is reported to that breaker's `error` event.
 */
export function watchBreakers(watcher: Watcher): Subscription {
  watchers = [...watchers, watcher];
  for (const [breaker, failed] of running) tell(watcher, breaker, failed);
  let active = true;
  return {
    dispose: () => {
      if (!active) return;
      active = false;
      watchers = watchers.filter((w) => w !== watcher);
    },
  };
}

/** `breaker` runs from now: every watcher is told. */
export function breakerStarted(breaker: CircuitBreaker, failed: (error: unknown) => void): void {
  running.set(breaker, failed);
  for (const watcher of watchers) tell(watcher, breaker, failed);
}

function tell(watcher: Watcher, breaker: CircuitBreaker, failed: (error: unknown) => void): void {
  try {
    watcher(breaker);
  } catch (error) {
    failed(error);
  }
}

/** `breaker` stopped. */
export function breakerStopped(breaker: CircuitBreaker): void {
  running.delete(breaker);
}
