/**
 * One breaker instance in a process of its own, driven by the parent over IPC (used by
 * test/fleet and by the fleet benchmarks). It reports what it observes (state changes,
 * role changes, health checks, errors) with wall-clock times of sub-millisecond
 * resolution, so that the parent can measure across processes on one machine.
 */
import { Redis } from 'ioredis';
import { CircuitBreaker, ConsecutiveBreaker, ConstantBackoff, CountBreaker, type ZenvarkError } from '../../src/index.js';
import { sleep, wallMs } from '../clock.js';

export interface WorkerConfig {
  url: string;
  id: string;
  instanceId: string;
  leaseTtlMs: number;
  backoffMs: number;
  threshold: number;
  /** Hold reports back this long (ms), so that reporting does not compete with what is measured. */
  reportDelayMs?: number;
  /** Recover through this many fleet-wide trial calls (all must succeed), without a health check. */
  halfOpenPermits?: number;
  /** The instance rule (and so isolation): the fleet opens only on failures from this many instances. */
  minimumInstances?: number;
  /**
   * The slow-call rule (and so hang detection): calls taking this long are slow. The
   * strategy is then a CountBreaker (threshold: failure rate 0.5 over 20 calls, 5 at least;
   * slow-call rate 0.5) instead of the consecutive one, and calls time out after `timeoutMs`.
   */
  slowCallDurationMs?: number;
  timeoutMs?: number;
}

/**
 * What this worker's dependency does (the 'dependency' command): answers, fails, or hangs
 * (answers nothing until the call's signal aborts it or the mode changes: then the calls
 * hanging answer). The health checks fail while it does not answer, as a real check of it
 * would.
 */
export type DependencyMode = 'ok' | 'fail' | 'hang';

export type WorkerEvent =
  | { type: 'ready'; at: number }
  | { type: 'state'; state: string; reason: string; generation: number; scope: string; at: number }
  | { type: 'role'; role: string; at: number }
  | { type: 'check'; checkType: string; at: number }
  | { type: 'error'; code: string; message: string; at: number }
  | { type: 'done'; seq: number; result?: unknown };

export type WorkerCommand =
  /** Runs `count` failing calls; answers when the last one settled (`result`: its time). */
  | { cmd: 'fail'; seq: number; count: number }
  /** One successful call; answers 'ok' or the error's name. */
  | { cmd: 'call'; seq: number }
  /** Calls every 20 ms for `forMs`, each taking `holdMs`; answers how many calls ran fn. */
  | { cmd: 'calls'; seq: number; forMs: number; holdMs: number }
  /** At wall-clock time `at`, starts `count` failing calls at once; answers how many ran fn. */
  | { cmd: 'storm'; seq: number; at: number; count: number }
  /** What the health checks answer from wall-clock time `at` on (default: now). */
  | { cmd: 'healthy'; seq: number; value: boolean; at?: number }
  /** From now on the dependency answers, fails or hangs (see DependencyMode). */
  | { cmd: 'dependency'; seq: number; mode: DependencyMode }
  /** Calls the dependency every `everyMs` for `forMs`; answers how the calls went (Traffic). */
  | { cmd: 'traffic'; seq: number; forMs: number; everyMs: number }
  /** Stops the breaker; answers with its stats (BreakerStats) after the stop. */
  | { cmd: 'stop'; seq: number };

/** What a 'traffic' command's calls did. */
export interface Traffic {
  /** Calls that reached the dependency. */
  ran: number;
  /** Calls refused with CircuitOpenError. */
  rejected: number;
}

const config = JSON.parse(process.env.ZV_WORKER ?? '{}') as WorkerConfig;
const held: WorkerEvent[] = [];
let flushTimer: NodeJS.Timeout | undefined;
const flush = () => {
  if (flushTimer) clearTimeout(flushTimer);
  flushTimer = undefined;
  for (const e of held.splice(0)) if (process.connected) process.send?.(e);
};
const send = (event: WorkerEvent) => {
  held.push(event);
  if (!config.reportDelayMs || event.type === 'done') flush();
  else flushTimer ??= setTimeout(flush, config.reportDelayMs);
};
/** Health checks pass from this wall-clock time on (while the dependency answers). */
let healthyFrom = Number.POSITIVE_INFINITY;
let dependencyMode: DependencyMode = 'ok';
/** Calls hanging now: they answer when the dependency leaves 'hang'. */
const hanging = new Set<() => void>();

/** One call of the dependency, as it behaves now. */
async function dependency(signal: AbortSignal | undefined): Promise<string> {
  if (dependencyMode === 'fail') throw new Error('dependency failed');
  if (dependencyMode === 'hang') {
    // Ends when aborted (the call's timeout), or answers when the dependency answers again.
    return new Promise((resolve, reject) => {
      const answer = () => {
        hanging.delete(answer);
        resolve('ok');
      };
      hanging.add(answer);
      signal?.addEventListener('abort', () => {
        hanging.delete(answer);
        reject(signal.reason);
      }, { once: true });
    });
  }
  return 'ok';
}

