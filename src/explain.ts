/**
 * Why a breaker is in its state, from Redis. The library reads the figures in one call
 * (zv1_explain: the newest audit entry, the window against the stored strategy, the lease,
 * the recovery progress); this module puts them into an Explanation, with lines a person
 * reads. When the next recovery check is due only the breaker's own backoff can tell: it is
 * computed as the lease holder's check loop computes it (nextRecoveryCheck).
 *
 * Two ways in: breaker.explain(), through the breaker's own connections (so it needs a
 * started breaker and is bounded by their command timeout), and explainBreaker(), for
 * operators, through any client, a replica's too.
 */
import type { Cluster, Redis } from 'ioredis';
import type { BackoffStrategy } from './backoff.js';
import { BreakerMode, CircuitRole, CircuitState, StrategyKind, TransitionReason } from './constants.js';
import type { BreakerContext } from './coordinator.js';
import { count, describeMode, describeTransition, duration, rate } from './describe.js';
import { recoveryChecksSoFar } from './duties.js';
import { notStarted } from './errors.js';
import { type ExplainReply, type ModeInfo, type WindowFigures, readExplanation } from './functions.js';
import { nextRecoveryCheck } from './health-checker.js';
import { breakerKeys } from './keys.js';
import { MAX_DELAY_MS } from './limits.js';
import { DEFAULTS, backoffStrategy, healthSuccessThreshold, keyPrefix, redisClient } from './options.js';
import { answeredWithin } from './redis-failure.js';
import { parseStrategySpec, strategySpec } from './strategy-spec.js';
import { type Transition, parseAuditEntry } from './transition.js';
import { durationIn, nonEmptyString, onlyKnownKeys, requiredObject } from './validate.js';

export type { ModeInfo, WindowFigures };

/** The strategy a breaker's window was last recorded with, as the library stored it. */
export interface StoredStrategy {
  /** As stored: 'kind:threshold:window:minimum[:slow]' (the README, "Auditing"). */
  readonly spec: string;
  readonly kind: StrategyKind;
  /** The window as audit entries name it: 'consecutive', 'count:<size>' or 'time:<duration ms>'. */
  readonly window: string;
  /** Failures in a row (consecutive), or the failure rate, that open the circuit. */
  readonly threshold: number;
  /** Calls the window must hold before its rates count; 0 for consecutive failures. */
  readonly minimumCalls: number;
  /** The slow-call rate that opens the circuit, when slow calls count. */
  readonly slowCallRateThreshold: number | undefined;
}

/** A rule of the stored strategy: its figure now against its threshold. */
export interface RuleFigure {
  /** The rule, named by the audit reason it opens the circuit with. */
  readonly rule: typeof TransitionReason.CONSECUTIVE_FAILURES | typeof TransitionReason.FAILURE_RATE | typeof TransitionReason.SLOW_CALL_RATE;
  /** The failure run (consecutive_failures), or failures or slow calls per call in the window (0 with no calls). */
  readonly value: number;
  readonly threshold: number;
  /** The failures (the run) or slow calls behind the value. */
  readonly count: number;
  /** Calls in the window (the run, for consecutive_failures). */
  readonly calls: number;
  /** Calls the window must hold before a rate counts; 0 for consecutive_failures. */
  readonly minimumCalls: number;
  /** The figure reaches the threshold (with the minimum calls), as the library judges: the next recorded call can open the circuit. */
  readonly reached: boolean;
}

export interface LeaseFigures {
  /** The instance holding a valid lease; '' for none. */
  readonly holder: string;
  /** The fencing token last granted; 0 when the lease was never granted. */
  readonly token: number;
  /** What is left of the lease, in ms; 0 when none is held. */
  readonly remainingMs: number;
}

/** An open circuit's way back: the recovery checks so far and the next one. */
export interface RecoveryProgress {
  /** Failed recovery checks (and failed half-open periods) since the circuit opened. */
  readonly failedChecks: number;
  /** Recovery checks passed in a row. */
  readonly successesInARow: number;
  /** Passes in a row that recover it (health.successThreshold), when known. */
  readonly successThreshold: number | undefined;
  /** Since the last recovery check, or the opening when none ran, in ms. */
  readonly sinceLastCheckMs: number;
  /** The attempt number of the next check: the backoff's argument. */
  readonly nextAttempt: number;
  /** In how long the next check is due, in ms (0: due now, or running); undefined without a backoff to compute it. */
  readonly nextCheckInMs: number | undefined;
}

