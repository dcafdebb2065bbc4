// The runner's configuration, rendered from the pool's spec into DifySandbox-style config.yaml
// (runner/src/config.ts reads it; the keys come from its SETTINGS, so a renamed key fails to
// compile or fails the contract test). Its hash goes on the pod template: a change rolls pods.
// The proxy goes into the container's environment instead: the package installers (pip, npm)
// the runner starts take it from there, and the runner reads the same variables.
import { createHash } from 'node:crypto';
import type { V1ConfigMap } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { SETTINGS, type RunnerConfig } from '../../runner/src/config.js';
import { METRICS_PORT, RUNNER_PORT, type SandboxPool } from '../api/v1alpha1.js';
import { childMeta, childNames } from './common.js';

export const CONFIG_FILE = 'config.yaml';
/** Where the ConfigMap is mounted in the runner container. */
export const CONFIG_DIR = '/conf';
/** The writable scratch volume (an emptyDir) and the runner's work directory inside it. */
export const SCRATCH_DIR = '/tmp';
export const WORK_DIR = '/tmp/sandboxpool';

/** The settings the operator decides; everything else keeps the runner's default. */
export type RenderedSettings = Partial<
  Pick<
    RunnerConfig,
    | 'host'
    | 'port'
    | 'metricsPort'
    | 'workerTimeoutSeconds'
    | 'maxWorkers'
    | 'maxRequests'
    | 'enableNetwork'
    | 'httpProxy'
    | 'httpsProxy'
    | 'noProxy'
    | 'directTcpPorts'
    | 'enablePreload'
    | 'allowedSyscalls'
    | 'pythonPackages'
    | 'nodejsPackages'
    | 'pipIndexUrl'
    | 'npmRegistry'
    | 'memoryMiB'
    | 'cpuSeconds'
    | 'maxOutputBytes'
    | 'workDir'
    | 'warmPython3'
    | 'warmNodejs'
    | 'logLevel'
  >
>;

export function runnerSettings(pool: SandboxPool): RenderedSettings {
  const { execution, network, seccomp, dependencies, logLevel } = pool.spec;
  const proxy = network.enabled ? network.egressProxy : undefined;
  return {
    host: '', // every address: a pod of an IPv6-only cluster is probed over IPv6
    port: RUNNER_PORT,
    metricsPort: METRICS_PORT,
    workerTimeoutSeconds: execution.timeoutSeconds,
    maxWorkers: execution.maxWorkers,
    maxRequests: execution.maxWorkers + execution.maxQueue,
    enableNetwork: network.enabled,
    ...(proxy ? { httpProxy: proxy.url, httpsProxy: proxy.url } : {}),
    ...(proxy?.noProxy ? { noProxy: proxy.noProxy } : {}),
    // With a proxy the runner keeps runs' TCP connections to its port and DNS; allowedCIDRs are
    // reachable on every port (their NetworkPolicy rule), so then runs keep every port.
    ...(proxy && network.allowedCIDRs.length > 0 ? { directTcpPorts: ['any'] } : {}),
    enablePreload: execution.enablePreload,
    allowedSyscalls: [...seccomp.extraSyscalls],
    ...(dependencies.python.length > 0 ? { pythonPackages: [...dependencies.python] } : {}),
    ...(dependencies.nodejs.length > 0 ? { nodejsPackages: [...dependencies.nodejs] } : {}),
    ...(dependencies.pipIndexUrl ? { pipIndexUrl: dependencies.pipIndexUrl } : {}),
    ...(dependencies.npmRegistry ? { npmRegistry: dependencies.npmRegistry } : {}),
    memoryMiB: execution.memoryMiB,
    ...(execution.cpuTimeSeconds !== undefined ? { cpuSeconds: execution.cpuTimeSeconds } : {}),
    maxOutputBytes: execution.maxOutputBytes,
    workDir: WORK_DIR,
    warmPython3: execution.warmPool.python3,
    warmNodejs: execution.warmPool.nodejs,
    logLevel,
  };
}

/** Settings passed as environment variables rather than in config.yaml. */
const IN_ENV: ReadonlySet<keyof RenderedSettings> = new Set(['httpProxy', 'httpsProxy', 'noProxy']);

const setting = (key: string) => {
  const s = SETTINGS.find((x) => x.key === key);
  if (!s) throw new Error(`runner setting ${key} is not in runner/src/config.ts SETTINGS`);
  return s;
};

/** The container's environment for the settings passed that way (the runner's names). */
export function runnerEnv(pool: SandboxPool): { name: string; value: string }[] {
  return Object.entries(runnerSettings(pool))
    .filter(([key]) => IN_ENV.has(key as keyof RenderedSettings))
    .map(([key, value]) => ({ name: setting(key).env, value: String(value) }));
}

/** config.yaml: each setting at its runner yaml path (e.g. limits.memory_mib). */
export function renderRunnerConfig(pool: SandboxPool): string {
  const doc: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(runnerSettings(pool))) {
    if (IN_ENV.has(key as keyof RenderedSettings)) continue;
    const parts = setting(key).yaml.split('.');
    let node = doc;
    for (const part of parts.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]!] = value;
  }
  const header =
    `# The runner's configuration for SandboxPool ${pool.metadata.namespace}/${pool.metadata.name},\n` +
    '# rendered by sandboxpool-operator from its spec: edit the SandboxPool, not this file.\n';
  return header + stringify(doc, { sortMapEntries: true });
}

export function configHash(configYaml: string): string {
  return createHash('sha256').update(configYaml).digest('hex').slice(0, 16);
}

/**
 * The ConfigMap of this configuration: named after its content and immutable. A change makes a
 * new one, which only the new pods mount: a pod of the old ReplicaSet that restarts while a
 * rollout waits (a dependency that will not install, say) keeps the configuration it was made
 * with instead of taking up the new one. The reconciler deletes old ones once no pod can use them.
 */
export function configMapName(pool: SandboxPool): string {
  return `${childNames(pool).configMap}-${configHash(renderRunnerConfig(pool)).slice(0, 10)}`;
}

export function buildConfigMap(pool: SandboxPool): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: childMeta(pool, configMapName(pool)),
    immutable: true,
    data: { [CONFIG_FILE]: renderRunnerConfig(pool) },
  };
}
