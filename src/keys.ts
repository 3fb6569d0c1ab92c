/**
 * The only module that names Redis keys and channels. A breaker's keys are
 * `<prefix>:{<id>}:<part>`: the braces make Redis Cluster hash only the id, so all of a
 * breaker's keys share one slot. Inside the braces the id is escaped (`%`, `{`, `}` as
 * %25, %7B, %7D) so that no id can end the hash tag early or leave it empty.
 */

export interface BreakerKeys {
  /** Hash: state, generation, window, lease and recovery progress. */
  readonly state: string;
  /** Stream: one entry per transition; the audit log. */
  readonly events: string;
}

export function encodeId(id: string): string {
  return id.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function breakerKeys(prefix: string, id: string): BreakerKeys {
  const base = `${prefix}:{${encodeId(id)}}:`;
  return { state: `${base}state`, events: `${base}events` };
}

/** The keys in the order the Lua library takes them. */
export function keyList(keys: BreakerKeys): [string, string] {
  return [keys.state, keys.events];
}

const channels = new Map<string, string>();

/** The pub/sub channel on which the library publishes every transition under a prefix. */
export function feedChannel(prefix: string): string {
  let channel = channels.get(prefix);
  if (channel === undefined) {
    channel = `${prefix}:feed`;
    channels.set(prefix, channel);
  }
  return channel;
}
