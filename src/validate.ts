/**
 * Option checks shared by every constructor. Messages name the option and the allowed
 * range: `RangeError: CountBreaker.threshold must be in (0, 1], got 1.5`.
 */

/** A value as a message shows it: strings quoted, objects and functions named by kind. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (value === null) return 'null';
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

function requireNumber(name: string, value: unknown): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`${name} must be a number, got ${show(value)}`);
  }
  return value;
}

/** An integer in [min, max]. */
export function integerIn(name: string, value: unknown, min: number, max: number): number {
  const n = requireNumber(name, value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}], got ${show(value)}`);
  }
  return n;
}

/** A finite number of milliseconds in [min, max]. */
export function durationIn(name: string, value: unknown, min: number, max: number): number {
  const n = requireNumber(name, value);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new RangeError(`${name} must be a finite number of milliseconds in [${min}, ${max}], got ${show(value)}`);
  }
  return n;
}

/** A rate in (0, 1]. */
export function rate(name: string, value: unknown): number {
  const n = requireNumber(name, value);
  if (!(n > 0 && n <= 1)) {
    throw new RangeError(`${name} must be in (0, 1], got ${show(value)}`);
  }
  return n;
}

/** A finite number >= min. */
export function atLeast(name: string, value: unknown, min: number): number {
  const n = requireNumber(name, value);
  if (!Number.isFinite(n) || n < min) {
    throw new RangeError(`${name} must be a finite number >= ${min}, got ${show(value)}`);
  }
  return n;
}

export function nonEmptyString(name: string, value: unknown, maxLength = Number.POSITIVE_INFINITY): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new TypeError(`${name} must be a non-empty string, got ${show(value)}`);
  }
  if (value.length > maxLength) {
    throw new RangeError(`${name} must be at most ${maxLength} characters long, got ${value.length}`);
  }
  return value;
}

/** A non-empty string of at most `maxBytes` bytes of UTF-8 (what Redis stores of it). */
export function bytesIn(name: string, value: unknown, maxBytes: number): string {
  const s = nonEmptyString(name, value);
  const bytes = Buffer.byteLength(s);
  if (bytes > maxBytes) throw new RangeError(`${name} must be at most ${maxBytes} bytes long, got ${bytes}`);
  return s;
}

export function functionOrUndefined<T>(name: string, value: T): T {
  if (value !== undefined && typeof value !== 'function') {
    throw new TypeError(`${name} must be a function, got ${show(value)}`);
  }
  return value;
}

export function requiredFunction<T>(name: string, value: T): T {
  if (typeof value !== 'function') {
    throw new TypeError(`${name} must be a function, got ${show(value)}`);
  }
  return value;
}

export function requiredObject(name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(`${name} is required and must be an object, got ${show(value)}`);
  }
  return value as Record<string, unknown>;
}

/** The keys an options object may have, in the order the messages list them. */
export type KnownKeys = Readonly<Record<string, true>>;

/**
 * Rejects an own enumerable string key of `value` that is not in `known`, whatever its
 * value (an unknown key set to undefined is still a typo). Symbol keys and inherited
 * properties are not looked at. Allocates nothing when every key is known, so that
 * per-call options can be checked on every call:
 * `TypeError: CircuitBreaker.health has no option 'timeout' (did you mean 'timeoutMs'? known: ...)`.
 * `misplaced` names keys that belong to another object, with the hint to give instead
 * (`check` on the top level: `'health.check'`).
 */
export function onlyKnownKeys(
  name: string,
  value: Record<string, unknown>,
  known: KnownKeys,
  misplaced?: Readonly<Record<string, string>>,
): void {
  for (const key in value) {
    if (Object.hasOwn(value, key) && !Object.hasOwn(known, key)) {
      const hint = closest(key, known, misplaced);
      const list = `known: ${Object.keys(known).join(', ')}`;
      throw new TypeError(`${name} has no option '${key}' (${hint === undefined ? list : `did you mean ${hint}? ${list}`})`);
    }
  }
}

/**
 * The hint for the candidate nearest to `key`, if one is near. Compared lowercased with
 * anything but letters and digits removed, from nearest to farthest:
 *  0, 1, 2. an edit distance of 0 (`lease_ttl_ms` -> `leaseTtlMs`), 1 or 2, transpositions
 *     included (`treshold` -> `threshold`): up to 2 from 6 characters on, 1 from 3 on;
 *  3. one is a prefix of the other, of 4 characters or more (`timeout` -> `timeoutMs`,
 *     `jitterMode` -> `jitter`);
 *  4. the words of `key` appear in order among the candidate's (`minimumCalls` ->
 *     `minimumNumberOfCalls`).
 * Ties go to the first candidate, known keys before misplaced ones.
 */
function closest(key: string, known: KnownKeys, misplaced: Readonly<Record<string, string>> = {}): string | undefined {
  let best: string | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  const consider = (candidate: string, hint: string) => {
    const score = nearness(key, candidate);
    if (score < bestScore) {
      bestScore = score;
      best = hint;
    }
  };
  for (const candidate of Object.keys(known)) consider(candidate, `'${candidate}'`);
  for (const [candidate, hint] of Object.entries(misplaced)) consider(candidate, hint);
  return best;
}

function nearness(key: string, candidate: string): number {
  const a = normalized(key);
  const b = normalized(candidate);
  const shorter = Math.min(a.length, b.length);
  const distance = editDistance(a, b);
  if (distance <= (shorter >= 6 ? 2 : shorter >= 3 ? 1 : 0)) return distance;
  if (shorter >= 4 && (a.startsWith(b) || b.startsWith(a))) return 3;
  if (a.length >= 4 && wordsInOrder(words(key), words(candidate))) return 4;
  return Number.POSITIVE_INFINITY;
}

function normalized(key: string): string {
  return key.toLowerCase().replace(/[^a-z0-9]/g, '');
}

/** `leaseTTLMs` -> lease, ttl, ms. */
function words(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z])([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((word) => word !== '');
}

function wordsInOrder(part: readonly string[], whole: readonly string[]): boolean {
  let i = 0;
  for (const word of whole) if (word === part[i]) i += 1;
  return i === part.length;
}

/** Optimal string alignment distance: insertions, deletions, substitutions, adjacent transpositions. */
function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, (previous[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, (before[j - 2] as number) + 1);
      current.push(d);
    }
    before = previous;
    previous = current;
  }
  return previous[b.length] as number;
}
