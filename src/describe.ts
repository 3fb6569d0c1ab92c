/**
 * Zenvark's facts in words, for people: what a transition decided and who made it, the
 * mode an operator set, durations, rates and counts. explain() writes its lines with them.
 */
import { BreakerMode, StrategyKind, TransitionReason } from './constants.js';
import type { ModeInfo } from './functions.js';
import type { Transition } from './transition.js';

/** The stored strategy's window, as far as the words need it: a rate's minimum calls. */
export interface WindowShape {
  readonly window: string;
  readonly minimumCalls: number;
}

/** What transition `t` decided, and who made it when. */
export function describeTransition(t: Transition, stored: WindowShape | undefined): string {
  return `${decision(t, t.reason, stored)}, ${reporter(t)}`;
}

/** The reasons of an operator's controls: their entries carry the operator's note. */
const CONTROLS: ReadonlySet<string> = new Set([
  TransitionReason.FORCED_OPEN,
  TransitionReason.FORCED_CLOSED,
  TransitionReason.MONITORED,
  TransitionReason.RELEASED,
  TransitionReason.RESET,
]);

/** What a transition decided under `reason` (its own, or the rule a mode's end or a would_open found reached). */
function decision(t: Transition, reason: string, stored: WindowShape | undefined): string {
  const failures = Number(t.failures);
  const calls = Number(t.calls);
  const note = `'${t.note}'`;
  const until = t.until === '' ? '' : ` until ${isoTime(Number(t.until))}`;
  switch (reason) {
    case TransitionReason.CONSECUTIVE_FAILURES:
      return `${t.failures} consecutive failures reached threshold ${t.threshold}`;
    case TransitionReason.FAILURE_RATE:
      return `failure rate ${rate(Number(t.rate))} (${count(failures, 'failure')}) reached threshold ${rate(Number(t.threshold))} ${over(calls, t.window, stored)}`;
    case TransitionReason.SLOW_CALL_RATE:
      return `slow-call rate ${rate(Number(t.rate))} (${count(Number(t.slow), 'slow call')}) reached threshold ${rate(Number(t.threshold))} ${over(calls, t.window, stored)}`;
    case TransitionReason.IDLE_PROBE_FAILED:
      return 'an idle probe failed';
    case TransitionReason.RECOVERY_CHECK_PASSED: {
      const passed = calls - failures;
      const checks = passed === 1 ? 'a recovery check' : `${passed} recovery checks in a row`;
      return `${checks} passed${failures > 0 ? ` after ${count(failures, 'failed attempt')}` : ''}`;
    }
    case TransitionReason.OPEN_WAIT_ELAPSED:
      return `the open wait elapsed${failures > 0 ? ` after ${count(failures, 'failed attempt')}` : ''}`;
    case TransitionReason.TRIAL_CALLS_PASSED:
      return `${count(calls, 'trial call')} succeeded`;
    case TransitionReason.TRIAL_CALL_FAILED:
      return `a trial call failed${calls > 1 ? ` after ${count(calls - 1, 'successful one')}` : ''}`;
    case TransitionReason.FORCED_OPEN:
      return `forced open for ${note}${until}`;
    case TransitionReason.FORCED_CLOSED:
      return `forced closed for ${note}${until}`;
    case TransitionReason.MONITORED:
      return `put in monitor mode for ${note}${until}`;
    case TransitionReason.WOULD_OPEN:
      return `monitor mode: ${decision(t, t.rule, stored)}, and the circuit stayed closed`;
    case TransitionReason.RELEASED:
    case TransitionReason.EXPIRED: {
      const ended = reason === TransitionReason.RELEASED ? `the mode was released for ${note}` : `the mode expired at ${isoTime(Number(t.until))}`;
      return t.rule === '' ? `${ended}; the window reached no rule` : `${ended}; the window had reached a rule: ${decision(t, t.rule, stored)}`;
    }
    case TransitionReason.RESET:
      return `reset for ${note}: the window and recovery progress cleared`;
    default:
      return `reason ${reason}`;
  }
}

/** The calls behind a rate, in the words of its window ('count:10', 'time:60000'). */
function over(calls: number, window: string, stored: WindowShape | undefined): string {
  const [kind, size] = window.split(':');
  const minimum = stored?.window === window ? `, minimum ${stored.minimumCalls}` : '';
  const span = kind === StrategyKind.TIME ? `over ${count(calls, 'call')} in the last ${duration(Number(size))}` : `over the last ${count(calls, 'call')}`;
  return `${span} (${window}${minimum})`;
}

function reporter(t: Transition): string {
  const who = CONTROLS.has(t.reason) ? `by ${t.actor}` : `reported by ${t.token === '' ? t.actor : `leader ${t.actor} (token ${t.token})`}`;
  return `${who} at ${isoTime(t.time)}`;
}

const MODE_WORDS: Record<Exclude<BreakerMode, ''>, { name: string; effect: string }> = {
  forced_open: { name: 'forced open', effect: 'calls fail fast on every instance and health checks pause' },
  forced_closed: { name: 'forced closed', effect: 'calls pass; outcomes count, but no rule opens the circuit' },
  monitor: { name: 'monitor mode', effect: 'calls pass; a rule reached is audited as would_open instead of opening the circuit' },
};

/**
 * The mode an operator set, as Redis reported it: who, why, since when, until when, and
 * what it does; undefined in normal operation.
 */
export function describeMode(m: ModeInfo): string | undefined {
  if (m.mode === BreakerMode.NORMAL) return undefined;
  const words = MODE_WORDS[m.mode];
  const head = `mode: ${words.name} by ${m.actor} for '${m.note}', set ${duration(m.sinceMs)} ago`;
  if (m.until === 0) return `${head}, until released: ${words.effect}`;
  if (m.leftMs === 0) return `${head}; its expiry passed at ${isoTime(m.until)}: the next call that writes ends it (running instances do at once)`;
  return `${head}, until ${isoTime(m.until)} (in ${duration(m.leftMs)}): ${words.effect}`;
}

function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

export function count(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** A rate with 2 to 4 decimals: 0.5 is 0.50, 1/3 is 0.3333. */
export function rate(value: number): string {
  return (Math.round(value * 10_000) / 10_000).toFixed(4).replace(/0{1,2}$/, '');
}

/** A duration for people: 850 ms, 2.1 s, 42 s, 5 min 12 s, 3 h 5 min, 2 d 3 h. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const pair = (big: number, bigUnit: string, small: number, smallUnit: string) => (small === 0 ? `${big} ${bigUnit}` : `${big} ${bigUnit} ${small} ${smallUnit}`);
  if (s < 3600) return pair(Math.floor(s / 60), 'min', s % 60, 's');
  if (s < 86_400) return pair(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'min');
  return pair(Math.floor(s / 86_400), 'd', Math.floor((s % 86_400) / 3600), 'h');
}
