/**
 * The benchmark suite: every case in a process of its own, peers in the same run, each
 * figure next to its target. Writes bench/results/latest.json (with --quick the untracked
 * quick.json instead), prints a markdown table, and after a full run puts the table into
 * bench/README.md; a quick run changes no tracked file.
 *
 *   npm run bench              the full suite (a few minutes)
 *   npm run bench -- --quick   every case, small: under a minute; CI runs it so that no
 *                              case rots (it checks that every case produced numbers)
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SERVER_BINARY, serverVersion } from '../harness/redis-server.js';
import type { Figure } from './measure.js';

const run = promisify(execFile);
const quick = process.argv.includes('--quick');
const root = fileURLToPath(new URL('..', import.meta.url));

interface Job {
  script: string;
  args: string[];
  gc?: boolean;
}

// zenvark-prometheus and zenvark-slow are reported, with no target: what the metrics entry
// point adds, and what a breaker with the slow-call rule (hang detection) costs per call.
const subjects = ['zenvark', 'zenvark-prometheus', 'zenvark-slow', 'cockatiel-consecutive', 'cockatiel-sampling', 'opossum'];
const paths = ['success', 'failure', 'open'];
const jobs: Job[] = [
  ...subjects.flatMap((subject) => paths.map((path) => ({ script: 'overhead', args: [subject, path] }))),
  { script: 'commands', args: ['zenvark', quick ? '2' : '10'] },
  { script: 'commands', args: ['stream', quick ? '2' : '10'] },
  { script: 'hang', args: ['count', quick ? '3' : '10'] },
  { script: 'hang', args: ['sampling', quick ? '3' : '10'] },
  { script: 'propagation', args: quick ? ['10', '5'] : ['50', '20'] },
  { script: 'failover', args: quick ? ['1', '1000'] : ['5', '5000'] },
  { script: 'topology-failover', args: quick ? ['1'] : ['3'] },
  ...(quick ? ['1', '100'] : ['1', '100', '1000', '10000']).map((n) => ({ script: 'scale', args: [n], gc: true })),
  { script: 'contention', args: quick ? ['10', '2', '1'] : ['50', '5', '2'] },
];

async function runJob(job: Job): Promise<(Figure & { case: string })[]> {
  const argv = [...(job.gc ? ['--expose-gc'] : []), '--import', 'tsx', `bench/cases/${job.script}.ts`, ...job.args];
  if (quick) argv.push('--quick');
  const { stdout } = await run(process.execPath, argv, { cwd: root, timeout: 600_000, maxBuffer: 16 * 1024 * 1024 });
  const line = stdout.trim().split('\n').at(-1) ?? '';
  const parsed = JSON.parse(line) as { case: string; figures: Figure[] };
  return parsed.figures.map((f) => ({ ...f, case: parsed.case }));
}

async function runJobTimed(job: Job): Promise<(Figure & { case: string })[]> {
  const started = performance.now();
  const figures = await runJob(job);
  console.error(`  ${job.script} ${job.args.join(' ')}: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return figures;
}

console.error(`zenvark benchmarks${quick ? ' (quick)' : ''}`);
const suiteStarted = performance.now();
const figures: (Figure & { case: string })[] = [];
for (const job of jobs) figures.push(...(await runJobTimed(job)));
const seconds = (performance.now() - suiteStarted) / 1000;

// ---- targets ----------------------------------------------------------------------

const find = (name: string, subject = 'zenvark'): number => {
  const f = figures.find((x) => x.name === name && x.subject === subject);
  return f ? f.value : Number.NaN;
};
const leaseTtl = quick ? 1000 : 5000;
interface Target {
  target: string;
  value: number;
  limit: number;
  unit: string;
  met: boolean;
}
const atMost = (target: string, value: number, limit: number, unit: string): Target => ({
  target,
  value,
  limit,
  unit,
  met: value <= limit,
});
const cockatiel = (path: string) =>
  Math.min(find(`${path} overhead`, 'cockatiel-consecutive'), find(`${path} overhead`, 'cockatiel-sampling'));
const scaleCounts = quick ? ['1', '100'] : ['1', '100', '1000', '10000'];
const largest = scaleCounts.at(-1) as string;
const targets: Target[] = [
  atMost('success overhead ≤ cockatiel', find('success overhead'), cockatiel('success'), 'ns/call'),
  atMost('failure overhead ≤ cockatiel', find('failure overhead'), cockatiel('failure'), 'ns/call'),
  atMost('open-path cost ≤ ⅓ of cockatiel', find('open overhead'), cockatiel('open') / 3, 'ns/call'),
  atMost('Redis commands per call ≤ 0.02', find('Redis commands per call'), 0.02, 'commands/call'),
  atMost('propagation p99 ≤ 5 ms', find('propagation p99'), 5, 'ms'),
  atMost(`failover ≤ lease TTL + 250 ms`, find(`failover max, lease TTL ${leaseTtl} ms`), leaseTtl + 250, 'ms'),
  atMost('Cluster: reports within 1 s of a promotion', find('Cluster: promotion to first successful report'), 1000, 'ms'),
  atMost('Sentinel: reports within 1 s of +switch-master', find('Sentinel: +switch-master to first successful report'), 1000, 'ms'),
  ...scaleCounts.map((n) => atMost(`connections ≤ 3 (${n} breakers)`, find(`connections (${n})`), 3, 'connections')),
  ...scaleCounts
    .filter((n) => n !== '1')
    .map((n) => atMost(`client heap per idle breaker ≤ 2 KB (${n})`, find(`client heap per idle breaker (${n})`), 2048, 'bytes')),
  ...scaleCounts.map((n) =>
    atMost(`Redis memory per breaker ≤ 4 KB (${n})`, find(`Redis memory per idle breaker (${n})`), 4096, 'bytes'),
  ),
  // Redis's own idle CPU moves by a few hundred µs/s from reading to reading: over fewer
  // breakers than the full run's 10,000 the figure per breaker is that noise, not theirs.
  ...(quick ? [] : [atMost(`Redis CPU per idle breaker-second ≤ 1 µs (${largest})`, find(`Redis CPU per idle breaker-second (${largest})`), 1, 'µs')]),
  atMost(`start-up of ${largest} breakers < 5 s`, find(`start-up of ${largest} breakers`), 5000, 'ms'),
  atMost(`nothing left after stop (${largest})`, find(`library connections left after stop (${largest})`), 0, 'connections'),
  // Back to back, as the issue that set it defines it; the figure at 100 calls/s (each call
  // wakes an idle Redis) is reported in the table, without a target.
  atMost('server cost of zv1_record, back to back ≤ 10 µs', find('server cost of zv1_record, back to back'), 10, 'µs/call'),
  atMost('outcomes lost under contention = 0', find('outcomes lost'), 0, 'share'),
];

// ---- output -----------------------------------------------------------------------

// `Redis server v=7.0.15 sha=…` or `Valkey server v=8.0.1 sha=…`, from ZV_REDIS_SERVER's binary.
const serverText = serverVersion() ?? `${SERVER_BINARY} (cannot be run)`;
const serverMatch = /^(\S+) server v=(\S+)/.exec(serverText);
const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  server: serverMatch ? `${serverMatch[1]} ${serverMatch[2]}` : serverText,
};
const command = quick ? 'npm run bench -- --quick' : 'npm run bench';
const result = { date: new Date().toISOString(), command, quick, seconds, machine, figures, targets };
mkdirSync(new URL('results/', import.meta.url), { recursive: true });
writeFileSync(new URL(`results/${quick ? 'quick' : 'latest'}.json`, import.meta.url), `${JSON.stringify(result, null, 2)}\n`);

const num = (v: number) => {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 1) return v.toFixed(2);
  return v.toPrecision(2);
};
const lines: string[] = [];
lines.push(`Run: \`${command}\`, ${result.date.slice(0, 16).replace('T', ' ')} UTC, ${seconds.toFixed(0)} s.`);
lines.push(`Machine: ${machine.cores} × ${machine.cpu}, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.server}.`);
lines.push('');
lines.push('| target | measured | limit | met |');
lines.push('|---|---|---|---|');
for (const t of targets) lines.push(`| ${t.target} | ${num(t.value)} ${t.unit} | ${num(t.limit)} ${t.unit} | ${t.met ? 'yes' : '**no**'} |`);
lines.push('');
lines.push('| case | subject | figure | median | min | unit | note |');
lines.push('|---|---|---|---|---|---|---|');
for (const f of figures) {
  lines.push(`| ${f.case} | ${f.subject} | ${f.name} | ${num(f.value)} | ${f.min === undefined ? '' : num(f.min)} | ${f.unit} | ${f.note ?? ''} |`);
}
const table = lines.join('\n');
console.log(table);

if (!quick) {
  const readmeUrl = new URL('README.md', import.meta.url);
  const readme = readFileSync(readmeUrl, 'utf8');
  const start = '<!-- results:start -->';
  const end = '<!-- results:end -->';
  const from = readme.indexOf(start);
  const to = readme.indexOf(end);
  if (from >= 0 && to > from) {
    writeFileSync(readmeUrl, `${readme.slice(0, from + start.length)}\n${table}\n${readme.slice(to)}`);
  }
}

const missing = figures.filter((f) => !Number.isFinite(f.value)).map((f) => `${f.subject}: ${f.name}`);
const missingTargets = targets.filter((t) => !Number.isFinite(t.value)).map((t) => t.target);
if (missing.length > 0 || missingTargets.length > 0 || figures.length === 0) {
  console.error(`cases without a number: ${[...missing, ...missingTargets].join('; ')}`);
  process.exitCode = 1;
}
