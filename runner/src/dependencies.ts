// The dependency routes of DifySandbox: which packages sandboxed code can use, with versions.
// The lists are dependencies/python-requirements.txt and dependencies/package.json; versions
// are what the configured interpreters actually have installed.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Language, RunnerConfig } from './config.js';
import { DEPENDENCIES_DIR } from './paths.js';

export interface Dependency {
  name: string;
  version: string;
}

function requirementName(line: string): string | undefined {
  const bare = line.replace(/#.*/, '').trim();
  if (bare === '' || bare.startsWith('-')) return undefined;
  return /^[A-Za-z0-9._-]+/.exec(bare)?.[0];
}

const PYTHON_VERSIONS = `
import importlib.metadata as m, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps(out))
`;

async function pythonDependencies(config: RunnerConfig): Promise<Dependency[]> {
  const text = await fs.readFile(path.join(DEPENDENCIES_DIR, 'python-requirements.txt'), 'utf8');
  const names = text
    .split('\n')
    .map(requirementName)
    .filter((n): n is string => n !== undefined);
  const { stdout } = await promisify(execFile)(
    config.pythonPath,
    ['-I', '-c', PYTHON_VERSIONS, ...names],
    {
      env: {},
      timeout: 30_000,
    },
  );
  const versions = JSON.parse(stdout) as Record<string, string>;
  return names.filter((n) => n in versions).map((n) => ({ name: n, version: versions[n]! }));
}

async function nodejsDependencies(): Promise<Dependency[]> {
  const manifest = JSON.parse(
    await fs.readFile(path.join(DEPENDENCIES_DIR, 'package.json'), 'utf8'),
  ) as {
    dependencies?: Record<string, string>;
  };
  const out: Dependency[] = [];
  for (const name of Object.keys(manifest.dependencies ?? {})) {
    try {
      const pkg = JSON.parse(
        await fs.readFile(
          path.join(DEPENDENCIES_DIR, 'node_modules', name, 'package.json'),
          'utf8',
        ),
      ) as { version: string };
      out.push({ name, version: pkg.version });
    } catch {
      // listed but not installed: not usable, so not listed
    }
  }
  return out;
}

export async function listDependencies(
  config: RunnerConfig,
  language: Language,
): Promise<Dependency[]> {
  return language === 'python3' ? pythonDependencies(config) : nodejsDependencies();
}
