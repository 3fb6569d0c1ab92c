/**
 * What the zenvark command prints, and the words it reads: tables for people, JSON for
 * scripts, durations and times. Everything printed goes through `say`, which masks the
 * passwords it was given (src/redact.ts).
 */
import { redactText } from '../../src/redact.js';
import type { Transition } from '../../src/transition.js';
import { UsageError } from './connect.js';

/** Where lines go, with the secrets they must never show. */
export class Output {
  constructor(private readonly secrets: readonly string[] = []) {}

  /** A line (or lines) for stdout. */
  say(text: string): void {
    process.stdout.write(`${redactText(text, this.secrets)}\n`);
  }

  /** A value as one line of JSON, for scripts. */
  json(value: unknown): void {
    this.say(JSON.stringify(value));
  }

  /** A failure, one line on stderr. */
  fail(text: string): void {
    process.stderr.write(`${redactText(text.replace(/\s*\n\s*/g, ' '), this.secrets)}\n`);
  }
}

/** Rows as columns padded to their widest cell, under a header. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A positive duration ('500ms', '45s', '30m', '2h', '1d') of at most `maxMs`, in ms, or a UsageError naming `option`. */
export function parseDuration(option: string, text: string, maxMs = Number.MAX_SAFE_INTEGER): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  const ms = match ? Number(match[1]) * (UNITS[match[2] as string] as number) : Number.NaN;
  if (!(ms > 0) || !Number.isSafeInteger(ms)) {
    throw new UsageError(`${option} must be a positive duration such as 500ms, 45s, 30m, 2h or 1d, got ${JSON.stringify(text)}`);
  }
  if (ms > maxMs) throw new UsageError(`${option} must be at most ${duration(maxMs)}, got ${JSON.stringify(text)}`);
  return ms;
}

/** A time: an ISO 8601 date ('2026-12-06T10:00:00Z'), or a duration meaning that long ago ('2h'). */
export function parseTime(option: string, text: string, now = Date.now()): number {
  if (/^\d+(ms|s|m|h|d)$/.test(text.trim())) return now - parseDuration(option, text);
  const ms = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(ms)) throw new UsageError(`${option} must be an ISO 8601 time (2026-12-06T10:00:00Z) or a duration ago (30m, 2h), got ${JSON.stringify(text)}`);
  return ms;
}

/** A duration for people: 850ms, 42s, 5m12s, 3h05m, 2d03h, 30d. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.floor(ms / 1000);
  const pair = (big: number, bigUnit: string, small: number, smallUnit: string) =>
    `${big}${bigUnit}${small === 0 ? '' : `${String(small).padStart(2, '0')}${smallUnit}`}`;
  if (s < 60) return `${s}s`;
  if (s < 3600) return pair(Math.floor(s / 60), 'm', s % 60, 's');
  if (s < 86_400) return pair(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'm');
  return pair(Math.floor(s / 86_400), 'd', Math.floor((s % 86_400) / 3600), 'h');
}

/** The figures behind a transition, as far as its reason has them, and an operator's note and expiry. */
export function figures(t: Transition): string {
  const parts: string[] = [];
  if (t.failures !== '') parts.push(`failures ${t.failures}`);
  if (t.calls !== '') parts.push(`calls ${t.calls}`);
  if (t.slow !== '' && t.slow !== '0') parts.push(`slow ${t.slow}`);
  if (t.rate !== '') parts.push(`rate ${t.rate}`);
  if (t.threshold !== '') parts.push(`threshold ${t.threshold}`);
  if (t.window !== '') parts.push(t.window);
  if (t.token !== '') parts.push(`token ${t.token}`);
  if (t.rule !== '') parts.push(`rule ${t.rule}`);
  if (t.instances !== '') parts.push(`instances ${t.instances} of ${t.reporters}`);
  if (t.note !== '') parts.push(`note ${JSON.stringify(t.note)}`);
  // A mode set until then; or, for the entry that ended a mode, when that one was to end.
  if (t.until !== '') parts.push(`${t.mode === '' ? 'was until' : 'until'} ${new Date(Number(t.until)).toISOString()}`);
  return parts.join(' ');
}

export const TRANSITION_HEADER = ['TIME', 'FROM', 'TO', 'REASON', 'GEN', 'ACTOR', 'FIGURES'] as const;

/** `zenvark history`: the fleet's transitions and its instances' isolations (SCOPE), merged. */
export const HISTORY_HEADER = ['TIME', 'SCOPE', 'FROM', 'TO', 'REASON', 'GEN', 'ACTOR', 'FIGURES'] as const;

/** A transition as a row under HISTORY_HEADER. */
export function historyRow(t: Transition): string[] {
  const [time = '', ...rest] = transitionRow(t);
  return [time, t.scope, ...rest];
}

/** A transition as a row under TRANSITION_HEADER. */
export function transitionRow(t: Transition): string[] {
  return [new Date(t.time).toISOString(), t.from, t.to, t.reason, String(t.generation), t.actor, figures(t)];
}
