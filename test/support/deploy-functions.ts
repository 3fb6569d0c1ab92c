/** Runs scripts/deploy-functions (the zenvark-deploy-functions command) as an operator would, without REDIS_URL unless given. */
import { runScript } from './zenvark.js';

/** Its exit code and everything it printed. */
export async function deploy(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  const { code, stdout, stderr } = await runScript('deploy-functions.ts', args, env);
  return { code, out: `${stdout}${stderr}` };
}
