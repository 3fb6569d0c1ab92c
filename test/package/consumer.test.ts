/**
 * The package as a user gets it. `npm pack` makes the tarball from dist/ as built (the
 * suite's pretest builds it; run `npm run build` first when running this file alone);
 * two scratch projects, an ES module one and a CommonJS one, install it with npm, then:
 * its declarations are type-checked by TypeScript 5 and 7 with skipLibCheck off, under
 * every module setting listed below; the README quick start runs from an .mjs and from a
 * .cjs (require) against a Redis of the test's own; the bin loads the library there.
 *
 * No network: npm runs offline with an empty cache of its own. ioredis and @types/node come
 * from this repository's node_modules as linked folders (an offline install from the
 * registry needs package metadata, which `npm ci` does not cache); the tarball itself is
 * extracted by npm. It takes about a minute on a shared 2-core machine (55 s alone, 67 s in
 * the full suite, at a load average of 6), most of it TypeScript 5's six checks.
 */
import { type ExecFileOptions, execFile, spawn } from 'node:child_process';
import { cpSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { disposeRedis, startRedis } from '../../harness/redis-server.js';
import { LIBRARY_NAME, LIBRARY_REVISION } from '../../src/shipped-library.js';
import { QUICK_START_OUTPUT } from '../support/quick-start.js';
import { recordCall } from '../support/zenvark.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const fixtures = fileURLToPath(new URL('fixtures/', import.meta.url));

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

// What a user's shell would pass on: none of the npm_* settings of the `npm test` that runs this file.
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));

function run(command: string, args: string[], options: ExecFileOptions = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(command, args, { env, timeout: 120_000, maxBuffer: 16 << 20, ...options, encoding: 'utf8' }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
  });
}

// Both from this repository's devDependencies: typescript, and typescript@7 as typescript-7.
const compilers = [
  { dir: 'typescript', major: 5 },
  { dir: 'typescript-7', major: 7 },
].map((compiler) => {
  const { version } = JSON.parse(readFileSync(join(root, 'node_modules', compiler.dir, 'package.json'), 'utf8')) as { version: string };
  return { ...compiler, version, tsc: join(root, 'node_modules', compiler.dir, 'bin', 'tsc') };
});
type Compiler = (typeof compilers)[number];

type Kind = 'esm' | 'cjs';
interface Setting {
  module: string;
  moduleResolution: string;
}
const settings: Record<Kind, Setting[]> = {
  esm: [
    { module: 'node16', moduleResolution: 'node16' },
    { module: 'nodenext', moduleResolution: 'nodenext' },
    { module: 'esnext', moduleResolution: 'bundler' },
    { module: 'preserve', moduleResolution: 'bundler' },
  ],
  // A CommonJS file may import the package (compiled to require) where TypeScript models
  // Node's require(esm): nodenext (TypeScript >= 5.8) and node20 (>= 5.9). Not node16 or
  // node18, which model Node versions without it (TS1479).
  cjs: [
    { module: 'nodenext', moduleResolution: 'nodenext' },
    { module: 'node20', moduleResolution: 'node16' },
  ],
};
/** The type-check whose output runs: TypeScript 5, nodenext. */
const EMITTING: Setting = { module: 'nodenext', moduleResolution: 'nodenext' };

/** The README's quick start as a CommonJS file: the same code, in a function, for CommonJS has no top-level await. */
function commonJsQuickStart(example: string): string {
  const lines = example.trimEnd().split('\n');
  const imports = lines.filter((line) => line.startsWith('import '));
  expect(imports.length).toBeGreaterThan(1);
  for (const line of imports) expect(line).toMatch(/ from '[^']+';$/);
  const body = lines.filter((line) => !line.startsWith('import '));
  return [
    ...imports,
    '',
    'async function main(): Promise<void> {',
    ...body.map((line) => (line ? `  ${line}` : line)),
    '}',
    '',
    'main().catch((error: unknown) => {',
    '  console.error(error);',
    '  process.exitCode = 1;',
    '});',
    '',
  ].join('\n');
}

