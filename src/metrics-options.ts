/**
 * The options of the metrics entry points (`zenvark/prometheus`, `zenvark/opentelemetry`),
 * checked once for both, and the registrations they share: a second call with the same
 * registry (or meter) and prefix shares the first one's instruments. The instruments
 * themselves, and what feeds them, are src/instruments.ts.
 */
import type { CircuitBreaker } from './circuit-breaker.js';
import { DEFAULT_BUCKETS, type HistogramName, INSTRUMENTS } from './instruments.js';
import { type KnownKeys, functionOrUndefined, onlyKnownKeys, show } from './validate.js';

/** Every label name an instrument uses: constant labels may not take them. */
const OWN_LABELS: readonly string[] = [...new Set(Object.values(INSTRUMENTS).flatMap((i) => i.labels))];

export type Labels = Readonly<Record<string, string>>;

/** Histogram bucket upper bounds, in seconds, strictly increasing. */
export interface Buckets {
  /** zenvark_call_duration_seconds. Default: 0.001 to 10. */
  callDuration?: readonly number[];
  /** zenvark_health_check_duration_seconds. Default: 0.005 to 10. */
  healthCheckDuration?: readonly number[];
  /** zenvark_feed_lag_seconds. Default: 0.001 to 2.5. */
  feedLag?: readonly number[];
}
const BUCKET_KEYS = { callDuration: true, healthCheckDuration: true, feedLag: true } as const satisfies Record<HistogramName, true>;

/** The options both entry points take. */
export interface CommonOptions {
  /** Prepended to every name as is. */
  prefix?: string;
  buckets?: Buckets;
  /** The breakers this registration covers. Default: every one. */
  filter?: (breaker: CircuitBreaker) => boolean;
}

export interface Settings {
  readonly prefix: string;
  /** The constant labels (OpenTelemetry: attributes) on every series. */
  readonly labels: Labels;
  readonly buckets: Readonly<Record<HistogramName, readonly number[]>>;
  readonly filter: ((breaker: CircuitBreaker) => boolean) | undefined;
}

/** What an entry point's names and labels may be, for the messages too. */
export interface Syntax {
  /** The call, as messages name it: 'registerMetrics() (zenvark/prometheus)'. */
  readonly caller: string;
  /** Its options, every one. */
  readonly known: KnownKeys;
  readonly defaultPrefix: string;
  readonly prefix: RegExp;
  readonly prefixRule: string;
  /** The option that holds the constant labels: 'labels' or 'attributes'. */
  readonly labelsOption: string;
  readonly labelName: RegExp;
  readonly labelRule: string;
}

/** Checks the common options; an invalid one throws a TypeError or RangeError naming it. */
export function resolveSettings(options: unknown, syntax: Syntax): Settings {
  const { caller } = syntax;
  if (typeof options !== 'object' || options === null) throw new TypeError(`${caller}: options must be an object, got ${show(options)}`);
  const o = options as Record<string, unknown>;
  onlyKnownKeys(`${caller} options`, o, syntax.known);

  const prefix = o.prefix ?? syntax.defaultPrefix;
  if (typeof prefix !== 'string' || !syntax.prefix.test(prefix)) {
    throw new TypeError(`${caller}: prefix must be ${syntax.prefixRule}, got ${show(prefix)}`);
  }

  const option = syntax.labelsOption;
  const given = o[option] ?? {};
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw new TypeError(`${caller}: ${option} must be an object of strings, got ${show(given)}`);
  }
  const labels: Record<string, string> = {};
  for (const [name, value] of Object.entries(given)) {
    if (OWN_LABELS.includes(name)) {
      throw new TypeError(`${caller}: ${option} may not set '${name}', which Zenvark's metrics use themselves (${OWN_LABELS.join(', ')})`);
    }
    if (!syntax.labelName.test(name)) throw new TypeError(`${caller}: ${option} name ${show(name)} must be ${syntax.labelRule}`);
    if (typeof value !== 'string' || value === '') {
      throw new TypeError(`${caller}: ${option}.${name} must be a non-empty string, got ${show(value)}`);
    }
    labels[name] = value;
  }

  const bucketOptions = o.buckets ?? {};
  if (typeof bucketOptions !== 'object' || bucketOptions === null || Array.isArray(bucketOptions)) {
    throw new TypeError(`${caller}: buckets must be an object, got ${show(bucketOptions)}`);
  }
  onlyKnownKeys(`${caller} buckets`, bucketOptions as Record<string, unknown>, BUCKET_KEYS);
  const buckets = { ...DEFAULT_BUCKETS };
  for (const name of Object.keys(BUCKET_KEYS) as HistogramName[]) {
    const bounds = (bucketOptions as Record<string, unknown>)[name];
    if (bounds !== undefined) buckets[name] = bucketBounds(`${caller}: buckets.${name}`, bounds);
  }

  const filter = functionOrUndefined(`${caller}: filter`, o.filter as Settings['filter']);
  return { prefix, labels, buckets, filter };
}

