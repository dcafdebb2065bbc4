// The Node.js startup snapshot: built at start with the runs' own flags and used by every
// Node.js run; when it cannot be built, runs start from the script and a warning says why.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../runner/src/config.js';
import { Runtime } from '../../runner/src/runtime.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function prepared(env: Record<string, string>): Promise<Runtime> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'sbp-snapshot-'));
  dirs.push(workDir);
  const runtime = new Runtime(
    loadConfig({
      configPath: null,
      env: { SANDBOX_WORK_DIR: workDir, SANDBOX_HOST: '127.0.0.1', ...env },
    }),
  );
  await runtime.prepare();
  return runtime;
}

describe('the Node.js startup snapshot', () => {
  it('is built with the flags of the runs, and Node.js runs start from it', async () => {
    const runtime = await prepared({ SANDBOX_MEMORY_MIB: '128' });
    expect(runtime.nodeSnapshot).toBe(path.join(runtime.runtimeDir, 'nodejs.blob'));
    const args = runtime.interpreterArgs('nodejs');
    expect(args).toContain('--max-old-space-size=96');
    expect(args.slice(args.indexOf('--snapshot-blob'))[1]).toBe(runtime.nodeSnapshot);
    expect(args.some((a) => a.endsWith('nodejs.cjs'))).toBe(false);
    expect(runtime.warnings).toEqual([]);
  });

  it('when it cannot be built, runs start from the script and a warning says so', async () => {
    const runtime = await prepared({ NODEJS_PATH: '/bin/false' });
    expect(runtime.nodeSnapshot).toBeUndefined();
    const args = runtime.interpreterArgs('nodejs');
    expect(args).not.toContain('--snapshot-blob');
    expect(args.some((a) => a.endsWith('nodejs.cjs'))).toBe(true);
    expect(runtime.warnings.join('\n')).toMatch(/the Node.js startup snapshot could not be built/);
  });
});
