import { Counter, Registry, register as globalRegistry } from 'prom-client';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { type Instance, fail, fleet, instance, startAll, stopAll, uniqueId, untilAll } from '../support/instances.js';
import { figure, prometheus, scrape } from '../support/metrics.js';
import { metricsScenarios, stoppedScenario } from '../support/metrics-scenarios.js';
import { type MetricsRegistration, registerMetrics } from '../../src/prometheus.js';

const url = inject('redisUrl');

describe('zenvark/prometheus', () => {
  metricsScenarios(prometheus, 'checkout_zenvark_');
  stoppedScenario(prometheus, 'every instrument');
});

describe('zenvark/prometheus: registration', () => {
  let instances: Instance[] = [];
  let registrations: MetricsRegistration[] = [];
  const keep = (r: MetricsRegistration) => {
    registrations.push(r);
    return r;
  };

  afterEach(async () => {
    await stopAll(instances);
    instances = [];
    for (const r of registrations) r.dispose();
    registrations = [];
  });

  it('the metric names, types and labels the dashboards and alerts use', () => {
    const registry = new Registry();
    keep(registerMetrics({ registry }));
    const metrics = registry.getMetricsAsArray().map((m) => {
      const { name, type, labelNames } = m as unknown as { name: string; type: string; labelNames: string[] };
      return [name, type, labelNames.join(',')];
    });
    expect(metrics.sort()).toEqual(
      [
        ['zenvark_call_duration_seconds', 'histogram', 'breaker,result'],
        ['zenvark_calls_rejected_total', 'counter', 'breaker,state'],
        ['zenvark_state', 'gauge', 'breaker,state'],
        ['zenvark_mode', 'gauge', 'breaker,mode'],
        ['zenvark_role', 'gauge', 'breaker,role'],
        ['zenvark_transitions_total', 'counter', 'breaker,from,to,reason,origin'],
        ['zenvark_health_check_duration_seconds', 'histogram', 'breaker,type,result'],
        ['zenvark_outcomes_total', 'counter', 'breaker,fate'],
        ['zenvark_redis_errors_total', 'counter', 'breaker,operation'],
        ['zenvark_degraded', 'gauge', 'breaker'],
        ['zenvark_feed_lag_seconds', 'histogram', 'breaker'],
      ].sort(),
    );
  });

  it('the exposition text: help, types, one state series per state, buckets in seconds', async () => {
    const registry = new Registry();
    const i = instance(url, { id: uniqueId() });
    instances = [i];
    keep(registerMetrics({ registry, filter: (b) => b === i.breaker }));
    await i.breaker.start();
    await i.breaker.execute(async () => 'ok');
    const text = await registry.metrics();
    const id = i.breaker.id;
    expect(text).toContain('# HELP zenvark_state The state execute() acts on: 1 for the current state, 0 for the others');
    expect(text).toContain('# TYPE zenvark_state gauge');
    expect(text).toContain(`zenvark_state{breaker="${id}",state="closed"} 1\n`);
    expect(text).toContain(`zenvark_state{breaker="${id}",state="open"} 0\n`);
    expect(text).toContain(`zenvark_state{breaker="${id}",state="half_open"} 0\n`);
    expect(text).toContain(`zenvark_role{breaker="${id}",role="leader"}`);
    expect(text).toContain(`zenvark_degraded{breaker="${id}"} 0\n`);
    expect(text).toContain(`zenvark_mode{breaker="${id}",mode="normal"} 1\n`);
    expect(text).toContain(`zenvark_mode{breaker="${id}",mode="forced_open"} 0\n`);
    expect(text).toContain('# TYPE zenvark_call_duration_seconds histogram');
    expect(text).toContain(`zenvark_call_duration_seconds_bucket{le="0.001",breaker="${id}",result="success"}`);
    expect(text).toContain(`zenvark_call_duration_seconds_bucket{le="+Inf",breaker="${id}",result="success"} 1\n`);
    expect(text).toContain(`zenvark_call_duration_seconds_count{breaker="${id}",result="success"} 1\n`);
    expect(text).toContain(`zenvark_calls_rejected_total{breaker="${id}",state="half_open"} 0\n`);
    expect(text).toContain(`zenvark_outcomes_total{breaker="${id}",fate="dropped"} 0\n`);
  });

  it("without a registry, prom-client's global register; dispose() takes the metrics out again", () => {
    const registration = keep(registerMetrics());
    expect(globalRegistry.getSingleMetric('zenvark_state')).toBeDefined();
    registration.dispose();
    expect(globalRegistry.getSingleMetric('zenvark_state')).toBeUndefined();
  });

  it('twice on one registry and prefix: no error, one set of metrics, counted once, removed with the last registration', async () => {
    const registry = new Registry();
    const first = keep(registerMetrics({ registry, labels: { service: 'checkout' } }));
    const second = keep(registerMetrics({ registry, labels: { service: 'checkout' } }));
    expect(registry.getMetricsAsArray()).toHaveLength(11);
    const i = instance(url, { id: uniqueId() });
    instances = [i];
    await i.breaker.start();
    await i.breaker.execute(async () => 'ok');
    const r = scrape(registry);
    expect(await figure(r, 'callDuration', { breaker: i.breaker.id })).toBe(1);

    first.dispose();
    first.dispose();
    expect(registry.getMetricsAsArray()).toHaveLength(11);
    await i.breaker.execute(async () => 'ok');
    expect(await figure(r, 'callDuration', { breaker: i.breaker.id })).toBe(2);
    second.dispose();
    expect(registry.getMetricsAsArray()).toEqual([]);
    // And a new registration after that starts afresh.
    keep(registerMetrics({ registry }));
    expect(registry.getMetricsAsArray()).toHaveLength(11);
  });

  it('twice on one registry and prefix with other labels, buckets or filter: a TypeError saying what differs', () => {
    const registry = new Registry();
    keep(registerMetrics({ registry, labels: { service: 'checkout' } }));
    expect(() => registerMetrics({ registry, labels: { service: 'billing' } })).toThrow(
      new TypeError(
        `registerMetrics() (zenvark/prometheus): this registry already has Zenvark's metrics with prefix "zenvark_" and labels {"service":"checkout"}; ` +
          `this call asks for {"service":"billing"}. Pass the same labels, or another prefix or registry`,
      ),
    );
    expect(() => registerMetrics({ registry, labels: { service: 'checkout' }, buckets: { feedLag: [0.01, 0.1] } })).toThrow(
      /buckets\.feedLag \[0\.001, .*, 2\.5\]; this call asks for \[0\.01, 0\.1\]/,
    );
    expect(() => registerMetrics({ registry, labels: { service: 'checkout' }, filter: () => true })).toThrow(/filter no filter; this call asks for another filter/);
    // Another prefix is another set of metrics.
    keep(registerMetrics({ registry, prefix: 'billing_', labels: { service: 'billing' } }));
    expect(registry.getSingleMetric('billing_state')).toBeDefined();
    expect(registry.getMetricsAsArray()).toHaveLength(22);
  });

  it('a metric of the same name that is not Zenvark\'s: a TypeError naming it, and nothing registered', () => {
    const registry = new Registry();
    new Counter({ name: 'zenvark_transitions_total', help: 'someone else', registers: [registry] });
    expect(() => registerMetrics({ registry })).toThrow(
      new TypeError(
        'registerMetrics() (zenvark/prometheus): this registry already has a metric named zenvark_transitions_total, not registered by Zenvark: pass another prefix or registry',
      ),
    );
    expect(registry.getMetricsAsArray()).toHaveLength(1);
  });

  it('a custom prefix and buckets show in the names and the text', async () => {
    const registry = new Registry();
    const i = instance(url, { id: uniqueId() });
    instances = [i];
    keep(registerMetrics({ registry, prefix: 'payments_', buckets: { callDuration: [0.5, 1] }, filter: (b) => b === i.breaker }));
    expect(registry.getSingleMetric('zenvark_state')).toBeUndefined();
    expect(registry.getSingleMetric('payments_state')).toBeDefined();
    await i.breaker.start();
    await i.breaker.execute(async () => 'ok');
    const text = await registry.metrics();
    expect(text).toContain(`payments_call_duration_seconds_bucket{le="0.5",breaker="${i.breaker.id}",result="success"} 1\n`);
    expect(text).not.toContain('le="0.001"');
  });

  it.each([
    [{ prefix: 'my-app_' }, `prefix must be '' or letters, digits and underscores, not starting with a digit, got "my-app_"`],
    [{ prefix: 'app:' }, 'prefix must be'],
    [{ prefix: 7 }, 'prefix must be'],
    [{ labels: { breaker: 'x' } }, "labels may not set 'breaker', which Zenvark's metrics use themselves (breaker, result, state, mode, role, from, to, reason, origin, type, fate, operation)"],
    [{ labels: { state: 'x' } }, "labels may not set 'state'"],
    [{ labels: { __name: 'x' } }, `labels name "__name" must be letters, digits and underscores, not starting with a digit or '__', and not 'le'`],
    [{ labels: { le: '1' } }, 'labels name "le" must be'],
    [{ labels: { 'service-name': 'x' } }, 'labels name "service-name" must be'],
    [{ labels: { service: 1 } }, 'labels.service must be a non-empty string, got 1'],
    [{ labels: { service: '' } }, 'labels.service must be a non-empty string, got ""'],
    [{ labels: ['service'] }, 'labels must be an object of strings, got an array'],
    [{ buckets: { callDuration: [0.1, 0.05] } }, 'buckets.callDuration must be strictly increasing, got 0.1 then 0.05 at [1]'],
    [{ buckets: { callDuration: [] } }, 'buckets.callDuration must be a non-empty array of seconds, got an array'],
    [{ buckets: { feedLag: [0.1, Number.NaN] } }, 'buckets.feedLag[1] must be a finite number of seconds, got NaN'],
    [{ buckets: { callDurations: [1] } }, "buckets has no option 'callDurations' (did you mean 'callDuration'? known: callDuration, healthCheckDuration, feedLag)"],
    [{ regsitry: new Registry() }, "options has no option 'regsitry' (did you mean 'registry'? known: registry, prefix, labels, buckets, filter)"],
    [{ registry: {} }, 'registry must be a prom-client Registry'],
    [{ filter: 'checkout' }, 'filter must be a function, got "checkout"'],
  ])('rejects %j', (options, message) => {
    expect(() => registerMetrics(options as never)).toThrow(message);
    expect(globalRegistry.getSingleMetric('zenvark_state')).toBeUndefined();
  });

  it('breakers of one id in one process add up: the gauges count breakers', async () => {
    const registry = new Registry();
    const id = uniqueId();
    // Registered before they start: breakers started later are covered.
    keep(registerMetrics({ registry, filter: (b) => b.id === id }));
    instances = fleet(url, 2, { id });
    await startAll(instances);
    const r = scrape(registry);
    // Closed, with no idle probes, neither holds the lease.
    expect(await figure(r, 'role', { role: 'leader' })).toBe(0);
    expect(await figure(r, 'role', { role: 'follower' })).toBe(2);
    await fail(instances[0] as Instance, 3);
    await untilAll(instances, 'open');
    expect(await figure(r, 'state', { state: 'open' })).toBe(2);
    // Open, one of them takes the lease.
    await vi.waitFor(async () => {
      expect(await figure(r, 'role', { role: 'leader' })).toBe(1);
      expect(await figure(r, 'role', { role: 'follower' })).toBe(1);
    });
    // Each saw the transition once.
    await vi.waitFor(async () => expect(await figure(r, 'transitions')).toBe(2));
    await instances[0]?.breaker.stop();
    expect(await figure(r, 'state', { state: 'open' })).toBe(1);
    expect(await figure(r, 'transitions')).toBe(2);
    await instances[1]?.breaker.stop();
    expect(await figure(r, 'state')).toBeUndefined();
    expect(await figure(r, 'transitions')).toBeUndefined();
  });

  it('dispose() stops following the breakers: the metrics it made are left empty', async () => {
    const registry = new Registry();
    const i = instance(url, { id: uniqueId() });
    instances = [i];
    await i.breaker.start();
    const registration = registerMetrics({ registry, filter: (b) => b === i.breaker });
    const durations = registry.getSingleMetric('zenvark_call_duration_seconds');
    await i.breaker.execute(async () => 'ok');
    const counted = async () =>
      ((await durations?.get())?.values ?? []).filter((v) => (v as { metricName?: string }).metricName === 'zenvark_call_duration_seconds_count');
    expect((await counted()).map((v) => v.value)).toEqual([1]);
    registration.dispose();
    // Followed still, the call would make the series again.
    await i.breaker.execute(async () => 'ok');
    expect(await counted()).toEqual([]);
    expect(i.seen.errors).toEqual([]);
  });
});