function bucketBounds(name: string, value: unknown): readonly number[] {
  if (!Array.isArray(value) || value.length === 0) throw new TypeError(`${name} must be a non-empty array of seconds, got ${show(value)}`);
  value.forEach((bound: unknown, i) => {
    if (typeof bound !== 'number' || !Number.isFinite(bound)) throw new TypeError(`${name}[${i}] must be a finite number of seconds, got ${show(bound)}`);
    if (i > 0 && bound <= (value[i - 1] as number)) {
      throw new RangeError(`${name} must be strictly increasing, got ${value[i - 1]} then ${bound} at [${i}]`);
    }
  });
  return Object.freeze([...(value as number[])]);
}

// ---- registrations ------------------------------------------------------------------

/** Returned by registerMetrics(): `dispose()` ends this registration; calling it again does nothing. */
export interface MetricsRegistration {
  dispose(): void;
}

interface Shared {
  readonly settings: Settings;
  readonly end: () => void;
  handles: number;
}

/**
 * The registrations of one entry point, by where they go (a registry, a meter) and prefix.
 * A second call with the same settings shares the first one's instruments, and they go
 * when the last handle is disposed; other settings under the same names are an error.
 */
export class Registrations<Target extends object> {
  private readonly byTarget = new WeakMap<Target, Map<string, Shared>>();

  /** @param noun what the target is, in messages: 'registry', 'meter'. */
  constructor(
    private readonly syntax: Syntax,
    private readonly noun: string,
  ) {}

  register(target: Target, settings: Settings, create: () => () => void): MetricsRegistration {
    let shared = this.byTarget.get(target);
    if (!shared) {
      shared = new Map();
      this.byTarget.set(target, shared);
    }
    const prefixes = shared;
    let entry = prefixes.get(settings.prefix);
    if (entry) {
      this.compare(entry.settings, settings);
    } else {
      entry = { settings, end: create(), handles: 0 };
      prefixes.set(settings.prefix, entry);
    }
    const registration = entry;
    registration.handles += 1;
    let active = true;
    return {
      dispose: () => {
        if (!active) return;
        active = false;
        registration.handles -= 1;
        if (registration.handles > 0) return;
        prefixes.delete(settings.prefix);
        registration.end();
      },
    };
  }

  private compare(had: Settings, asked: Settings): void {
    const differs = (what: string, before: string, now: string) => {
      throw new TypeError(
        `${this.syntax.caller}: this ${this.noun} already has Zenvark's metrics with prefix ${show(had.prefix)} and ${what} ${before}; ` +
          `this call asks for ${now}. Pass the same ${what}, or another prefix or ${this.noun}`,
      );
    };
    const labels = (l: Labels) => JSON.stringify(Object.fromEntries(Object.entries(l).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
    if (labels(had.labels) !== labels(asked.labels)) differs(this.syntax.labelsOption, labels(had.labels), labels(asked.labels));
    for (const name of Object.keys(BUCKET_KEYS) as HistogramName[]) {
      const before = had.buckets[name].join(', ');
      const now = asked.buckets[name].join(', ');
      if (before !== now) differs(`buckets.${name}`, `[${before}]`, `[${now}]`);
    }
    if (had.filter !== asked.filter) differs('filter', had.filter ? 'a filter' : 'no filter', asked.filter ? 'another filter' : 'none');
  }
}
