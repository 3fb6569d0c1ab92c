/**
 * A strategy as the function library takes it, in one argument:
 * 'kind:threshold:window:minimum', and ':<rate>' when slow calls count (see the
 * strategy_arg contract in lua/zenvark_v1.lua).
 */
import { StrategyKind } from './constants.js';
import { ZenvarkError } from './errors.js';
import type { BreakerStrategy } from './strategies.js';

const specs = new WeakMap<BreakerStrategy, string>();

/** The spec of a strategy; built once per strategy object, shared by its breakers. */
export function strategySpec(strategy: BreakerStrategy, slowCallRateThreshold?: number): string {
  let spec = specs.get(strategy);
  if (spec === undefined) {
    spec = buildSpec(strategy);
    specs.set(strategy, spec);
  }
  return slowCallRateThreshold === undefined ? spec : `${spec}:${slowCallRateThreshold}`;
}

function buildSpec(strategy: BreakerStrategy): string {
  switch (strategy.kind) {
    case StrategyKind.CONSECUTIVE:
      return `${strategy.kind}:${strategy.threshold}:0:0`;
    case StrategyKind.COUNT:
      return `${strategy.kind}:${strategy.threshold}:${strategy.size}:${strategy.minimumNumberOfCalls}`;
    case StrategyKind.TIME:
      return `${strategy.kind}:${strategy.threshold}:${strategy.duration}:${strategy.minimumNumberOfCalls}`;
  }
}

/** The window as audit entries name it: 'consecutive', 'count:<size>' or 'time:<duration ms>'. */
export function windowName(strategy: BreakerStrategy): string {
  switch (strategy.kind) {
    case StrategyKind.CONSECUTIVE:
      return strategy.kind;
    case StrategyKind.COUNT:
      return `${strategy.kind}:${strategy.size}`;
    case StrategyKind.TIME:
      return `${strategy.kind}:${strategy.duration}`;
  }
}

/**
 * The instance rule as zv1_record takes it (its ARGV 14): 'K:share', a part not configured
 * written 0; undefined when neither is (the library then reads and writes nothing of it).
 */
export function instanceRuleSpec(minimumInstances: number | undefined, minimumInstanceShare: number | undefined): string | undefined {
  if (minimumInstances === undefined && minimumInstanceShare === undefined) return undefined;
  return `${minimumInstances ?? 0}:${minimumInstanceShare ?? 0}`;
}

/** A spec read back from the library (the one the last recorded call stored). */
export interface ParsedSpec {
  readonly kind: StrategyKind;
  /** Failures in a row (consecutive), or the failure rate in (0, 1]. */
  readonly threshold: number;
  /** Calls (count) or ms (time) of the window; 0 for consecutive. */
  readonly size: number;
  /** Calls a window holds before its rates count; 0 for consecutive. */
  readonly minimumCalls: number;
  readonly slowCallRateThreshold: number | undefined;
}

const KINDS: readonly string[] = Object.values(StrategyKind);

/** Reads a spec the library stored (and so validated); ZV_BAD_REPLY for one it could not have. */
export function parseStrategySpec(spec: string): ParsedSpec {
  const [kind, threshold, size, minimum, slow, ...rest] = spec.split(':');
  const numbers = [threshold, size, minimum, slow || '0'].map(Number);
  if (!KINDS.includes(kind as string) || rest.length > 0 || numbers.some((n) => !Number.isFinite(n))) {
    throw new ZenvarkError('ZV_BAD_REPLY', `zv1_explain answered a strategy spec this client cannot read: ${JSON.stringify(spec)}`);
  }
  return {
    kind: kind as StrategyKind,
    threshold: numbers[0] as number,
    size: numbers[1] as number,
    minimumCalls: numbers[2] as number,
    slowCallRateThreshold: slow ? (numbers[3] as number) : undefined,
  };
}