/** A half-open circuit's trial calls. */
export interface TrialProgress {
  /** Successful trial calls in this half-open period. */
  readonly successes: number;
  /** Successes that close the circuit (halfOpen.successThreshold), when known. */
  readonly successThreshold: number | undefined;
  /** Trial permits out and not expired. */
  readonly permitsOut: number;
}

/** What the instance that asked knows of itself (breaker.explain() only). */
export interface InstanceFigures {
  readonly instanceId: string;
  readonly role: CircuitRole;
  /** The state its execute() acts on. */
  readonly state: CircuitState;
  /** In degraded mode: Redis was unreachable, and it decides alone. */
  readonly degraded: boolean;
  /** While it is isolated (state 'isolated'): the transition that isolated it, with the
   * rule its own window reached and the figures; else undefined. */
  readonly isolation: Transition | undefined;
}

/**
 * Why a breaker is in its state, as Redis has it. Durations are server time, measured when
 * Redis answered. The window's figures are the stored window's now: after a transition
 * they start from zero, so an open circuit's reasons are in `lastTransition`.
 */
export interface Explanation {
  readonly breakerId: string;
  readonly state: CircuitState;
  readonly generation: number;
  /** The life of the state hash (server time, µs); '' when the breaker was never written. */
  readonly epoch: string;
  /** Time in the current state, in ms. */
  readonly ageMs: number;
  /** The transition that led to the current state, from the audit stream; undefined when there was none, or the stream no longer holds it. */
  readonly lastTransition: Transition | undefined;
  /** Entries in the audit stream. */
  readonly auditEntries: number;
  /** The strategy the last recorded call stored; undefined before the first. */
  readonly strategy: StoredStrategy | undefined;
  /** What the window holds now (expired buckets of a time window left out). */
  readonly window: WindowFigures;
  /** Each rule of the stored strategy against its threshold; none before the first recorded call. */
  readonly rules: readonly RuleFigure[];
  /** Since the last recorded call, in ms; -1 when none was recorded. */
  readonly idleMs: number;
  readonly lease: LeaseFigures;
  /** While open. */
  readonly recovery: RecoveryProgress | undefined;
  /** While half-open. */
  readonly trials: TrialProgress | undefined;
  /** What an operator set beside the state (zv1_control): forced open or closed, monitored, or normal (mode ''). */
  readonly mode: ModeInfo;
  /** The instance that asked (breaker.explain()); undefined from explainBreaker(). */
  readonly instance: InstanceFigures | undefined;
  /** The explanation in plain English, one finding a line. */
  readonly lines: readonly string[];
  /** `lines`, joined with newlines. */
  readonly text: string;
}

/** Options of explainBreaker(). */
export interface ExplainOptions {
  /** Prefix of the breaker's keys, as the breaker has it. Default: 'zenvark'. */
  prefix?: string;
  /** The breaker's health.backoff: with it, the explanation says when the next recovery check is due. Default: none. */
  backoff?: BackoffStrategy;
  /** The breaker's health.successThreshold, 1 to 100: the explanation counts passes against it. Default: unknown. */
  successThreshold?: number;
  /** Longest wait for Redis's answer, in ms. Default: 5000. */
  timeoutMs?: number;
}

/** The keys of ExplainOptions, checked against it by tsc. */
export const EXPLAIN_KEYS = { prefix: true, backoff: true, successThreshold: true, timeoutMs: true } as const satisfies Record<
  keyof ExplainOptions,
  true
>;

/** The default wait for Redis of explainBreaker() and the admin API, in ms: an operator's client may have no command timeout of its own. */
export const OPERATOR_TIMEOUT_MS = 5000;

/** What the asker knows of the breaker beyond Redis. */
interface Known {
  readonly backoff: BackoffStrategy | undefined;
  readonly successThreshold: number | undefined;
  readonly trialSuccessThreshold: number | undefined;
  /** Half-open without a health check: the open wait is the only "check". */
  readonly waitOnly: boolean;
  /** The spec this instance records with. */
  readonly ownSpec: string | undefined;
  readonly instance: InstanceFigures | undefined;
}

/**
 * Explains breaker `id` through `redis`, without a running breaker: an operator's client,
 * a replica's (the function is read-only). Without `options.backoff` it cannot say when
 * the next recovery check is due. Arguments are checked as the constructor checks them.
 */
