// The HorizontalPodAutoscaler, only when spec.autoscaling is set. It scales the Deployment on
// the runner's busy workers: the average of sandbox_executions_in_flight per pod, aimed at
// maxWorkers × targetBusyWorkersPercent / 100 (a Pods metric, served by a custom-metrics
// adapter such as prometheus-adapter).
import type { V2HorizontalPodAutoscaler } from '@kubernetes/client-node';
import type { SandboxPool } from '../api/v1alpha1.js';
import { childMeta, childNames } from './common.js';

export const BUSY_WORKERS_METRIC = 'sandbox_executions_in_flight';

export function buildHorizontalPodAutoscaler(
  pool: SandboxPool,
): V2HorizontalPodAutoscaler | undefined {
  const a = pool.spec.autoscaling;
  if (!a) return undefined;
  const milli = Math.max(
    1,
    Math.round(pool.spec.execution.maxWorkers * a.targetBusyWorkersPercent * 10),
  );
  return {
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata: childMeta(pool, childNames(pool).horizontalPodAutoscaler),
    spec: {
      scaleTargetRef: {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        name: childNames(pool).deployment,
      },
      minReplicas: a.minReplicas,
      maxReplicas: a.maxReplicas,
      metrics: [
        {
          type: 'Pods',
          pods: {
            metric: { name: BUSY_WORKERS_METRIC },
            target: { type: 'AverageValue', averageValue: `${milli}m` },
          },
        },
      ],
    },
  };
}
