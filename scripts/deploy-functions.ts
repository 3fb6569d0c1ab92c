#!/usr/bin/env node
/**
 * The zenvark-deploy-functions command, kept for those who use it: `zenvark
 * deploy-functions` under its old name, the same code (scripts/cli/deploy.ts).
 *
 *   npm run deploy-functions -- --url redis://127.0.0.1:6379
 *   npx zenvark-deploy-functions --url redis://127.0.0.1:7000 --cluster
 *   npx zenvark-deploy-functions --check          (REDIS_URL from the environment)
 */
import { runCli } from './cli/program.js';

process.exitCode = await runCli(['deploy-functions', ...process.argv.slice(2)]);