export async function explainBreaker(redis: Redis | Cluster, id: string, options?: ExplainOptions): Promise<Explanation> {
  const client = redisClient('explainBreaker() redis', redis);
  const breakerId = nonEmptyString('explainBreaker() id', id);
  const o = options === undefined ? {} : requiredObject('explainBreaker() options', options);
  onlyKnownKeys('explainBreaker() options', o, EXPLAIN_KEYS);
  const prefix = keyPrefix('explainBreaker() options.prefix', o.prefix, DEFAULTS.prefix);
  const backoff = o.backoff === undefined ? undefined : backoffStrategy('explainBreaker() options.backoff', o.backoff);
  const successThreshold = healthSuccessThreshold('explainBreaker() options.successThreshold', o.successThreshold);
  const timeoutMs =
    o.timeoutMs === undefined ? OPERATOR_TIMEOUT_MS : durationIn('explainBreaker() options.timeoutMs', o.timeoutMs, 1, MAX_DELAY_MS);
  const reply = await answeredWithin(timeoutMs, client, 'zv1_explain', readExplanation(client, breakerKeys(prefix, breakerId)));
  return explanation(breakerId, reply, {
    backoff,
    successThreshold,
    trialSuccessThreshold: undefined,
    waitOnly: false,
    ownSpec: undefined,
    instance: undefined,
  });
}

/** breaker.explain(): through the breaker's own command connection, which times out every command. */
export async function explainRunning(core: BreakerContext): Promise<Explanation> {
  const o = core.o;
  const functions = core.functions;
  if (!core.running || !functions) {
    throw notStarted(o.id, 'explain()', 'explainBreaker(redis, id) to read it without a breaker');
  }
  const reply = await functions.explain();
  return explanation(o.id, reply, {
    backoff: o.backoff,
    successThreshold: o.healthSuccessThreshold,
    trialSuccessThreshold: o.halfOpen?.successThreshold,
    waitOnly: o.halfOpen !== undefined && o.check === undefined,
    ownSpec: strategySpec(o.breaker, o.slowCallRateThreshold),
    instance: { instanceId: o.instanceId, role: core.role, state: core.view.state, degraded: core.local !== undefined, isolation: core.isolation?.since },
  });
}

function explanation(breakerId: string, r: ExplainReply, known: Known): Explanation {
  const { snapshot } = r;
  const strategy = r.spec === '' ? undefined : storedStrategy(r.spec);
  const audit = transitionInto(r);
  const facts = {
    breakerId,
    state: snapshot.state,
    generation: snapshot.generation,
    epoch: snapshot.epoch,
    ageMs: snapshot.ageMs,
    lastTransition: audit.transition,
    auditEntries: r.auditEntries,
    strategy,
    window: r.window,
    rules: strategy ? rules(strategy, r) : [],
    idleMs: snapshot.idleMs,
    lease: { holder: r.snapshot.holder, token: r.token, remainingMs: r.snapshot.leaseMs },
    recovery: snapshot.state === CircuitState.OPEN ? recoveryProgress(r, known) : undefined,
    trials:
      snapshot.state === CircuitState.HALF_OPEN
        ? { successes: r.trialSuccesses, successThreshold: known.trialSuccessThreshold, permitsOut: r.permitsOut }
        : undefined,
    mode: snapshot.mode,
    instance: known.instance,
  };
  const lines = render(facts, known, audit.note);
  return { ...facts, lines, text: lines.join('\n') };
}

function storedStrategy(spec: string): StoredStrategy {
  const p = parseStrategySpec(spec);
  return {
    spec,
    kind: p.kind,
    window: p.kind === StrategyKind.CONSECUTIVE ? p.kind : `${p.kind}:${p.size}`,
    threshold: p.threshold,
    minimumCalls: p.minimumCalls,
    slowCallRateThreshold: p.slowCallRateThreshold,
  };
}

function rules(s: StoredStrategy, r: ExplainReply): RuleFigure[] {
  const { failures, calls, slow } = r.window;
  if (s.kind === StrategyKind.CONSECUTIVE) {
    return [{ rule: TransitionReason.CONSECUTIVE_FAILURES, value: failures, threshold: s.threshold, count: failures, calls, minimumCalls: 0, reached: r.failureReached }];
  }
  const per = (n: number) => (calls === 0 ? 0 : n / calls);
  const figures: RuleFigure[] = [
    { rule: TransitionReason.FAILURE_RATE, value: per(failures), threshold: s.threshold, count: failures, calls, minimumCalls: s.minimumCalls, reached: r.failureReached },
  ];
  if (s.slowCallRateThreshold !== undefined) {
    figures.push({
      rule: TransitionReason.SLOW_CALL_RATE,
      value: per(slow),
      threshold: s.slowCallRateThreshold,
      count: slow,
      calls,
      minimumCalls: s.minimumCalls,
      reached: r.slowReached,
    });
  }
  return figures;
}

