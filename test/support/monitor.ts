/** What a server runs, read from Redis itself: for tests of what instances send. */
import type { Redis } from 'ioredis';
import type { RedisServer } from '../../harness/redis-server.js';

export interface Monitor {
  /** The commands the server ran for clients other than the monitor's, as `name arg1 ...`. */
  readonly seen: string[];
  /** The names of the functions called on breaker `id` so far: `zv1_record`, `zv1_acquire`, ... */
  callsOf(id: string): string[];
  stop(): void;
}

/** Starts a MONITOR connection to `server`; what it reports from now on is in `seen`. */
export async function monitor(server: RedisServer): Promise<Monitor> {
  const seen: string[] = [];
  const connection = (await server.client().monitor()) as unknown as Redis;
  connection.on('monitor', (_time: string, args: string[]) => seen.push(args.join(' ')));
  return {
    seen,
    callsOf: (id) => seen.filter((line) => /^fcall(_ro)? /i.test(line) && line.includes(id)).map((line) => line.split(' ')[1] as string),
    stop: () => connection.disconnect(),
  };
}
