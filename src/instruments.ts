/**
 * The instruments of the metrics entry points (`zenvark/prometheus`, `zenvark/opentelemetry`),
 * defined once, and what feeds them. An entry point is a thin adapter: it makes each
 * instrument in its own system, under that system's name for it, gives `instrument()` a
 * sink for histogram observations, and reads the counters and gauges back from it when
 * its system collects. What a breaker's events, `state`, `mode`, `role`, `degraded` and `stats`
 * mean as observations is decided here alone, so both entry points report the same
 * figures.
 *
 * A registration covers every breaker running in the process, and those started later
 * (src/running-breakers.ts). Series are told apart by breaker id: breakers of the same id
 * in one process (two key prefixes, or a test's fleet) add up, and the gauges then count
 * breakers (2 in `state="open"` when both are open).
 */
import type { CircuitBreaker } from './circuit-breaker.js';
import { BreakerMode, CircuitRole, CircuitState } from './constants.js';
import { type CallEvent, CallOutcome, type HealthCheckEvent, RedisOperation, type RedisErrorEvent, type StateChangeEvent, StateSource, type Subscription } from './events.js';
import type { Labels, Settings } from './metrics-options.js';
import { watchBreakers } from './running-breakers.js';

/** How an instrument is fed: counted up, observed into buckets, or set. */
export type InstrumentKind = 'counter' | 'histogram' | 'gauge';

export interface Instrument {
  /** The words of the name after the prefix: joined with '_' for Prometheus, '.' for OpenTelemetry. */
  readonly stem: readonly string[];
  readonly kind: InstrumentKind;
  /** UCUM, as OpenTelemetry takes it: 's' also gives the Prometheus name its `_seconds`; `{...}` are annotations. */
  readonly unit: string;
  readonly help: string;
  /** The label (attribute) names, `breaker` (the breaker's id) first. */
  readonly labels: readonly string[];
}

/** Where the outcomes of a breaker's calls went, as `outcomes` counts them (from `breaker.stats`). */
export const Fate = {
  RECORDED: 'recorded',
  STALE: 'stale',
  LOCAL: 'local',
  /** Overflowed or undelivered: counted nowhere. */
  DROPPED: 'dropped',
} as const;
export type Fate = (typeof Fate)[keyof typeof Fate];

/** Who decided a transition: the library in Redis, or this process while Redis was unreachable. */
export const Origin = {
  SHARED: 'shared',
  LOCAL: 'local',
} as const;
export type Origin = (typeof Origin)[keyof typeof Origin];

export const INSTRUMENTS = {
  callDuration: {
    stem: ['call', 'duration'],
    kind: 'histogram',
    unit: 's',
    help: 'Time from execute() to the call settling, by result (timeout: this breaker\'s timeout; refused calls are counted apart, as rejected)',
    labels: ['breaker', 'result'],
  },
  callsRejected: {
    stem: ['calls', 'rejected'],
    kind: 'counter',
    unit: '{call}',
    help: 'Calls refused with CircuitOpenError without running, by the state that refused them',
    labels: ['breaker', 'state'],
  },
  state: {
    stem: ['state'],
    kind: 'gauge',
    unit: '{breaker}',
    help: 'The state execute() acts on: 1 for the current state, 0 for the others',
    labels: ['breaker', 'state'],
  },
  mode: {
    stem: ['mode'],
    kind: 'gauge',
    unit: '{breaker}',
    help: 'The mode an operator set (normal: none), as this instance last heard it: 1 for the current mode, 0 for the others',
    labels: ['breaker', 'mode'],
  },
  role: {
    stem: ['role'],
    kind: 'gauge',
    unit: '{breaker}',
    help: "This instance's role: 1 for the current one (the leader holds the health-check lease)",
    labels: ['breaker', 'role'],
  },
  transitions: {
    stem: ['transitions'],
    kind: 'counter',
    unit: '{transition}',
    help: 'Transitions this instance saw, by origin (shared: decided in Redis; local: decided here while Redis was unreachable)',
    labels: ['breaker', 'from', 'to', 'reason', 'origin'],
  },
  healthCheckDuration: {
    stem: ['health_check', 'duration'],
    kind: 'histogram',
    unit: 's',
    help: 'Duration of the health checks this instance ran (as the lease holder, or alone while Redis was unreachable)',
    labels: ['breaker', 'type', 'result'],
  },
  outcomes: {
    stem: ['outcomes'],
    kind: 'counter',
    unit: '{outcome}',
    help: 'Where the outcomes of calls went: recorded by Redis, stale (an older generation), local (counted here while Redis was unreachable), dropped (overflowed or undelivered)',
    labels: ['breaker', 'fate'],
  },
  redisErrors: {
    stem: ['redis', 'errors'],
    kind: 'counter',
    unit: '{error}',
    help: 'Failed calls to Redis, by operation',
    labels: ['breaker', 'operation'],
  },
  degraded: {
    stem: ['degraded'],
    kind: 'gauge',
    unit: '{breaker}',
    help: '1 while Redis is unreachable and this instance goes on alone (degraded mode)',
    labels: ['breaker'],
  },
  feedLag: {
    stem: ['feed', 'lag'],
    kind: 'histogram',
    unit: 's',
    help: 'Time from a transition in Redis (server time) to its arrival here through the feed; the clocks\' skew is included, below 0 counts as 0',
    labels: ['breaker'],
  },
} as const satisfies Record<string, Instrument>;

