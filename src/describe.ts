/**
 * Zenvark's facts in words, for people: what a transition decided and who reported it, the
 * mode an operator set, durations, rates and counts. explain() writes its lines with them.
 */
import { BreakerMode, StrategyKind, TransitionReason, TransitionScope } from './constants.js';
import type { ModeInfo } from './functions.js';
import type { Transition } from './transition.js';

/** The stored strategy's window, as far as the words need it: a rate's minimum calls. */
export interface WindowShape {
  readonly window: string;
  readonly minimumCalls: number;
}

/** What transition `t` decided, and who reported it when. */
export function describeTransition(t: Transition, stored: WindowShape | undefined): string {
  if (t.scope === TransitionScope.INSTANCE) return `${instanceDecision(t, stored)}, ${reporter(t)}`;
  return `${decision(t, stored)}${instanceRule(t)}, ${reporter(t)}`;
}

/** The instance rule's figures behind a fleet decision, when it decided. */
function instanceRule(t: Transition): string {
  if (t.instances === '') return '';
  return ` with failures from ${count(Number(t.instances), 'instance')} of ${t.reporters} reporting (${t.rule})`;
}

/** What an instance-level transition (isolation) decided. */
function instanceDecision(t: Transition, stored: WindowShape | undefined): string {
  switch (t.reason) {
    case TransitionReason.WOULD_ISOLATE:
      return `monitor mode: its own calls reached ${t.rule} (${count(Number(t.failures), 'failure')} of ${count(Number(t.calls), 'call')}); it would have isolated itself and stayed in`;
    case TransitionReason.RECOVERED:
      return 'its own recovery checks passed: it rejoined the fleet';
    case TransitionReason.FLEET_OPENED:
      return `the fleet went ${t.to.replace('_', '-')}: the isolated instance follows it`;
    case TransitionReason.STOPPED:
      return 'it stopped while isolated';
    case TransitionReason.FLEET_MOVED:
      return 'the fleet moved on to another generation, closed: the isolated instance follows it';
    default:
      return `isolated itself: ${decision(t, stored)} in its own calls, while the fleet stayed closed`;
  }
}

/** What the rule of a transition saw, in words. */
function decision(t: Transition, strategy: WindowShape | undefined): string {
  const failures = Number(t.failures);
  const calls = Number(t.calls);
  switch (t.reason) {
    case TransitionReason.CONSECUTIVE_FAILURES:
      return `${t.failures} consecutive failures reached threshold ${t.threshold}`;
    case TransitionReason.FAILURE_RATE:
      return `failure rate ${rate(Number(t.rate))} (${count(failures, 'failure')}) reached threshold ${rate(Number(t.threshold))} ${over(calls, t.window, strategy)}`;
    case TransitionReason.SLOW_CALL_RATE:
      return `slow-call rate ${rate(Number(t.rate))} (${count(Number(t.slow), 'slow call')}) reached threshold ${rate(Number(t.threshold))} ${over(calls, t.window, strategy)}`;
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
      return `forced open by an operator: ${JSON.stringify(t.note)}`;
    case TransitionReason.FORCED_CLOSED:
      return `forced closed by an operator: ${JSON.stringify(t.note)}`;
    case TransitionReason.MONITORED:
      return `put in monitor mode by an operator: ${JSON.stringify(t.note)}`;
    case TransitionReason.RESET:
      return `reset by an operator: ${JSON.stringify(t.note)}`;
    case TransitionReason.RELEASED:
      return `released by an operator: ${JSON.stringify(t.note)}${windowDecided(t)}`;
    case TransitionReason.EXPIRED:
      return `the operator's mode expired${windowDecided(t)}`;
    case TransitionReason.WOULD_OPEN:
      return `monitor mode: ${t.rule} would have opened it (${count(failures, 'failure')} of ${count(calls, 'call')}, threshold ${t.threshold}); it stayed closed`;
    default:
      return `reason ${t.reason}`;
  }
}

/** Where a mode's end left the state: the window reached a rule (open), or not (closed). */
function windowDecided(t: Transition): string {
  return t.rule === '' ? '; the window reached no rule' : `; the window reached ${t.rule}`;
}

/** The calls behind a rate, in the words of its window ('count:10', 'time:60000'). */
function over(calls: number, window: string, strategy: WindowShape | undefined): string {
  const [kind, size] = window.split(':');
  const minimum = strategy?.window === window ? `, minimum ${strategy.minimumCalls}` : '';
  const span = kind === StrategyKind.TIME ? `over ${count(calls, 'call')} in the last ${duration(Number(size))}` : `over the last ${count(calls, 'call')}`;
  return `${span} (${window}${minimum})`;
}

function reporter(t: Transition): string {
  const who = t.token === '' ? t.actor : `leader ${t.actor} (token ${t.token})`;
  return `reported by ${who} at ${new Date(t.time).toISOString()}`;
}

const MODE_WORDS: Record<Exclude<BreakerMode, ''>, string> = {
  forced_open: 'forced open (calls fail fast, recovery checks pause)',
  forced_closed: 'forced closed (failures are counted, nothing opens it)',
  monitor: 'monitor (calls pass; a rule reached is written as would_open instead of opening)',
};

/** What an operator set, who, why, and until when; undefined in normal operation. */
export function describeMode(m: ModeInfo): string | undefined {
  if (m.mode === BreakerMode.NORMAL) return undefined;
  const set = `mode: ${MODE_WORDS[m.mode]}, set by ${m.actor} ${duration(m.sinceMs)} ago: ${JSON.stringify(m.note)}`;
  if (m.until === 0) return `${set}; until released`;
  if (m.leftMs > 0) return `${set}; ends in ${duration(m.leftMs)} (at ${new Date(m.until).toISOString()})`;
  return `${set}; its expiry passed at ${new Date(m.until).toISOString()}: the next call to Redis ends it`;
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
