/**
 * One instance of the service, in a process of its own: it calls the flaky dependency
 * steadily through the breaker that every worker shares (same id, same Redis), using
 * only the package's public API, and tells the launcher over IPC what it sees.
 */
import { Redis } from 'ioredis';
import { CircuitBreaker, CircuitOpenError, ConsecutiveBreaker, ConstantBackoff, ErrorCode, type ZenvarkError } from 'zenvark';
import { wallMs } from '../harness/clock.js';

/** What the launcher gives a worker, in the environment variable ZV_DEMO_WORKER. */
export interface WorkerSettings {
  redisUrl: string;
  dependencyUrl: string;
  breakerId: string;
  instanceId: string;
  tuning: Tuning;
}

/** The breaker's settings and the call rate, tuned by the launcher so that every step shows within seconds. */
export interface Tuning {
  callIntervalMs: number;
  /** ConsecutiveBreaker.threshold. */
  threshold: number;
  leaseTtlMs: number;
  /** ConstantBackoff.delayMs between recovery checks. */
  backoffMs: number;
  /** For calls and health checks alike. */
  timeoutMs: number;
}

const TICK_INTERVAL_MS = 250;
const STOP_DEADLINE_MS = 3_000;

/** Times are wall-clock ms (harness/clock.ts), comparable across processes and with Redis's. */
export type WorkerReport =
  /** Started; `state` is the shared state it read (onStateChange is not called for it). */
  | { type: 'ready'; at: number; state: string }
  /** Every TICK_INTERVAL_MS: totals since start. `calls` reached the dependency. */
  | { type: 'tick'; at: number; state: string; role: string; calls: number; failures: number; fastFails: number }
  /** onStateChange. `id` is the audit entry's ('' for a transition decided locally), `time` its server time. */
  | { type: 'state'; at: number; from: string; to: string; reason: string; id: string; generation: number; time: number; local: boolean }
  | { type: 'role'; at: number; role: string }
  /** A health check this worker ran (the lease holder, or any worker while Redis is unreachable). */
  | { type: 'check'; at: number; checkType: string; ok: boolean }
  /** onError, but for failing health checks (reported as 'check'). */
  | { type: 'error'; at: number; code: string; message: string }
  | { type: 'failed'; message: string };

/** From the launcher. */
export type WorkerCommand = { type: 'stop' };

const settings = JSON.parse(process.env.ZV_DEMO_WORKER ?? '{}') as WorkerSettings;
const { tuning } = settings;
const report = (message: WorkerReport) => {
  if (process.connected) process.send?.(message);
};

async function get(url: string, signal: AbortSignal | undefined): Promise<void> {
  const response = await fetch(url, { signal });
  await response.text();
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
}

const redis = new Redis(settings.redisUrl);
redis.on('error', () => {});
const breaker = new CircuitBreaker({
  id: settings.breakerId,
  redis,
  instanceId: settings.instanceId,
  leaseTtlMs: tuning.leaseTtlMs,
  timeoutMs: tuning.timeoutMs,
  breaker: new ConsecutiveBreaker({ threshold: tuning.threshold }),
  health: {
    backoff: new ConstantBackoff({ delayMs: tuning.backoffMs }),
    timeoutMs: tuning.timeoutMs,
    check: async (type, signal) => {
      try {
        await get(`${settings.dependencyUrl}/health`, signal);
        report({ type: 'check', at: wallMs(), checkType: type, ok: true });
      } catch (error) {
        report({ type: 'check', at: wallMs(), checkType: type, ok: false });
        throw error;
      }
    },
  },
  onStateChange: (state, t) =>
    report({
      type: 'state',
      at: wallMs(),
      from: t.from,
      to: state,
      reason: t.reason,
      id: t.id,
      generation: t.generation,
      time: t.time,
      local: t.local,
    }),
  onRoleChange: (role) => report({ type: 'role', at: wallMs(), role }),
  onError: (error) => {
    const code = (error as ZenvarkError).code ?? 'ERROR';
    if (code !== ErrorCode.HEALTH_CHECK_FAILED) report({ type: 'error', at: wallMs(), code, message: error.message });
  },
});

const totals = { calls: 0, failures: 0, fastFails: 0 };
const workUrl = `${settings.dependencyUrl}/work`;
const call = () =>
  breaker
    .execute(async (signal) => {
      totals.calls += 1;
      await get(workUrl, signal);
    })
    .catch((error: unknown) => {
      if (error instanceof CircuitOpenError) totals.fastFails += 1;
      else totals.failures += 1;
    });

let caller: NodeJS.Timeout | undefined;
let ticker: NodeJS.Timeout | undefined;
let started = false;
let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  // Not started yet: no lease to release, nothing to wait for.
  if (!started) process.exit(0);
  setTimeout(() => process.exit(1), STOP_DEADLINE_MS).unref();
  clearInterval(caller);
  clearInterval(ticker);
  await breaker.stop();
  redis.disconnect();
  process.exit(0);
}
process.on('message', (command: WorkerCommand) => {
  if (command.type === 'stop') void stop();
});
// The launcher gone (however it ended) is the end of this worker too: also when it went
// before this listener was added, while this worker was still loading (tsx kills a
// launcher that does not answer a relayed Ctrl-C within 60 ms, on a loaded machine too).
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());
if (!process.connected) void stop();

try {
  await breaker.start();
  started = true;
  report({ type: 'ready', at: wallMs(), state: breaker.state });
  caller = setInterval(call, tuning.callIntervalMs);
  ticker = setInterval(
    () => report({ type: 'tick', at: wallMs(), state: breaker.state, role: breaker.role, ...totals }),
    TICK_INTERVAL_MS,
  );
} catch (error) {
  redis.disconnect();
  const failed: WorkerReport = { type: 'failed', message: String(error) };
  if (process.connected) process.send?.(failed, () => process.exit(1));
  else process.exit(1);
}
