/**
 * Option checks shared by every constructor. Messages name the option and the allowed
 * range: `RangeError: CountBreaker.threshold must be in (0, 1], got 1.5`.
 */

function show(value: unknown): string {
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
