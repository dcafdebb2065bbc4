// The runner Deployment: restricted pods (PodSecurity "restricted"): non-root, no capabilities,
// no privilege escalation, read-only root filesystem with an emptyDir for the work directory, a
// seccomp profile, no service-account token; probes, resources, spread across nodes and zones,
// and rolling updates that never lower capacity (maxUnavailable 0).
import type { V1Deployment, V1PodSpec, V1TopologySpreadConstraint } from '@kubernetes/client-node';
import { METRICS_PORT, RUNNER_PORT, type SandboxPool } from '../api/v1alpha1.js';
import {
  CONFIG_HASH_ANNOTATION,
  childMeta,
  childNames,
  commonLabels,
  selectorLabels,
  type BuildContext,
} from './common.js';
import {
  CONFIG_DIR,
  CONFIG_FILE,
  SCRATCH_DIR,
  configHash,
  configMapName,
  renderRunnerConfig,
  runnerEnv,
} from './configmap.js';

/** The runner's user and group in the pod (any non-root id works: it needs no capabilities). */
export const RUNNER_UID = 10001;

/**
 * A deleted pod leaves its Service's endpoints a moment after it is sent SIGTERM, and new
 * connections reach it until then (Dify does not retry them): it keeps serving that long (a
 * preStop sleep), then drains, answering the runs under way within the run timeout + 10 s.
 */
export const PRE_STOP_SECONDS = 5;
export const API_KEY_VERSION_ANNOTATION = 'sandboxpool.dev/api-key-version';

/** The suffixes of resource quantities. */
const QUANTITY_SCALE: Record<string, number> = {
  n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
}; // prettier-ignore

/** A resource quantity ("1536Mi", "2G", "1.5Gi") as a number; NaN when it is none. */
export function quantityValue(q: string | number): number {
  if (typeof q === 'number') return q;
  // The schema's pattern admits only these forms. (client-node's quantityToScalar is not
  // exported, and refuses fractions of binary units: "1.5Gi".)
  const m = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)([KMGTPE]i|[numkMGTPE])?$/.exec(q);
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === undefined ? 1 : (QUANTITY_SCALE[m[2]] ?? NaN));
}

/** What the runner and its warm interpreters hold besides the runs (README, resource limits). */
const RUNNER_OVERHEAD_BYTES = 256 * 2 ** 20;

/**
 * Why the pod's memory limit is too small for what its runs may take, or undefined: at the
 * limit the kernel kills the whole container (cgroup v2 memory.oom.group), every run with it.
 */
export function memoryShortfall(pool: SandboxPool): string | undefined {
  const limit = pool.spec.resources.limits?.memory;
  if (limit === undefined) return undefined;
  const { maxWorkers, memoryMiB } = pool.spec.execution;
  const inMemory = pool.spec.workDir.medium === 'Memory';
  const need =
    maxWorkers * memoryMiB * 2 ** 20 +
    RUNNER_OVERHEAD_BYTES +
    (inMemory ? quantityValue(pool.spec.workDir.sizeLimit) : 0);
  const have = quantityValue(limit);
  if (!(have < need)) return undefined;
  const mib = (n: number) => `${Math.ceil(n / 2 ** 20)} MiB`;
  return `resources.limits.memory (${String(limit)}) is below what the runs may take: execution.maxWorkers × execution.memoryMiB (${maxWorkers} × ${memoryMiB} MiB) + about 256 MiB for the runner${inMemory ? ' + workDir.sizeLimit (medium Memory)' : ''} = ${mib(need)}; at the limit the whole container is killed, every run in it`;
}

/** How long a pod may take to start listening before the kubelet restarts it. */
export function startupBudgetSeconds(pool: SandboxPool): number {
  const { python, nodejs } = pool.spec.dependencies;
  return 180 + (python.length > 0 ? 900 : 0) + (nodejs.length > 0 ? 900 : 0);
}

const quantities = (list: Record<string, string | number>) =>
  Object.fromEntries(Object.entries(list).map(([k, v]) => [k, String(v)]));

function topologySpread(pool: SandboxPool): V1TopologySpreadConstraint[] {
  return ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'].map((topologyKey) => ({
    maxSkew: 1,
    topologyKey,
    whenUnsatisfiable: 'ScheduleAnyway',
    labelSelector: { matchLabels: selectorLabels(pool) },
    matchLabelKeys: ['pod-template-hash'],
  }));
}

