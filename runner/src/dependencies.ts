// The packages sandboxed code can use: those of the image (dependencies/python-requirements.txt
// and dependencies/package.json) and the extra ones of the configuration, installed here at
// start into <work dir>/packages/, where sandboxed code may read but never write.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Language, RunnerConfig } from './config.js';
import { DEPENDENCIES_DIR } from './paths.js';

const run = promisify(execFile);
const INSTALL_TIMEOUT_MS = 15 * 60 * 1000;

export interface Dependency {
  name: string;
  version: string;
}

/** Where the configuration's extra packages go; the bootstraps find them there. */
export function packagesDir(config: RunnerConfig): {
  root: string;
  python: string;
  nodejs: string;
} {
  const root = path.join(config.workDir, 'packages');
  return { root, python: path.join(root, 'python'), nodejs: path.join(root, 'nodejs') };
}

/** The node_modules directories Node.js programs resolve packages from (NODE_PATH). */
export function nodeModulePaths(config: RunnerConfig): string[] {
  return [
    path.join(packagesDir(config).nodejs, 'node_modules'),
    path.join(DEPENDENCIES_DIR, 'node_modules'),
  ];
}

/** The line of an installer's stderr that says what went wrong. */
function reason(text: string): string {
  const lines = text
    .split('\n')
    .filter((l) => l.trim() !== '' && !/complete log of this run/.test(l));
  const error = lines.find((l) => /^(npm )?error /i.test(l) && !/^npm error (code|errno) /.test(l));
  return (error ?? lines.at(-1) ?? '').trim();
}

/** The installers' environment: the runner's (proxies, CA bundles), without its secret. */
function installerEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    npm_config_cache: path.join(home, '.npm'),
  };
  delete env.API_KEY;
  return env;
}

async function installOnce(
  dir: string,
  specs: string[],
  what: string,
  install: () => Promise<unknown>,
): Promise<void> {
  // A stamp of what is installed (and how): a restart with the same list does not install again.
  const stamp = path.join(dir, '.installed');
  const wanted = JSON.stringify(specs);
  if ((await fs.readFile(stamp, 'utf8').catch(() => '')) === wanted) return;
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  try {
    await install();
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`installing ${what} packages failed: ${reason(e.stderr ?? '') || e.message}`);
  }
  await fs.writeFile(stamp, wanted, { mode: 0o644 });
}

/**
 * Writes unchecked-hash bytecode for every module beneath argv[1]. Source that does not compile
 * (pip skips it too) is compiled when imported; any other error (a full disk, say) fails the
 * install, which is then tried again, rather than leaving packages without bytecode for good.
 */
const COMPILE_PACKAGES = `
import os, py_compile, sys
for root, dirs, files in os.walk(sys.argv[1]):
    for name in files:
        if name.endswith(".py"):
            try:
                py_compile.compile(os.path.join(root, name), doraise=True,
                                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            except py_compile.PyCompileError:
                pass
`;

/**
 * Installs the configuration's extra packages (before the runner reports ready). pip takes
 * wheels only and npm runs no install scripts: nothing of a package runs outside the sandbox.
 */
