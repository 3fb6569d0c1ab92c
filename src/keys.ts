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
  /** Hash: one reporter entry per instance, for the instance rule and isolation (see zv1_record). */
  readonly instances: string;
  /** Stream: instance-level entries (an instance isolating itself, rejoining); never published. */
  readonly instanceEvents: string;
}

export function encodeId(id: string): string {
  return id.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The id `encodeId` gave `encoded`, or undefined for text it cannot have given. */
function decodeId(encoded: string): string | undefined {
  const id = encoded.replace(/%(25|7B|7D)/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
  return id !== '' && encodeId(id) === encoded ? id : undefined;
}

/** The SCAN MATCH pattern of every breaker's state key under `prefix` (its glob characters escaped). */
export function stateKeyPattern(prefix: string): string {
  return `${prefix.replace(/[*?[\]\\]/g, '\\$&')}:{*}:state`;
}

/** The id of the breaker whose state key is `key`, or undefined for a key this module did not name under `prefix`. */
export function breakerIdOf(prefix: string, key: string): string | undefined {
  const head = `${prefix}:{`;
  const tail = '}:state';
  if (key.length <= head.length + tail.length || !key.startsWith(head) || !key.endsWith(tail)) return undefined;
  return decodeId(key.slice(head.length, -tail.length));
}

export function breakerKeys(prefix: string, id: string): BreakerKeys {
  const base = `${prefix}:{${encodeId(id)}}:`;
  return { state: `${base}state`, events: `${base}events`, instances: `${base}instances`, instanceEvents: `${base}instance-events` };
}

/** The keys in the order the Lua library takes them (every function but those below). */
export function keyList(keys: BreakerKeys): [string, string] {
  return [keys.state, keys.events];
}

/** The keys of zv1_record with an instance rule. */
export function ruleKeyList(keys: BreakerKeys): [string, string, string] {
  return [keys.state, keys.events, keys.instances];
}

/** The keys of zv1_isolate. */
export function isolationKeyList(keys: BreakerKeys): [string, string, string, string] {
  return [keys.state, keys.events, keys.instances, keys.instanceEvents];
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