function recoveryProgress(r: ExplainReply, known: Known): RecoveryProgress {
  const { snapshot } = r;
  const checks = recoveryChecksSoFar(snapshot);
  const next = known.backoff && nextRecoveryCheck(known.backoff, checks, snapshot.recoveryAgeMs);
  return {
    failedChecks: snapshot.recoveryFailures,
    successesInARow: snapshot.recoverySuccesses,
    successThreshold: known.successThreshold,
    sinceLastCheckMs: snapshot.recoveryAgeMs,
    nextAttempt: checks + 1,
    nextCheckInMs: next && Math.max(0, next.waitMs),
  };
}

/**
 * The newest audit entry, if it is the transition into the current state (its generation
 * and state); otherwise a note on what the stream holds instead.
 */
function transitionInto(r: ExplainReply): { transition?: Transition; note?: string } {
  const { snapshot, newest } = r;
  if (!newest) {
    return snapshot.generation === 0 ? {} : { note: `audit: the stream holds no entry, not even the transition into generation ${snapshot.generation} (it was deleted)` };
  }
  let t: Transition;
  try {
    t = parseAuditEntry(newest.fields, newest.id);
  } catch {
    return { note: `audit: the newest entry of the stream (${newest.id}) was not written by Zenvark` };
  }
  if (t.generation === snapshot.generation && t.to === snapshot.state) return { transition: t };
  return {
    note:
      `audit: the newest entry (${newest.id}, into generation ${t.generation}, ${t.to}) is not the transition into generation ` +
      `${snapshot.generation}: the state hash was recreated (deleted, or Redis restarted empty) and the stream kept`,
  };
}

// ---- the lines --------------------------------------------------------------------------

type Facts = Omit<Explanation, 'lines' | 'text'>;

const STATE_WORDS: Record<CircuitState, string> = { closed: 'closed', open: 'open', half_open: 'half-open', isolated: 'isolated' };

function render(e: Facts, known: Known, note: string | undefined): string[] {
  const lines = [headline(e)];
  const mode = describeMode(e.mode);
  if (mode) lines.push(mode);
  if (e.state === CircuitState.CLOSED) lines.push(windowLine(e));
  if (e.recovery) {
    const paused = e.mode.mode === BreakerMode.FORCED_OPEN;
    lines.push(recoveryLine(e.recovery), paused ? 'next recovery check: none while forced open; when the mode ends, the window decides' : nextCheckLine(e.recovery, e.lease, known));
  }
  if (e.trials) lines.push(trialsLine(e.trials));
  lines.push(leaseLine(e.lease, e.state, e.mode.mode !== BreakerMode.NORMAL));
  if (e.strategy && known.ownSpec !== undefined && known.ownSpec !== e.strategy.spec) {
    lines.push(
      `strategy: this instance records with ${known.ownSpec}, but the stored spec is ${e.strategy.spec} (another instance's): ` +
        'every instance of a breaker should use the same strategy',
    );
  }
  if (e.instance) lines.push(instanceLine(e.instance, e.state));
  if (note) lines.push(note);
  return lines;
}

function headline(e: Facts): string {
  const state = STATE_WORDS[e.state];
  if (e.epoch === '') return `${state} (generation 0): never used, no call recorded and no transition`;
  const head = `${state} for ${duration(e.ageMs)} (generation ${e.generation})`;
  const t = e.lastTransition;
  if (t) return `${head}: ${describeTransition(t, e.strategy)}`;
  if (e.generation === 0) return `${head}: it has never opened`;
  return `${head}: the audit stream no longer holds the transition that led here`;
}

/** A closed circuit's window: each rule's figure against its threshold. */
function windowLine(e: Facts): string {
  const s = e.strategy;
  if (!s) return 'window: no call recorded yet';
  const last = e.idleMs >= 0 ? `; last call recorded ${duration(e.idleMs)} ago` : '';
  return `window (${s.window}): ${e.rules.map((r) => ruleText(r, s)).join('; ')}${last}`;
}

const REACHED = ': reached, the next recorded call can open the circuit';