export async function installPackages(config: RunnerConfig): Promise<void> {
  const dirs = packagesDir(config);
  await fs.mkdir(dirs.root, { recursive: true, mode: 0o755 });
  if (config.pythonPackages.length > 0) {
    // The stamp names the kind of bytecode too: packages installed before with timestamp-checked
    // bytecode are installed again.
    const stamp = [...config.pythonPackages, 'bytecode: unchecked-hash'];
    await installOnce(dirs.python, stamp, 'Python', async () => {
      await run(
        config.pythonPath,
        [
          '-m', 'pip', 'install', '--quiet', '--no-input', '--disable-pip-version-check',
          '--no-cache-dir', '--only-binary=:all:', '--no-compile', '--target', dirs.python,
          ...(config.pipIndexUrl !== '' ? ['--index-url', config.pipIndexUrl] : []),
          ...config.pythonPackages,
        ], // prettier-ignore
        { timeout: INSTALL_TIMEOUT_MS, env: installerEnv(dirs.root) },
      );
      // Bytecode that Python takes without looking at the source's timestamp: without root the
      // runs share the runner's uid, own these files, and may set their times (utimensat, which
      // Landlock does not govern); with timestamp-checked bytecode, one run could make every
      // later run compile the package again. -I: the settings the runs have (no PYTHON*
      // variables).
      await run(config.pythonPath, ['-I', '-c', COMPILE_PACKAGES, dirs.python], {
        timeout: INSTALL_TIMEOUT_MS,
        env: installerEnv(dirs.root),
      });
    });
  }
  if (config.nodejsPackages.length > 0) {
    await installOnce(dirs.nodejs, config.nodejsPackages, 'npm', () =>
      run(
        'npm',
        [
          'install', '--prefix', dirs.nodejs, '--ignore-scripts', '--no-audit', '--no-fund',
          '--omit=dev', '--no-package-lock',
          ...(config.npmRegistry !== '' ? ['--registry', config.npmRegistry] : []),
          ...config.nodejsPackages,
        ], // prettier-ignore
        { timeout: INSTALL_TIMEOUT_MS, env: installerEnv(dirs.root) },
      ),
    );
  }
}

function requirementName(line: string): string | undefined {
  const bare = line.replace(/#.*/, '').trim();
  if (bare === '' || bare.startsWith('-')) return undefined;
  return /^[A-Za-z0-9._-]+/.exec(bare)?.[0];
}

/** "lodash@4.17.21" → "lodash", "@scope/pkg@1" → "@scope/pkg". */
function npmName(spec: string): string {
  const at = spec.indexOf('@', 1);
  return at < 0 ? spec : spec.slice(0, at);
}

const PYTHON_VERSIONS = `
import importlib.metadata as m, json, sys
out = {}
for name in sys.argv[2:]:
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps(out))
`;

async function pythonDependencies(config: RunnerConfig): Promise<Dependency[]> {
  const text = await fs.readFile(path.join(DEPENDENCIES_DIR, 'python-requirements.txt'), 'utf8');
  const names = [...text.split('\n'), ...config.pythonPackages]
    .map(requirementName)
    .filter((n): n is string => n !== undefined);
  const script = `import sys; sys.path.insert(0, sys.argv[1])\n${PYTHON_VERSIONS}`;
  const { stdout } = await run(
    config.pythonPath,
    ['-I', '-c', script, packagesDir(config).python, ...names],
    {
      env: {},
      timeout: 30_000,
    },
  );
  const versions = JSON.parse(stdout) as Record<string, string>;
  return [...new Set(names)]
    .filter((n) => n in versions)
    .map((n) => ({ name: n, version: versions[n]! }));
}

async function nodejsDependencies(config: RunnerConfig): Promise<Dependency[]> {
  const manifest = JSON.parse(
    await fs.readFile(path.join(DEPENDENCIES_DIR, 'package.json'), 'utf8'),
  ) as {
    dependencies?: Record<string, string>;
  };
  const names = new Set([
    ...Object.keys(manifest.dependencies ?? {}),
    ...config.nodejsPackages.map(npmName),
  ]);
  const out: Dependency[] = [];
  for (const name of names) {
    for (const dir of nodeModulePaths(config)) {
      const pkg = await fs
        .readFile(path.join(dir, name, 'package.json'), 'utf8')
        .catch(() => undefined);
      if (pkg === undefined) continue;
      out.push({ name, version: (JSON.parse(pkg) as { version: string }).version });
      break;
    }
  }
  return out;
}

export async function listDependencies(
  config: RunnerConfig,
  language: Language,
): Promise<Dependency[]> {
  return language === 'python3' ? pythonDependencies(config) : nodejsDependencies(config);
}
