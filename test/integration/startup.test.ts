// The runner as a process, started the way `npm start` does.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../runner/src/paths.js';
import { freePort } from '../support/ports.js';

const MAIN = path.join(REPO_ROOT, 'dist/runner/src/main.js');
const baseEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

/** Starts the built runner and resolves with its 'config init success' line. */
async function startMain(
  env: Record<string, string>,
): Promise<{ child: ReturnType<typeof spawn>; line: Record<string, unknown>; out: () => string }> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'sbp-start-'));
  const child = spawn(process.execPath, [MAIN], {
    env: {
      ...baseEnv,
      SANDBOX_HOST: '127.0.0.1',
      SANDBOX_PORT: '0',
      API_KEY: 'k',
      SANDBOX_WORK_DIR: workDir,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const line = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL'); // a runner that never got ready must not outlive the test
      reject(new Error(`no 'config init success' within 20 s:\n${out}`));
    }, 20_000);
    child.stdout.on('data', () => {
      const found = out.split('\n').find((l) => l.includes('config init success'));
      if (found !== undefined) {
        clearTimeout(timer);
        resolve(JSON.parse(found) as Record<string, unknown>);
      }
    });
  });
  return { child, line, out: () => out };
}

/** A runner on loopback with a work directory of its own. */
// An interpreter one directory below / (only its path counts: the runner stops before running it).
const ROOT_NODE = `/tmp/sbp-node-${process.pid}`;
writeFileSync(ROOT_NODE, '');
// One two directories below / whose prefix, /tmp, holds the work directory.
const TMP_NODE = `/tmp/sbp-bin-${process.pid}/node`;
mkdirSync(path.dirname(TMP_NODE));
writeFileSync(TMP_NODE, '');
const WORK_IN_TMP = mkdtempSync('/tmp/sbp-start-');
afterAll(() => {
  for (const p of [ROOT_NODE, path.dirname(TMP_NODE), WORK_IN_TMP])
    rmSync(p, { recursive: true, force: true });
});