export type InstrumentName = keyof typeof INSTRUMENTS;
/** Histograms: every observation goes to the entry point's instrument as it happens. */
export type HistogramName = { [K in InstrumentName]: (typeof INSTRUMENTS)[K]['kind'] extends 'histogram' ? K : never }[InstrumentName];
/**
 * Counters and gauges: read when the metrics are collected, from the breakers (state,
 * role, degraded, stats) or from the counts kept here, which cost an addition per event.
 */
export type CollectedName = Exclude<InstrumentName, HistogramName>;
type CounterName = { [K in InstrumentName]: (typeof INSTRUMENTS)[K]['kind'] extends 'counter' ? K : never }[InstrumentName];
/** Counters counted here from the breakers' events. */
type CountedName = Exclude<CounterName, 'outcomes'>;
/** Read from the breakers themselves. */
type ReadName = Exclude<CollectedName, CountedName>;

/** Default bucket upper bounds, in seconds. */
export const DEFAULT_BUCKETS: Readonly<Record<HistogramName, readonly number[]>> = {
  callDuration: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  healthCheckDuration: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  feedLag: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
};

/** `zenvark_call_duration_seconds`: the stem, `_seconds` for a duration, `_total` for a counter. */
export function prometheusName(instrument: Instrument, prefix = 'zenvark_'): string {
  return `${prefix}${instrument.stem.join('_')}${instrument.unit === 's' ? '_seconds' : ''}${instrument.kind === 'counter' ? '_total' : ''}`;
}

/** `zenvark.call.duration`: the unit is the instrument's, not part of its name. */
export function openTelemetryName(instrument: Instrument, prefix = 'zenvark.'): string {
  return `${prefix}${instrument.stem.join('.')}`;
}

// ---- from breakers to observations --------------------------------------------------

/** Where histogram observations go: the entry point's histograms. */
export interface MetricSink {
  /** One series of a histogram, made once: observes `value`. */
  series(instrument: HistogramName, labels: Labels): (value: number) => void;
  /** A series made with series() goes: its breaker stopped. */
  remove(instrument: HistogramName, labels: Labels): void;
}

export interface Instrumentation {
  /** Reports every series of a counter or gauge, as it is now. */
  collect(instrument: CollectedName, emit: (labels: Labels, value: number) => void): void;
  /** Stops following the breakers. */
  dispose(): void;
}

/** What one instrument reads of a breaker: its series' own labels, and their values. */
type Reading = (breaker: CircuitBreaker) => readonly (readonly [Labels, number])[];

