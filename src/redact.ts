/**
 * No password leaves the process in anything Zenvark says: error messages, the causes
 * they keep, deploy-functions' output. Driver errors carry secrets in two places: the
 * arguments of the command that failed (HELLO and AUTH carry the password) and URLs
 * (`redis://user:password@host`); Redis's own words may echo a command's arguments. Every
 * cause a Zenvark error keeps and every line deploy-functions prints is redacted here.
 */

const MASK = '***';

/** The password of a URL's userinfo: `scheme://user:password@`. */
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:@/]*):[^\s/]*@/gi;

/** How deep causes are followed (a cause chain is short; a cycle must not loop). */
const MAX_DEPTH = 8;

/** The passwords a connection was configured with (a cluster's are those of its nodes). */
export function secretsOf(connection: { readonly options?: object } | undefined): string[] {
  const options = connection?.options as Record<string, unknown> | undefined;
  if (!options) return [];
  const nodes = options.redisOptions as Record<string, unknown> | undefined;
  return [options.password, options.sentinelPassword, nodes?.password, nodes?.sentinelPassword].filter(
    (value): value is string => typeof value === 'string' && value !== '',
  );
}

/** `text` with every URL password and every one of `secrets` masked. */
export function redactText(text: string, secrets: readonly string[] = []): string {
  let safe = text.replace(URL_PASSWORD, `$1:${MASK}@`);
  for (const secret of secrets) if (secret !== '') safe = safe.split(secret).join(MASK);
  return safe;
}

/**
 * An error as it may be kept and printed: a copy (of the same class, so that its kind can
 * still be told) with messages, stack and properties redacted, nested errors too, and only
 * the name of the command it failed on (not its arguments). An error with nothing to
 * redact is returned as it is.
 */
export function redactError(error: unknown, secrets: readonly string[] = []): unknown {
  return redactValue(error, secrets, 0);
}

function redactValue(value: unknown, secrets: readonly string[], depth: number): unknown {
  if (typeof value === 'string') return redactText(value, secrets);
  if (depth >= MAX_DEPTH) return value instanceof Error ? new Error(redactText(value.message, secrets)) : value;
  if (Array.isArray(value)) {
    const items = value.map((item) => redactValue(item, secrets, depth + 1));
    return items.some((item, i) => item !== value[i]) ? items : value;
  }
  if (!(value instanceof Error)) return value;

  let changed = false;
  const copy = Object.create(Object.getPrototypeOf(value) as object) as Error & Record<string, unknown>;
  const source = value as Error & Record<string, unknown>;
  for (const key of Object.getOwnPropertyNames(value)) {
    const descriptor = Object.getOwnPropertyDescriptor(value, key) as PropertyDescriptor;
    // An accessor (V8's stack may be one) is read and kept as the value it gives.
    const original: unknown = 'value' in descriptor ? descriptor.value : source[key];
    let kept: unknown;
    if (key === 'command' && original && typeof original === 'object') {
      // The arguments of AUTH or HELLO are the password: only the command's name is kept.
      kept = { name: (original as { name?: unknown }).name };
    } else {
      kept = redactValue(original, secrets, depth + 1);
    }
    if (kept !== original || !('value' in descriptor)) changed = true;
    Object.defineProperty(copy, key, { configurable: true, writable: true, enumerable: descriptor.enumerable ?? false, value: kept });
  }
  if (!changed) return value;
  return copy;
}