const redis = new Redis(config.url);
redis.on('error', () => {});
const breaker = new CircuitBreaker({
  id: config.id,
  redis,
  instanceId: config.instanceId,
  leaseTtlMs: config.leaseTtlMs,
  ...(config.slowCallDurationMs === undefined
    ? { breaker: new ConsecutiveBreaker({ threshold: config.threshold }) }
    : {
        breaker: new CountBreaker({ threshold: 0.5, size: 20, minimumNumberOfCalls: 5 }),
        slowCallDurationMs: config.slowCallDurationMs,
        slowCallRateThreshold: 0.5,
        timeoutMs: config.timeoutMs,
      }),
  health: {
    backoff: new ConstantBackoff({ delayMs: config.backoffMs }),
    check:
      config.halfOpenPermits === undefined
        ? async (type) => {
            send({ type: 'check', checkType: type, at: wallMs() });
            if (wallMs() < healthyFrom || dependencyMode !== 'ok') throw new Error('still down');
          }
        : undefined,
  },
  halfOpen: config.halfOpenPermits === undefined ? undefined : { permittedCalls: config.halfOpenPermits },
  minimumInstances: config.minimumInstances,
  onStateChange: (state, t) => send({ type: 'state', state, reason: t.reason, generation: t.generation, scope: t.scope, at: wallMs() }),
  onRoleChange: (role) => send({ type: 'role', role, at: wallMs() }),
  onError: (e) => {
    if ((e as ZenvarkError).code === 'ZV_HEALTH_CHECK_FAILED') return;
    send({ type: 'error', code: (e as ZenvarkError).code, message: e.message, at: wallMs() });
  },
});

process.on('message', async (message: WorkerCommand) => {
  switch (message.cmd) {
    case 'fail': {
      let settledAt = 0;
      for (let n = 0; n < message.count; n += 1) {
        await breaker
          .execute(async () => {
            settledAt = wallMs();
            throw new Error('dependency failed');
          })
          .catch(() => undefined);
      }
      send({ type: 'done', seq: message.seq, result: settledAt });
      break;
    }
    case 'call': {
      const result = await breaker.execute(async () => 'ok').catch((e: Error) => e.name);
      send({ type: 'done', seq: message.seq, result });
      break;
    }
    case 'calls': {
      let ran = 0;
      const calls: Promise<unknown>[] = [];
      const until = performance.now() + message.forMs;
      while (performance.now() < until) {
        calls.push(
          breaker
            .execute(async () => {
              ran += 1;
              await sleep(message.holdMs);
            })
            .catch(() => undefined),
        );
        await sleep(20);
      }
      send({ type: 'done', seq: message.seq, result: ran });
      await Promise.all(calls);
      break;
    }
    case 'storm': {
      let ran = 0;
      await sleep(Math.max(0, message.at - wallMs()));
      const calls = Array.from({ length: message.count }, () =>
        breaker
          .execute(async () => {
            ran += 1;
            throw new Error('dependency failed');
          })
          .catch(() => undefined),
      );
      await Promise.all(calls);
      send({ type: 'done', seq: message.seq, result: ran });
      break;
    }
    case 'dependency':
      dependencyMode = message.mode;
      if (dependencyMode !== 'hang') for (const answer of [...hanging]) answer();
      send({ type: 'done', seq: message.seq });
      break;
    case 'traffic': {
      const traffic: Traffic = { ran: 0, rejected: 0 };
      const calls: Promise<unknown>[] = [];
      const until = performance.now() + message.forMs;
      while (performance.now() < until) {
        calls.push(
          breaker
            .execute((signal) => {
              traffic.ran += 1;
              return dependency(signal);
            })
            .catch((error: Error) => {
              if (error.name === 'CircuitOpenError') traffic.rejected += 1;
            }),
        );
        await sleep(message.everyMs);
      }
      await Promise.all(calls);
      send({ type: 'done', seq: message.seq, result: traffic });
      break;
    }
    case 'healthy':
      healthyFrom = message.value ? (message.at ?? 0) : Number.POSITIVE_INFINITY;
      send({ type: 'done', seq: message.seq });
      break;
    case 'stop':
      await breaker.stop();
      redis.disconnect();
      send({ type: 'done', seq: message.seq, result: breaker.stats });
      process.disconnect();
      break;
  }
});

try {
  await breaker.start();
  send({ type: 'ready', at: wallMs() });
} catch (error) {
  send({ type: 'error', code: (error as ZenvarkError).code ?? 'START', message: String(error), at: wallMs() });
  process.exitCode = 1;
  redis.disconnect();
  process.disconnect();
}
