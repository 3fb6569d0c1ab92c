/**
 * `zenvark/prometheus`: the breakers' metrics in a prom-client registry (prom-client is an
 * optional peer dependency). The instruments and what feeds them are src/instruments.ts;
 * this file makes them prom-client metrics. Counters and gauges are read when the registry
 * is scraped (states, roles and degraded mode from the breakers, so they are never stale);
 * histograms are prom-client's, observed as calls and checks settle.
 */
import { Counter, Gauge, Histogram, type Registry, register as defaultRegistry } from 'prom-client';
import {
  type CollectedName,
  type HistogramName,
  INSTRUMENTS,
  type InstrumentName,
  type Instrumentation,
  instrument,
  prometheusName,
} from './instruments.js';
import {
  type Buckets,
  type CommonOptions,
  type Labels,
  type MetricsRegistration,
  Registrations,
  type Settings,
  type Syntax,
  resolveSettings,
} from './metrics-options.js';

export type { Buckets, MetricsRegistration };

export interface PrometheusOptions extends CommonOptions {
  /** Where the metrics are registered. Default: prom-client's global `register`. */
  registry?: Registry;
  /** Prepended to every metric name, as is. Default: 'zenvark_'. */
  prefix?: string;
  /** Constant labels on every series; they may not be one of the metrics' own labels (breaker, state, ...). */
  labels?: Record<string, string>;
}

const CALLER = 'registerMetrics() (zenvark/prometheus)';

const SYNTAX: Syntax = {
  caller: CALLER,
  known: { registry: true, prefix: true, labels: true, buckets: true, filter: true },
  defaultPrefix: 'zenvark_',
  // Colons are for recording rules (Prometheus's naming conventions); '' is allowed.
  prefix: /^(?:[a-zA-Z_][a-zA-Z0-9_]*)?$/,
  prefixRule: "'' or letters, digits and underscores, not starting with a digit",
  labelsOption: 'labels',
  // Names starting with __ are reserved to Prometheus; `le` is a histogram's bucket label.
  labelName: /^(?!__)(?!le$)[a-zA-Z_][a-zA-Z0-9_]*$/,
  labelRule: "letters, digits and underscores, not starting with a digit or '__', and not 'le'",
};

const registrations = new Registrations<Registry>(SYNTAX, 'registry');

/**
 * Registers the metrics of every breaker running in this process, and of those started
 * later, in a prom-client registry. Calling it again with the same registry and prefix
 * shares the first registration (other labels, buckets or filter are a TypeError);
 * `dispose()` detaches from the breakers and removes the metrics from the registry once
 * every registration sharing them is disposed. A stopped breaker's series are removed.
 */
export function registerMetrics(options: PrometheusOptions = {}): MetricsRegistration {
  const settings = resolveSettings(options, SYNTAX);
  const registry = options.registry ?? defaultRegistry;
  if (typeof registry !== 'object' || registry === null || typeof registry.registerMetric !== 'function') {
    throw new TypeError(`${CALLER}: registry must be a prom-client Registry`);
  }
  return registrations.register(registry, settings, () => attach(registry, settings));
}

type Metric = Counter | Gauge | Histogram;

/** Makes the metrics in `registry` and follows the breakers; returns what undoes it. */
function attach(registry: Registry, settings: Settings): () => void {
  const names = Object.keys(INSTRUMENTS) as InstrumentName[];
  const nameOf = (name: InstrumentName) => prometheusName(INSTRUMENTS[name], settings.prefix);
  for (const name of names) {
    if (registry.getSingleMetric(nameOf(name))) {
      throw new TypeError(`${CALLER}: this registry already has a metric named ${nameOf(name)}, not registered by Zenvark: pass another prefix or registry`);
    }
  }

  // Counters and gauges are read through this at each scrape, made once the metrics exist.
  let instrumentation: Instrumentation | undefined;
  const collect = (name: CollectedName, emit: (labels: Labels, value: number) => void) => instrumentation?.collect(name, emit);
  const constant = Object.keys(settings.labels);
  const metrics = new Map<InstrumentName, Metric>();
  const histograms = new Map<HistogramName, Histogram>();
  for (const name of names) {
    const i = INSTRUMENTS[name];
    const config = { name: nameOf(name), help: i.help, labelNames: [...constant, ...i.labels], registers: [registry] };
    let metric: Metric;
    if (i.kind === 'histogram') {
      const histogram = new Histogram({ ...config, buckets: [...settings.buckets[name as HistogramName]] });
      histograms.set(name as HistogramName, histogram);
      metric = histogram;
    } else if (i.kind === 'counter') {
      metric = new Counter({
        ...config,
        collect() {
          this.reset();
          collect(name as CollectedName, (labels, value) => this.inc(labels, value));
        },
      });
    } else {
      metric = new Gauge({
        ...config,
        collect() {
          this.reset();
          collect(name as CollectedName, (labels, value) => this.set(labels, value));
        },
      });
    }
    metrics.set(name, metric);
  }

  const histogram = (name: HistogramName) => histograms.get(name) as Histogram;
  instrumentation = instrument(
    {
      series: (name, labels) => {
        const child = histogram(name).labels(labels);
        return (value) => child.observe(value);
      },
      remove: (name, labels) => histogram(name).remove(labels),
    },
    settings,
  );

  const made = instrumentation;
  return () => {
    made.dispose();
    for (const [name, metric] of metrics) {
      // Only ours: someone may have cleared the registry and registered another since.
      if (registry.getSingleMetric(nameOf(name)) === metric) registry.removeSingleMetric(nameOf(name));
    }
  };
}
