// The SandboxPool's status from what the reconciler observed: replicas, the endpoint, and the
// Ready / Progressing / Degraded conditions (metav1.Condition), each with a reason.
import type {
  V1Deployment,
  V1DeploymentCondition,
  V2HorizontalPodAutoscaler,
} from '@kubernetes/client-node';
import {
  RUNNER_PORT,
  type Condition,
  type SandboxPool,
  type SandboxPoolStatus,
} from '../api/v1alpha1.js';
import { endpoint, selectorString, type SeccompChoice } from './common.js';
import { startupBudgetSeconds } from './deployment.js';

/** Something only the operator can detect that keeps the pool from working as specified. */
export interface Problem {
  /** CamelCase, e.g. SecretNotFound. */
  reason: string;
  message: string;
}

export interface Observation {
  /** The Deployment as the API server returned it (absent: not created, e.g. on a problem). */
  deployment?: V1Deployment;
  /**
   * The HorizontalPodAutoscaler as the API server returned it (with autoscaling only), and how
   * long one of its conditions may fail before the pool is Degraded for it.
   */
  autoscaler?: { hpa: V2HorizontalPodAutoscaler; graceSeconds: number };
  problem?: Problem;
  /** Where the API key is. */
  apiKey?: { name: string; key: string };
  seccomp?: SeccompChoice;
  /** Work still under way that is not a problem (e.g. the seccomp profile being installed). */
  pending?: Problem;
  /** The last reconcile failed (an API error, retried with backoff): Degraded, not a verdict on Ready. */
  failure?: Problem;
}

function deploymentCondition(
  d: V1Deployment | undefined,
  type: string,
): V1DeploymentCondition | undefined {
  return d?.status?.conditions?.find((c) => c.type === type);
}

type ConditionCore = Pick<Condition, 'type' | 'status' | 'reason' | 'message'>;

/**
 * The HorizontalPodAutoscaler's condition that says it cannot scale (AbleToScale or
 * ScalingActive False), if any. Not ScalingDisabled (a Deployment at 0 replicas, which the
 * operator hands over at the minimum), and not metrics missing because the pods are not ready
 * (starting, crash-looping): Ready, Progressing and Degraded's ReplicasUnavailable tell that.
 */
function failingAutoscalerCondition(hpa: V2HorizontalPodAutoscaler | undefined) {
  return (hpa?.status?.conditions ?? []).find(
    (c) =>
      (c.type === 'AbleToScale' || c.type === 'ScalingActive') &&
      c.status === 'False' &&
      c.reason !== 'ScalingDisabled' &&
      !(c.message ?? '').includes('pods might be unready'),
  );
}

/** Seconds since the autoscaler's failing condition turned False, and that condition. */
function autoscalerFailure(a: Observation['autoscaler'], now: Date) {
  const failed = failingAutoscalerCondition(a?.hpa);
  if (a === undefined || failed === undefined) return undefined;
  const since = new Date(String(failed.lastTransitionTime ?? now)).getTime();
  return { failed, seconds: (now.getTime() - since) / 1000, grace: a.graceSeconds };
}

/**
 * Why the HorizontalPodAutoscaler cannot scale the pool, once it has said so for longer than
 * the grace time (one failed fetch of a metric, an adapter restarting, must not make the pool
 * flap), or undefined. Left alone, a pool whose metric nobody serves stays at its size for good
 * while everything looks fine. The message is built from the condition's type and reason only:
 * the autoscaler's own messages carry text that changes between syncs (error details, the
 * order of other autoscalers' names), which would rewrite the pool's status each time.
 */
function autoscalerTrouble(
  pool: SandboxPool,
  a: Observation['autoscaler'],
  now: Date,
): string | undefined {
  const f = autoscalerFailure(a, now);
  if (f === undefined || f.seconds < f.grace) return undefined;
  const name = a?.hpa.metadata?.name ?? '';
  // The pool's metric is a Pods metric: only a custom-metrics adapter serves it.
  const noAdapter = /no custom metrics API|could not find the (metric|requested resource)/.test(
    f.failed.message ?? '',
  );
  const why = noAdapter
    ? 'no custom-metrics adapter serves sandbox_executions_in_flight for the runner pods (install one, such as prometheus-adapter, with a rule for it)'
    : `kubectl describe hpa ${name} -n ${pool.metadata.namespace ?? ''} says why`;
  return `the HorizontalPodAutoscaler ${name} cannot scale the runner pods (${f.failed.type} ${f.failed.reason ?? ''} for more than ${f.grace} s): ${why}`;
}

