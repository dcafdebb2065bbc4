// Test-side access to the control plane that global-setup.ts started.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import { toolEnv, type ControlPlaneInfo } from './controlplane.js';

declare module 'vitest' {
  export interface ProvidedContext {
    k8sControlPlane: ControlPlaneInfo;
  }
}

const execFileAsync = promisify(execFile);

/** The running control plane; fails when the test was not started with its global setup. */
export function controlPlane(): ControlPlaneInfo {
  const info = inject('k8sControlPlane');
  if (!info) {
    throw new Error(
      'no control plane: run these tests with `npx vitest run --project k8s` (after `bash test/k8s/setup.sh`)',
    );
  }
  return info;
}

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Runs kubectl or helm from the control plane's build, with the admin kubeconfig (or another). */
export async function run(
  tool: 'kubectl' | 'helm',
  args: string[],
  kubeconfigPath: string = controlPlane().kubeconfigPath,
): Promise<CommandResult> {
  const info = controlPlane();
  try {
    return await execFileAsync(join(info.binDir, tool), ['--kubeconfig', kubeconfigPath, ...args], {
      timeout: 60_000,
      env: toolEnv(info),
    });
  } catch (err) {
    const { stdout = '', stderr = '' } = err as Partial<CommandResult>;
    throw new Error(
      `${tool} ${args.join(' ')} failed: ${stderr.trim() || stdout.trim() || String(err)}`,
      {
        cause: err,
      },
    );
  }
}
