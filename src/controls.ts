/**
 * An operator's controls of a breaker, from one of its running instances
 * (breaker.forceOpen(), ...): one zv1_control through the breaker's command connection,
 * decided in Redis for every instance at once and audited with this instance's id, the
 * reason and the expiry. The reply is taken like any other, so this instance acts on the
 * new state and mode when the promise settles; the others hear it from the feed.
 */
import { ControlAction } from './constants.js';
import type { BreakerContext } from './coordinator.js';
import { notStarted } from './errors.js';
import { MAX_MODE_MS, MAX_NOTE_BYTES } from './limits.js';
import type { Transition } from './transition.js';
import { bytesIn, integerIn, onlyKnownKeys, requiredObject } from './validate.js';
import { badReply } from './wire.js';

/** Options of forceOpen(), forceClose() and monitor(). */
export interface ModeOptions {
  /** Why: the audit entry's `note`, 1 to 512 bytes of UTF-8. Required. */
  reason: string;
  /** The mode ends by itself after this long, on Redis's clock, in ms: an integer, 1 to 2,592,000,000 (30 days). Default: until released. */
  forMs?: number;
}

/** Options of release() and reset(). */
export interface ReasonOptions {
  /** Why: the audit entry's `note`, 1 to 512 bytes of UTF-8. Required. */
  reason: string;
}

/** The keys of each options type, checked against it by tsc. */
export const MODE_KEYS = { reason: true, forMs: true } as const satisfies Record<keyof ModeOptions, true>;
export const REASON_KEYS = { reason: true } as const satisfies Record<keyof ReasonOptions, true>;

/** The breaker's method for each action, as messages name it. */
const METHODS: Readonly<Record<ControlAction, string>> = {
  open: 'forceOpen()',
  close: 'forceClose()',
  monitor: 'monitor()',
  release: 'release()',
  reset: 'reset()',
};

/** The actions that set a mode, which may end by itself (`forMs`). */
const SETS_MODE: readonly ControlAction[] = [ControlAction.OPEN, ControlAction.CLOSE, ControlAction.MONITOR];

/**
 * A control's reason and expiry from options `o` (named `name` in messages), checked as the
 * library checks them, before anything is sent: the breaker's own controls and the admin
 * API's take the same.
 */
export function controlArguments(name: string, action: ControlAction, o: Readonly<Record<string, unknown>>): { reason: string; forMs: number } {
  const reason = bytesIn(`${name}.reason`, o.reason, MAX_NOTE_BYTES);
  if (o.forMs === undefined) return { reason, forMs: 0 };
  if (!SETS_MODE.includes(action)) throw new TypeError(`${name}.forMs is for ${SETS_MODE.join(', ')}, not ${action}`);
  return { reason, forMs: integerIn(`${name}.forMs`, o.forMs, 1, MAX_MODE_MS) };
}

/**
 * Applies `action` to the breaker: resolves with its transition, once this instance has
 * taken it; release() with nothing to release (no mode set, or one whose expiry had passed
 * and was ended first) resolves with undefined, and writes nothing of its own. Arguments
 * are checked before anything is sent. Needs a started breaker (ZV_NOT_STARTED); a call
 * Redis does not answer rejects within the breaker's command timeout.
 */
export function controlRunning(core: BreakerContext, action: typeof ControlAction.RELEASE, options: ReasonOptions): Promise<Transition | undefined>;
export function controlRunning(core: BreakerContext, action: Exclude<ControlAction, 'release'>, options: ReasonOptions | ModeOptions): Promise<Transition>;
export async function controlRunning(core: BreakerContext, action: ControlAction, options: ReasonOptions | ModeOptions): Promise<Transition | undefined> {
  const method = METHODS[action];
  const o = requiredObject(`${method} options`, options);
  onlyKnownKeys(`${method} options`, o, SETS_MODE.includes(action) ? MODE_KEYS : REASON_KEYS);
  const { reason, forMs } = controlArguments(`${method} options`, action, o);
  const functions = core.functions;
  if (!core.running || !functions) {
    throw notStarted(core.o.id, method, "the admin API's controlBreaker(redis, id, action, options) to control it without a breaker");
  }
  const reply = await functions.control(action, reason, forMs);
  core.adopt(reply.view, reply.published);
  if (reply.status === 'applied' && reply.published) return reply.published.transition;
  // Created if need be ('unknown' is not an answer to a breaker's own control), and only
  // release and expire find no mode.
  if (reply.status === 'no_mode' && action === ControlAction.RELEASE) return undefined;
  throw badReply('zv1_control', reply.status);
}
