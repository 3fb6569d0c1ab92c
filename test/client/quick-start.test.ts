import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { expect, inject, it } from 'vitest';
import { QUICK_START_OUTPUT } from '../support/quick-start.js';

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
  expect(stdout.trim().split('\n')).toEqual(QUICK_START_OUTPUT);
});
