/**
 * Call overhead: nanoseconds per call over a bare `await fn()`, measured in this process
 * with the bare loop interleaved between repetitions (so both see the same machine).
 *   npx tsx bench/cases/overhead.ts <subject> <path> [--quick]
 * subject: zenvark | zenvark-prometheus (with zenvark/prometheus registered) |
 *          zenvark-slow (the slow-call rule configured: hang detection watches every call) |
 *          opossum | cockatiel-consecutive | cockatiel-sampling
 * path:    success | failure (fn rejects, the circuit stays closed) | open (fast-fail)
 */
import { randomUUID } from 'node:crypto';
import {
  ConsecutiveBreaker as CockatielConsecutive,
  SamplingBreaker as CockatielSampling,
  circuitBreaker,
  handleAll,
} from 'cockatiel';
import { Redis } from 'ioredis';
import Opossum from 'opossum';
import { CircuitBreaker, ConsecutiveBreaker, ConstantBackoff, SamplingBreaker } from '../library.js';
import { LIBRARY_CODE } from '../../src/shipped-library.js';
import { sleep } from '../../harness/clock.js';
import { disposeRedis, startRedis } from '../../harness/redis-server.js';
import { args, median, nsPerCall, quick, report } from '../measure.js';

type Path = 'success' | 'failure' | 'open';
const [subject = 'zenvark', path = 'success'] = args as [string, Path];
const CALLS = quick ? 20_000 : 200_000;
const REPETITIONS = quick ? 3 : 7;

// The protected function: settles at once; a failure rejects with one prepared error, so
// that making errors in fn is not part of what is measured.
const failure = new Error('dependency failed');
const succeed = async () => 1;
const reject = () => Promise.reject(failure);
const fn = path === 'failure' ? reject : succeed;

/** One call through the subject; must swallow the rejection it expects. */
type Call = () => Promise<unknown>;

/** What a zenvark subject adds to the default breaker: the Prometheus metrics, or the slow-call rule. */
type Extra = 'metrics' | 'slow-rule' | undefined;

/**
 * The slow-call rule needs a window: a time window that never reaches its minimum on the
 * closed paths, and trips on the first failure on the open path. Calls settle at once,
 * far within the slow-call duration: what is measured is the watching, not a slow call.
 */
const slowRule = () => ({
  breaker: new SamplingBreaker({ threshold: 1, duration: 60_000, minimumNumberOfCalls: path === 'open' ? 1 : 1_000_000_000 }),
  slowCallDurationMs: 60_000,
  slowCallRateThreshold: 1,
});

async function zenvark(extra: Extra = undefined): Promise<{ call: Call; close: () => Promise<void> }> {
  const metrics = extra === 'metrics';
  // Loaded for this subject only: prom-client is no part of the others' process.
  let registration: { dispose(): void } | undefined;
  if (metrics) {
    const [{ registerMetrics }, { Registry }] = await Promise.all([import('../../dist/src/prometheus.js'), import('prom-client')]);
    registration = registerMetrics({ registry: new Registry() });
  }
  const server = await startRedis();
  const admin = server.client();
  await admin.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY_CODE);
  const redis = new Redis(server.url);
  const breaker = new CircuitBreaker({
    id: `bench-${randomUUID()}`,
    redis,
    // Closed paths never trip; the open path trips on its first failure.
    breaker: new ConsecutiveBreaker({ threshold: path === 'open' ? 1 : 1_000_000_000 }),
    health: { backoff: new ConstantBackoff({ delayMs: 1_000_000 }), check: async () => Promise.reject(failure) },
    onError: () => undefined,
    ...(extra === 'slow-rule' ? slowRule() : {}),
  });
  await breaker.start();
  if (path === 'open') {
    await breaker.execute(reject).catch(() => undefined);
    while (breaker.state !== 'open') await sleep(5);
  }
  return {
    call: () => breaker.execute(fn).catch(() => undefined),
    close: async () => {
      await breaker.stop();
      registration?.dispose();
      redis.disconnect();
      admin.disconnect();
      await disposeRedis(server);
    },
  };
}

async function cockatiel(kind: 'consecutive' | 'sampling'): Promise<{ call: Call; close: () => Promise<void> }> {
  const breaker =
    kind === 'consecutive'
      ? new CockatielConsecutive(path === 'open' ? 1 : 1_000_000_000)
      : new CockatielSampling({ threshold: 0.5, duration: 10_000, minimumRps: path === 'open' ? 1 : 1_000_000_000 });
  const policy = circuitBreaker(handleAll, { halfOpenAfter: 1_000_000_000, breaker });
  if (path === 'open') {
    for (let n = 0; n < 100 && policy.state !== 1; n += 1) await policy.execute(reject).catch(() => undefined);
  }
  return { call: () => policy.execute(fn).catch(() => undefined), close: async () => undefined };
}

async function opossum(): Promise<{ call: Call; close: () => Promise<void> }> {
  // Without rollingPercentilesEnabled: false, opossum sorts every latency of the window on
  // each failure, and a failure path of 100,000 calls takes minutes.
  const breaker = new Opossum(fn, { timeout: false, rollingPercentilesEnabled: false, volumeThreshold: Number.MAX_SAFE_INTEGER });
  if (path === 'open') breaker.open();
  return { call: () => breaker.fire().catch(() => undefined), close: async () => breaker.shutdown() };
}

const setups: Record<string, () => Promise<{ call: Call; close: () => Promise<void> }>> = {
  zenvark: () => zenvark(),
  'zenvark-prometheus': () => zenvark('metrics'),
  'zenvark-slow': () => zenvark('slow-rule'),
  opossum,
  'cockatiel-consecutive': () => cockatiel('consecutive'),
  'cockatiel-sampling': () => cockatiel('sampling'),
};
const setup = setups[subject];
if (!setup) throw new Error(`unknown subject ${subject}`);
const { call, close } = await setup();

const bare: Call = () => (path === 'failure' ? reject().catch(() => undefined) : succeed());
const loop = (c: Call) => async (n: number) => {
  for (let i = 0; i < n; i += 1) await c();
};

// Warm-up: let the JIT settle on both loops.
await nsPerCall(CALLS, loop(bare));
await nsPerCall(CALLS, loop(call));
const bareNs: number[] = [];
const subjectNs: number[] = [];
for (let rep = 0; rep < REPETITIONS; rep += 1) {
  bareNs.push(await nsPerCall(CALLS, loop(bare)));
  subjectNs.push(await nsPerCall(CALLS, loop(call)));
}
await close();

const overheads = subjectNs.map((ns, i) => ns - (bareNs[i] as number));
report('overhead', [
  {
    name: `${path} overhead`,
    subject,
    value: median(overheads),
    min: Math.min(...overheads),
    unit: 'ns/call',
    note: `bare await fn(): ${median(bareNs).toFixed(0)} ns`,
  },
]);
