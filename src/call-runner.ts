/**
 * Running one call through a breaker: admission from the cached view (never waiting for
 * Redis), the plain path, the full path (timeout, caller's signal, classification, slow
 * calls, fallback, trial calls), and the fast-fail path. What a settled call counts as
 * goes to the coordinator, which decides where it is recorded.
 */
import { CallResult, CircuitState } from './constants.js';
import type { BreakerContext } from './coordinator.js';
import { CircuitOpenError, TimeoutError } from './errors.js';
import { CallOutcome } from './events.js';
import { type ExecuteOptions, validateExecuteOptions } from './options.js';
import type { View } from './shared-view.js';
import type { Permit } from './trial-permits.js';

const { SUCCESS, FAILURE, IGNORED } = CallResult;

type Call<T> = (signal: AbortSignal | undefined) => Promise<T>;

/** execute(): runs fn unless the circuit is open, or half-open with no trial permit here. */
export function runCall<T>(c: BreakerContext, fn: Call<T>, options: ExecuteOptions<T> | undefined): Promise<T> {
  if (options !== undefined) {
    try {
      validateExecuteOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
  }
  const view = c.view;
  if (view.state === CircuitState.CLOSED) {
    return options === undefined && c.plain ? runPlain(c, view, fn) : runFully(c, view, fn, options, undefined);
  }
  if (view.state === CircuitState.HALF_OPEN && !view.local) {
    const permit = c.trials?.take(options?.timeoutMs ?? c.o.timeoutMs);
    if (permit) return runFully(c, view, fn, options, permit);
  }
  return failFast(c, view.state, options?.fallback);
}

/**
 * The fast-fail path. The rejection is settled a microtask later, once the caller has
 * attached its handler: a promise rejected before that is tracked by Node as possibly
 * unhandled, which would cost more than the whole rest of this path.
 */
function failFast<T>(c: BreakerContext, state: CircuitState, fallback: ExecuteOptions<T>['fallback']): Promise<T> {
  c.outcomes.refused();
  const halfOpen = state === CircuitState.HALF_OPEN;
  if (c.listens('call')) c.notifier.call(halfOpen ? CallOutcome.REJECTED_HALF_OPEN : CallOutcome.REJECTED_OPEN, 0, false);
  const error = new CircuitOpenError(c.o.id, halfOpen ? 'half_open' : state === CircuitState.ISOLATED ? 'isolated' : 'open');
  if (fallback) return answerOf(fallback, error);
  return new Promise<T>((_, reject) => queueMicrotask(() => reject(error)));
}

/**
 * Runs fn when nothing but the result is asked for: no timeout, no classification, no
 * slow calls, no options. Plain callbacks cost less than an async function, and handing
 * back fn's own rejected promise costs less than rethrowing its error.
 */
function runPlain<T>(c: BreakerContext, view: View, fn: Call<T>): Promise<T> {
  if (typeof fn !== 'function') return Promise.reject(new TypeError('execute(fn): fn must be a function'));
  const startedAt = c.listens('call') ? performance.now() : 0;
  let pending: Promise<T>;
  try {
    // Nothing could abort this call: fn gets no signal.
    pending = Promise.resolve(fn(undefined));
  } catch (error) {
    c.outcomes.observed(view, FAILURE, startedAt);
    return Promise.reject(error);
  }
  return pending.then(
    (value) => {
      c.outcomes.observed(view, SUCCESS, startedAt);
      return value;
    },
    () => {
      c.outcomes.observed(view, FAILURE, startedAt);
      return pending;
    },
  );
}

/** Runs fn with whatever was configured: timeout, caller's signal, classification,
 * slow calls (hung ones too), fallback; as a trial call when a permit is given. */
function runFully<T>(c: BreakerContext, view: View, fn: Call<T>, options: ExecuteOptions<T> | undefined, permit: Permit | undefined): Promise<T> {
  const callerSignal = options?.signal;
  if (typeof fn !== 'function' || callerSignal?.aborted) {
    if (permit) c.trials?.giveBack(permit);
    return Promise.reject(callerSignal?.aborted ? callerSignal.reason : new TypeError('execute(fn): fn must be a function'));
  }
  const o = c.o;
  const fallback = options?.fallback;
  // A trial call must end before its permit lapses, or its result would not count.
  const timeoutMs = permit ? trialTimeout(options?.timeoutMs ?? o.timeoutMs, permit) : (options?.timeoutMs ?? o.timeoutMs);
  const timed = timeoutMs !== undefined || o.slowCallDurationMs !== undefined || c.listens('call');
  const startedAt = timed ? performance.now() : 0;
  const controller = timeoutMs !== undefined || callerSignal ? new AbortController() : undefined;
  // A closed-state call that runs past slowCallDurationMs counts while it runs (a trial call has its permit's timeout).
  const watched = permit === undefined && c.running ? c.hangs?.begin(startedAt, view) : undefined;

  return new Promise<T>((resolve, reject) => {
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    // Settles once: by fn, by the timeout, or by the caller's signal, whichever is first.
    const finish = (result: CallResult, error: unknown, failed: boolean, value?: T) => {
      if (done) return false;
      done = true;
      if (timer) clearTimeout(timer);
      callerSignal?.removeEventListener('abort', onCallerAbort);
      const timedOut = result === FAILURE && error instanceof TimeoutError && error.breakerId === o.id;
      const hung = watched !== undefined && watched.end();
      c.outcomes.observed(view, result, startedAt, permit, timedOut, hung);
      if (!failed) resolve(value as T);
      else if (fallback && result === FAILURE) resolve(answerOf(fallback, error));
      else reject(error);
      return true;
    };
    const onCallerAbort = () => {
      // The caller gave up: not the dependency's doing, so counted as neither.
      if (finish(IGNORED, callerSignal?.reason, true)) controller?.abort(callerSignal?.reason);
    };
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        const error = new TimeoutError(o.id, timeoutMs);
        if (finish(FAILURE, error, true)) controller?.abort(error);
      }, timeoutMs);
    }
    let pending: Promise<T>;
    try {
      pending = Promise.resolve(fn(controller?.signal));
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      (value) => {
        finish(classifyValue(c, value), undefined, false, value);
      },
      (error: unknown) => {
        finish(classifyError(c, error), error, true);
      },
    );
  });
}

