import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    // Timing-sensitive tests share a 2-core machine: generous limits, no assertions on speed.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    execArgv: ['--unhandled-rejections=strict'],
    reporters: ['default'],
    sequence: { hooks: 'stack' },
  },
});
