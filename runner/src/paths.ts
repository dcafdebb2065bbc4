// Where the runner's files are, whether it runs from runner/src (tests) or dist/ (npm start).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'native', 'policies'))) {
    const parent = path.dirname(dir);
    if (parent === dir)
      throw new Error('cannot find the SandboxPool root (native/policies) above the runner');
    dir = parent;
  }
  return dir;
}

export const REPO_ROOT = findRepoRoot();
export const NATIVE_BUILD = path.join(REPO_ROOT, 'native', 'build');
export const POLICY_SOURCE = path.join(REPO_ROOT, 'native', 'policies');
export const BOOTSTRAP_SOURCE = path.join(REPO_ROOT, 'runner', 'bootstrap');
export const DEPENDENCIES_DIR = path.join(REPO_ROOT, 'dependencies');
/** What `npm run build` bundles for the bootstraps (runner/bundles/). */
export const BUNDLES = path.join(REPO_ROOT, 'dist', 'bundles');
