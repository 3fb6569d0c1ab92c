/** Breakers as `ls` and `watch` show them: one row each. */
import type { Cluster, Redis } from 'ioredis';
import { breakerStatus, listBreakers } from '../../src/admin.js';
import { ZenvarkError } from '../../src/errors.js';
import type { Explanation } from '../../src/explain.js';
import type { Transition } from '../../src/transition.js';
import { duration } from './output.js';

/** Breakers whose status is read at once by `ls` and `watch`. */
const STATUS_BATCH = 32;

/** One breaker as `ls` and `watch` show it. */
export interface BreakerRow {
  id: string;
  state: string;
  /** What an operator set: forced_open, forced_closed, monitor, or '' for none. */
  mode: string;
  generation: number;
  /** When it entered its state (ms since the epoch). */
  since: number;
  /** The transition into it; undefined for none, or one the stream no longer holds. */
  last: Transition | undefined;
}

export const ROW_HEADER = ['ID', 'STATE', 'MODE', 'GEN', 'FOR', 'REASON'] as const;

export function breakerRow(row: BreakerRow, now = Date.now()): string[] {
  return [row.id, row.state, row.mode === '' ? '-' : row.mode, String(row.generation), duration(Math.max(0, now - row.since)), row.last?.reason ?? ''];
}

function rowOf(e: Explanation, now: number): BreakerRow {
  return { id: e.breakerId, state: e.state, mode: e.mode.mode, generation: e.generation, since: now - e.ageMs, last: e.lastTransition };
}

/** Every breaker of the prefix, with its status; one that vanished since the SCAN is left out. */
export async function breakerRows(connection: Redis | Cluster, prefix: string): Promise<BreakerRow[]> {
  const ids = await listBreakers(connection, { prefix });
  const rows: BreakerRow[] = [];
  for (let i = 0; i < ids.length; i += STATUS_BATCH) {
    const batch = ids.slice(i, i + STATUS_BATCH).map((id) =>
      breakerStatus(connection, id, { prefix }).then(
        (status) => rowOf(status, Date.now()),
        (error: unknown) => {
          if (error instanceof ZenvarkError && error.code === 'ZV_UNKNOWN_BREAKER') return undefined;
          throw error;
        },
      ),
    );
    for (const row of await Promise.all(batch)) if (row) rows.push(row);
  }
  return rows;
}
