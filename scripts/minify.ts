import luamin from 'luamin';

export interface MinifiedLibrary {
  name: string;
  revision: number;
  code: string;
}

/**
 * Minifies a Redis function library. luamin drops the `#!lua name=...` header (it is not
 * Lua), so it is put back. Two luamin rewrites change behaviour and are avoided in the
 * source instead: parentheses that truncate a call to one value, and a `;` before a line
 * that starts with `(`. test/lua/minified.test.ts proves both libraries answer alike.
 */
export function minifyLibrary(source: string): MinifiedLibrary {
  const firstLine = source.slice(0, source.indexOf('\n'));
  const header = /^#!lua name=(\w+)$/.exec(firstLine);
  if (!header?.[1]) {
    throw new Error(`the library must start with '#!lua name=<name>', got ${JSON.stringify(firstLine)}`);
  }
  const revision = /^local REVISION = (\d+)$/m.exec(source);
  if (!revision?.[1]) {
    throw new Error('the library must declare `local REVISION = <integer>`');
  }
  const body = source.slice(firstLine.length + 1);
  return {
    name: header[1],
    revision: Number(revision[1]),
    code: `${firstLine}\n${luamin.minify(body)}\n`,
  };
}