const STATE_LABELS = Object.values(CircuitState).map((state) => ({ state }));
/** Each mode and its label: normal operation ('') is `normal`, since Prometheus takes an empty label for none. */
const MODE_LABELS = Object.values(BreakerMode).map((mode) => [mode, { mode: mode === BreakerMode.NORMAL ? 'normal' : mode }] as const);
const ROLE_LABELS = Object.values(CircuitRole).map((role) => ({ role }));
const NO_LABELS: Labels = {};
const fate = (name: Fate) => ({ fate: name });
const FATE_LABELS = { recorded: fate(Fate.RECORDED), stale: fate(Fate.STALE), local: fate(Fate.LOCAL), dropped: fate(Fate.DROPPED) };

const READINGS: Record<ReadName, Reading> = {
  state: (breaker) => STATE_LABELS.map((labels) => [labels, breaker.state === labels.state ? 1 : 0]),
  mode: (breaker) => MODE_LABELS.map(([mode, labels]) => [labels, breaker.mode === mode ? 1 : 0]),
  role: (breaker) => ROLE_LABELS.map((labels) => [labels, breaker.role === labels.role ? 1 : 0]),
  degraded: (breaker) => [[NO_LABELS, breaker.degraded ? 1 : 0]],
  outcomes: (breaker) => {
    const s = breaker.stats;
    return [
      [FATE_LABELS.recorded, s.recorded],
      [FATE_LABELS.stale, s.stale],
      [FATE_LABELS.local, s.local],
      [FATE_LABELS.dropped, s.overflowed + s.undelivered],
    ];
  },
};

const COUNTED: Readonly<Record<CountedName, true>> = { callsRejected: true, transitions: true, redisErrors: true };
const isCounted = (name: CollectedName): name is CountedName => Object.hasOwn(COUNTED, name);

/** A key for a label set, its values in order (every set of an instrument has the same names). */
function keyOf(instrument: string, labels: Labels): string {
  let key = instrument;
  for (const name in labels) key += `\u0000${labels[name]}`;
  return key;
}

interface Count {
  readonly instrument: CountedName;
  readonly labels: Labels;
  value: number;
}

/** The series of one breaker id, and its listeners' work. */
class BreakerSeries {
  /** How many running breakers of this id are followed. */
  users = 0;
  readonly counts = new Map<string, Count>();
  private readonly histograms = new Map<string, { instrument: HistogramName; labels: Labels; observe: (value: number) => void }>();
  /** The call event's work, by result: made with the first call of each. */
  private readonly calls: Partial<Record<CallOutcome, (event: CallEvent) => void>> = {};

  constructor(
    private readonly sink: MetricSink,
    /** The constant labels and `breaker`. */
    readonly base: Labels,
  ) {
    // Counters with a known, small set of labels start at 0, so that a rate or an increase
    // over their first event is right.
    for (const state of [CircuitState.OPEN, CircuitState.HALF_OPEN]) this.count('callsRejected', { state });
    for (const operation of Object.values(RedisOperation)) this.count('redisErrors', { operation });
  }

  private count(instrument: CountedName, own: Labels): Count {
    const labels = { ...this.base, ...own };
    const key = keyOf(instrument, labels);
    let count = this.counts.get(key);
    if (!count) {
      count = { instrument, labels, value: 0 };
      this.counts.set(key, count);
    }
    return count;
  }

  private histogram(instrument: HistogramName, own: Labels): (value: number) => void {
    const labels = { ...this.base, ...own };
    const key = keyOf(instrument, labels);
    let made = this.histograms.get(key);
    if (!made) {
      made = { instrument, labels, observe: this.sink.series(instrument, labels) };
      this.histograms.set(key, made);
    }
    return made.observe;
  }

  readonly onCall = (event: CallEvent): void => {
    const work = this.calls[event.result] ?? this.callWork(event.result);
    work(event);
  };

