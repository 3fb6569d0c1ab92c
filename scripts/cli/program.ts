/**
 * The zenvark command: its subcommands and options (commander), each run against the
 * admin API (src/admin.ts) through one bounded connection (connect.ts). Every failure is
 * one line on stderr and an exit code (exit.ts); nothing printed carries a password.
 */
import { Command, CommanderError } from 'commander';
import type { Cluster, Redis } from 'ioredis';
import { type ControlResult, breakerHistory, breakerStatus, controlBreaker } from '../../src/admin.js';
import { type ControlAction, TransitionReason } from '../../src/constants.js';
import { MAX_MODE_MS, MAX_NOTE_BYTES } from '../../src/limits.js';
import { redactError } from '../../src/redact.js';
import { type Target, UsageError, connect, server } from './connect.js';
import { deployFunctions } from './deploy.js';
import { EXIT, type ExitCode, exitCodeOf } from './exit.js';
import { HISTORY_HEADER, Output, historyRow, parseDuration, parseTime, table } from './output.js';
import { ROW_HEADER, breakerRow, breakerRows } from './rows.js';
import { watch } from './watch.js';

/** The global options, as every subcommand sees them. */
interface Globals extends Target {
  prefix: string;
  json?: boolean;
}

const EXIT_HELP = `
Exit codes:
  0  done
  1  not found: an unknown breaker; release with nothing to release; deploy-functions --check: a primary not current
  2  refused: deploy-functions found a newer revision loaded and did not downgrade
  3  bad usage: an unknown option, a missing or bad argument
  4  authentication failed, or the ACL refused a command
  5  the server cannot serve: no Redis Functions, the library missing or outdated (run deploy-functions),
     not a cluster node (--cluster), or it refused otherwise (read-only, out of memory, a key of another type)
  6  Redis unreachable, or it did not answer in time`;

/** What a subcommand does with the connection, the global options and the output; its exit code. */
type Run = (connection: Redis | Cluster, g: Globals, out: Output) => Promise<ExitCode>;

