/**
 * The live terminal view of `npm run demo`: plain ANSI on the alternate screen, redrawn
 * in place about 4 times a second, keys read in raw mode. close() gives the terminal back
 * as it was; it is safe to call from a process 'exit' handler.
 */
import { breakerKeys } from 'zenvark';
import { wallMs } from '../harness/clock.js';
import { BREAKER_ID, type Launcher, TUNING, type WorkerView } from './launcher.js';

export const DASHBOARD_PAUSE_MS = 4_000;
const REDRAW_MS = 250;

const ESC = '\x1b[';
const style = {
  bold: (s: string) => `${ESC}1m${s}${ESC}0m`,
  dim: (s: string) => `${ESC}2m${s}${ESC}0m`,
  red: (s: string) => `${ESC}1;31m${s}${ESC}0m`,
  green: (s: string) => `${ESC}32m${s}${ESC}0m`,
  yellow: (s: string) => `${ESC}1;33m${s}${ESC}0m`,
  cyan: (s: string) => `${ESC}1;36m${s}${ESC}0m`,
  inverse: (s: string) => `${ESC}7m${s}${ESC}0m`,
};
type Paint = (s: string) => string;

/** `text` padded (or cut) to `width` columns, then painted: padding first keeps columns aligned. */
function cell(text: string, width: number, paint: Paint = (s) => s, right = false): string {
  const cut = text.length > width ? `${text.slice(0, width - 1)}~` : text;
  return paint(right ? cut.padStart(width) : cut.padEnd(width));
}

/** A line cut to `columns` visible characters (escape sequences do not count). */
function fit(line: string, columns: number): string {
  let visible = 0;
  let out = '';
  for (let i = 0; i < line.length; i += 1) {
    if (line[i] === '\x1b') {
      const end = line.indexOf('m', i);
      out += line.slice(i, end + 1);
      i = end;
    } else if (visible < columns) {
      out += line[i];
      visible += 1;
    }
  }
  return out;
}

const paintState = (state: string): Paint =>
  state === 'closed' ? style.green : state === 'open' ? style.red : state === 'half_open' ? style.yellow : style.dim;

