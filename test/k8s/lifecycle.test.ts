// startControlPlane()/stop() themselves: a second, private control plane comes up on its own
// ports and leaves nothing behind; missing binaries fail with the way to get them.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { controlPlane } from './cluster.js';
import { startControlPlane, toolEnv } from './controlplane.js';

const execFileAsync = promisify(execFile);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('startControlPlane', () => {
  it('starts a control plane beside the shared one, restarts a component, and stop() leaves no process or file behind', async () => {
    const cp = await startControlPlane();
    try {
      expect(cp.server).not.toBe(controlPlane().server);
      expect(cp.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(existsSync(cp.kubeconfigPath)).toBe(true);
      for (const pid of Object.values(cp.pids)) expect(alive(pid)).toBe(true);

      // restart(): the API server comes back on the same address with the same data.
      const kubectl = (...args: string[]) =>
        execFileAsync(join(cp.binDir, 'kubectl'), ['--kubeconfig', cp.kubeconfigPath, ...args], {
          env: toolEnv(cp),
        });
      await kubectl('create', 'configmap', 'survivor', '--from-literal=k=v');
      const before = cp.pids['kube-apiserver'];
      await cp.restart('kube-apiserver');
      expect(alive(before)).toBe(false);
      expect(cp.pids['kube-apiserver']).not.toBe(before);
      const { stdout } = await kubectl('get', 'configmap', 'survivor', '-o', 'jsonpath={.data.k}');
      expect(stdout).toBe('v');
    } finally {
      await cp.stop();
    }
    for (const pid of Object.values(cp.pids)) expect(alive(pid)).toBe(false);
    expect(existsSync(cp.workDir)).toBe(false);
    await cp.stop(); // idempotent
  });

  it('fails without the binaries, saying how to build them', async () => {
    const nowhere = join(tmpdir(), `sandboxpool-no-binaries-${process.pid}`);
    await expect(startControlPlane({ binDir: nowhere })).rejects.toThrow(
      /kube-apiserver.*bash test\/k8s\/setup\.sh/s,
    );
  });
});
