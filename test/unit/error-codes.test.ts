/**
 * One list of error codes (src/error-codes.ts): every code written in the client or the
 * library is on it, every code on it is used, the library raises exactly the server-side
 * ones, and the README has one row for each.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { ErrorCode, SERVER_ERROR_CODES, type ServerErrorCode } from '../../src/error-codes.js';
import { BackgroundError, RedisFunctionError, ZenvarkError } from '../../src/errors.js';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

/** The source files of a folder, but the list itself and what the build generates. */
function sources(folder: string): string[] {
  return readdirSync(new URL(folder, root), { recursive: true, encoding: 'utf8' })
    .map((name) => `${folder}/${name}`)
    .filter((path) => /\.(ts|lua)$/.test(path))
    .filter((path) => !['src/error-codes.ts', 'src/shipped-library.ts'].includes(path));
}

const codesIn = (text: string) => new Set(text.match(/ZV_[A-Z_]+/g) ?? []);
const LISTED: string[] = Object.values(ErrorCode);
const CLIENT = sources('src').map(read).join('\n');
const LIBRARY = sources('lua').map(read).join('\n');

describe('error codes', () => {
  it('are all listed in src/error-codes.ts, once', () => {
    expect(new Set(LISTED).size).toBe(LISTED.length);
    const written = [...codesIn(`${CLIENT}\n${LIBRARY}`)].sort();
    expect(written.filter((code) => !LISTED.includes(code))).toEqual([]);
  });

  it('on the list are each used in src/ or lua/', () => {
    const written = codesIn(`${CLIENT}\n${LIBRARY}`);
    expect(LISTED.filter((code) => !written.has(code))).toEqual([]);
  });

  it('of the library are exactly the server-side ones', () => {
    expect([...codesIn(LIBRARY)].sort()).toEqual([...SERVER_ERROR_CODES].sort());
  });

  it('type the code of every error', () => {
    expectTypeOf(new ZenvarkError('ZV_BAD_REPLY', 'x').code).toEqualTypeOf<ErrorCode>();
    expectTypeOf(new BackgroundError('ZV_FEED_FAILED', 'b', 'x').code).toEqualTypeOf<ErrorCode>();
    expectTypeOf(new RedisFunctionError('ZV_BADARG', 'zv1_record', 'x').code).toEqualTypeOf<ServerErrorCode>();
    // @ts-expect-error: not a code
    expect(new ZenvarkError('ZV_NO_SUCH_CODE', 'x').code).toBe('ZV_NO_SUCH_CODE');
  });

  it('each have one row in the README: code, where it comes from, what it means, what to do', () => {
    const readme = read('README.md');
    const section = /^### Error codes\n([\s\S]*?)(?=^#)/m.exec(readme)?.[1] ?? '';
    const rows = [...section.matchAll(/^\| `(ZV_[A-Z_]+)` \|(.*)\|$/gm)];
    expect(rows.map(([, code]) => code).sort()).toEqual([...LISTED].sort());
    for (const [, code, rest] of rows) {
      const cells = (rest as string).split(' | ').map((cell) => cell.trim());
      expect(cells, code).toHaveLength(3);
      for (const cell of cells) expect(cell, code).not.toBe('');
    }
  });
});
