/**
 * `npm run faults`: every scenario of test/faults/, long (ZV_FAULTS=long), then
 * docs/faults.md from the figures they recorded. A scenario whose assertions fail is
 * written as failed and fails the run.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type FaultFigures, RESULTS } from './scenario.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
rmSync(RESULTS, { force: true });
const started = performance.now();
const vitest = spawnSync(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', 'test/faults', ...process.argv.slice(2)], {
  cwd: root,
  env: { ...process.env, ZV_FAULTS: 'long' },
  stdio: 'inherit',
});
const seconds = ((performance.now() - started) / 1000).toFixed(0);

const results = existsSync(RESULTS)
  ? readFileSync(RESULTS, 'utf8').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as FaultFigures & { name: string })
  : [];
rmSync(RESULTS, { force: true });

const ms = (v: number | undefined) => (v === undefined || v === null ? '–' : v < 10 ? v.toFixed(1) : String(Math.round(v)));
const lat = (l: FaultFigures['latencyBefore']) => (l ? `${ms(l.p50)} / ${ms(l.p99)} / ${ms(l.p999)}` : '–');
const rows = results.map(
  (f) =>
    `| ${f.name} | ${f.injected} | ${ms(f.detectMs)} | ${ms(f.convergeMs)} | ${lat(f.latencyBefore)} | ${lat(f.latencyDuring)} | ${f.transitions} | ${f.outcomesLost} | ${f.reportsPerBreaker} |`,
);
const notes = results.filter((f) => f.note).map((f) => `- **${f.name}**: ${f.note}`);
const status = vitest.status === 0 ? 'every scenario passed' : '**some scenarios failed: see the run\'s output; they are missing from the table**';

const text = `# The bad day: faults and what Zenvark does with them

Written by \`npm run faults\` (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${seconds} s, ${status}) on
${cpus().length} × ${cpus()[0]?.model.trim()}, Node ${process.version}. Each scenario injects one fault into real
\`redis-server\` processes and breaker instances (in separate processes where the scenario
needs them), asserts what a user must observe, and measures. \`npm test\` runs the same
scenarios short (test/faults/).

- **detect**: from the injection to the first sign of it in the breakers, ms.
- **converge**: from the end of the fault (or the injection, for one that does not end) to
  every instance on one shared state again, ms.
- **latency**: execute() from the call to its settle, p50 / p99 / p99.9 ms, before the fault
  and during it; fn answers at once, so this is the breaker's own cost.
- **transitions**: audit entries written during the scenario.
- **lost**: outcomes executed but neither counted (by Redis or locally) nor accounted for.
- **reports**: onError reports per breaker instance (the most any one received).

| scenario | injected | detect | converge | latency before | latency during | transitions | lost | reports |
|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}

${notes.join('\n')}
`;
writeFileSync(new URL('docs/faults.md', `file://${root}`), text);
console.log(text);
process.exit(vitest.status ?? 1);
