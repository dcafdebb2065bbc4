// The runner as a process, started the way `npm start` does.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../runner/src/paths.js';

const MAIN = path.join(REPO_ROOT, 'dist/runner/src/main.js');
const baseEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

describe('runner start-up', () => {
  it('is built (npm run build)', () => {
    expect(existsSync(MAIN), `${MAIN} is missing: run 'npm run build'`).toBe(true);
  });

  it.each([
    [
      { SANDBOX_PORT: 'abc', API_KEY: 'k' },
      "invalid configuration: SANDBOX_PORT: expected a whole number, got 'abc'",
    ],
    [
      {},
      'invalid configuration: API_KEY: required when listening on 0.0.0.0 (set API_KEY, or SANDBOX_HOST=127.0.0.1 for local use)',
    ],
    [
      { API_KEY: 'k', MAX_WORKERS: '0' },
      'invalid configuration: MAX_WORKERS: 0 is out of range (1..256)',
    ],
  ])('stops on bad configuration %o with one clear line', (env, line) => {
    const r = spawnSync(process.execPath, [MAIN, '--config', '/dev/null'], {
      env: { ...baseEnv, ...env },
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`${line}\n`);
    expect(r.stdout).toBe('');
  });

  it("logs 'config init success' in JSON once it serves, and stops on SIGTERM", async () => {
    const workDir = mkdtempSync(path.join(os.tmpdir(), 'sbp-start-'));
    const child = spawn(process.execPath, [MAIN], {
      env: {
        ...baseEnv,
        SANDBOX_HOST: '127.0.0.1',
        SANDBOX_PORT: '0',
        API_KEY: 'k',
        SANDBOX_WORK_DIR: workDir,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const line = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no 'config init success' within 20 s:\n${out}`)),
        20_000,
      );
      child.stdout.on('data', () => {
        const found = out.split('\n').find((l) => l.includes('config init success'));
        if (found !== undefined) {
          clearTimeout(timer);
          resolve(JSON.parse(found) as Record<string, unknown>);
        }
      });
    });
    expect(line.port).toBeGreaterThan(0);
    const health = await fetch(`http://127.0.0.1:${String(line.port)}/readyz`);
    expect(health.status).toBe(200);
    for (const l of out.trim().split('\n')) expect(() => JSON.parse(l)).not.toThrow();
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
  });
});
