/**
 * The README's reference sections against the code: every option has a row in the
 * configuration table, every strategy and backoff option is in its class's row, and every
 * link inside the page leads to a heading.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONSTANT_BACKOFF_KEYS, EXPONENTIAL_BACKOFF_KEYS } from '../../src/backoff.js';
import { CIRCUIT_BREAKER_KEYS, HALF_OPEN_KEYS, HEALTH_KEYS } from '../../src/options.js';
import { CONSECUTIVE_BREAKER_KEYS, COUNT_BREAKER_KEYS, SAMPLING_BREAKER_KEYS } from '../../src/strategies.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The text under a heading, up to the next heading of any level. */
function section(heading: string): string {
  const start = readme.indexOf(`\n${heading}\n`);
  expect(start, `README has no heading '${heading}'`).toBeGreaterThanOrEqual(0);
  const rest = readme.slice(start + heading.length + 2);
  return rest.slice(0, rest.search(/^#/m) === -1 ? undefined : rest.search(/^#/m));
}

/** Rows of the tables in a section whose first cell is `code`, keyed by that code. */
function rows(text: string): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const match = /^\| `([^`]+)` \|(.*)\|$/.exec(line);
    if (!match) continue;
    // A `\|` inside a cell is part of a type, not a column.
    const cells = (match[2] as string).split(/(?<!\\)\|/).map((cell) => cell.trim());
    expect(found.has(match[1] as string), `two rows for ${match[1]}`).toBe(false);
    found.set(match[1] as string, cells);
  }
  return found;
}

describe('README', () => {
  it('gives every option of CircuitBreaker its type, default and meaning', () => {
    const table = rows(section('### Configuration'));
    const options = [
      ...Object.keys(CIRCUIT_BREAKER_KEYS).filter((key) => key !== 'health' && key !== 'halfOpen'),
      ...Object.keys(HEALTH_KEYS).map((key) => `health.${key}`),
      ...Object.keys(HALF_OPEN_KEYS).map((key) => `halfOpen.${key}`),
    ];
    expect([...table.keys()].sort()).toEqual(options.sort());
    for (const [option, cells] of table) {
      expect(cells, option).toHaveLength(4);
      const [type, byDefault, , meaning] = cells;
      for (const cell of [type, byDefault, meaning]) expect(cell, option).not.toBe('');
    }
  });

  it('lists every option of each strategy and backoff in its row', () => {
    const classes = {
      ConsecutiveBreaker: CONSECUTIVE_BREAKER_KEYS,
      CountBreaker: COUNT_BREAKER_KEYS,
      SamplingBreaker: SAMPLING_BREAKER_KEYS,
      ConstantBackoff: CONSTANT_BACKOFF_KEYS,
      ExponentialBackoff: EXPONENTIAL_BACKOFF_KEYS,
    };
    const table = new Map([...rows(section('### Strategies')), ...rows(section('### Backoffs'))]);
    for (const [name, keys] of Object.entries(classes)) {
      const options = table.get(name)?.[0] ?? '';
      const listed = [...options.matchAll(/`(\w+)`:/g)].map(([, key]) => key);
      expect(listed.sort(), name).toEqual(Object.keys(keys).sort());
    }
  });

  it('links only to headings it has', () => {
    const slugs = new Set(
      [...readme.matchAll(/^#+ (.+)$/gm)].map(([, title]) =>
        (title as string)
          .toLowerCase()
          .replace(/[^\p{L}\p{N} _-]/gu, '')
          .replace(/ /g, '-'),
      ),
    );
    const links = [...readme.matchAll(/\]\(#([^)]+)\)/g)].map(([, anchor]) => anchor as string);
    expect(links.length).toBeGreaterThan(10);
    expect(links.filter((anchor) => !slugs.has(anchor))).toEqual([]);
  });
});