/**
 * When to look at the pool again for Degraded (ms), while the autoscaler's failure is within
 * its grace time: nothing else may happen by then.
 */
export function autoscalerRecheckMs(a: Observation['autoscaler'], now: Date): number | undefined {
  const f = autoscalerFailure(a, now);
  return f === undefined || f.seconds >= f.grace ? undefined : (f.grace - f.seconds) * 1000 + 1000;
}

/**
 * Once the Deployment's new ReplicaSet was available, pods missing later (one crash-looping, a
 * scale-up) are no rollout: its progress deadline no longer watches them, so Degraded does, once
 * they have been missing longer than a pod may take to start.
 */
function rolledOut(d: V1Deployment | undefined): boolean {
  const progressing = deploymentCondition(d, 'Progressing');
  return progressing?.status === 'True' && progressing.reason === 'NewReplicaSetAvailable';
}

/** How long pods have been missing after a complete rollout, in seconds; undefined: none are. */
function missingSeconds(d: V1Deployment | undefined, now: Date): number | undefined {
  const available = deploymentCondition(d, 'Available');
  if (!rolledOut(d) || (d?.status?.readyReplicas ?? 0) >= (d?.spec?.replicas ?? 0))
    return undefined;
  if (available?.status !== 'False') return undefined;
  return (now.getTime() - new Date(String(available.lastTransitionTime ?? now)).getTime()) / 1000;
}

/**
 * When to look at the pool again for Degraded (ms), while pods missing after a rollout have not
 * yet been missing for long: no event may come when the time is up.
 */
export function degradedRecheckMs(
  pool: SandboxPool,
  d: V1Deployment | undefined,
  now: Date,
): number | undefined {
  const missing = missingSeconds(d, now);
  const grace = startupBudgetSeconds(pool) + 60;
  return missing === undefined || missing > grace ? undefined : (grace - missing) * 1000 + 1000;
}

