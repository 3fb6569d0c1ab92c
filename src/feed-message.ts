/**
 * The messages of the feed channel, one per transition and one per lease release, as the
 * function library publishes them (JSON). A transition message carries its audit entry and
 * what a client needs to go on; replies of functions that made a transition carry the same
 * text.
 */
import { ZenvarkError } from './errors.js';
import { type Transition, parseAuditEntry } from './transition.js';
import { int, text } from './wire.js';

/** Who holds a breaker's lease, as a function that changed the state saw it. */
export interface LeaseNews {
  /** The instance holding a valid lease; '' for none. */
  readonly holder: string;
  /** What is left of it, ms. */
  readonly remainingMs: number;
}

/** A transition as published, with what a client needs to go on. */
export interface Published {
  readonly transition: Transition;
  /** Failed recovery checks (or half-open periods) so far: sets the next backoff delay. */
  readonly recoveryFailures: number;
  /** The lease after the transition, when the function read it (a trip tells who took it). */
  readonly lease: LeaseNews | undefined;
}

export type FeedMessage =
  | ({ readonly kind: 'transition'; readonly key: string; readonly epoch: string } & Published)
  | { readonly kind: 'released'; readonly key: string; readonly token: number };

/** Parses a message of the feed channel; throws ZV_BAD_MESSAGE for anything else. */
export function parseFeedMessage(message: string): FeedMessage {
  let fields: unknown;
  try {
    fields = JSON.parse(message);
  } catch {
    throw new ZenvarkError('ZV_BAD_MESSAGE', `feed message is not JSON: ${message.slice(0, 100)}`);
  }
  if (typeof fields !== 'object' || fields === null) {
    throw new ZenvarkError('ZV_BAD_MESSAGE', `feed message is not an object: ${message.slice(0, 100)}`);
  }
  const f = fields as Record<string, string>;
  if (typeof f.key !== 'string') throw new ZenvarkError('ZV_BAD_MESSAGE', 'feed message without key');
  if (f.kind === 'released') return { kind: 'released', key: f.key, token: int(f.token) };
  if (f.kind === 'transition') {
    const id = text(f.id);
    if (!/^\d+-\d+$/.test(id)) throw new ZenvarkError('ZV_BAD_MESSAGE', `feed message with a bad entry id ${JSON.stringify(id).slice(0, 40)}`);
    return {
      kind: 'transition',
      key: f.key,
      epoch: text(f.epoch),
      transition: parseAuditEntry(f, id),
      recoveryFailures: f.hcf === undefined ? 0 : int(f.hcf),
      lease: f.holder === undefined ? undefined : { holder: text(f.holder), remainingMs: int(f.lease_ms) },
    };
  }
  throw new ZenvarkError('ZV_BAD_MESSAGE', `feed message of unknown kind ${JSON.stringify(f.kind)}`);
}

/** The transition a function reply carries ('' when it made none). */
export function parsePublished(value: unknown): Published | undefined {
  const json = text(value ?? '');
  if (json === '') return undefined;
  const message = parseFeedMessage(json);
  return message.kind === 'transition' ? message : undefined;
}