export function buildPodSpec(pool: SandboxPool, ctx: BuildContext): V1PodSpec {
  const { spec } = pool;
  const t = spec.podTemplate;
  return {
    serviceAccountName: childNames(pool).serviceAccount,
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    // The preStop sleep, then the drain (at most timeoutSeconds + 10 s), and a margin.
    terminationGracePeriodSeconds: PRE_STOP_SECONDS + spec.execution.timeoutSeconds + 15,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: RUNNER_UID,
      runAsGroup: RUNNER_UID,
      fsGroup: RUNNER_UID,
      seccompProfile: ctx.seccomp,
    },
    containers: [
      {
        name: 'runner',
        image: ctx.image,
        imagePullPolicy: spec.imagePullPolicy,
        ports: [
          { name: 'http', containerPort: RUNNER_PORT, protocol: 'TCP' },
          { name: 'metrics', containerPort: METRICS_PORT, protocol: 'TCP' },
        ],
        env: [
          { name: 'SANDBOX_CONFIG', value: `${CONFIG_DIR}/${CONFIG_FILE}` },
          {
            name: 'API_KEY',
            valueFrom: { secretKeyRef: { name: ctx.apiKey.name, key: ctx.apiKey.key } },
          },
          ...runnerEnv(pool),
        ],
        resources: {
          ...(spec.resources.requests ? { requests: quantities(spec.resources.requests) } : {}),
          ...(spec.resources.limits ? { limits: quantities(spec.resources.limits) } : {}),
        },
        securityContext: {
          runAsNonRoot: true,
          allowPrivilegeEscalation: false,
          privileged: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        },
        volumeMounts: [
          { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
          { name: 'scratch', mountPath: SCRATCH_DIR },
        ],
        // The runner listens once its packages are installed, its warm pools filled and its
        // self-test passed: up to 3 minutes, plus the installers' own limit (15 min each).
        startupProbe: {
          httpGet: { path: '/healthz', port: 'http' },
          periodSeconds: 2,
          timeoutSeconds: 2,
          failureThreshold: Math.ceil(startupBudgetSeconds(pool) / 2),
        },
        livenessProbe: {
          httpGet: { path: '/healthz', port: 'http' },
          periodSeconds: 10,
          timeoutSeconds: 3,
          failureThreshold: 3,
        },
        readinessProbe: {
          httpGet: { path: '/readyz', port: 'http' },
          periodSeconds: 5,
          timeoutSeconds: 3,
          failureThreshold: 2,
        },
        lifecycle: { preStop: { exec: { command: ['/bin/sleep', String(PRE_STOP_SECONDS)] } } },
        terminationMessagePolicy: 'FallbackToLogsOnError',
      },
    ],
    volumes: [
      { name: 'config', configMap: { name: configMapName(pool) } },
      {
        name: 'scratch',
        emptyDir: {
          ...(spec.workDir.medium === 'Memory' ? { medium: 'Memory' } : {}),
          sizeLimit: String(spec.workDir.sizeLimit),
        },
      },
    ],
    topologySpreadConstraints: topologySpread(pool),
    ...(t.imagePullSecrets ? { imagePullSecrets: t.imagePullSecrets } : {}),
    ...(t.nodeSelector ? { nodeSelector: t.nodeSelector } : {}),
    ...(t.tolerations ? { tolerations: t.tolerations } : {}),
    ...(t.affinity ? { affinity: t.affinity } : {}),
    ...(t.priorityClassName ? { priorityClassName: t.priorityClassName } : {}),
    ...(t.runtimeClassName ? { runtimeClassName: t.runtimeClassName } : {}),
  };
}

export function buildDeployment(pool: SandboxPool, ctx: BuildContext): V1Deployment {
  const { spec } = pool;
  const t = spec.podTemplate;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: childMeta(pool, childNames(pool).deployment),
    spec: {
      // With autoscaling the HorizontalPodAutoscaler owns replicas: leaving the field out of
      // the applied configuration gives it up (see reconciler: the hand-over).
      ...(spec.autoscaling ? {} : { replicas: spec.replicas }),
      revisionHistoryLimit: 5,
      selector: { matchLabels: selectorLabels(pool) },
      // Never below capacity, and a quarter of the pods at a time (one at a time, a large pool
      // whose pods install packages for minutes took an hour per change).
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' } },
      // A rollout counts as stuck (Degraded) only once a new pod had all of its start-up budget
      // (installing dependencies takes up to 15 minutes each) and some: Kubernetes' default of
      // 600 s would call a pod still installing a stuck rollout.
      progressDeadlineSeconds: Math.max(600, startupBudgetSeconds(pool) + 120),
      template: {
        metadata: {
          labels: { ...t.labels, ...commonLabels(pool) },
          annotations: {
            ...t.annotations,
            [CONFIG_HASH_ANNOTATION]: configHash(renderRunnerConfig(pool)),
            [API_KEY_VERSION_ANNOTATION]: ctx.apiKeyVersion,
          },
        },
        spec: buildPodSpec(pool, ctx),
      },
    },
  };
}
