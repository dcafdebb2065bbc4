// What every child of a SandboxPool shares: names derived from the pool's, labels, the owner
// reference, and the operator-wide facts the builders need (image, key Secret, seccomp).
import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import { API_VERSION, KIND, type SandboxPool } from '../api/v1alpha1.js';

export const FIELD_MANAGER = 'sandboxpool-operator';
export const MANAGED_BY = 'sandboxpool-operator';
/** Label on every child naming its pool (owner references are the truth; this is for humans). */
export const POOL_LABEL = 'sandboxpool.dev/pool';
export const CONFIG_HASH_ANNOTATION = 'sandboxpool.dev/config-hash';

/** Labels selecting every object the operator manages (its informers watch only these). */
export const MANAGED_SELECTOR = `app.kubernetes.io/managed-by=${MANAGED_BY}`;

export interface ChildNames {
  serviceAccount: string;
  apiKeySecret: string;
  configMap: string;
  deployment: string;
  service: string;
  networkPolicy: string;
  podDisruptionBudget: string;
  horizontalPodAutoscaler: string;
}

/** Every child's name: `<pool>-sandboxpool` (the CRD limits pool names to 40 characters). */
export function childNames(pool: SandboxPool): ChildNames {
  const base = `${pool.metadata.name}-sandboxpool`;
  return {
    serviceAccount: base,
    apiKeySecret: `${base}-api-key`,
    configMap: `${base}-config`, // the prefix: each configuration's own is named after its hash
    deployment: base,
    service: base,
    networkPolicy: base,
    podDisruptionBudget: base,
    horizontalPodAutoscaler: base,
  };
}

/** The runner pods' selector: stable for the pool's life (a Deployment selector is immutable). */
export function selectorLabels(pool: SandboxPool): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'sandboxpool-runner',
    'app.kubernetes.io/instance': pool.metadata.name,
  };
}

export function selectorString(pool: SandboxPool): string {
  return Object.entries(selectorLabels(pool))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

export function commonLabels(pool: SandboxPool): Record<string, string> {
  return {
    ...selectorLabels(pool),
    'app.kubernetes.io/component': 'runner',
    'app.kubernetes.io/part-of': 'sandboxpool',
    'app.kubernetes.io/managed-by': MANAGED_BY,
    [POOL_LABEL]: pool.metadata.name,
  };
}

export function ownerReference(pool: SandboxPool): V1OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: pool.metadata.name,
    uid: pool.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Metadata of a child: its name, the pool's namespace, labels and the owner reference. */
export function childMeta(
  pool: SandboxPool,
  name: string,
): V1ObjectMeta & { name: string; namespace: string } {
  return {
    name,
    namespace: pool.metadata.namespace,
    labels: commonLabels(pool),
    ownerReferences: [ownerReference(pool)],
  };
}

export type SeccompChoice =
  | { type: 'RuntimeDefault' }
  /** A path under the kubelet's seccomp root, e.g. sandboxpool/0123abcd.json. */
  | { type: 'Localhost'; localhostProfile: string };

/** What the builders need beyond the pool: decided by the reconciler from cluster state. */
export interface BuildContext {
  /** The runner image (spec.image, or the operator's default). */
  image: string;
  /** The Secret and key holding the API key. */
  apiKey: { name: string; key: string };
  /** Changes when the key's Secret changes (its uid/resourceVersion): pods pick up a new key. */
  apiKeyVersion: string;
  /** The pods' seccomp profile (Localhost only once the profile is installed on the nodes). */
  seccomp: SeccompChoice;
}

/** The URL for Dify's CODE_EXECUTION_ENDPOINT. */
export function endpoint(pool: SandboxPool, port: number): string {
  return `http://${childNames(pool).service}.${pool.metadata.namespace}.svc:${port}`;
}
