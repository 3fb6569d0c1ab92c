/**
 * The metrics entry points as a test reads them: a backend registers Zenvark's metrics
 * (in a prom-client registry of its own, or on a meter of an OpenTelemetry MeterProvider
 * of its own) and reads every series of an instrument back as the system would export it
 * (a scrape; an export through the SDK's InMemoryMetricExporter). The scenarios in
 * test/support/metrics-scenarios.ts run on both, so both report the same figures.
 */
import { AggregationTemporality, DataPointType, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import type { CircuitBreaker } from '../../src/index.js';
import { INSTRUMENTS, type InstrumentName, openTelemetryName, prometheusName } from '../../src/instruments.js';
import { registerMetrics as registerOpenTelemetry } from '../../src/opentelemetry.js';
import { registerMetrics as registerPrometheus } from '../../src/prometheus.js';

/** One series as exported: a counter's or gauge's value, a histogram's count and sum. */
export interface Series {
  labels: Record<string, string>;
  value: number;
  sum?: number;
}

export interface Reading {
  /** Every series of the instrument, read as the system exports it now. */
  series(instrument: InstrumentName): Promise<Series[]>;
}

export interface Registered extends Reading {
  dispose(): void;
}

export interface RegisterOptions {
  filter?: (breaker: CircuitBreaker) => boolean;
  prefix?: string;
  /** Constant labels (OpenTelemetry: attributes). */
  labels?: Record<string, string>;
}

export interface Backend {
  readonly name: string;
  register(options?: RegisterOptions): Registered;
}

/** Only `breaker`'s series. */
export const only = (breaker: CircuitBreaker) => (b: CircuitBreaker) => b === breaker;

/**
 * The sum of the series of `instrument` whose labels include `labels` (a histogram's
 * count; with `sum`, its sum); undefined when there is no such series.
 */
export async function figure(r: Reading, instrument: InstrumentName, labels: Record<string, string> = {}, sum = false): Promise<number | undefined> {
  const matching = (await r.series(instrument)).filter((s) => Object.entries(labels).every(([name, value]) => s.labels[name] === value));
  if (matching.length === 0) return undefined;
  return matching.reduce((total, s) => total + (sum ? (s.sum ?? Number.NaN) : s.value), 0);
}

/** What a scrape of `registry` has of Zenvark's metrics under `prefix`. */
export function scrape(registry: Registry, prefix = 'zenvark_'): Reading {
  return {
    async series(instrument) {
      const i = INSTRUMENTS[instrument];
      const name = prometheusName(i, prefix);
      const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
      if (!metric) throw new Error(`${name} is not in the registry`);
      const values = metric.values as { labels: Record<string, string | number>; value: number; metricName?: string }[];
      const text = (labels: Record<string, string | number>) => Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, String(v)]));
      if (i.kind !== 'histogram') return values.map((v) => ({ labels: text(v.labels), value: v.value }));
      const sums = values.filter((v) => v.metricName === `${name}_sum`);
      return values
        .filter((v) => v.metricName === `${name}_count`)
        .map((v) => {
          const key = JSON.stringify(v.labels);
          return { labels: text(v.labels), value: v.value, sum: sums.find((s) => JSON.stringify(s.labels) === key)?.value };
        });
    },
  };
}

export const prometheus: Backend = {
  name: 'prometheus',
  register(options = {}) {
    const registry = new Registry();
    const registration = registerPrometheus({ registry, ...options });
    return { ...scrape(registry, options.prefix), dispose: () => registration.dispose() };
  },
};

/** An OpenTelemetry backend whose exports have `temporality` (cumulative, as Prometheus counts). */
export function openTelemetry(temporality = AggregationTemporality.CUMULATIVE): Backend {
  return {
    name: temporality === AggregationTemporality.CUMULATIVE ? 'opentelemetry' : 'opentelemetry (delta)',
    register(options = {}) {
      const exporter = new InMemoryMetricExporter(temporality);
      // Exports when the test reads (forceFlush), not on a timer.
      const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
      const provider = new MeterProvider({ readers: [reader] });
      const { labels, ...rest } = options;
      const registration = registerOpenTelemetry({ meter: provider.getMeter('zenvark-test'), ...rest, ...(labels ? { attributes: labels } : {}) });
      const prefix = options.prefix ?? 'zenvark.';
      return {
        async series(instrument) {
          await reader.forceFlush();
          const exported = exporter.getMetrics();
          exporter.reset();
          const name = openTelemetryName(INSTRUMENTS[instrument], prefix);
          const metric = exported
            .at(-1)
            ?.scopeMetrics.flatMap((scope) => scope.metrics)
            .find((m) => m.descriptor.name === name);
          if (!metric) return [];
          return metric.dataPoints.map((point) => {
            const labels = Object.fromEntries(Object.entries(point.attributes).map(([k, v]) => [k, String(v)]));
            if (metric.dataPointType === DataPointType.HISTOGRAM) {
              const h = point.value as { count: number; sum?: number };
              return { labels, value: h.count, sum: h.sum };
            }
            return { labels, value: point.value as number };
          });
        },
        dispose: () => {
          registration.dispose();
          void provider.shutdown();
        },
      };
    },
  };
}