function clock(at: number, since: number): string {
  const s = Math.max(0, (at - since) / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${(s % 60).toFixed(1).padStart(4, '0')}`;
}

export class Dashboard {
  private readonly openedAt = wallMs();
  private timer: NodeJS.Timeout | undefined;
  private opened = false;
  private readonly onKey = (data: string) => {
    for (const key of data) this.press(key);
  };
  private readonly onResize = () => this.draw();
  // The terminal went away (it hangs up: SIGHUP follows): there is nothing left to draw on.
  private readonly onWriteError = () => {};

  constructor(
    private readonly launcher: Launcher,
    private readonly onQuit: () => void,
  ) {}

  open(): void {
    if (this.opened) return;
    this.opened = true;
    // Alternate screen, cursor hidden.
    process.stdout.on('error', this.onWriteError);
    process.stdout.write(`${ESC}?1049h${ESC}?25l${ESC}2J`);
    process.stdin.setRawMode(true);
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', this.onKey);
    process.stdin.resume();
    process.stdout.on('resize', this.onResize);
    this.timer = setInterval(() => this.draw(), REDRAW_MS);
    this.draw();
  }

  close(): void {
    if (!this.opened) return;
    this.opened = false;
    clearInterval(this.timer);
    process.stdout.off('resize', this.onResize);
    process.stdin.off('data', this.onKey);
    if (process.stdin.isTTY) process.stdin.setRawMode(false);
    process.stdin.pause();
    process.stdout.write(`${ESC}0m${ESC}?25h${ESC}?1049l`);
  }

  private press(key: string): void {
    const launcher = this.launcher;
    switch (key.toLowerCase()) {
      case 'b':
        if (launcher.dependencyHealthy) launcher.setDependency(false);
        break;
      case 'h':
        if (!launcher.dependencyHealthy) launcher.setDependency(true);
        break;
      case 'k':
        launcher.killLeaseHolder();
        break;
      case 'p':
        launcher.pauseRedis(DASHBOARD_PAUSE_MS);
        break;
      case 'q':
      case '\x03': // Ctrl-C: raw mode delivers it as a key, not as SIGINT
        this.onQuit();
        return;
    }
    this.draw();
  }

  private draw(): void {
    if (!this.opened) return;
    const columns = process.stdout.columns || 120;
    const rows = process.stdout.rows || 40;
    const top = [...this.header(), '', ...this.workerTable(), ''];
    const footer = ['', this.keys()];
    const room = Math.max(4, rows - top.length - footer.length);
    const auditRows = Math.min(Math.max(3, Math.floor(room / 2)), 12);
    const audit = this.auditTable(auditRows);
    const log = this.logLines(Math.max(1, room - audit.length - 1));
    const lines = [...top, ...audit, '', ...log];
    while (lines.length < rows - footer.length) lines.push('');
    const screen = [...lines.slice(0, rows - footer.length), ...footer].map((l) => `${fit(l, columns)}${ESC}K`);
    process.stdout.write(`${ESC}H${screen.join('\r\n')}${ESC}J`);
  }

  private header(): string[] {
    const l = this.launcher;
    const now = wallMs();
    const redis = l.pausedUntil
      ? style.yellow(`PAUSED ${((l.pausedUntil - now) / 1000).toFixed(1)} s more`)
      : style.green('running');
    const degraded = l.live().filter((w) => w.redis !== 'ok').length;
    const fleet = degraded
      ? style.yellow(`${degraded} of ${l.live().length} workers degraded: each goes on from its cached state, decides and probes for itself`)
      : style.dim('every worker follows the shared state in Redis');
    const kind = l.canPause ? 'own redis-server' : 'REDIS_URL';
    const dependency = l.dependencyHealthy ? style.green('HEALTHY') : style.red('BROKEN (503)');
    const port = l.dependencyPort === undefined ? 'starting' : `127.0.0.1:${l.dependencyPort}`;
    return [
      `${style.bold('Zenvark demo')}: ${l.slots.length} worker processes share one circuit breaker, ` +
        `${style.bold(BREAKER_ID)}, kept in Redis${' '.repeat(6)}${style.dim(`up ${clock(now, this.openedAt)}`)}`,
      `Redis ${l.redisAddress} (${kind}) ${redis}    Dependency ${port} ${dependency}  ` +
        `served ${Math.round(l.dependencyCalls.perSecond)} calls/s, ${l.dependencyChecks.perSecond.toFixed(1)} health checks/s`,
      style.dim(
        `each worker: GET /work every ${TUNING.callIntervalMs} ms via execute() | ${TUNING.threshold} failures in a row open it | ` +
          `while open, only the lease holder probes GET /health (${1000 / TUNING.backoffMs}/s)`,
      ),
      fleet,
    ];
  }

  private workerTable(): string[] {
    const head =
      cell('WORKER', 7) + cell('PID', 8) + cell('STATE', 10) + cell('ROLE', 10) + cell('REDIS', 13) +
      cell('CALLS/S', 9, undefined, true) + cell('FAILURES', 10, undefined, true) + cell('FAST FAILS', 12, undefined, true) +
      '  ' + cell('HEALTH CHECKS', 22) + 'LAST TRANSITION SEEN (after Redis)';
    return [style.dim(head), ...this.launcher.slots.map((w) => (w ? this.workerRow(w) : style.dim('starting')))];
  }

  private workerRow(w: WorkerView): string {
    const ready = w.alive && w.readyAt !== undefined;
    const role = w.role === 'leader' ? cell('leader', 10, style.cyan) : cell(ready ? 'follower' : '', 10);
    const redis =
      w.redis === 'ok' ? cell(ready ? 'ok' : '', 13, style.green) : cell(w.redis.replace('ZV_REDIS_', '').toLowerCase(), 13, style.yellow);
    const last = w.checks.last;
    const checks = last
      ? cell(`${w.checks.ok} passed, ${w.checks.failed} failed`, 22, last.ok ? style.green : style.red)
      : cell('-', 22, style.dim);
    const change = w.changes.at(-1);
    let seen = style.dim(w.joinedAs ? `joined while ${w.joinedAs}` : '-');
    if (change) {
      const text = `${change.from} -> ${change.to}, gen ${change.generation}`;
      seen = change.id
        ? `${text}  ${style.dim(`+${Math.round(change.at - change.time)} ms`)}`
        : `${text}  ${style.yellow(`local: ${change.reason}`)}`;
    }
    return (
      cell(w.name, 7, style.bold) + cell(String(w.pid ?? ''), 8) + cell(w.state, 10, paintState(w.state)) + role + redis +
      cell(String(Math.round(w.callRate.perSecond)), 9, undefined, true) +
      cell(String(w.failures), 10, undefined, true) +
      cell(String(w.fastFails), 12, undefined, true) + '  ' + checks + seen
    );
  }

  private auditTable(count: number): string[] {
    const l = this.launcher;
    const title = `${style.bold('AUDIT LOG')} ${style.dim(`${breakerKeys('zenvark', BREAKER_ID).events}, read with XREAD BLOCK as Redis writes it`)}`;
    const head =
      cell('ENTRY ID', 17) + cell('TRANSITION', 21) + cell('REASON', 24) + cell('GEN', 5) + cell('ACTOR', 8) +
      cell('TOKEN', 7) + 'REACHED EVERY WORKER';
    const entries = l.audit.slice(-(count - 2)).map((e) => {
      const { seen, expected, slowestMs, slowest } = l.reach(e);
      const reach =
        expected > 0 && seen >= expected
          ? style.green(`${seen}/${expected} within ${Math.round(slowestMs)} ms`) + style.dim(` (${slowest} last)`)
          : style.yellow(`${seen}/${expected} so far`);
      const from = `${e.from} -> `;
      return (
        cell(e.id, 17) + from + cell(e.to, 21 - from.length, paintState(e.to)) + cell(e.reason, 24) +
        cell(String(e.generation), 5) + cell(e.actor, 8) + cell(e.token || '-', 7) + reach
      );
    });
    if (entries.length === 0) entries.push(style.dim('(no transition yet: press b to break the dependency)'));
    return [title, style.dim(head), ...entries];
  }

  private logLines(count: number): string[] {
    const lines = this.launcher.log.filter((line) => !line.detail).slice(-(count - 1));
    return [style.bold('LOG'), ...lines.map((line) => `${style.dim(clock(line.at, this.openedAt))}  ${line.text}`)];
  }

  private keys(): string {
    const key = (k: string, what: string, on = true) => (on ? `${style.inverse(` ${k} `)} ${what}` : style.dim(` ${k}  ${what}`));
    const l = this.launcher;
    return [
      key('b', 'break the dependency', l.dependencyHealthy),
      key('h', 'heal it', !l.dependencyHealthy),
      key('k', 'kill the lease holder', l.leaseHolder() !== undefined),
      key('p', l.canPause ? `pause Redis ${DASHBOARD_PAUSE_MS / 1000} s` : 'pause Redis (not with REDIS_URL)', l.canPause && !l.pausedUntil),
      key('q', 'quit'),
    ].join('   ');
  }
}
