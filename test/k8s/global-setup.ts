// vitest global setup: one control plane for the whole run, handed to the tests through
// `provide`/`inject` (see cluster.ts), stopped in teardown.
import type { TestProject } from 'vitest/node';
import type {} from './cluster.js'; // the typing of `provide('k8sControlPlane', …)`
import { startControlPlane } from './controlplane.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = Date.now();
  const cp = await startControlPlane();
  console.log(
    `[k8s] control plane ready at ${cp.server} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  const { server, kubeconfigPath, caPath, binDir, workDir } = cp;
  project.provide('k8sControlPlane', { server, kubeconfigPath, caPath, binDir, workDir });
  return () => cp.stop();
}
