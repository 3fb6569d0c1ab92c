/**
 * The Grafana dashboard and the Prometheus alert rules of examples/ (and the README's
 * example queries) ask only for what zenvark/prometheus really exports: every series name, every label they match, group or
 * join on, and every label value they compare with is checked against the scrape of a
 * registry that real breakers filled (a trip, refused calls, a recovery through health
 * checks, a transition from the feed, degraded mode and back). promtool (Debian's
 * prometheus package, fetched by .ci/promtool) checks the rules, runs their unit tests,
 * and evaluates the dashboard's queries over a synthetic fleet.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { type MetricsRegistration, registerMetrics } from '../../src/prometheus.js';
import { type Instance, fail, fleet, startAll, stopAll, untilAll } from '../support/instances.js';
import { ownRedis } from '../support/own-redis.js';
import { exposedSeries, queryUses } from '../support/promql.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);
const DASHBOARD = 'examples/grafana/zenvark-dashboard.json';
const ALERTS = 'examples/prometheus/zenvark-alerts.yml';
const ALERT_TESTS = 'examples/prometheus/zenvark-alerts.test.yml';
/** What Prometheus adds to every series it scrapes. */
const SCRAPE_LABELS = new Set(['instance', 'job']);

interface Query {
  /** Where it is, for the failure message. */
  readonly where: string;
  readonly expr: string;
  /** Labels that must be in the result: a legend's {{label}}, an annotation's $labels.label, label_values()'s label. */
  readonly resultLabels: readonly string[];
}

interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly datasource?: { type: string; uid: string };
  readonly gridPos: { x: number; y: number; w: number; h: number };
  readonly targets?: { refId: string; expr: string; legendFormat?: string; datasource?: { uid: string } }[];
}

interface Variable {
  readonly name: string;
  readonly type: string;
  readonly query: string | { query: string };
  readonly multi?: boolean;
  readonly includeAll?: boolean;
  readonly datasource?: { uid: string };
}

const dashboard = JSON.parse(readFileSync(join(root, DASHBOARD), 'utf8')) as {
  schemaVersion: number;
  uid: string;
  panels: Panel[];
  templating: { list: Variable[] };
};
const alerts = parseYaml(readFileSync(join(root, ALERTS), 'utf8')) as {
  groups: { name: string; rules: { alert: string; expr: string; for?: string; annotations: Record<string, string> }[] }[];
};

const legendLabels = (format: string | undefined) => [...(format ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);

/** Every PromQL expression of both files. */
function queries(): Query[] {
  const found: Query[] = [];
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) {
      found.push({ where: `dashboard panel '${panel.title}' ${target.refId}`, expr: target.expr, resultLabels: legendLabels(target.legendFormat) });
    }
  }
  for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
    const text = typeof variable.query === 'string' ? variable.query : variable.query.query;
    const labelValues = /^label_values\((.*),\s*(\w+)\s*\)$/.exec(text);
    if (!labelValues) throw new Error(`dashboard variable ${variable.name}: ${text} is not label_values(selector, label)`);
    found.push({ where: `dashboard variable ${variable.name}`, expr: labelValues[1]!, resultLabels: [labelValues[2]!] });
  }
  // The README's example queries too: a block's indented line continues the one above it.
  for (const [, block] of readFileSync(join(root, 'README.md'), 'utf8').matchAll(/^```promql\n([\s\S]*?)^```$/gm)) {
    const exprs: string[] = [];
    for (const line of block!.split('\n')) {
      if (line.trim() === '' || line.trim().startsWith('#')) continue;
      if (/^\s/.test(line) && exprs.length > 0) exprs[exprs.length - 1] += ` ${line.trim()}`;
      else exprs.push(line);
    }
    for (const expr of exprs) found.push({ where: `README query ${expr}`, expr, resultLabels: [] });
  }
  for (const group of alerts.groups) {
    for (const rule of group.rules) {
      const used = Object.values(rule.annotations).flatMap((text) => [...text.matchAll(/\$labels\.(\w+)/g)].map((m) => m[1]!));
      found.push({ where: `alert ${rule.alert}`, expr: rule.expr, resultLabels: [...new Set(used)] });
    }
  }
  return found;
}

type Exposed = ReturnType<typeof exposedSeries>;