  private callWork(result: CallOutcome): (event: CallEvent) => void {
    let work: (event: CallEvent) => void;
    if (result === CallOutcome.REJECTED_OPEN || result === CallOutcome.REJECTED_HALF_OPEN) {
      const count = this.count('callsRejected', { state: result === CallOutcome.REJECTED_OPEN ? CircuitState.OPEN : CircuitState.HALF_OPEN });
      work = () => {
        count.value += 1;
      };
    } else {
      const observe = this.histogram('callDuration', { result });
      work = (event) => observe(event.durationMs / 1000);
    }
    this.calls[result] = work;
    return work;
  }

  readonly onStateChange = (event: StateChangeEvent): void => {
    const t = event.transition;
    // The state read at start() is no transition.
    if (!t) return;
    this.count('transitions', { from: t.from, to: t.to, reason: t.reason, origin: t.local ? Origin.LOCAL : Origin.SHARED }).value += 1;
    if (event.source === StateSource.FEED && event.lagMs !== undefined) this.histogram('feedLag', NO_LABELS)(Math.max(0, event.lagMs) / 1000);
  };

  readonly onHealthCheck = (event: HealthCheckEvent): void => {
    this.histogram('healthCheckDuration', { type: event.type, result: event.result })(event.durationMs / 1000);
  };

  readonly onRedisError = (event: RedisErrorEvent): void => {
    this.count('redisErrors', { operation: event.operation }).value += 1;
  };

  /** Every series of this id goes (the counts with this object). */
  forget(): void {
    for (const { instrument, labels } of this.histograms.values()) this.sink.remove(instrument, labels);
    this.histograms.clear();
  }
}

/**
 * Follows every breaker running in this process that `settings.filter` takes, now and
 * later: histograms go to `sink` as they are observed, counters and gauges are read with
 * collect(). A breaker's series are removed when it stops (when no other breaker of its
 * id runs).
 */
export function instrument(sink: MetricSink, settings: Settings): Instrumentation {
  const byId = new Map<string, BreakerSeries>();
  const followed = new Map<CircuitBreaker, { series: BreakerSeries; subscriptions: Subscription[] }>();
  const { filter } = settings;

  const unfollow = (breaker: CircuitBreaker): void => {
    const entry = followed.get(breaker);
    if (!entry) return;
    followed.delete(breaker);
    for (const subscription of entry.subscriptions) subscription.dispose();
    entry.series.users -= 1;
    if (entry.series.users === 0) {
      byId.delete(breaker.id);
      entry.series.forget();
    }
  };

  const follow = (breaker: CircuitBreaker): void => {
    if (followed.has(breaker) || (filter && !filter(breaker))) return;
    const id = breaker.id;
    let series = byId.get(id);
    if (!series) {
      series = new BreakerSeries(sink, { ...settings.labels, breaker: id });
      byId.set(id, series);
    }
    series.users += 1;
    const subscriptions = [
      breaker.on('call', series.onCall),
      breaker.on('stateChange', series.onStateChange),
      breaker.on('healthCheck', series.onHealthCheck),
      breaker.on('redisError', series.onRedisError),
      breaker.on('stop', () => unfollow(breaker)),
    ];
    followed.set(breaker, { series, subscriptions });
  };

  const watch = watchBreakers(follow);

  return {
    collect(name, emit) {
      if (isCounted(name)) {
        for (const series of byId.values()) {
          for (const count of series.counts.values()) if (count.instrument === name) emit(count.labels, count.value);
        }
        return;
      }
      const read = READINGS[name];
      // Breakers of one id add up.
      const totals = new Map<string, { labels: Labels; value: number }>();
      for (const [breaker, { series }] of followed) {
        for (const [own, value] of read(breaker)) {
          const labels = { ...series.base, ...own };
          const key = keyOf(name, labels);
          const total = totals.get(key);
          if (total) total.value += value;
          else totals.set(key, { labels, value });
        }
      }
      for (const { labels, value } of totals.values()) emit(labels, value);
    },
    dispose() {
      watch.dispose();
      for (const breaker of [...followed.keys()]) unfollow(breaker);
    },
  };
}
