// The runner pods' ServiceAccount: no token is mounted (the runner never calls the API server).
import type { V1ServiceAccount } from '@kubernetes/client-node';
import type { SandboxPool } from '../api/v1alpha1.js';
import { childMeta, childNames } from './common.js';

export function buildServiceAccount(pool: SandboxPool): V1ServiceAccount {
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: childMeta(pool, childNames(pool).serviceAccount),
    automountServiceAccountToken: false,
  };
}
