import { readFileSync } from 'node:fs';
import { metrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  type MetricData,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { type Instance, fail, fleet, instance, startAll, stopAll, uniqueId, untilAll } from '../support/instances.js';
import { openTelemetry } from '../support/metrics.js';
import { metricsScenarios, stoppedScenario } from '../support/metrics-scenarios.js';
import { CircuitState } from '../../src/index.js';
import { DEFAULT_BUCKETS } from '../../src/instruments.js';
import { type MetricsRegistration, registerMetrics } from '../../src/opentelemetry.js';

const url = inject('redisUrl');

describe('zenvark/opentelemetry', () => {
  metricsScenarios(openTelemetry(), 'checkout.zenvark.');
  // The SDK (2.x) goes on exporting every series it has seen under cumulative temporality,
  // observable ones too; under delta, a collection holds what was observed in it.
  stoppedScenario(openTelemetry(AggregationTemporality.DELTA), 'counters and gauges');
});

/** A MeterProvider whose exports the test reads. */
function provider(temporality = AggregationTemporality.CUMULATIVE) {
  const exporter = new InMemoryMetricExporter(temporality);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  return {
    meterProvider,
    /** What one export holds: its scopes, and their metrics by name. */
    async exported() {
      await reader.forceFlush();
      const last = exporter.getMetrics().at(-1);
      exporter.reset();
      const scopes = last?.scopeMetrics ?? [];
      return { scopes: scopes.map((s) => s.scope), metrics: new Map<string, MetricData>(scopes.flatMap((s) => s.metrics.map((m) => [m.descriptor.name, m]))) };
    },
  };
}

describe('zenvark/opentelemetry: registration', () => {
  let instances: Instance[] = [];
  let registrations: MetricsRegistration[] = [];
  const providers: MeterProvider[] = [];
  const keep = (r: MetricsRegistration) => {
    registrations.push(r);
    return r;
  };
  const make = (temporality?: AggregationTemporality) => {
    const p = provider(temporality);
    providers.push(p.meterProvider);
    return p;
  };

  afterEach(async () => {
    await stopAll(instances);
    instances = [];
    for (const r of registrations) r.dispose();
    registrations = [];
    for (const p of providers.splice(0)) await p.shutdown();
    metrics.disable();
  });

  it('the instruments: names, kinds, units, descriptions and bucket boundaries', async () => {
    const p = make();
    const id = uniqueId();
    keep(registerMetrics({ meter: p.meterProvider.getMeter('test'), filter: (b) => b.id === id }));
    // Two instances, so that one takes the trip from the feed: every instrument has a point.
    instances = fleet(url, 2, { id });
    await startAll(instances);
    const tripper = instances[0] as Instance;
    await fail(tripper, 3);
    await untilAll(instances, 'open');
    await tripper.breaker.execute(async () => 'no').catch(() => undefined);
    let exported = await p.exported();
    await vi.waitFor(async () => {
      exported = await p.exported();
      expect([...exported.metrics.keys()]).toHaveLength(11);
    });
    const shape = [...exported.metrics.values()].map((m) => [
      m.descriptor.name,
      m.dataPointType === DataPointType.SUM ? `sum, monotonic ${m.isMonotonic}` : m.dataPointType === DataPointType.HISTOGRAM ? 'histogram' : 'gauge',
      m.descriptor.unit,
    ]);
    expect(shape.sort()).toEqual(
      [
        ['zenvark.call.duration', 'histogram', 's'],
        ['zenvark.calls.rejected', 'sum, monotonic true', '{call}'],
        ['zenvark.state', 'gauge', '{breaker}'],
        ['zenvark.mode', 'gauge', '{breaker}'],
        ['zenvark.role', 'gauge', '{breaker}'],
        ['zenvark.transitions', 'sum, monotonic true', '{transition}'],
        ['zenvark.health_check.duration', 'histogram', 's'],
        ['zenvark.outcomes', 'sum, monotonic true', '{outcome}'],
        ['zenvark.redis.errors', 'sum, monotonic true', '{error}'],
        ['zenvark.degraded', 'gauge', '{breaker}'],
        ['zenvark.feed.lag', 'histogram', 's'],
      ].sort(),
    );
    expect(exported.metrics.get('zenvark.state')?.descriptor.description).toBe('The state execute() acts on: 1 for the current state, 0 for the others');
    const boundaries = (name: string) => {
      const point = exported.metrics.get(name)?.dataPoints[0] as { value: { buckets: { boundaries: number[] } } } | undefined;
      return point?.value.buckets.boundaries;
    };
    expect(boundaries('zenvark.call.duration')).toEqual(DEFAULT_BUCKETS.callDuration);
    expect(boundaries('zenvark.health_check.duration')).toEqual(DEFAULT_BUCKETS.healthCheckDuration);
    expect(boundaries('zenvark.feed.lag')).toEqual(DEFAULT_BUCKETS.feedLag);
  });

  it("without a meter, the global MeterProvider's meter 'zenvark' at the package's version", async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const p = make();
    metrics.setGlobalMeterProvider(p.meterProvider);
    const i = instance(url, { id: uniqueId() });
    instances = [i];
    keep(registerMetrics({ filter: (b) => b === i.breaker }));
    await i.breaker.start();
    const exported = await p.exported();
    expect(exported.scopes).toEqual([expect.objectContaining({ name: 'zenvark', version })]);
    expect(exported.metrics.get('zenvark.state')?.dataPoints).toHaveLength(Object.values(CircuitState).length);
  });

  it('buckets of your own are the histograms\' boundaries', async () => {
    const p = make();
    const i = instance(url, { id: uniqueId() });
    instances = [i];
    keep(registerMetrics({ meter: p.meterProvider.getMeter('test'), buckets: { callDuration: [0.5, 1] }, filter: (b) => b === i.breaker }));
    await i.breaker.start();
    await i.breaker.execute(async () => 'ok');
    const point = (await p.exported()).metrics.get('zenvark.call.duration')?.dataPoints[0] as { value: { buckets: { boundaries: number[]; counts: number[] } } };
    expect(point.value.buckets).toEqual({ boundaries: [0.5, 1], counts: [1, 0, 0] });
  });

  it('twice on one meter and prefix: shared, counted once; other attributes or another filter are a TypeError saying what differs', async () => {
    const p = make();
    const meter = p.meterProvider.getMeter('test');
    const i = instance(url, { id: uniqueId() });
    instances = [i];
    const attributes = { service: 'checkout' };
    const filter = (b: unknown) => b === i.breaker;
    const first = keep(registerMetrics({ meter, attributes, filter }));
    const second = keep(registerMetrics({ meter, attributes: { ...attributes }, filter }));
    expect(() => registerMetrics({ meter, attributes: { service: 'billing' }, filter })).toThrow(
      new TypeError(
        `registerMetrics() (zenvark/opentelemetry): this meter already has Zenvark's metrics with prefix "zenvark." and attributes {"service":"checkout"}; ` +
          `this call asks for {"service":"billing"}. Pass the same attributes, or another prefix or meter`,
      ),
    );
    // A filter is told apart by identity.
    expect(() => registerMetrics({ meter, attributes, filter: (b) => b === i.breaker })).toThrow(/filter a filter; this call asks for another filter/);
    // Another prefix is another set of instruments.
    keep(registerMetrics({ meter, prefix: 'pay.', attributes, filter }));
    await i.breaker.start();
    await i.breaker.execute(async () => 'ok');
    const counts = async () => {
      const exported = await p.exported();
      return ['zenvark.call.duration', 'pay.call.duration'].map((name) => (exported.metrics.get(name)?.dataPoints[0]?.value as { count: number } | undefined)?.count);
    };
    expect(await counts()).toEqual([1, 1]);
    first.dispose();
    await i.breaker.execute(async () => 'ok');
    expect(await counts()).toEqual([2, 2]);
    second.dispose();
    await i.breaker.execute(async () => 'ok');
    // Cumulative: the disposed instrument keeps its last count.
    expect(await counts()).toEqual([2, 3]);
  });

  it('dispose() stops following the breakers and observing them', async () => {
    const p = make(AggregationTemporality.DELTA);
    const i = instance(url, { id: uniqueId() });
    instances = [i];
    await i.breaker.start();
    const registration = registerMetrics({ meter: p.meterProvider.getMeter('test'), filter: (b) => b === i.breaker });
    await i.breaker.execute(async () => 'ok');
    expect([...(await p.exported()).metrics.keys()]).toEqual(expect.arrayContaining(['zenvark.call.duration', 'zenvark.state']));
    registration.dispose();
    await i.breaker.execute(async () => 'ok');
    expect([...(await p.exported()).metrics.keys()]).toEqual([]);
    expect(i.seen.errors).toEqual([]);
  });

  it.each([
    [{ prefix: '1zenvark.' }, `prefix must be '' or up to 234 letters, digits, '_', '.', '-' and '/', starting with a letter, got "1zenvark."`],
    [{ prefix: 'my app.' }, 'prefix must be'],
    [{ prefix: `a${'b'.repeat(234)}` }, 'prefix must be'],
    [{ attributes: { breaker: 'x' } }, "attributes may not set 'breaker', which Zenvark's metrics use themselves"],
    [{ attributes: { ' service': 'x' } }, 'attributes name " service" must be non-empty, without leading or trailing white space'],
    [{ attributes: { 'service.name': 2 } }, 'attributes.service.name must be a non-empty string, got 2'],
    [{ labels: { service: 'x' } }, "options has no option 'labels' (known: meter, prefix, attributes, buckets, filter)"],
    [{ meter: {} }, 'meter must be an OpenTelemetry Meter'],
  ])('rejects %j', (options, message) => {
    expect(() => registerMetrics(options as never)).toThrow(message);
  });

  it('a name of the longest prefix allowed is a valid instrument name', async () => {
    const p = make();
    const prefix = `a${'b'.repeat(233)}`;
    const i = instance(url, { id: uniqueId() });
    instances = [i];
    keep(registerMetrics({ meter: p.meterProvider.getMeter('test'), prefix, filter: (b) => b === i.breaker }));
    await i.breaker.start();
    // Open, so that it takes the lease and checks: the longest name has a point.
    await fail(i, 3);
    let names: string[] = [];
    await vi.waitFor(async () => {
      names = [...(await p.exported()).metrics.keys()];
      expect(names).toContain(`${prefix}health_check.duration`);
    });
    expect(Math.max(...names.map((n) => n.length))).toBe(255);
  });
});