/** What `query` asks for that `exposed` (a scrape) does not have, one line each. */
function problems(query: Query, exposed: Exposed): string[] {
  const out: string[] = [];
  const uses = queryUses(query.expr);
  const labelsOf = (name: string) => new Set([...(exposed.get(name)?.keys() ?? []), ...SCRAPE_LABELS]);
  for (const series of uses.series) {
    const labels = exposed.get(series.name);
    if (!labels) {
      out.push(`${query.where}: no series named ${series.name}`);
      continue;
    }
    for (const { label, op, value } of series.matchers) {
      if (!labelsOf(series.name).has(label)) out.push(`${query.where}: ${series.name} has no label ${label}`);
      else if (op === '=' && !SCRAPE_LABELS.has(label) && !value.startsWith('$') && !labels.get(label)?.has(value)) {
        out.push(`${query.where}: ${series.name}{${label}} is never "${value}" (seen: ${[...(labels.get(label) ?? [])].join(', ')})`);
      }
    }
  }
  for (const grouping of uses.groupings) {
    for (const label of grouping.labels) {
      for (const name of grouping.scope) {
        if (exposed.has(name) && !labelsOf(name).has(label)) out.push(`${query.where}: ${grouping.keyword} (${label}): ${name} has no label ${label}`);
      }
    }
  }
  // What the result carries: the labels it is grouped by, or without any grouping the series' own.
  const by = uses.groupings.filter((g) => g.keyword === 'by');
  const result = by.length > 0 ? new Set(by.flatMap((g) => g.labels)) : new Set(uses.series.flatMap((s) => [...labelsOf(s.name)]));
  for (const label of query.resultLabels) {
    if (!result.has(label)) out.push(`${query.where}: uses label ${label}, which its result does not carry`);
  }
  return out;
}

describe('the queries of the dashboard and the alerts, against what zenvark/prometheus exports', () => {
  const own = ownRedis({ library: true });
  const registry = new Registry();
  let instances: Instance[] = [];
  let exposed: Exposed;
  let registration: MetricsRegistration | undefined;

  beforeAll(async () => {
    registration = registerMetrics({ registry });
    instances = fleet(own.server.url, 2, { timeoutMs: 2_000 });
    const [a, b] = instances as [Instance, Instance];
    await startAll(instances);
    await a.breaker.execute(async () => 'ok');

    // b trips it; a learns it from the feed.
    await fail(b, 3);
    await untilAll(instances, 'open');
    await expect(a.breaker.execute(async () => 'refused')).rejects.toMatchObject({ code: 'ZV_CIRCUIT_OPEN' });
    // The lease holder's checks fail, then pass.
    await vi.waitFor(() => expect(instances.flatMap((i) => i.seen.checks)).not.toHaveLength(0), { timeout: 10_000 });
    for (const i of instances) i.healthy = true;
    await untilAll(instances, 'closed');

    // Redis away: degraded mode, a local trip, errors; then back.
    own.server.pause();
    try {
      await fail(a, 3);
      await untilAll([a], 'open');
      await vi.waitFor(() => expect(a.breaker.degraded).toBe(true));
    } finally {
      own.server.resume();
    }
    await vi.waitFor(() => expect(instances.map((i) => i.breaker.degraded)).toEqual([false, false]), { timeout: 20_000 });
    exposed = exposedSeries(await registry.metrics());
  });

  afterAll(async () => {
    await stopAll(instances);
    registration?.dispose();
  });

  it('the breakers filled every metric the registry has, so that each can be checked', () => {
    const families = registry.getMetricsAsArray().map((m) => m.name);
    expect(families.length).toBeGreaterThan(0);
    const empty = families.filter((name) => !exposed.has(name) && !exposed.has(`${name}_count`));
    expect(empty).toEqual([]);
  });

  it('every series, label and label value the queries use is exported', () => {
    const all = queries();
    // Panels, variables, README queries and rules: none may slip through unread.
    expect(all.length).toBeGreaterThan(dashboard.panels.length);
    expect(all.filter((q) => q.where.startsWith('README')).length).toBeGreaterThan(0);
    expect(all.flatMap((q) => problems(q, exposed))).toEqual([]);
  });

  it('the dashboard shows every metric the registry has', () => {
    const used = new Set(
      queries()
        .filter((q) => q.where.startsWith('dashboard panel'))
        .flatMap((q) => queryUses(q.expr).series.map((s) => s.name.replace(/_(?:bucket|sum|count)$/, ''))),
    );
    expect(registry.getMetricsAsArray().map((m) => m.name).filter((name) => !used.has(name))).toEqual([]);
  });

  it('the check finds a series, a label and a value that are not exported', () => {
    const bad = (expr: string, resultLabels: string[] = []) => problems({ where: 'q', expr, resultLabels }, exposed);
    expect(bad('sum(rate(zenvark_calls_total[5m]))')).toEqual(['q: no series named zenvark_calls_total']);
    expect(bad('sum by (breaker, outcome) (rate(zenvark_call_duration_seconds_count[$__rate_interval]))')).toEqual([
      'q: by (outcome): zenvark_call_duration_seconds_count has no label outcome',
    ]);
    expect(bad('zenvark_state{breaker=~"$breaker", status="open"}')).toEqual(['q: zenvark_state has no label status']);
    expect(bad('zenvark_state{state="opened"}')).toEqual([expect.stringMatching(/^q: zenvark_state\{state\} is never "opened"/)]);
    expect(bad('histogram_quantile(0.99, sum by (breaker) (rate(zenvark_call_duration_seconds_bucket[5m])))', ['result'])).toEqual([
      'q: uses label result, which its result does not carry',
    ]);
    expect(bad('max by (breaker) (zenvark_state) unless on (leader) zenvark_role')).toEqual([
      'q: on (leader): zenvark_state has no label leader',
      'q: on (leader): zenvark_role has no label leader',
    ]);
  });
});

