/**
 * The breaker's audit log as Redis writes it: the events stream
 * (`zenvark:{<id>}:events`), followed with XREAD BLOCK on a connection of its own.
 */
import { Redis } from 'ioredis';
import { breakerKeys } from 'zenvark';

export interface AuditEntry {
  /** Stream entry id; it carries the server time too. */
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly reason: string;
  readonly generation: number;
  readonly actor: string;
  readonly token: string;
  /** Redis server time of the transition, ms. */
  readonly time: number;
}

type StreamReply = [key: string, entries: [id: string, fields: string[]][]][] | null;

export class AuditLog {
  readonly key: string;
  private readonly connection: Redis;
  private stopped = false;
  private readonly ended: Promise<null>;
  private end: () => void = () => {};
  private done: Promise<void> | undefined;

  constructor(url: string, breakerId: string) {
    this.key = breakerKeys('zenvark', breakerId).events;
    // Commands wait while ioredis reconnects: a paused Redis just holds the XREAD.
    this.connection = new Redis(url, { maxRetriesPerRequest: null });
    this.connection.on('error', () => {});
    this.ended = new Promise((resolve) => (this.end = () => resolve(null)));
  }

  /** Follows entries written from now on; `onEntry` sees each once, in order. `onError`
   * hears the first failure of each run of them. */
  follow(onEntry: (entry: AuditEntry) => void, onError: (error: Error) => void): void {
    this.done ??= this.read(onEntry, onError);
  }

  /** A command's reply, or null once stop() was called (a command waiting for a Redis
   * that is gone would never answer). */
  private untilStopped<T>(command: Promise<T>): Promise<T | null> {
    command.catch(() => {});
    return Promise.race([command, this.ended]);
  }

  private async read(onEntry: (entry: AuditEntry) => void, onError: (error: Error) => void): Promise<void> {
    // From the latest entry written before now (an empty stream: from its start).
    let last = '0-0';
    let failing = false;
    const failed = (error: unknown) => {
      if (!failing && !this.stopped) onError(error as Error);
      failing = true;
    };
    try {
      const latest = (await this.untilStopped(this.connection.xrevrange(this.key, '+', '-', 'COUNT', 1)))?.[0];
      if (latest) last = latest[0];
    } catch (error) {
      failed(error);
    }
    while (!this.stopped) {
      let reply: StreamReply;
      try {
        reply = (await this.untilStopped(this.connection.xread('BLOCK', 1_000, 'STREAMS', this.key, last))) as StreamReply;
        failing = false;
      } catch (error) {
        failed(error);
        await this.untilStopped(new Promise((resolve) => setTimeout(resolve, 500).unref()));
        continue;
      }
      for (const [id, flat] of reply?.[0]?.[1] ?? []) {
        last = id;
        const fields: Record<string, string> = {};
        for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
        onEntry({
          id,
          from: fields.from ?? '',
          to: fields.to ?? '',
          reason: fields.reason ?? '',
          generation: Number(fields.gen),
          actor: fields.actor ?? '',
          token: fields.token ?? '',
          time: Number(fields.time),
        });
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.end();
    this.connection.disconnect();
    await this.done;
  }
}
