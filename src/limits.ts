/**
 * Every numeric bound that option validation checks and the function library enforces,
 * in one place. lua/zenvark_v1.lua mirrors the server-side ones as locals of the same
 * names in the block at its top; test/lua/limits.test.ts calls each function with each
 * bounded argument at its bounds and checks that the two lists agree, and
 * test/unit/limits.test.ts does the same for the options.
 *
 * Where a client option feeds a library argument, the option's range is the argument's:
 * anything the constructor accepts, the library accepts too.
 */

/** Largest count, in calls: a ConsecutiveBreaker threshold, a SamplingBreaker's
 * minimumNumberOfCalls, and each count of an outcome summary. */
export const MAX_COUNT = 1_000_000_000;

/** Largest CountBreaker `size`, in calls; the window is kept as one byte per call. */
export const MAX_COUNT_WINDOW = 10_000;

/** Shortest SamplingBreaker `duration`, in milliseconds. */
export const MIN_DURATION_MS = 10;

/** Longest SamplingBreaker `duration`, in milliseconds (one day). */
export const MAX_DURATION_MS = 86_400_000;

/** Buckets of a time window: it slides in steps of duration / TIME_BUCKETS (a count, not a
 * bound; the local window and the library must agree on it). */
export const TIME_BUCKETS = 20;

/** Longest lease (`leaseTtlMs`) and trial permit (`halfOpen.permitTimeoutMs`), in
 * milliseconds (one hour). */
export const MAX_TTL_MS = 3_600_000;

/** Shortest `leaseTtlMs`, in milliseconds; the library takes 1 ms. The holder renews at
 * a third of the ttl and stops acting as leader a tenth of it before the lease ends
 * (src/lease.ts): below this, those margins are lost in a few ms of latency. */
export const MIN_LEASE_TTL_MS = 100;

/** Largest `auditRetention`, in stream entries (XADD MAXLEN ~). */
export const MAX_RETENTION = 1_000_000;

/** Largest `halfOpen.permittedCalls`, in trial calls per half-open period. */
export const MAX_TRIAL_PERMITS = 10_000;

/** Largest `health.successThreshold`, in recovery checks in a row. */
export const MAX_HEALTH_SUCCESS_THRESHOLD = 100;

/** A trial call must end before its permit lapses: `halfOpen.permitTimeoutMs` is at least
 * this many times `timeoutMs` (a factor, client only). */
export const PERMIT_TIMEOUTS = 3;

/** Largest generation, fencing token and permit number the library takes, an integer:
 * 2^53 - 1, the largest integer a double (a Lua number, a JavaScript number) holds exactly. */
export const SAFE_INTEGER = Number.MAX_SAFE_INTEGER;

/**
 * Longest `instanceId`, in UTF-8 bytes: the library's bound on the actor it records in
 * leases and audit entries. The library is the rule, so that every id the constructor
 * accepts is one the library takes; the client checks it at construction only to fail
 * there instead of at the first call to Redis.
 */
export const MAX_ACTOR_BYTES = 256;

/** Longest reason an operator gives for a control (zv1_control's note), in UTF-8 bytes. */
export const MAX_NOTE_BYTES = 512;

/** Longest expiry of a control (`--for`), in milliseconds (30 days). */
export const MAX_MODE_MS = 2_592_000_000;

/**
 * Largest `minimumInstances`, and the most reporter entries the library keeps for the
 * instance rule (one per instance that reported under it): past it, the entries of the
 * instances least recently active are dropped, and the rule counts among the
 * MAX_INSTANCES most recent reporters.
 */
export const MAX_INSTANCES = 64;

/** Longest channel the library publishes on, in bytes (the feed channel, `<prefix>:feed`). */
export const MAX_CHANNEL_BYTES = 1024;

/**
 * Longest `prefix`, in UTF-16 code units (String.length). A code unit takes at most
 * 3 bytes of UTF-8, so the feed channel of the longest prefix stays within
 * MAX_CHANNEL_BYTES.
 */
export const MAX_PREFIX_LENGTH = 256;

/** Longest delay, in milliseconds, that setTimeout can wait (2^31 - 1): the bound of every
 * duration option (timeouts, idle probe interval, backoff delays). */
export const MAX_DELAY_MS = 2_147_483_647;

/** Outcomes one pending summary holds at most, in calls; further ones are dropped and
 * counted (`stats.overflowed`) until the summary is sent (client only). */
export const MAX_PENDING_OUTCOMES = 100_000;
