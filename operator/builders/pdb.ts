// The PodDisruptionBudget, only for pools of two pods or more: one pod at a time may be
// evicted, and pods that are not ready may always be (so a broken rollout never blocks drains).
import type { V1PodDisruptionBudget } from '@kubernetes/client-node';
import type { SandboxPool } from '../api/v1alpha1.js';
import { childMeta, childNames, selectorLabels } from './common.js';

/** The fewest pods the pool runs: the autoscaler's minimum, or replicas. */
export function minimumReplicas(pool: SandboxPool): number {
  return pool.spec.autoscaling ? pool.spec.autoscaling.minReplicas : pool.spec.replicas;
}

export function buildPodDisruptionBudget(pool: SandboxPool): V1PodDisruptionBudget | undefined {
  if (minimumReplicas(pool) < 2) return undefined;
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: childMeta(pool, childNames(pool).podDisruptionBudget),
    spec: {
      maxUnavailable: 1,
      selector: { matchLabels: selectorLabels(pool) },
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    },
  };
}
