/**
 * `zenvark/opentelemetry`: the breakers' metrics as OpenTelemetry instruments
 * (`@opentelemetry/api` is an optional peer dependency). The instruments and what feeds
 * them are src/instruments.ts; this file makes them instruments of a Meter. Counters and
 * gauges are observable instruments, read at each collection (states, roles and degraded
 * mode from the breakers); histograms record as calls and checks settle.
 */
import { type Histogram, type Meter, type Observable, type ObservableCallback, ValueType, metrics } from '@opentelemetry/api';
import {
  type CollectedName,
  type HistogramName,
  INSTRUMENTS,
  type InstrumentName,
  type Instrumentation,
  instrument,
  openTelemetryName,
} from './instruments.js';
import {
  type Buckets,
  type CommonOptions,
  type MetricsRegistration,
  Registrations,
  type Settings,
  type Syntax,
  resolveSettings,
} from './metrics-options.js';

export type { Buckets, MetricsRegistration };

/** The package's version, as the default meter's instrumentation scope gives it (test/client/opentelemetry.test.ts checks it against package.json). */
const PACKAGE_VERSION = '0.1.0';

export interface OpenTelemetryOptions extends CommonOptions {
  /** Where the instruments are made. Default: `metrics.getMeter('zenvark', <package version>)`, from the global MeterProvider as it is at the call. */
  meter?: Meter;
  /** Prepended to every instrument name, as is. Default: 'zenvark.'. */
  prefix?: string;
  /** Constant attributes on every data point; they may not be one of the instruments' own (breaker, state, ...). */
  attributes?: Record<string, string>;
}

const CALLER = 'registerMetrics() (zenvark/opentelemetry)';

/** The longest name an instrument may have (the OpenTelemetry API's instrument name syntax). */
const MAX_NAME_LENGTH = 255;
const LONGEST_STEM = Math.max(...Object.values(INSTRUMENTS).map((i) => openTelemetryName(i, '').length));

const SYNTAX: Syntax = {
  caller: CALLER,
  known: { meter: true, prefix: true, attributes: true, buckets: true, filter: true },
  defaultPrefix: 'zenvark.',
  prefix: new RegExp(`^(?:[A-Za-z][A-Za-z0-9_.\\-/]{0,${MAX_NAME_LENGTH - LONGEST_STEM - 1}})?$`),
  prefixRule: `'' or up to ${MAX_NAME_LENGTH - LONGEST_STEM} letters, digits, '_', '.', '-' and '/', starting with a letter`,
  labelsOption: 'attributes',
  labelName: /^\S(?:.*\S)?$/,
  labelRule: 'non-empty, without leading or trailing white space',
};

const registrations = new Registrations<Meter>(SYNTAX, 'meter');

/**
 * Makes the instruments on a Meter and follows every breaker running in this process, and
 * those started later. Calling it again with the same meter and prefix shares the first
 * registration (other attributes, buckets or filter are a TypeError); `dispose()` stops
 * following the breakers and removes the observable instruments' callbacks once every
 * registration sharing them is disposed (the OpenTelemetry API has no way to remove an
 * instrument).
 */
export function registerMetrics(options: OpenTelemetryOptions = {}): MetricsRegistration {
  const settings = resolveSettings(options, SYNTAX);
  const meter = options.meter ?? metrics.getMeter('zenvark', PACKAGE_VERSION);
  if (typeof meter !== 'object' || meter === null || typeof meter.createHistogram !== 'function') {
    throw new TypeError(`${CALLER}: meter must be an OpenTelemetry Meter`);
  }
  return registrations.register(meter, settings, () => attach(meter, settings));
}

/** Makes the instruments on `meter` and follows the breakers; returns what undoes it. */
function attach(meter: Meter, settings: Settings): () => void {
  // Observable instruments are read through this at each collection.
  let instrumentation: Instrumentation | undefined;
  const histograms = new Map<HistogramName, Histogram>();
  const callbacks: [Observable, ObservableCallback][] = [];
  for (const name of Object.keys(INSTRUMENTS) as InstrumentName[]) {
    const i = INSTRUMENTS[name];
    const id = openTelemetryName(i, settings.prefix);
    const description = i.help;
    const unit = i.unit;
    if (i.kind === 'histogram') {
      const advice = { explicitBucketBoundaries: [...settings.buckets[name as HistogramName]] };
      histograms.set(name as HistogramName, meter.createHistogram(id, { description, unit, advice }));
      continue;
    }
    // Counters are the totals kept since each breaker started being followed: observable counters.
    const observable =
      i.kind === 'gauge'
        ? meter.createObservableGauge(id, { description, unit, valueType: ValueType.INT })
        : meter.createObservableCounter(id, { description, unit, valueType: ValueType.INT });
    const callback: ObservableCallback = (result) => instrumentation?.collect(name as CollectedName, (labels, value) => result.observe(value, labels));
    observable.addCallback(callback);
    callbacks.push([observable, callback]);
  }

  instrumentation = instrument(
    {
      series: (name, labels) => {
        const histogram = histograms.get(name) as Histogram;
        return (value) => histogram.record(value, labels);
      },
      // The API cannot delete a series of a histogram: an exporter with cumulative
      // temporality goes on exporting its last value.
      remove: () => undefined,
    },
    settings,
  );

  const made = instrumentation;
  return () => {
    made.dispose();
    for (const [observable, callback] of callbacks) observable.removeCallback(callback);
  };
}