interface PackedFile {
  path: string;
}
let work = '';
let packed: { filename: string; files: PackedFile[] };
const projects: Record<Kind, { dir: string; sources: string[] }> = {
  esm: { dir: '', sources: ['quick-start.mts', 'exports.mts'] },
  cjs: { dir: '', sources: ['quick-start.cts', 'metrics.cts'] },
};

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'zenvark-package-'));
  const pack = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: root });
  expect(pack, pack.stderr).toMatchObject({ code: 0 });
  [packed] = JSON.parse(pack.stdout) as [typeof packed];

  const example = readFileSync(join(root, 'examples', 'quick-start.ts'), 'utf8');
  for (const kind of ['esm', 'cjs'] as const) {
    const dir = join(work, kind);
    projects[kind].dir = dir;
    mkdirSync(dir);
    const type = kind === 'esm' ? 'module' : 'commonjs';
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: `zenvark-${kind}-consumer`, private: true, type }, null, 2)}\n`);
    const install = await run(
      'npm',
      [
        'install', '--offline', '--no-audit', '--no-fund', '--no-update-notifier',
        // A registry install runs none of the package's own scripts either.
        '--ignore-scripts',
        '--cache', join(work, 'npm-cache'),
        join(work, packed.filename),
        join(root, 'node_modules', 'ioredis'),
        // The package's one dependency, which an offline install cannot fetch.
        join(root, 'node_modules', 'commander'),
        join(root, 'node_modules', '@types', 'node'),
        // The optional peers of zenvark/prometheus and zenvark/opentelemetry.
        join(root, 'node_modules', 'prom-client'),
        join(root, 'node_modules', '@opentelemetry', 'api'),
      ],
      { cwd: dir },
    );
    expect(install, install.stderr).toMatchObject({ code: 0 });
    // Extracted by npm, not a link to this repository.
    expect(lstatSync(join(dir, 'node_modules', 'zenvark')).isDirectory()).toBe(true);
    if (kind === 'esm') {
      writeFileSync(join(dir, 'quick-start.mts'), example);
      cpSync(join(fixtures, 'exports.mts'), join(dir, 'exports.mts'));
    } else {
      writeFileSync(join(dir, 'quick-start.cts'), commonJsQuickStart(example));
      cpSync(join(fixtures, 'metrics.cts'), join(dir, 'metrics.cts'));
    }
  }
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the tarball', () => {
  it('holds exactly what users need: dist (with maps that carry their sources), the Lua source, README, LICENSE', () => {
    const modules = readdirSync(join(root, 'src'))
      .filter((name) => name.endsWith('.ts'))
      .map((name) => name.slice(0, -'.ts'.length));
    const cliModules = readdirSync(join(root, 'scripts', 'cli')).map((name) => name.slice(0, -'.ts'.length));
    const expected = [
      'LICENSE',
      'README.md',
      'package.json',
      'lua/zenvark_v1.lua',
      'dist/scripts/zenvark.js',
      'dist/scripts/zenvark.js.map',
      'dist/scripts/deploy-functions.js',
      'dist/scripts/deploy-functions.js.map',
      ...cliModules.flatMap((name) => [`dist/scripts/cli/${name}.js`, `dist/scripts/cli/${name}.js.map`]),
      ...modules.flatMap((name) => [`dist/src/${name}.js`, `dist/src/${name}.js.map`, `dist/src/${name}.d.ts`]),
    ];
    expect(packed.files.map((file) => file.path).sort()).toEqual(expected.sort());

    const installed = join(projects.esm.dir, 'node_modules', 'zenvark');
    for (const { path } of packed.files.filter((file) => file.path.endsWith('.map'))) {
      const map = JSON.parse(readFileSync(join(installed, path), 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
      expect(map.sourcesContent, path).toHaveLength(map.sources.length);
      for (const content of map.sourcesContent ?? []) expect(content, path).toEqual(expect.any(String));
    }
  });

  it('the exports fixture imports every export of every entry point of the package', () => {
    const parse = (path: string) => ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest);
    const installed = join(projects.esm.dir, 'node_modules', 'zenvark');
    const { exports } = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { exports: Record<string, { types?: string }> };
    const entries = Object.entries(exports).filter(([, target]) => typeof target === 'object' && target.types);
    expect(entries.map(([subpath]) => subpath)).toEqual(['.', './prometheus', './opentelemetry']);
    const fixture = parse(join(fixtures, 'exports.mts'));
    for (const [subpath, target] of entries) {
      const file = parse(join(installed, target.types as string));
      const exported: string[] = [];
      for (const statement of file.statements) {
        if (ts.isExportDeclaration(statement) && statement.exportClause && ts.isNamedExports(statement.exportClause)) {
          exported.push(...statement.exportClause.elements.map((element) => element.name.text));
        } else if (ts.isImportDeclaration(statement)) {
          // What the declarations refer to, not exports.
        } else if (ts.canHaveModifiers(statement) && ts.getModifiers(statement)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)) {
          if (ts.isVariableStatement(statement)) {
            exported.push(...statement.declarationList.declarations.map((d) => d.name.getText(file)));
          } else if ((ts.isFunctionDeclaration(statement) || ts.isInterfaceDeclaration(statement) || ts.isTypeAliasDeclaration(statement)) && statement.name) {
            exported.push(statement.name.text);
          } else {
            throw new Error(`${target.types} has an export this test does not read: ${statement.getText(file)}`);
          }
        } else if (!ts.isInterfaceDeclaration(statement) && !ts.isTypeAliasDeclaration(statement)) {
          throw new Error(`${target.types} has a statement this test does not read: ${statement.getText(file)}`);
        }
      }
      const specifier = subpath === '.' ? 'zenvark' : `zenvark/${subpath.slice(2)}`;
      const imported = fixture.statements
        .filter(ts.isImportDeclaration)
        .filter((statement) => ts.isStringLiteral(statement.moduleSpecifier) && statement.moduleSpecifier.text === specifier)
        .flatMap((statement) => {
          const bindings = statement.importClause?.namedBindings;
          return bindings && ts.isNamedImports(bindings) ? bindings.elements.map((element) => (element.propertyName ?? element.name).text) : [];
        });
      expect(exported.length, subpath).toBeGreaterThan(subpath === '.' ? 40 : 2);
      expect(imported.sort(), subpath).toEqual(exported.sort());
    }
  });
});

const checks = new Map<string, Promise<Result>>();

/**
 * Type-checks a project's sources and every declaration file the package ships (also
 * those no export reaches) with the compiler's defaults but for the module setting,
 * `strict` and `skipLibCheck: false`. The EMITTING check of TypeScript 5 writes out/.
 */
function typecheck(kind: Kind, compiler: Compiler, setting: Setting): Promise<Result> {
  const key = `${kind} ${compiler.dir} ${setting.module}`;
  let check = checks.get(key);
  if (!check) {
    const { dir, sources } = projects[kind];
    const emits = compiler.major === 5 && setting.module === EMITTING.module;
    const declarations = packed.files
      .map((file) => file.path)
      .filter((path) => path.endsWith('.d.ts'))
      .map((path) => `node_modules/zenvark/${path}`);
    const config = join(dir, `tsconfig.${compiler.dir}.${setting.module}.json`);
    const compilerOptions = {
      ...setting,
      target: 'es2022',
      strict: true,
      skipLibCheck: false,
      types: ['node'],
      ...(emits ? { outDir: 'out' } : { noEmit: true }),
    };
    writeFileSync(config, JSON.stringify({ compilerOptions, files: [...sources, ...declarations] }, null, 2));
    check = run(process.execPath, [compiler.tsc, '-p', config], { cwd: dir });
    checks.set(key, check);
  }
  return check;
}

it("the repository's own tsc is TypeScript 5, though typescript-7 has a bin of that name too", () => {
  // npm links one of the two: `npm ci` typescript's, which sorts first; an `npm install`
  // that adds typescript-7 to an existing node_modules may link its instead (`npm ci` mends it).
  const linked = realpathSync(join(root, 'node_modules', '.bin', 'tsc'));
  expect(linked).toBe(realpathSync(join(root, 'node_modules', 'typescript', 'bin', 'tsc')));
});

const cases = (['esm', 'cjs'] as const).flatMap((kind) =>
  settings[kind].map((setting): [string, Kind, Setting] => [
    `${kind === 'esm' ? 'an ES module' : 'a CommonJS'} consumer, module ${setting.module}, moduleResolution ${setting.moduleResolution}`,
    kind,
    setting,
  ]),
);

describe.each(compilers)('TypeScript $version, skipLibCheck off, strict', (compiler) => {
  it('is the major version this matrix is about', () => {
    expect(Number(compiler.version.split('.')[0])).toBe(compiler.major);
  });

  it.each(cases)('%s', async (_name, kind, setting) => {
    const { code, stdout, stderr } = await typecheck(kind, compiler, setting);
    expect(`${stdout}${stderr}`).toBe('');
    expect(code).toBe(0);
  }, 120_000);
});

describe('at run time, against a Redis without the library', () => {
  const [typescript5] = compilers;
  if (!typescript5) throw new Error('no compiler');

  async function withRedis(test: (url: string) => Promise<void>): Promise<void> {
    const server = await startRedis();
    try {
      const admin = server.client();
      expect(await admin.call('FUNCTION', 'LIST')).toEqual([]);
      await test(server.url);
      expect(Number(await admin.call('FCALL_RO', 'zv1_revision', '0'))).toBe(LIBRARY_REVISION);
    } finally {
      await disposeRedis(server);
    }
  }

  /** Runs a compiled quick start, which loads the library itself (`loadFunctions: true`). */
  async function runsQuickStart(dir: string, file: string): Promise<void> {
    await withRedis(async (url) => {
      const result = await run(process.execPath, [file], { cwd: dir, env: { ...env, REDIS_URL: url } });
      expect(result, result.stderr).toMatchObject({ code: 0, stderr: '' });
      expect(result.stdout.trim().split('\n')).toEqual(QUICK_START_OUTPUT);
    });
  }

  it('the quick start, compiled to an ES module (.mjs), loads the library itself and runs as the README says', async () => {
    expect(await typecheck('esm', typescript5, EMITTING)).toMatchObject({ code: 0 });
    const dir = projects.esm.dir;
    // Every value export exists at run time: the module links only if each named import does.
    expect(await run(process.execPath, ['out/exports.mjs'], { cwd: dir })).toMatchObject({ code: 0, stderr: '' });
    await runsQuickStart(dir, 'out/quick-start.mjs');
  }, 120_000);

  it('the quick start, compiled to CommonJS (.cjs), requires the package and runs the same; so do the metrics entry points', async () => {
    expect(await typecheck('cjs', typescript5, EMITTING)).toMatchObject({ code: 0 });
    const dir = projects.cjs.dir;
    // require(esm): Node >= 20.19 loads an ES module graph synchronously if no module of it
    // uses top-level await (ERR_REQUIRE_ASYNC_MODULE otherwise).
    expect(readFileSync(join(dir, 'out', 'quick-start.cjs'), 'utf8')).toContain('require("zenvark")');
    await runsQuickStart(dir, 'out/quick-start.cjs');
    // The metrics entry points, required with their peers.
    expect(readFileSync(join(dir, 'out', 'metrics.cjs'), 'utf8')).toContain('require("zenvark/prometheus")');
    expect(await run(process.execPath, ['out/metrics.cjs'], { cwd: dir })).toMatchObject({
      code: 0,
      stdout: 'metrics registered and disposed\n',
      stderr: '',
    });
  }, 120_000);

  // As the README has it; offline, so that a bin npm cannot find locally is not downloaded instead.
  const npx = (bin: string, ...args: string[]) => run('npx', [bin, ...args], { cwd: projects.esm.dir, env: { ...env, npm_config_offline: 'true' } });

  it('the zenvark bin, run with npx: its help, and every subcommand', async () => {
    const help = await npx('zenvark', '--help');
    expect(help, help.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toMatch(/^Usage: zenvark /);
    const subcommands = ['ls', 'status', 'history', 'open', 'close', 'monitor', 'release', 'reset', 'deploy-functions', 'watch'];
    for (const sub of subcommands) {
      expect(await npx('zenvark', sub, '--help')).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`^Usage: zenvark ${sub} `)) });
    }
    await withRedis(async (url) => {
      const deploy = await npx('zenvark', '--url', url, 'deploy-functions');
      expect(deploy, deploy.stderr).toMatchObject({ code: 0, stdout: expect.stringContaining(`loaded ${LIBRARY_NAME} revision ${LIBRARY_REVISION} (it was missing)`) });
      expect(await npx('zenvark', '--url', url, '--json', 'ls')).toEqual({ code: 0, stdout: '[]\n', stderr: '' });
      const unknown = "error: no breaker 'payments' under prefix 'zenvark': Redis has no state for it (zenvark:{payments}:state)\n";
      expect(await npx('zenvark', '--url', url, 'status', 'payments')).toEqual({ code: 1, stdout: '', stderr: unknown });
      expect(await npx('zenvark', '--url', url, 'open', 'payments', '--reason', 'deploying', '--for', '30m')).toEqual({ code: 1, stdout: '', stderr: unknown });

      // A breaker that tripped, as an instance reports it; then every read and control, and watch hearing one.
      const redis = new Redis(url);
      try {
        await recordCall(redis, 'zenvark', 'payments', 'failure');
        expect(await npx('zenvark', '--url', url, 'ls')).toMatchObject({ code: 0, stdout: expect.stringMatching(/\npayments +open +- +1 /) });
        expect(await npx('zenvark', '--url', url, 'status', 'payments')).toMatchObject({ code: 0, stdout: expect.stringMatching(/^breaker payments: open for /) });
        // The installed bin itself, which npx runs: npx does not pass a SIGINT on to it.
        const watch = spawn(join(projects.esm.dir, 'node_modules', '.bin', 'zenvark'), ['--url', url, '--json', 'watch'], { cwd: projects.esm.dir, env });
        let heard = '';
        watch.stdout.on('data', (chunk: Buffer) => {
          heard += chunk.toString();
        });
        const exited = new Promise<number | null>((resolve) => watch.on('exit', resolve));
        try {
          await vi.waitFor(async () => expect(await redis.call('PUBSUB', 'NUMSUB', 'zenvark:feed')).toEqual(['zenvark:feed', 1]), { timeout: 30_000, interval: 100 });
          const controls = [['open', '--for', '30m'], ['close'], ['monitor', '--for', '1h'], ['release'], ['reset']];
          for (const [action, ...rest] of controls) {
            const done = await npx('zenvark', '--url', url, action as string, 'payments', '--reason', `package test: ${action}`, '--actor', 'ops@package', ...rest);
            expect(done, done.stderr).toMatchObject({ code: 0, stdout: expect.stringMatching(/^breaker payments: /) });
          }
          await vi.waitFor(() => expect(heard.trimEnd().split('\n')).toHaveLength(controls.length), { timeout: 30_000 });
          expect(heard.trimEnd().split('\n').map((line) => (JSON.parse(line) as { reason: string }).reason)).toEqual(['forced_open', 'forced_closed', 'monitored', 'released', 'reset']);
        } finally {
          watch.kill('SIGINT');
        }
        expect(await exited).toBe(0);
        const history = await npx('zenvark', '--url', url, '--json', 'history', 'payments');
        expect(history, history.stderr).toMatchObject({ code: 0 });
        expect((JSON.parse(history.stdout) as { reason: string; actor: string }[]).map((t) => t.reason)).toEqual([
          'consecutive_failures',
          'forced_open',
          'forced_closed',
          'monitored',
          'released',
          'reset',
        ]);
      } finally {
        redis.disconnect();
      }
    });
  }, 180_000);

  it('the zenvark-deploy-functions bin, run with npx, loads the library; --check then exits 0', async () => {
    await withRedis(async (url) => {
      const deploy = await npx('zenvark-deploy-functions', '--url', url);
      expect(deploy, deploy.stderr).toMatchObject({ code: 0 });
      expect(deploy.stdout).toContain(`loaded ${LIBRARY_NAME} revision ${LIBRARY_REVISION} (it was missing)`);
      const check = await npx('zenvark-deploy-functions', '--check', '--url', url);
      expect(check, check.stderr).toMatchObject({ code: 0 });
      expect(check.stdout).toContain(`${LIBRARY_NAME} revision ${LIBRARY_REVISION}`);
    });
  }, 120_000);
});
