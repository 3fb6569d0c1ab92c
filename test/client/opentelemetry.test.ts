import { AggregationTemporality } from '@opentelemetry/sdk-metrics';
import { describe } from 'vitest';
import { openTelemetry } from '../support/metrics.js';
import { metricsScenarios, stoppedScenario } from '../support/metrics-scenarios.js';

describe('zenvark/opentelemetry', () => {
  metricsScenarios(openTelemetry(), 'checkout.zenvark.');
  // The SDK (2.x) goes on exporting every series it has seen under cumulative temporality;
  // under delta, a collection holds what was observed in it.
  stoppedScenario(openTelemetry(AggregationTemporality.DELTA), 'observed instruments');
});
