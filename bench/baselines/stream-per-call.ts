/**
 * BASELINE FOR COMPARISON ONLY, NOT ZENVARK: a distributed breaker in the style of the
 * original Zenvark. Every call appends one entry to a shared stream (XADD), and every
 * instance reads the stream back (XREAD BLOCK) and evaluates a consecutive-failures rule
 * over what it read. It exists to count the Redis commands such a design costs.
 */
import type { Redis } from 'ioredis';

export class StreamPerCallBreaker {
  private open = false;
  private run = 0;
  private lastId = '$';
  private running = false;
  private reading: Promise<void> | undefined;

  constructor(
    private readonly writer: Redis,
    private readonly reader: Redis,
    private readonly key: string,
    private readonly threshold: number,
  ) {}

  start(): void {
    this.running = true;
    this.reading = this.readLoop();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.reader.disconnect();
    await this.reading;
  }

  async execute<T>(fn: () => Promise<T>): Promise<T> {
    if (this.open) throw new Error('circuit open');
    try {
      const result = await fn();
      this.writer.xadd(this.key, 'MAXLEN', '~', '1000', '*', 'r', 's').catch(() => undefined);
      return result;
    } catch (error) {
      this.writer.xadd(this.key, 'MAXLEN', '~', '1000', '*', 'r', 'f').catch(() => undefined);
      throw error;
    }
  }

  private async readLoop(): Promise<void> {
    while (this.running) {
      let reply: [string, [string, string[]][]][] | null;
      try {
        reply = (await this.reader.xread('BLOCK', 1000, 'STREAMS', this.key, this.lastId)) as typeof reply;
      } catch {
        return;
      }
      for (const [, entries] of reply ?? []) {
        for (const [id, fields] of entries) {
          this.lastId = id;
          this.run = fields[1] === 'f' ? this.run + 1 : 0;
          if (this.run >= this.threshold) this.open = true;
        }
      }
    }
  }
}
