/**
 * `zenvark watch`: every breaker's state and the last transitions, from the feed channel
 * (`<prefix>:feed`), on which the library publishes every transition. It subscribes first
 * and reads the breakers after, so that no transition falls between the two. On a
 * terminal the view is redrawn at each transition; otherwise the table is printed once
 * and then one line per transition; with --json, one JSON line per transition. It runs
 * until interrupted (exit 0) or the connection is lost (exit 6: it does not reconnect).
 */
import { RedisUnreachableError } from '../../src/errors.js';
import { parseFeedMessage } from '../../src/feed-message.js';
import { breakerIdOf, feedChannel } from '../../src/keys.js';
import { driverError, serverAddress } from '../../src/redis-failure.js';
import type { Transition } from '../../src/transition.js';
import { type Server, connect, connectNode } from './connect.js';
import { EXIT, type ExitCode } from './exit.js';
import { type Output, TRANSITION_HEADER, table, transitionRow } from './output.js';
import { type BreakerRow, ROW_HEADER, breakerRow, breakerRows } from './rows.js';

/** Transitions the view keeps. */
const RECENT = 10;

/** A transition of one breaker, as the view lists it. */
interface Seen {
  readonly id: string;
  readonly transition: Transition;
}

export async function watch(s: Server, prefix: string, json: boolean, out: Output): Promise<ExitCode> {
  const subscriber = await connectNode(s);
  const channel = feedChannel(prefix);
  const seen: Seen[] = [];
  const rows = new Map<string, BreakerRow>();
  let stop = () => {};
  // Listened for from the start: a connection lost while the breakers are read (before the
  // watch loop below) must end the command too, not leave it with nothing to wait for.
  let lost: Error | undefined;
  let onLost = (error: Error) => {
    lost = error;
  };
  subscriber.once('end', () => {
    const server = serverAddress(subscriber);
    onLost(new RedisUnreachableError(server, `lost the connection to Redis at ${server} while watching`));
  });
  // Messages are listened for from the subscription on, and kept while the breakers are
  // read: a transition published meanwhile is shown once the view is ready, not dropped.
  const early: string[] = [];
  let onMessage = (message: string) => {
    early.push(message);
  };
  subscriber.on('message', (_channel: string, message: string) => onMessage(message));
  try {
    await subscriber.subscribe(channel).catch((error: unknown) => {
      throw driverError(error, subscriber);
    });
    const connection = await connect(s);
    try {
      for (const row of await breakerRows(connection, prefix)) rows.set(row.id, row);
    } finally {
      connection.disconnect();
    }
    for (const row of rows.values()) if (row.last) seen.push({ id: row.id, transition: row.last });
    seen.sort((a, b) => a.transition.time - b.transition.time);
    seen.splice(0, Math.max(0, seen.length - RECENT));

    const terminal = process.stdout.isTTY === true && !json;
    const draw = () => {
      const now = Date.now();
      const breakers = rows.size === 0 ? `no breakers under prefix '${prefix}' yet` : table(ROW_HEADER, [...rows.values()].sort((a, b) => a.id.localeCompare(b.id)).map((row) => breakerRow(row, now)));
      const recent = seen.length === 0 ? 'no transitions yet' : table(['ID', ...TRANSITION_HEADER], seen.map(seenRow));
      return `${breakers}\n\nlast transitions (${channel}):\n${recent}`;
    };
    if (terminal) out.say(`\x1b[H\x1b[2J${draw()}`);
    else if (!json) out.say(`${draw()}\n`);

    return await new Promise<ExitCode>((resolve, reject) => {
      if (lost) {
        reject(lost);
        return;
      }
      onLost = reject;
      stop = () => resolve(EXIT.DONE);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      onMessage = (message: string) => {
        let m: ReturnType<typeof parseFeedMessage>;
        try {
          m = parseFeedMessage(message);
        } catch {
          return; // Not the library's: anyone allowed to PUBLISH can write on the channel.
        }
        if (m.kind !== 'transition') return;
        const id = breakerIdOf(prefix, m.key);
        if (id === undefined) return;
        const t = m.transition;
        // A transition published while the breakers were read may be in the table already
        // (--json prints no table: every transition since the subscription is a line).
        const known = rows.get(id);
        if (!json && known && known.generation >= t.generation && known.since >= t.time) return;
        const one: Seen = { id, transition: t };
        rows.set(id, { id, state: t.to, mode: t.mode, generation: t.generation, since: t.time, last: t });
        seen.push(one);
        if (seen.length > RECENT) seen.shift();
        if (json) out.json({ breakerId: id, ...t });
        else if (terminal) out.say(`\x1b[H\x1b[2J${draw()}`);
        else out.say(seenRow(one).join('  '));
      };
      for (const message of early.splice(0)) onMessage(message);
    });
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    subscriber.disconnect();
  }
}

function seenRow(s: Seen): string[] {
  return [s.id, ...transitionRow(s.transition)];
}
