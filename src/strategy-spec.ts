/**
 * A strategy as the function library takes it, in one argument:
 * 'kind:threshold:window:minimum', and ':<rate>' when slow calls count (see the
 * strategy_arg contract in lua/zenvark_v1.lua).
 */
import { StrategyKind } from './constants.js';
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
