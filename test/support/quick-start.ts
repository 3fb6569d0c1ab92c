/** What examples/quick-start.ts (the README's quick start) prints against an empty Redis. */
export const QUICK_START_OUTPUT = [
  'call 1: payments API: 503 Service Unavailable',
  'call 2: payments API: 503 Service Unavailable',
  'call 3: payments API: 503 Service Unavailable',
  'circuit is open (consecutive_failures)',
  'call 4: rejected at once: circuit open',
  'call 5: rejected at once: circuit open',
];
