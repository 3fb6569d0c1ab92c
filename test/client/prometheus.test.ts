import { describe } from 'vitest';
import { prometheus } from '../support/metrics.js';
import { metricsScenarios, stoppedScenario } from '../support/metrics-scenarios.js';

describe('zenvark/prometheus', () => {
  metricsScenarios(prometheus, 'checkout_zenvark_');
  stoppedScenario(prometheus, 'every instrument');
});
