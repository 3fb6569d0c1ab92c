/** What a server runs, read from Redis itself: for tests of what instances send. */
import { connect } from 'node:net';
import type { RedisServer } from '../../harness/redis-server.js';

export interface Monitor {
  /** The commands the server ran for clients other than the monitor's, as `name arg1 ...`. */
  readonly seen: string[];
  /** The names of the functions called on breaker `id` so far: `zv1_record`, `zv1_acquire`, ... */
  callsOf(id: string): string[];
  stop(): void;
}

/**
 * Starts a MONITOR connection to `server` (one without a password); what it reports from
 * now on is in `seen`. A socket of its own rather than ioredis's monitor(): that one enters
 * monitoring mode a tick after MONITOR's OK, so a line read in one piece with the OK is
 * taken for the reply to no command, an 'error' ("Command queue state error") that fails
 * whichever test runs.
 */
export async function monitor(server: RedisServer): Promise<Monitor> {
  const seen: string[] = [];
  const socket = connect(server.port, server.host);
  socket.setEncoding('utf8');
  const started = new Promise<void>((resolve, reject) => {
    let buffered = '';
    socket.on('error', reject);
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      for (let end = buffered.indexOf('\r\n'); end >= 0; end = buffered.indexOf('\r\n')) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (line === '+OK') resolve();
        else if (line.startsWith('-')) reject(new Error(`MONITOR refused: ${line.slice(1)}`));
        else seen.push(commandOf(line));
      }
    });
  });
  socket.write('MONITOR\r\n');
  await started;
  return {
    seen,
    callsOf: (id) => seen.filter((line) => /^fcall(_ro)? /i.test(line) && line.includes(id)).map((line) => line.split(' ')[1] as string),
    stop: () => socket.destroy(),
  };
}

/** The command of a MONITOR line (`+<time> [<db> <client>] "name" "arg1" ...`), as `name arg1 ...`. */
function commandOf(line: string): string {
  const quoted = line.indexOf('"');
  return line
    .slice(quoted + 1, -1)
    .split('" "')
    .map((arg) => arg.replace(/\\"/g, '"'))
    .join(' ');
}
