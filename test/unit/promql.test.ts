/**
 * The PromQL reader of test/support/promql.ts, on the forms the examples may come to use:
 * what it finds decides what the observability test checks.
 */
import { describe, expect, it } from 'vitest';
import { exposedSeries, queryUses, sampleValue } from '../support/promql.js';

describe('queryUses', () => {
  it('finds series, their matchers and the grouping of the aggregation they are in', () => {
    expect(queryUses('histogram_quantile(0.99, sum by (breaker, le) (rate(x_bucket{breaker=~"$breaker", result="failure"}[$__rate_interval])))')).toEqual({
      series: [{ name: 'x_bucket', matchers: [{ label: 'breaker', op: '=~', value: '$breaker' }, { label: 'result', op: '=', value: 'failure' }] }],
      groupings: [{ keyword: 'by', labels: ['breaker', 'le'], scope: ['x_bucket'] }],
    });
  });

  it('reads a grouping after the argument, and scopes each one to its own aggregation', () => {
    expect(queryUses('max(sum(a) by (x)) without (y) + b').groupings).toEqual([
      { keyword: 'by', labels: ['x'], scope: ['a'] },
      { keyword: 'without', labels: ['y'], scope: ['a'] },
    ]);
  });

  it('scopes a join to the operation it modifies, with or without a label list', () => {
    expect(queryUses('c + (a * on (x) group_left b) or d').groupings).toEqual([{ keyword: 'on', labels: ['x'], scope: ['a', 'b'] }]);
    expect(queryUses('a == ignoring (z) group_right (w) b').groupings).toEqual([
      { keyword: 'ignoring', labels: ['z'], scope: ['a', 'b'] },
      { keyword: 'group_right', labels: ['w'], scope: ['a', 'b'] },
    ]);
  });

  it('takes functions, keywords, ranges, subqueries, offsets and variables for none of the series', () => {
    const uses = queryUses('max_over_time(rate(a{l="q\\"uote"}[5m])[1h:${__interval}] offset 5m) > bool 1 unless vector(0)');
    expect(uses.series).toEqual([{ name: 'a', matchers: [{ label: 'l', op: '=', value: 'q"uote' }] }]);
  });

  it('refuses what it cannot read, rather than check less', () => {
    expect(() => queryUses('sum by (x (a)')).toThrow(SyntaxError);
    expect(() => queryUses('a{l=~}')).toThrow(/cannot read the matchers of a/);
    expect(() => queryUses('rate(a[5m]) by (x)')).toThrow(/follows no aggregation/);
  });
});

describe('the exposition format', () => {
  const text = [
    '# HELP x_total a counter',
    '# TYPE x_total counter',
    'x_total{breaker="b",state="open"} 3',
    'x_total{breaker="b",state="half_open"} 0',
    'y{breaker="quote \\"a\\""} 1.5',
    'z 7',
    '',
  ].join('\n');

  it('lists each name with its labels and their values', () => {
    const exposed = exposedSeries(text);
    expect([...exposed.keys()]).toEqual(['x_total', 'y', 'z']);
    expect(exposed.get('x_total')).toEqual(new Map([['breaker', new Set(['b'])], ['state', new Set(['open', 'half_open'])]]));
    expect(exposed.get('y')?.get('breaker')).toEqual(new Set(['quote "a"']));
  });

  it('gives the one sample that has the labels asked for', () => {
    expect(sampleValue(text, 'x_total', { state: 'open' })).toBe(3);
    expect(sampleValue(text, 'z', {})).toBe(7);
    expect(sampleValue(text, 'x_total', { state: 'closed' })).toBeUndefined();
    expect(() => sampleValue(text, 'x_total', { breaker: 'b' })).toThrow(/2 samples of x_total/);
  });
});
