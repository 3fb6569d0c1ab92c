#!/usr/bin/env node
/**
 * The zenvark command: operate breakers from a shell. `zenvark --help` lists the
 * subcommands; the README ("The zenvark command") has them with their exit codes.
 */
import { runCli } from './cli/program.js';

process.exitCode = await runCli(process.argv.slice(2));
