// Where the repository (or the installed operator) is: the directory above this file that
// holds SandboxPool's package.json, whether run from operator/ (tsx) or dist/operator/ (node).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      const { name } = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string };
      if (name === 'sandboxpool') return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir)
      throw new Error('cannot find the SandboxPool package.json above the operator');
    dir = parent;
  }
}

export const REPO_ROOT = findRoot();

/** The package version, which tags the default runner image. */
export const PACKAGE_VERSION = (
  JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;
