/**
 * `zenvark/prometheus`: the breakers' metrics in a prom-client registry (prom-client is an
 * optional peer dependency). The instruments and what feeds them are src/instruments.ts;
 * this file makes them prom-client metrics. States, roles, degraded mode and the outcomes'
 * fates are read from the breakers when the registry is scraped, so they are never stale.
 */
import { Counter, Gauge, Histogram, type Registry, register as defaultRegistry } from 'prom-client';
import {
  type Buckets,
  type CommonOptions,
  type CountedName,
  INSTRUMENTS,
  type InstrumentName,
  type Instrumentation,
  type Labels,
  type MetricsRegistration,
  type ObservedName,
  Registrations,
  type Settings,
  type Syntax,
  instrument,
  prometheusName,
  resolveSettings,
} from './instruments.js';

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

  // Observed metrics read the breakers through this, made once the metrics exist.
  let instrumentation: Instrumentation | undefined;
  const observe = (name: ObservedName, emit: (labels: Labels, value: number) => void) => instrumentation?.observe(name, emit);
  const constant = Object.keys(settings.labels);
  const metrics = new Map<InstrumentName, Metric>();
  for (const name of names) {
    const i = INSTRUMENTS[name];
    const config = { name: nameOf(name), help: i.help, labelNames: [...constant, ...i.labels], registers: [registry] };
    let metric: Metric;
    if (i.kind === 'histogram') {
      metric = new Histogram({ ...config, buckets: [...settings.buckets[name as keyof Settings['buckets']]] });
    } else if (i.kind === 'gauge') {
      metric = new Gauge({
        ...config,
        collect() {
          this.reset();
          observe(name as ObservedName, (labels, value) => this.set(labels, value));
        },
      });
    } else if (i.observed) {
      // A counter read from breaker.stats: the totals since each breaker was made.
      metric = new Counter({
        ...config,
        collect() {
          this.reset();
          observe(name as ObservedName, (labels, value) => this.inc(labels, value));
        },
      });
    } else {
      metric = new Counter(config);
    }
    metrics.set(name, metric);
  }

  const counted = (name: CountedName) => metrics.get(name) as Counter | Histogram;
  instrumentation = instrument(
    {
      series: (name, labels) => {
        const metric = counted(name);
        if (metric instanceof Histogram) {
          const child = metric.labels(labels);
          return (value) => child.observe(value);
        }
        const child = metric.labels(labels);
        return (value) => child.inc(value);
      },
      remove: (name, labels) => counted(name).remove(labels),
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
