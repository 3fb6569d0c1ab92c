import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { expect, inject, it } from 'vitest';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url);

it('the README quick start is examples/quick-start.ts, and it runs as written', async () => {
  const example = readFileSync(new URL('examples/quick-start.ts', root), 'utf8');
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  expect(readme).toContain(example.trim());

  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'examples/quick-start.ts'], {
    cwd: root,
    env: { ...process.env, REDIS_URL: inject('redisUrl') },
    timeout: 60_000,
  });
  expect(stdout.trim().split('\n')).toEqual([
    'call 1: payments API: 503 Service Unavailable',
    'call 2: payments API: 503 Service Unavailable',
    'call 3: payments API: 503 Service Unavailable',
    'circuit is open (consecutive_failures)',
    'call 4: rejected at once: circuit open',
    'call 5: rejected at once: circuit open',
  ]);
});
