/** Runs scripts/deploy-functions as an operator would, without REDIS_URL unless given. */
import { execFile } from 'node:child_process';

const root = new URL('../../', import.meta.url);

/** Its exit code and everything it printed. */
export function deploy(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const { REDIS_URL: _ignored, ...rest } = process.env;
    execFile(
      process.execPath,
      ['--import', 'tsx', 'scripts/deploy-functions.ts', ...args],
      { cwd: root, env: { ...rest, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, out: `${stdout}${stderr}` }),
    );
  });
}
