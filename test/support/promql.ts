/**
 * Just enough PromQL to find what a query depends on: the series it selects, the labels
 * it matches, groups and joins on, and the label values it asks for. It reads the queries
 * of examples/grafana and examples/prometheus, Grafana variables included (`$breaker`,
 * `${breaker}`, `$__rate_interval`), and is not a validator of PromQL syntax
 * (promtool checks that).
 */

export interface Token {
  readonly kind: 'identifier' | 'string' | 'number' | 'punctuation' | 'operator' | 'variable';
  readonly text: string;
}

/** What a query uses of one series name. */
export interface SeriesUse {
  readonly name: string;
  /** `label op "value"` inside the selector's braces. */
  readonly matchers: readonly { readonly label: string; readonly op: string; readonly value: string }[];
}

/** A `by`, `without`, `on`, `ignoring`, `group_left` or `group_right` clause. */
export interface GroupingUse {
  readonly keyword: string;
  readonly labels: readonly string[];
  /** The series names of the expression the clause applies to: the aggregation's argument, or the binary operation. */
  readonly scope: readonly string[];
}

export interface QueryUses {
  readonly series: readonly SeriesUse[];
  readonly groupings: readonly GroupingUse[];
}

const AGGREGATIONS = new Set([
  'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values',
  'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio',
]);
const GROUPING = new Set(['by', 'without']);
const JOINING = new Set(['on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set([...GROUPING, ...JOINING, 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/** In order: a Grafana variable before an identifier, an identifier before a number. */
const PATTERNS: readonly (readonly [Token['kind'], RegExp])[] = [
  ['variable', /^\$\{[A-Za-z_][\w:]*\}|^\$[A-Za-z_]\w*|^\[\[[A-Za-z_]\w*\]\]/],
  ['identifier', /^[A-Za-z_:][\w:]*/],
  ['number', /^(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+)(?:ms|[smhdwy])?/],
  ['operator', /^(?:==|!=|=~|!~|>=|<=|[-+*/%^<>=])/],
  ['punctuation', /^[(){}[\],@:]/],
];

export function tokenize(query: string): Token[] {
  const tokens: Token[] = [];
  let at = 0;
  const fail = (why: string): never => {
    throw new SyntaxError(`${why} at offset ${at} of ${JSON.stringify(query)}`);
  };
  while (at < query.length) {
    const rest = query.slice(at);
    const space = /^(?:\s+|#[^\n]*)/.exec(rest);
    if (space) {
      at += space[0].length;
      continue;
    }
    const quote = rest[0];
    if (quote === '"' || quote === "'" || quote === '`') {
      let end = at + 1;
      let value = '';
      while (end < query.length && query[end] !== quote) {
        if (query[end] === '\\' && quote !== '`') end += 1;
        value += query[end];
        end += 1;
      }
      if (end >= query.length) fail('unterminated string');
      tokens.push({ kind: 'string', text: value });
      at = end + 1;
      continue;
    }
    const found = PATTERNS.map(([kind, pattern]) => ({ kind, match: pattern.exec(rest) })).find((p) => p.match);
    if (!found?.match) fail(`unexpected ${JSON.stringify(rest[0])}`);
    const text = found!.match![0];
    tokens.push({ kind: found!.kind, text });
    at += text.length;
  }
  return tokens;
}

/** The index of the bracket that closes the one at `open`. */
function closing(tokens: readonly Token[], open: number): number {
  const pairs: Record<string, string> = { '(': ')', '{': '}', '[': ']' };
  const want = pairs[tokens[open]!.text];
  let depth = 0;
  for (let i = open; i < tokens.length; i += 1) {
    const t = tokens[i]!;
    if (t.kind !== 'punctuation') continue;
    if (t.text === tokens[open]!.text) depth += 1;
    else if (t.text === want && --depth === 0) return i;
  }
  throw new SyntaxError(`unbalanced ${tokens[open]!.text} in ${tokens.map((t) => t.text).join(' ')}`);
}

function opening(tokens: readonly Token[], close: number): number {
  let depth = 0;
  for (let i = close; i >= 0; i -= 1) {
    const t = tokens[i]!;
    if (t.kind !== 'punctuation') continue;
    if (t.text === ')') depth += 1;
    else if (t.text === '(' && --depth === 0) return i;
  }
  throw new SyntaxError('unbalanced )');
}

/** `( a, b )` at `open`: the names and the index of the `)`. */
function labelList(tokens: readonly Token[], open: number, keyword: string): { labels: string[]; end: number } {
  if (tokens[open]?.text !== '(') throw new SyntaxError(`${keyword} without a label list`);
  const end = closing(tokens, open);
  const labels = tokens
    .slice(open + 1, end)
    .filter((t) => t.text !== ',')
    .map((t) => {
      if (t.kind !== 'identifier') throw new SyntaxError(`${keyword} (...) holds ${JSON.stringify(t.text)}, not a label name`);
      return t.text;
    });
  return { labels, end };
}

/** Which series, matchers and grouping labels a query uses. */
export function queryUses(query: string): QueryUses {
  const tokens = tokenize(query);
  const series: (SeriesUse & { at: number })[] = [];
  const groupings: { keyword: string; labels: string[]; from: number; to: number }[] = [];
  /** Token ranges that hold label names rather than expressions. */
  const skip = new Set<number>();

  for (let i = 0; i < tokens.length; i += 1) {
    if (skip.has(i)) continue;
    const t = tokens[i]!;
    if (t.kind === 'punctuation' && t.text === '[') {
      // A range or subquery: durations and variables only.
      const end = closing(tokens, i);
      for (let j = i; j <= end; j += 1) skip.add(j);
      continue;
    }
    if (t.kind !== 'identifier') continue;
    const next = tokens[i + 1];
    if (GROUPING.has(t.text) || JOINING.has(t.text)) {
      if (t.text.startsWith('group_') && next?.text !== '(') continue;
      const { labels, end } = labelList(tokens, i + 1, t.text);
      for (let j = i; j <= end; j += 1) skip.add(j);
      let from = -1;
      let to = tokens.length;
      if (GROUPING.has(t.text)) {
        // `agg by (...) (arg)` or `agg (arg) by (...)`.
        if (tokens[i - 1] && AGGREGATIONS.has(tokens[i - 1]!.text)) {
          from = end + 1;
          to = closing(tokens, from);
        } else if (tokens[i - 1]?.text === ')' && AGGREGATIONS.has(tokens[opening(tokens, i - 1) - 1]?.text ?? '')) {
          to = i - 1;
          from = opening(tokens, to);
        } else {
          throw new SyntaxError(`${t.text} (...) follows no aggregation in ${JSON.stringify(query)}`);
        }
      } else {
        // A join applies to the binary operation it modifies: the innermost parentheses around it.
        for (let j = i - 1, depth = 0; j >= 0; j -= 1) {
          const u = tokens[j]!;
          if (u.kind !== 'punctuation') continue;
          if (u.text === ')') depth += 1;
          else if (u.text === '(' && depth-- === 0) {
            from = j;
            to = closing(tokens, j);
            break;
          }
        }
      }
      groupings.push({ keyword: t.text, labels, from, to });
      continue;
    }
    if (KEYWORDS.has(t.text) || AGGREGATIONS.has(t.text)) continue;
    if (next?.text === '(') continue; // a function
    const matchers: { label: string; op: string; value: string }[] = [];
    if (next?.text === '{') {
      const end = closing(tokens, i + 1);
      const inner = tokens.slice(i + 2, end).filter((u) => u.text !== ',');
      for (let j = 0; j < inner.length; j += 3) {
        const [label, op, value] = [inner[j], inner[j + 1], inner[j + 2]];
        if (label?.kind !== 'identifier' || op?.kind !== 'operator' || (value?.kind !== 'string' && value?.kind !== 'variable')) {
          throw new SyntaxError(`cannot read the matchers of ${t.text} in ${JSON.stringify(query)}`);
        }
        matchers.push({ label: label.text, op: op.text, value: value.text });
      }
      for (let j = i + 1; j <= end; j += 1) skip.add(j);
    }
    series.push({ name: t.text, matchers, at: i });
  }

  return {
    series: series.map(({ name, matchers }) => ({ name, matchers })),
    groupings: groupings.map(({ keyword, labels, from, to }) => ({
      keyword,
      labels,
      scope: [...new Set(series.filter((s) => s.at > from && s.at < to).map((s) => s.name))],
    })),
  };
}

/** The labels of a sample line of the text exposition format, or undefined for another line. */
function sampleLine(line: string): { name: string; labels: Map<string, string>; value: number } | undefined {
  if (line === '' || line.startsWith('#')) return undefined;
  const head = /^([A-Za-z_:][\w:]*)(\{.*\})?\s+(\S+)/.exec(line);
  if (!head) throw new SyntaxError(`not a sample line: ${line}`);
  const labels = new Map<string, string>();
  for (const pair of (head[2] ?? '').matchAll(/([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
    labels.set(pair[1]!, pair[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c)));
  }
  return { name: head[1]!, labels, value: Number(head[3]) };
}

/** The value of the one sample of `name` whose labels include `labels`, or undefined when there is none. */
export function sampleValue(exposition: string, name: string, labels: Record<string, string>): number | undefined {
  const found = exposition
    .split('\n')
    .map(sampleLine)
    .filter((s) => s?.name === name && Object.entries(labels).every(([k, v]) => s.labels.get(k) === v));
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} have the labels ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

/** The series of a scrape in the text exposition format: each name with the labels it carries and their values. */
export function exposedSeries(exposition: string): Map<string, Map<string, Set<string>>> {
  const found = new Map<string, Map<string, Set<string>>>();
  for (const sample of exposition.split('\n').map(sampleLine)) {
    if (!sample) continue;
    const labels = found.get(sample.name) ?? new Map<string, Set<string>>();
    found.set(sample.name, labels);
    for (const [label, value] of sample.labels) {
      const values = labels.get(label) ?? new Set<string>();
      values.add(value);
      labels.set(label, values);
    }
  }
  return found;
}