function ruleText(r: RuleFigure, s: StoredStrategy): string {
  const reached = r.reached ? REACHED : '';
  if (r.rule === TransitionReason.CONSECUTIVE_FAILURES) return `${r.count} of ${r.threshold} consecutive failures${reached}`;
  if (r.rule === TransitionReason.SLOW_CALL_RATE) return `slow-call rate ${rate(r.value)} of ${rate(r.threshold)}${reached}`;
  const size = Number(s.window.split(':')[1]);
  const span = s.kind === StrategyKind.TIME ? `${count(r.calls, 'call')} in the last ${duration(size)}` : `the last ${count(r.calls, 'call')}`;
  const needs = r.calls < r.minimumCalls ? `, needs ${r.minimumCalls}` : '';
  return `failure rate ${rate(r.value)} of ${rate(r.threshold)} over ${span}${needs}${reached}`;
}

function recoveryLine(p: RecoveryProgress): string {
  const of = p.successThreshold === undefined ? '' : ` of ${p.successThreshold}`;
  const successes = `${p.successesInARow}${of} passing ${p.successesInARow === 1 && of === '' ? 'check' : 'checks'} in a row`;
  const last = p.failedChecks + p.successesInARow === 0 ? `no check yet, opened ${duration(p.sinceLastCheckMs)} ago` : `last check ${duration(p.sinceLastCheckMs)} ago`;
  return `recovery: ${count(p.failedChecks, 'failed attempt')}, ${successes}; ${last}`;
}

function nextCheckLine(p: RecoveryProgress, lease: LeaseFigures, known: Known): string {
  const what = known.waitOnly ? 'the open wait ends (then half-open)' : 'next recovery check';
  const attempt = `(attempt ${p.nextAttempt})`;
  const by = lease.holder === '' ? '' : ` by leader ${lease.holder} (token ${lease.token})`;
  if (lease.holder === '') return `${what} ${attempt} once an instance takes the lease: none holds it now`;
  if (p.nextCheckInMs === undefined) {
    return `${what} ${attempt}${by}: its time is known only to the lease holder (pass the breaker's backoff to explainBreaker() to compute it)`;
  }
  if (p.nextCheckInMs === 0) return `${what} due now ${attempt}${by}: it may be running`;
  return `${what} in ${duration(p.nextCheckInMs)} ${attempt}${by}`;
}

function trialsLine(t: TrialProgress): string {
  const of = t.successThreshold === undefined ? '' : ` of ${t.successThreshold}`;
  return `trials: ${t.successes}${of} trial calls succeeded, ${count(t.permitsOut, 'permit')} out`;
}

function leaseLine(l: LeaseFigures, state: CircuitState, underMode: boolean): string {
  if (l.holder !== '') return `lease: held by ${l.holder} (token ${l.token}) for ${duration(l.remainingMs)} more`;
  const last = l.token === 0 ? 'never granted' : `last token ${l.token}`;
  // Only a duty needs a lease holder (docs/architecture.md, "Fenced leases"), and none has one under a mode.
  if (underMode) return `lease: none held (${last}); no instance needs one while the mode lasts`;
  if (state === CircuitState.CLOSED) return `lease: none held (${last}); a closed breaker has a lease holder only for idle probes`;
  return l.token === 0 ? 'lease: never granted' : `lease: free (${last}); the next instance to ask takes it`;
}

function instanceLine(i: InstanceFigures, shared: CircuitState): string {
  const role = i.role === CircuitRole.LEADER ? 'the lease holder' : 'a follower';
  const head = `this instance (${i.instanceId}) is ${role}`;
  const t = i.isolation;
  if (t) {
    const figures = t.rate === '' ? `${t.failures} of ${t.threshold}` : `rate ${t.rate} of ${t.threshold} over ${t.calls} calls`;
    const rule = t.reason.replaceAll('_', ' ');
    const since = t.local ? ', decided alone (Redis did not answer)' : ` (instance entry ${t.id})`;
    return `${head}, isolated: its own calls reached ${rule} (${figures}) while the fleet's instance rule kept it ${STATE_WORDS[shared]}${since}; its calls fail fast until its own recovery checks pass`;
  }
  if (i.degraded) return `${head}, in degraded mode (Redis was unreachable): it acts on its own state, ${STATE_WORDS[i.state]}`;
  return i.state === shared ? head : `${head}; it acts on ${STATE_WORDS[i.state]} until it hears of the change`;
}
