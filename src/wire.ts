/**
 * What Redis sends back, read strictly: strings, integers and circuit states, from
 * function replies, stream entries and feed messages alike. Anything else is a
 * ZV_BAD_REPLY, never a crash further in.
 */
import { BreakerMode, CircuitState } from './constants.js';
import { ZenvarkError } from './errors.js';

export function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString();
  if (typeof value === 'number') return String(value);
  throw new ZenvarkError('ZV_BAD_REPLY', `expected a string, got ${typeof value}`);
}

export function int(value: unknown): number {
  const n = typeof value === 'number' ? value : Number(text(value));
  if (!Number.isSafeInteger(n)) throw new ZenvarkError('ZV_BAD_REPLY', `expected an integer, got ${String(value)}`);
  return n;
}

/** The state as one of our constants: a breaker keeps no copy of the reply's string. */
export function circuitState(value: unknown): CircuitState {
  const s = text(value);
  if (s === CircuitState.CLOSED) return CircuitState.CLOSED;
  if (s === CircuitState.OPEN) return CircuitState.OPEN;
  if (s === CircuitState.HALF_OPEN) return CircuitState.HALF_OPEN;
  if (s === CircuitState.ISOLATED) return CircuitState.ISOLATED;
  throw new ZenvarkError('ZV_BAD_REPLY', `unknown circuit state ${JSON.stringify(s)}`);
}

const MODES: readonly string[] = Object.values(BreakerMode);

/** A breaker's mode ('' for normal operation, and for what an earlier revision wrote). */
export function breakerMode(value: unknown): BreakerMode {
  const s = text(value ?? '');
  if (!MODES.includes(s)) throw new ZenvarkError('ZV_BAD_REPLY', `unknown breaker mode ${JSON.stringify(s).slice(0, 40)}`);
  return s as BreakerMode;
}

/** `value` if it is one of `allowed`, else a ZV_BAD_REPLY naming who answered it. */
export function oneOf<const T extends string>(source: string, value: unknown, allowed: readonly T[]): T {
  const s = text(value);
  if (!(allowed as readonly string[]).includes(s)) throw badReply(source, s);
  return s as T;
}

export function badReply(source: string, reply: unknown): ZenvarkError {
  return new ZenvarkError('ZV_BAD_REPLY', `${source} answered ${JSON.stringify(reply)?.slice(0, 200)}`);
}