describe('the dashboard', () => {
  it('is a Grafana dashboard with a Prometheus data source variable and breaker and instance variables', () => {
    expect(dashboard.schemaVersion).toBe(41);
    const variables = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(variables.datasource).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(variables.breaker).toMatchObject({ type: 'query', multi: true, includeAll: true, query: { query: 'label_values(zenvark_state, breaker)' } });
    expect(variables.instance).toMatchObject({ type: 'query', multi: true, includeAll: true });
    const panels = dashboard.panels.filter((p) => p.type !== 'row');
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    for (const panel of panels) {
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) {
        // Every query follows the variables.
        expect(target.expr, panel.title).toContain('breaker=~"$breaker"');
        expect(target.expr, panel.title).toContain('instance=~"$instance"');
      }
    }
    // Panels do not overlap on the 24-column grid.
    const cells = new Set<string>();
    for (const { gridPos: g, title } of dashboard.panels) {
      expect(g.x + g.w, title).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x += 1) {
        for (let y = g.y; y < g.y + g.h; y += 1) {
          expect(cells.has(`${x},${y}`), `${title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
    }
  });
});

describe('promtool', () => {
  let promtool: string;
  let scratch: string;

  beforeAll(() => {
    // ZV_PROMTOOL names another promtool (a machine that is not Debian's).
    promtool =
      process.env.ZV_PROMTOOL ||
      execFileSync('bash', [join(root, '.ci/promtool')], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
    scratch = mkdtempSync(join(tmpdir(), 'zenvark-promtool-'));
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  const promtoolRun = async (...args: string[]) => {
    try {
      return (await run(promtool, args, { cwd: root, timeout: 30_000 })).stdout;
    } catch (error) {
      const { message, stdout, stderr } = error as Error & { stdout?: string; stderr?: string };
      throw new Error(`${promtool} ${args.join(' ')} failed: ${message}\n${stdout ?? ''}${stderr ?? ''}`);
    }
  };

  it('accepts the alert rules', async () => {
    expect(await promtoolRun('check', 'rules', ALERTS)).toContain(`SUCCESS: ${alerts.groups.flatMap((g) => g.rules).length} rules found`);
  });

  it("passes the rules' unit tests: each alert fires, and does not where it must not", async () => {
    expect(await promtoolRun('test', 'rules', ALERT_TESTS)).toContain('SUCCESS');
    // Every alert is tested.
    const tested = parseYaml(readFileSync(join(root, ALERT_TESTS), 'utf8')) as { tests: { alert_rule_test: { alertname: string }[] }[] };
    const names = new Set(tested.tests.flatMap((t) => t.alert_rule_test.map((a) => a.alertname)));
    expect([...names].sort()).toEqual(alerts.groups.flatMap((g) => g.rules.map((r) => r.alert)).sort());
  });

  /** The dashboard's queries as recording rules `panel:<id>:<refId>`, with Grafana's variables given values; the README's as `readme:<n>`. */
  const dashboardRules = () => ({
    groups: [
      {
        name: 'dashboard',
        rules: dashboard.panels.flatMap((panel) =>
          (panel.targets ?? []).map((target) => ({
            record: `panel:${panel.id}:${target.refId}`,
            expr: target.expr.replaceAll('$__rate_interval', '5m').replaceAll('$breaker', '.*').replaceAll('$instance', '.*'),
          })),
        ),
      },
      {
        name: 'readme',
        rules: queries()
          .filter((q) => q.where.startsWith('README'))
          .map((q, n) => ({ record: `readme:${n}`, expr: q.expr })),
      },
    ],
  });
  const panelId = (title: string) => {
    const panel = dashboard.panels.find((p) => p.title === title);
    if (!panel) throw new Error(`no panel '${title}' in ${DASHBOARD}`);
    return panel.id;
  };

  it("parses the dashboard's and the README's queries, and evaluates the dashboard's over a fleet as the panels mean", async () => {
    const rules = join(scratch, 'dashboard-rules.json');
    // JSON is YAML: promtool reads it as it is.
    writeFileSync(rules, JSON.stringify(dashboardRules()));
    expect(await promtoolRun('check', 'rules', rules)).toContain('SUCCESS');

    const at = (instance: string, labels: string) => `{${labels}, instance="${instance}", job="shop"}`;
    const state = (instance: string, breaker: string, open: string, halfOpen: string) => [
      { series: `zenvark_state${at(instance, `breaker="${breaker}", state="open"`)}`, values: open },
      { series: `zenvark_state${at(instance, `breaker="${breaker}", state="half_open"`)}`, values: halfOpen },
    ];
    const tests = {
      rule_files: [rules],
      evaluation_interval: '1m',
      tests: [
        {
          name: 'the dashboard over a fleet of three instances',
          interval: '1m',
          input_series: [
            // payments-api: open on a and b, still closed on c (the worst wins).
            ...state('a', 'payments-api', '1x10', '0x10'),
            ...state('b', 'payments-api', '1x10', '0x10'),
            ...state('c', 'payments-api', '0x10', '0x10'),
            // search-api half-open on a, closed elsewhere; ledger closed everywhere.
            ...state('a', 'search-api', '0x10', '1x10'),
            ...state('b', 'search-api', '0x10', '0x10'),
            ...state('a', 'ledger', '0x10', '0x10'),
            // Two of three instances degraded (one of them for two breakers): two instances.
            { series: `zenvark_degraded${at('a', 'breaker="payments-api"')}`, values: '1x10' },
            { series: `zenvark_degraded${at('a', 'breaker="search-api"')}`, values: '1x10' },
            { series: `zenvark_degraded${at('b', 'breaker="payments-api"')}`, values: '1x10' },
            { series: `zenvark_degraded${at('c', 'breaker="payments-api"')}`, values: '0x10' },
            // One shared transition a minute, seen by both instances; one local one every two minutes on a.
            { series: `zenvark_transitions_total${at('a', 'breaker="payments-api", from="closed", to="open", reason="consecutive_failures", origin="shared"')}`, values: '0+1x10' },
            { series: `zenvark_transitions_total${at('b', 'breaker="payments-api", from="closed", to="open", reason="consecutive_failures", origin="shared"')}`, values: '0+1x10' },
            { series: `zenvark_transitions_total${at('a', 'breaker="payments-api", from="closed", to="open", reason="local_failures", origin="local"')}`, values: '0+0.5x10' },
            // b leads payments-api; nobody leads ledger.
            { series: `zenvark_role${at('a', 'breaker="payments-api", role="leader"')}`, values: '0x10' },
            { series: `zenvark_role${at('b', 'breaker="payments-api", role="leader"')}`, values: '1x10' },
            { series: `zenvark_role${at('a', 'breaker="ledger", role="leader"')}`, values: '0x10' },
          ],
          promql_expr_test: [
            {
              expr: `panel:${panelId('State per breaker')}:A`,
              eval_time: '10m',
              exp_samples: [
                { labels: `panel:${panelId('State per breaker')}:A{breaker="payments-api"}`, value: 2 },
                { labels: `panel:${panelId('State per breaker')}:A{breaker="search-api"}`, value: 1 },
                { labels: `panel:${panelId('State per breaker')}:A{breaker="ledger"}`, value: 0 },
              ],
            },
            { expr: `panel:${panelId('Open breakers')}:A`, eval_time: '10m', exp_samples: [{ labels: `panel:${panelId('Open breakers')}:A`, value: 1 }] },
            { expr: `panel:${panelId('Degraded instances')}:A`, eval_time: '10m', exp_samples: [{ labels: `panel:${panelId('Degraded instances')}:A`, value: 2 }] },
            {
              expr: `panel:${panelId('Transitions by reason')}:A`,
              eval_time: '10m',
              exp_samples: [{ labels: `panel:${panelId('Transitions by reason')}:A{reason="consecutive_failures"}`, value: 1 }],
            },
            {
              expr: `panel:${panelId('Transitions by reason')}:B`,
              eval_time: '10m',
              exp_samples: [{ labels: `panel:${panelId('Transitions by reason')}:B{reason="local_failures"}`, value: 0.5 }],
            },
            {
              expr: `panel:${panelId('Leader per breaker')}:A`,
              eval_time: '10m',
              exp_samples: [{ labels: `panel:${panelId('Leader per breaker')}:A{breaker="payments-api", instance="b"}`, value: 1 }],
            },
          ],
        },
      ],
    };
    const file = join(scratch, 'dashboard.test.json');
    writeFileSync(file, JSON.stringify(tests));
    expect(await promtoolRun('test', 'rules', file)).toContain('SUCCESS');
  });
});