/** The program, for `argv` (the words after the command's name); resolves to the exit code. */
export async function runCli(argv: readonly string[]): Promise<number> {
  let out = new Output();
  let code: number = EXIT.DONE;

  /** Connects as the global options say (once the subcommand's own are checked), runs, and always disconnects. */
  const withRedis = async (command: Command, run: Run, requireCluster = false): Promise<void> => {
    const g = command.optsWithGlobals<Globals>();
    const s = server(g);
    out = new Output(s.secrets);
    const connection = await connect(s, requireCluster);
    try {
      code = await run(connection, g, out);
    } finally {
      connection.disconnect();
    }
  };

  const program = new Command('zenvark')
    .description('Operate Zenvark circuit breakers in Redis: list, read, control, watch, deploy the function library.')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text), outputError: (text, write) => write(text) })
    .showSuggestionAfterError()
    .option('--url <url>', 'the Redis server: redis://[user:password@]host[:port][/db], rediss:// for TLS (default: $REDIS_URL)')
    .option('--user <name>', 'the ACL user (default: the URL\'s, else "default")')
    .option('--password <password>', "the password (default: the URL's)")
    .option('--cacert <file>', 'TLS: the CA certificate (PEM) that signed the server\'s certificate')
    .option('--insecure', "TLS: do not verify the server's certificate")
    .option('--prefix <prefix>', 'the key prefix of the breakers', 'zenvark')
    .option('--json', 'print JSON for scripts instead of tables')
    .addHelpText('after', EXIT_HELP);

  const ls = program.command('ls').description('list every breaker of the prefix, with its state');
  ls.action(() =>
    withRedis(ls, async (connection, g, o) => {
      const rows = await breakerRows(connection, g.prefix);
      if (g.json) o.json(rows);
      else o.say(rows.length === 0 ? `no breakers under prefix '${g.prefix}'` : table(ROW_HEADER, rows.map((row) => breakerRow(row))));
      return EXIT.DONE;
    }),
  );

  const status = program.command('status').description("a breaker's state and why: generation, lease, window, recovery").argument('<id>', 'the breaker');
  status.action(() =>
    withRedis(status, async (connection, g, o) => {
      const e = await breakerStatus(connection, status.args[0] as string, { prefix: g.prefix });
      if (g.json) o.json(e);
      else o.say(`breaker ${e.breakerId}: ${e.text}`);
      return EXIT.DONE;
    }),
  );

  const history = program
    .command('history')
    .description("a breaker's transitions from its audit streams, oldest first: the fleet's and its instances' isolations (SCOPE)")
    .argument('<id>', 'the breaker')
    .option('--since <time>', 'from this time: ISO 8601 (2026-12-06T10:00:00Z), or a duration ago (30m, 2h, 1d)')
    .option('--until <time>', 'up to this time, as --since')
    .option('--reason <reason>', 'only transitions of this reason (failure_rate, forced_open, ...)')
    .option('--limit <n>', 'at most this many, the newest');
  history.action(async () => {
    const h = history.opts<{ since?: string; until?: string; reason?: string; limit?: string }>();
    const limit = h.limit === undefined ? undefined : Number(h.limit);
    if (limit !== undefined && !(Number.isSafeInteger(limit) && limit > 0)) throw new UsageError(`--limit must be a positive whole number, got ${JSON.stringify(h.limit)}`);
    const reasons: string[] = Object.values(TransitionReason);
    if (h.reason !== undefined && !reasons.includes(h.reason)) throw new UsageError(`--reason must be one of ${reasons.join(', ')}; got ${JSON.stringify(h.reason)}`);
    const filters = {
      since: h.since === undefined ? undefined : parseTime('--since', h.since),
      until: h.until === undefined ? undefined : parseTime('--until', h.until),
      reason: h.reason,
      limit,
    };
    await withRedis(history, async (connection, g, o) => {
      const entries = await breakerHistory(connection, history.args[0] as string, { prefix: g.prefix, ...filters });
      if (g.json) o.json(entries);
      else o.say(entries.length === 0 ? 'no transitions match' : table(HISTORY_HEADER, entries.map(historyRow)));
      return EXIT.DONE;
    });
  });

  const controls: [ControlAction, string, boolean][] = [
    ['open', 'force the breaker open on every instance: calls fail fast, health checks pause', true],
    ['close', 'force the breaker closed: failures are counted but never open it', true],
    ['monitor', 'monitor (dry run): calls always pass; a trip is recorded as would_open instead of opening', true],
    ['release', 'end a force or monitor: the state the window implies resumes', false],
    ['reset', 'clear the window and recovery progress, end any mode, and close', false],
  ];
  for (const [action, description, expires] of controls) {
    const control = program
      .command(action)
      .description(description)
      .argument('<id>', 'the breaker')
      .requiredOption('--reason <text>', 'why (recorded in the audit entry)')
      .option('--actor <name>', 'who does it, recorded in the audit entry (default: <user>@<hostname>)');
    if (expires) control.option('--for <duration>', 'end it after this long: 500ms, 45s, 30m, 2h, 1d (default: until released)');
    control.action(async () => {
      const c = control.opts<{ reason: string; actor?: string; for?: string }>();
      if (c.reason.trim() === '') throw new UsageError('--reason must say why, got an empty text');
      const bytes = Buffer.byteLength(c.reason);
      if (bytes > MAX_NOTE_BYTES) throw new UsageError(`--reason must be at most ${MAX_NOTE_BYTES} bytes long, got ${bytes}`);
      const forMs = c.for === undefined ? undefined : parseDuration('--for', c.for, MAX_MODE_MS);
      const id = control.args[0] as string;
      await withRedis(control, async (connection, g, o) => {
        const result = await controlBreaker(connection, id, action, { prefix: g.prefix, reason: c.reason, actor: c.actor, forMs });
        if (g.json) o.json(result);
        else o.say(controlLine(id, result));
        return result.status === 'no_mode' ? EXIT.NOT_FOUND : EXIT.DONE;
      });
    });
  }

  const deploy = program
    .command('deploy-functions')
    .description("load or upgrade the function library on every primary (any node of a cluster deploys to all); never downgrades")
    .option('--check', 'only print each primary\'s revision; exit 1 if one lacks the library or has an older one')
    .option('--cluster', 'require the server to be a node of a Redis Cluster');
  deploy.action(async () => {
    const d = deploy.opts<{ check?: boolean; cluster?: boolean }>();
    await withRedis(deploy, (connection, _g, o) => deployFunctions(connection, d.check ?? false, o), d.cluster);
  });

  const live = program
    .command('watch')
    .description('a live view: every breaker\'s state and the last transitions, redrawn as transitions arrive (with --json, one line per transition)');
  live.action(async () => {
    const g = live.optsWithGlobals<Globals>();
    const s = server(g);
    out = new Output(s.secrets);
    code = await watch(s, g.prefix, g.json ?? false, out);
  });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander printed it: help and version are done, anything else is bad usage.
      return error.exitCode === 0 ? EXIT.DONE : EXIT.USAGE;
    }
    out.fail(`error: ${messageOf(error)}`);
    return exitCodeOf(error);
  }
}

/** What a control did, in a line: what was written, by whom, until when, and the state now. */
function controlLine(id: string, r: ControlResult): string {
  const t = r.transition;
  if (r.status === 'no_mode' || !t) return `breaker ${id}: neither forced nor monitored; nothing to release (${r.state}, generation ${r.generation})`;
  const until = t.until === '' || t.mode === '' ? '' : ` until ${new Date(Number(t.until)).toISOString()}`;
  const rule = t.rule === '' ? '' : ` (the window reached ${t.rule})`;
  return `breaker ${id}: ${t.reason} by ${t.actor}${until}; now ${r.state}${rule}, generation ${r.generation}`;
}

/** An error's message, redacted (the Output masks the secrets it knows besides). */
function messageOf(error: unknown): string {
  return error instanceof Error ? (redactError(error) as Error).message : String(error);
}
