/**
 * What a process has left running: the handles (timers, sockets) created from now on
 * that have not been closed yet, by the stack that created them, the test runner's own
 * left out (counting all of the process's handles would see those come and go).
 */
import { createHook } from 'node:async_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';

/** The async_hooks resource types of a timer and of a TCP socket. */
export type HandleType = 'Timeout' | 'TCPWRAP';

/**
 * Watches the handles of `types` created from now on. Node reports a handle's end
 * (async_hooks destroy) from a queue that it empties before the next setImmediate
 * callback: pending() waits for one.
 */
export function watchHandles(types: readonly HandleType[] = ['Timeout']): { pending(): Promise<string[]>; stop(): void } {
  const live = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      if (!(types as readonly string[]).includes(type)) return;
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 30;
      const stack = new Error(type).stack ?? '';
      Error.stackTraceLimit = limit;
      if (!/node_modules[\\/]@?vitest[\\/]/.test(stack)) live.set(id, stack);
    },
    destroy(id) {
      live.delete(id);
    },
  });
  hook.enable();
  return {
    pending: async () => {
      await nextTurn();
      return [...live.values()];
    },
    stop: () => hook.disable(),
  };
}