function conditions(pool: SandboxPool, o: Observation, now: Date): ConditionCore[] {
  const d = o.deployment;
  const desired = d?.spec?.replicas ?? 0;
  const s = d?.status ?? {};
  const ready = s.readyReplicas ?? 0;
  const updated = s.updatedReplicas ?? 0;
  const total = s.replicas ?? 0;
  const counts = `${ready} of ${desired} runner pods ready`;

  if (o.problem) {
    const { reason, message } = o.problem;
    return [
      { type: 'Ready', status: 'False', reason, message },
      { type: 'Progressing', status: 'False', reason, message },
      { type: 'Degraded', status: 'True', reason, message },
    ];
  }

  // Ready means the pool serves: at least one runner pod available. Not the Deployment's
  // Available condition, which with maxUnavailable 0 means every replica, so that each scale-up
  // by the autoscaler and each crash-looping pod among healthy ones would make a serving pool
  // not ready (and fire SandboxPoolNotReady). Missing pods show in Progressing and Degraded.
  const available = s.availableReplicas ?? 0;
  const ready_: ConditionCore =
    desired === 0
      ? {
          type: 'Ready',
          status: 'False',
          reason: 'ScaledToZero',
          message: 'the pool has 0 replicas',
        }
      : available > 0
        ? { type: 'Ready', status: 'True', reason: 'MinimumReplicasAvailable', message: counts }
        : { type: 'Ready', status: 'False', reason: 'ReplicasUnavailable', message: counts };

  const deadline = deploymentCondition(d, 'Progressing');
  const stalled = deadline?.status === 'False' && deadline.reason === 'ProgressDeadlineExceeded';
  // Pods missing after a complete rollout: see rolledOut.
  const rollingOut =
    !d ||
    (s.observedGeneration ?? 0) < (d.metadata?.generation ?? 0) ||
    updated < desired ||
    total > updated ||
    (ready < desired && !rolledOut(d));
  const grace = startupBudgetSeconds(pool) + 60;
  const missingTooLong = (missingSeconds(d, now) ?? 0) > grace;
  const progressing: ConditionCore = stalled
    ? {
        type: 'Progressing',
        status: 'False',
        reason: 'ProgressDeadlineExceeded',
        message: deadline.message ?? 'the rollout made no progress',
      }
    : o.pending
      ? { type: 'Progressing', status: 'True', ...o.pending }
      : rollingOut
        ? {
            type: 'Progressing',
            status: 'True',
            reason: 'RollingOut',
            message: `${updated} of ${desired} runner pods updated, ${counts}`,
          }
        : { type: 'Progressing', status: 'False', reason: 'RolloutComplete', message: counts };

  const failure = deploymentCondition(d, 'ReplicaFailure');
  const autoscaling = pool.spec.autoscaling
    ? autoscalerTrouble(pool, o.autoscaler, now)
    : undefined;
  const degraded: ConditionCore = o.failure
    ? { type: 'Degraded', status: 'True', ...o.failure }
    : failure?.status === 'True'
      ? {
          type: 'Degraded',
          status: 'True',
          reason: 'ReplicaFailure',
          message: failure.message ?? 'the runner pods cannot be created',
        }
      : stalled
        ? {
            type: 'Degraded',
            status: 'True',
            reason: 'ProgressDeadlineExceeded',
            message: progressing.message,
          }
        : missingTooLong
          ? {
              type: 'Degraded',
              status: 'True',
              reason: 'ReplicasUnavailable',
              // No running time in it: the message would change, and the status with it.
              message: `${counts}, for longer than a pod may take to start (${grace} s)`,
            }
          : autoscaling !== undefined
            ? {
                type: 'Degraded',
                status: 'True',
                reason: 'AutoscalingFailed',
                message: autoscaling,
              }
            : {
                type: 'Degraded',
                status: 'False',
                reason: 'AsExpected',
                message: 'no problem observed',
              };

  return [ready_, progressing, degraded];
}

/**
 * The new status; conditions keep their lastTransitionTime while their status is unchanged.
 * After a failed apply the spec of this generation has not reached the cluster: the status keeps
 * the generation (and the key and profile decisions) it last acted on, so that nothing waiting
 * for "observedGeneration == generation and Ready" takes the old pods for the new spec; only
 * Degraded, which reports the failed attempt, carries the new generation.
 */
export function buildStatus(pool: SandboxPool, o: Observation, now: Date): SandboxPoolStatus {
  const previous = pool.status?.conditions ?? [];
  const current = pool.metadata.generation ?? 0;
  const generation = o.failure ? (pool.status?.observedGeneration ?? 0) : current;
  const decided = o.failure
    ? {
        ...(pool.status?.apiKeySecretRef ? { apiKeySecretRef: pool.status.apiKeySecretRef } : {}),
        ...(pool.status?.seccompProfile ? { seccompProfile: pool.status.seccompProfile } : {}),
      }
    : {
        ...(o.apiKey ? { apiKeySecretRef: o.apiKey } : {}),
        ...(o.seccomp
          ? {
              seccompProfile:
                o.seccomp.type === 'Localhost'
                  ? `Localhost/${o.seccomp.localhostProfile}`
                  : 'RuntimeDefault',
            }
          : {}),
      };
  const s = o.deployment?.status;
  return {
    observedGeneration: generation,
    replicas: s?.replicas ?? 0,
    readyReplicas: s?.readyReplicas ?? 0,
    updatedReplicas: s?.updatedReplicas ?? 0,
    selector: selectorString(pool),
    endpoint: endpoint(pool, RUNNER_PORT),
    ...decided,
    conditions: conditions(pool, o, now).map((c) => {
      const before = previous.find((p) => p.type === c.type);
      return {
        ...c,
        observedGeneration: o.failure && c.type === 'Degraded' ? current : generation,
        lastTransitionTime:
          before && before.status === c.status
            ? before.lastTransitionTime
            : now.toISOString().replace(/\.\d+Z$/, 'Z'),
      };
    }),
  };
}
