// The Service in front of the runner pods: the API on 8194 (`http`) and the metrics port.
import type { V1Service } from '@kubernetes/client-node';
import { METRICS_PORT, RUNNER_PORT, type SandboxPool } from '../api/v1alpha1.js';
import { childMeta, childNames, selectorLabels } from './common.js';

export function buildService(pool: SandboxPool): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: childMeta(pool, childNames(pool).service),
    spec: {
      type: 'ClusterIP',
      selector: selectorLabels(pool),
      ports: [
        { name: 'http', port: RUNNER_PORT, targetPort: 'http', protocol: 'TCP' },
        { name: 'metrics', port: METRICS_PORT, targetPort: 'metrics', protocol: 'TCP' },
      ],
    },
  };
}
