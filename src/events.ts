/**
 * The events a breaker emits, and the emitter that dispatches them. A listener is added
 * with `breaker.on(name, listener)` at any time and removed with the returned
 * subscription's `dispose()` (or `breaker.off`). Listeners run synchronously, in the order
 * they were added; one that throws is reported to the `error` event and the rest still
 * run. The constructor callbacks (onStateChange, onRoleChange, onError, metrics) hear the
 * same events before the listeners (the notifier calls them, so that a breaker with only
 * them holds no emitter).
 *
 * Nothing is allocated until the first listener of a breaker is added, and a breaker with
 * no listener for an event does not build that event at all: execute() asks
 * `listens(name)` before it reads the clock for a duration.
 */
import type { CircuitRole, CircuitState, HealthCheckType } from './constants.js';
import type { Transition } from './transition.js';

/** What a settled or refused call counted as, as the `call` event tells it. */
export const CallOutcome = {
  SUCCESS: 'success',
  FAILURE: 'failure',
  /** Rejected with this breaker's TimeoutError (counted as a failure). */
  TIMEOUT: 'timeout',
  /** Counted as neither success nor failure (a classifier, or the caller's signal). */
  IGNORED: 'ignored',
  /** Refused with CircuitOpenError while open: fn was not called. */
  REJECTED_OPEN: 'rejected_open',
  /** Refused with CircuitOpenError while half-open, with no trial permit free. */
  REJECTED_HALF_OPEN: 'rejected_half_open',
} as const;
export type CallOutcome = (typeof CallOutcome)[keyof typeof CallOutcome];

/** Where a state the `stateChange` event tells came from. */
export const StateSource = {
  /** Read from Redis at start(): not a transition. */
  START: 'start',
  /** A transition published by the library and taken from the feed. */
  FEED: 'feed',
  /** A transition in the answer to one of this instance's own calls. */
  REPLY: 'reply',
  /** A transition read back from the audit stream after a gap (a reconnect, a missed message). */
  REPLAY: 'replay',
  /** Decided in this process (degraded mode), or a resync with nothing to read back. */
  LOCAL: 'local',
} as const;
export type StateSource = (typeof StateSource)[keyof typeof StateSource];

/** Redis operations whose failures the `redisError` event counts. */
export const RedisOperation = {
  /** zv1_record: reporting outcomes. */
  RECORD: 'record',
  /** zv1_state / zv1_sync: reading the shared state. */
  READ: 'read',
  /** zv1_acquire / zv1_renew / zv1_release. */
  LEASE: 'lease',
  /** zv1_health: reporting a health check. */
  HEALTH: 'health',
  /** zv1_permit / zv1_trial: trial permits and their results. */
  TRIAL: 'trial',
  /** zv1_control: ending a mode whose expiry passed (a control's own failure rejects its promise). */
  CONTROL: 'control',
  /** zv1_isolate: this instance isolating itself or rejoining. */
  ISOLATION: 'isolation',
  /** The connection itself, or the state feed. */
  CONNECTION: 'connection',
} as const;
export type RedisOperation = (typeof RedisOperation)[keyof typeof RedisOperation];

export interface StateChangeEvent {
  /** The state execute() acts on from now. */
  readonly state: CircuitState;
  /** The state before; undefined for the state read at start(). */
  readonly previous: CircuitState | undefined;
  /** The transition; undefined for the state read at start(). */
  readonly transition: Transition | undefined;
  readonly source: StateSource;
  /** Server time of the transition to its delivery here, in ms (the two clocks' skew included); feed only, else undefined. */
  readonly lagMs: number | undefined;
}

export interface RoleChangeEvent {
  readonly role: CircuitRole;
}

export interface CallEvent {
  readonly result: CallOutcome;
  /** From execute() to the call settling, in ms; 0 for a refused call. */
  readonly durationMs: number;
  /** Made with a half-open trial permit. */
  readonly trial: boolean;
}

export interface HealthCheckEvent {
  readonly type: HealthCheckType;
  readonly result: 'success' | 'failure';
  readonly durationMs: number;
  /** What a failed check threw, or undefined. */
  readonly error: unknown;
}

export interface DegradedChangeEvent {
  /** True when Redis became unreachable and this process went on alone; false when Redis accepts its calls again. */
  readonly degraded: boolean;
  /** Leaving: how long degraded mode lasted, in ms; entering: 0. */
  readonly durationMs: number;
}

export interface RedisErrorEvent {
  readonly operation: RedisOperation;
  /** The error's code (ZV_...). */
  readonly code: string;
  readonly error: unknown;
}

/** Every event of a breaker and what its listeners receive. */
export interface BreakerEventMap {
  /** Every transition, in order, once each (replayed ones too), and the state read at start(). */
  stateChange: StateChangeEvent;
  /** This instance gained or lost the health-check lease. */
  roleChange: RoleChangeEvent;
  /** A call settled or was refused. */
  call: CallEvent;
  /** A health check (recovery or idle) settled. */
  healthCheck: HealthCheckEvent;
  /** Degraded mode entered or left. */
  degradedChange: DegradedChangeEvent;
  /** A call to Redis failed: every failure, where `error` tells each cause once. */
  redisError: RedisErrorEvent;
  /** A background error, as onError receives it: once per cause while it lasts. */
  error: Error;
  /** The breaker stopped (stop() resolved). */
  stop: Readonly<Record<string, never>>;
}

export type BreakerEventName = keyof BreakerEventMap;
export type BreakerListener<E extends BreakerEventName> = (event: BreakerEventMap[E]) => void;

/** Returned by `on()`: `dispose()` removes the listener; calling it again does nothing. */
export interface Subscription {
  dispose(): void;
}

type Listeners = { [E in BreakerEventName]?: readonly BreakerListener<E>[] };

/**
 * One breaker's listeners. Lists are replaced, never changed in place, so a listener added
 * or removed while an event is dispatched takes effect from the next event.
 */
export class Emitter {
  private listeners: Listeners = {};

  /** @param failed told when a listener throws (never for an `error` listener). */
  constructor(private readonly failed: (name: BreakerEventName, error: unknown) => void) {}

  on<E extends BreakerEventName>(name: E, listener: BreakerListener<E>): Subscription {
    if (typeof listener !== 'function') throw new TypeError(`on('${name}', listener): listener must be a function`);
    const list = (this.listeners[name] ?? []) as readonly BreakerListener<E>[];
    (this.listeners as Record<E, readonly BreakerListener<E>[]>)[name] = [...list, listener];
    let active = true;
    return {
      dispose: () => {
        if (!active) return;
        active = false;
        this.remove(name, listener);
      },
    };
  }

  /** Removes one registration of `listener`; says whether there was one. */
  remove<E extends BreakerEventName>(name: E, listener: BreakerListener<E>): boolean {
    const list = this.listeners[name] as readonly BreakerListener<E>[] | undefined;
    const at = list ? list.indexOf(listener) : -1;
    if (!list || at < 0) return false;
    const rest = list.filter((_, i) => i !== at);
    (this.listeners as Record<E, readonly BreakerListener<E>[] | undefined>)[name] = rest.length > 0 ? rest : undefined;
    return true;
  }

  listens(name: BreakerEventName): boolean {
    return this.listeners[name] !== undefined;
  }

  emit<E extends BreakerEventName>(name: E, event: BreakerEventMap[E]): void {
    const list = this.listeners[name] as readonly BreakerListener<E>[] | undefined;
    if (!list) return;
    for (const listener of list) {
      try {
        listener(event);
      } catch (error) {
        if (name !== 'error') this.failed(name, error);
      }
    }
  }
}