const local = () => ({
  API_KEY: 'k',
  SANDBOX_HOST: '127.0.0.1',
  SANDBOX_PORT: '0',
  SANDBOX_WORK_DIR: mkdtempSync(path.join(os.tmpdir(), 'sbp-start-')),
});

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
    // What only this machine can tell: stopped before listening, not a runner never ready.
    [
      { ...local(), ALLOWED_SYSCALLS: 'getpid notasyscall' },
      "invalid configuration: ALLOWED_SYSCALLS: no syscall named 'notasyscall' on this machine",
    ],
    [
      { ...local(), PYTHON_PATH: '/nonexistent/python3' },
      'invalid configuration: PYTHON_PATH: /nonexistent/python3 does not exist',
    ],
    [
      // Its prefix would be /: Landlock and the binds of root mode would let runs read it all.
      { ...local(), NODEJS_PATH: ROOT_NODE },
      `invalid configuration: NODEJS_PATH: ${ROOT_NODE}: its prefix would be /, which would let runs read the whole filesystem; install it under a directory of its own, e.g. /opt/nodejs/bin/`,
    ],
    [
      // Its prefix /tmp holds the work directory: runs could read each other's files.
      { ...local(), NODEJS_PATH: TMP_NODE, SANDBOX_WORK_DIR: WORK_IN_TMP },
      `invalid configuration: NODEJS_PATH: ${TMP_NODE}: its prefix /tmp holds SANDBOX_WORK_DIR ${WORK_IN_TMP}, which would let runs read each other's files; install it under a directory of its own, e.g. /opt/nodejs/bin/`,
    ],
  ])('stops on bad configuration %o with one clear line', (env, line) => {
    const r = spawnSync(process.execPath, [MAIN, '--config', '/dev/null'], {
      env: { ...baseEnv, ...env },
      encoding: 'utf8',
      timeout: 30_000, // a runner that starts instead serves until killed: fail, not hang
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`${line}\n`);
    expect(r.stdout).toBe('');
  });

  it("with host '' (config.yaml) serves on every address, IPv4 and IPv6", async () => {
    const config = path.join(mkdtempSync(path.join(os.tmpdir(), 'sbp-host-')), 'config.yaml');
    writeFileSync(config, "app:\n  host: ''\n");
    // An empty variable is no setting: config.yaml's host counts.
    const { child, line } = await startMain({ SANDBOX_HOST: '', SANDBOX_CONFIG: config });
    try {
      expect(line.msg).toMatch(/^config init success: listening on \*:\d+$/);
      for (const host of ['127.0.0.1', '[::1]'])
        expect((await fetch(`http://${host}:${line.port as number}/health`)).status, host).toBe(
          200,
        );
    } finally {
      child.kill('SIGKILL');
    }
  });

  it("logs 'config init success' in JSON once it serves, and stops on SIGTERM", async () => {
    const { child, line, out } = await startMain({});
    expect(line.port).toBeGreaterThan(0);
    const health = await fetch(`http://127.0.0.1:${String(line.port)}/readyz`);
    expect(health.status).toBe(200);
    for (const l of out().trim().split('\n')) expect(() => JSON.parse(l)).not.toThrow();
    expect(out()).not.toMatch(/well-known default/);
    child.kill('SIGTERM');
    await new Promise((resolve) => child.on('exit', resolve));
    // DifySandbox's (and Dify's compose file's) key works, with a warning that it is known.
    const known = await startMain({ API_KEY: 'dify-sandbox' });
    expect(known.out()).toMatch(
      /"level":40,.*API_KEY is \\"dify-sandbox\\", the well-known default/,
    );
    // Its signal handlers are in place once it answers (a moment after the line).
    expect((await fetch(`http://127.0.0.1:${String(known.line.port)}/readyz`)).status).toBe(200);
    known.child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => known.child.on('exit', resolve));
    expect(code).toBe(0);
  });

  // Dify's scripts wait for 'config init success' before they send runs: never when not ready.
  it.runIf(process.getuid?.() === 0)(
    "when not ready, listens and says why, without 'config init success'",
    async () => {
      const child = spawn(
        'setpriv',
        ['--bounding-set=-sys_admin', '--inh-caps=-sys_admin', process.execPath, MAIN],
        {
          env: {
            ...baseEnv,
            SANDBOX_HOST: '127.0.0.1',
            SANDBOX_PORT: '0',
            API_KEY: 'k',
            SANDBOX_WORK_DIR: mkdtempSync(path.join(os.tmpdir(), 'sbp-start-')),
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      try {
        const line = await new Promise<Record<string, unknown>>((resolve, reject) => {
          const timer = setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`not listening within 30 s:\n${out}`));
          }, 30_000);
          child.stdout.on('data', () => {
            const found = out.split('\n').find((l) => l.includes('listening on'));
            if (found === undefined) return;
            clearTimeout(timer);
            resolve(JSON.parse(found) as Record<string, unknown>);
          });
        });
        expect(line.msg).toMatch(
          /^listening on 127\.0\.0\.1:\d+, but not ready: started as root without CAP_SYS_ADMIN/,
        );
        expect(out).not.toContain('config init success');
        const ready = await fetch(`http://127.0.0.1:${String(line.port)}/readyz`);
        expect(ready.status).toBe(503);
      } finally {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.kill('SIGTERM');
          await exited;
        }
      }
    },
  );

  it('serves only /metrics and /healthz on SANDBOX_METRICS_PORT', async () => {
    const metricsPort = await freePort();
    const { child, line } = await startMain({ SANDBOX_METRICS_PORT: String(metricsPort) });
    try {
      expect(line.metricsPort).toBe(metricsPort);
      const base = `http://127.0.0.1:${metricsPort}`;
      const metrics = await fetch(`${base}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain('sandbox_executions_in_flight');
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const run = await fetch(`${base}/v1/sandbox/run`, {
        method: 'POST',
        headers: { 'X-Api-Key': 'k', 'Content-Type': 'application/json' },
        body: JSON.stringify({ language: 'python3', code: 'print(1)' }),
      });
      expect(run.status).toBe(404);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.on('exit', resolve));
    }
  });
});

describe('operator start-up', () => {
  // A configuration error stops start-up with one clear line (exit 2), not a crash report.
  it.each([
    [
      'no kubeconfig and not in a cluster',
      false,
      'none found, and not in a cluster (no KUBERNETES_SERVICE_HOST)',
    ],
    ['a kubeconfig without a current cluster', true, 'the kubeconfig has no current cluster'],
  ])('refuses %s with one line', (_what, withFile, reason) => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'sbp-operator-'));
    const kubeconfig = path.join(home, 'kubeconfig');
    if (withFile)
      writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'operator/main.ts'], {
      cwd: REPO_ROOT,
      env: { ...baseEnv, HOME: home, ...(withFile ? { KUBECONFIG: kubeconfig } : {}) },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `cannot load a kubeconfig ($KUBECONFIG, ~/.kube/config or in-cluster): ${reason}\n`,
    );
  });
});