/** What a rejection of fn counts as: this breaker's own timeout always fails. */
function classifyError(c: BreakerContext, error: unknown): CallResult {
  if (error instanceof TimeoutError && error.breakerId === c.o.id) return FAILURE;
  const isFailure = c.o.isFailure;
  if (!isFailure) return FAILURE;
  return classify(c, () => isFailure(error), FAILURE, 'isFailure');
}

/** What a value fn resolved with counts as. */
function classifyValue(c: BreakerContext, value: unknown): CallResult {
  const isResultFailure = c.o.isResultFailure;
  if (!isResultFailure) return SUCCESS;
  return classify(c, () => isResultFailure(value), SUCCESS, 'isResultFailure');
}

/** A classifier's answer as a result; one that throws or answers nonsense is reported. */
function classify(c: BreakerContext, ask: () => boolean | 'ignore', fallback: CallResult, name: string): CallResult {
  try {
    const answer = ask();
    if (answer === true) return FAILURE;
    if (answer === false) return SUCCESS;
    if (answer === 'ignore') return IGNORED;
    c.notifier.report('ZV_CALLBACK_FAILED', `${name} must return true, false or 'ignore', got ${String(answer)}`);
  } catch (error) {
    c.notifier.report('ZV_CALLBACK_FAILED', `${name} threw`, error);
  }
  return fallback;
}

/** What the fallback answers for `error`, as a promise: what it returns or throws. */
function answerOf<T>(fallback: (error: unknown) => T | Promise<T>, error: unknown): Promise<T> {
  return new Promise<T>((resolve) => resolve(fallback(error)));
}

/** A trial call's timeout: its own, cut to what is left of its permit. */
function trialTimeout(timeoutMs: number | undefined, permit: Permit): number {
  const left = Math.max(1, Math.floor(permit.usableUntil - performance.now()));
  return timeoutMs === undefined ? left : Math.min(timeoutMs, left);
}
