import { Console } from 'node:console';
import { Writable } from 'node:stream';

/** What console.error prints of `value`: util.inspect of an error, its properties and its causes. */
export function printedByConsoleError(value: unknown): string {
  let text = '';
  const sink = new Writable({
    write(chunk, _encoding, done) {
      text += String(chunk);
      done();
    },
  });
  new Console({ stdout: sink, stderr: sink }).error(value);
  return text;
}
