// Seccomp profile delivery for pools with podProfile Localhost. The profile (generated from the
// runner's policy files, read by the operator from SANDBOXPOOL_SECCOMP_PROFILE) plus the pool's
// extraSyscalls is named by its content hash; a ConfigMap in the operator's namespace holds every
// profile in use, and a DaemonSet copies them under each node's kubelet seccomp root, where
// pods refer to them as Localhost profiles. The DaemonSet needs a hostPath, so its namespace
// must admit privileged pods; the runner pods themselves stay "restricted".
import { createHash } from 'node:crypto';
import type { V1ConfigMap, V1DaemonSet, V1Node, V1Pod } from '@kubernetes/client-node';
import { MANAGED_BY } from './common.js';

export const SECCOMP_DIR = 'sandboxpool';
export const PROFILES_CONFIGMAP = 'sandboxpool-seccomp-profiles';
export const INSTALLER_DAEMONSET = 'sandboxpool-seccomp-installer';
export const PROFILES_HASH_ANNOTATION = 'sandboxpool.dev/profiles-hash';
/** The kubelet's default seccomp root (--seccomp-profile-root is gone since 1.23). */
export const KUBELET_SECCOMP_ROOT = '/var/lib/kubelet/seccomp';

interface SeccompRule {
  names?: string[];
  action: string;
  [other: string]: unknown;
}
export interface SeccompProfile {
  defaultAction: string;
  syscalls?: SeccompRule[];
  [other: string]: unknown;
}

/** Checks the shape the container runtimes read (OCI seccomp JSON); throws saying what is off. */
export function parseSeccompProfile(text: string, source: string): SeccompProfile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source}: not JSON: ${(err as Error).message}`);
  }
  const p = value as Partial<SeccompProfile> | null;
  if (p === null || typeof p !== 'object' || typeof p.defaultAction !== 'string')
    throw new Error(`${source}: not a seccomp profile (no "defaultAction")`);
  if (p.syscalls !== undefined && !Array.isArray(p.syscalls))
    throw new Error(`${source}: "syscalls" must be a list`);
  return p as SeccompProfile;
}

export interface RenderedProfile {
  /** The path under the kubelet's seccomp root: sandboxpool/runner-<hash>.json. */
  localhostProfile: string;
  /** The file name in the ConfigMap and on the node. */
  fileName: string;
  content: string;
}

/** The base profile plus the pool's extra syscalls, named by its content. */
export function renderPodProfile(base: SeccompProfile, extraSyscalls: string[]): RenderedProfile {
  const profile: SeccompProfile =
    extraSyscalls.length === 0
      ? base
      : {
          ...base,
          syscalls: [
            ...(base.syscalls ?? []),
            { names: [...extraSyscalls].sort(), action: 'SCMP_ACT_ALLOW' },
          ],
        };
  const content = `${JSON.stringify(profile, null, 2)}\n`;
  const fileName = `runner-${createHash('sha256').update(content).digest('hex').slice(0, 16)}.json`;
  return { localhostProfile: `${SECCOMP_DIR}/${fileName}`, fileName, content };
}

const installerLabels = {
  'app.kubernetes.io/name': 'sandboxpool-seccomp-installer',
  'app.kubernetes.io/component': 'seccomp-installer',
  'app.kubernetes.io/part-of': 'sandboxpool',
  'app.kubernetes.io/managed-by': MANAGED_BY,
};
/** Selects the installer's objects (the operator's informers watch them). */
export const INSTALLER_SELECTOR = 'app.kubernetes.io/component=seccomp-installer';

export function buildProfilesConfigMap(
  namespace: string,
  profiles: RenderedProfile[],
): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: PROFILES_CONFIGMAP, namespace, labels: installerLabels },
    data: Object.fromEntries(profiles.map((p) => [p.fileName, p.content])),
  };
}

export function profilesHash(profiles: RenderedProfile[]): string {
  const h = createHash('sha256');
  for (const p of [...profiles].sort((a, b) => a.fileName.localeCompare(b.fileName)))
    h.update(`${p.fileName}\0${p.content}\0`);
  return h.digest('hex').slice(0, 16);
}

// Copies each profile atomically (write, then rename) and again whenever the ConfigMap volume
// changes; ready once every profile on the node equals the ConfigMap's.
const INSTALL = `set -eu
dest=/host/seccomp/${SECCOMP_DIR}
while true; do
  mkdir -p "$dest"
  for f in /profiles/*.json; do
    [ -e "$f" ] || continue
    name=$(basename "$f")
    if ! cmp -s "$f" "$dest/$name"; then
      cp "$f" "$dest/.$name.tmp" && mv -f "$dest/.$name.tmp" "$dest/$name"
    fi
  done
  sleep 10
done`;
const CHECK = `for f in /profiles/*.json; do [ -e "$f" ] || continue; cmp -s "$f" "/host/seccomp/${SECCOMP_DIR}/$(basename "$f")" || exit 1; done`;

export function buildInstallerDaemonSet(
  namespace: string,
  image: string,
  profiles: RenderedProfile[],
  imagePullSecrets: string[] = [],
): V1DaemonSet {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: INSTALLER_DAEMONSET, namespace, labels: installerLabels },
    spec: {
      selector: {
        matchLabels: { 'app.kubernetes.io/name': installerLabels['app.kubernetes.io/name'] },
      },
      // All at once: its pods only copy files, which stay on the nodes while they are replaced;
      // and a pod on a node that is down (unavailable for good) would take a smaller budget and
      // stop the rollout on every other node.
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '100%' } },
      template: {
        metadata: {
          labels: installerLabels,
          annotations: { [PROFILES_HASH_ANNOTATION]: profilesHash(profiles) },
        },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          ...(imagePullSecrets.length > 0
            ? { imagePullSecrets: imagePullSecrets.map((name) => ({ name })) }
            : {}),
          // Every node that may run a runner pod, tainted or not.
          tolerations: [{ operator: 'Exists' }],
          securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'installer',
              image,
              command: ['/bin/sh', '-c', INSTALL],
              // Root to write the kubelet's root-owned directory; no capability is needed for
              // that (the owner's write bit), so all are dropped.
              securityContext: {
                runAsUser: 0,
                runAsNonRoot: false,
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
              readinessProbe: {
                exec: { command: ['/bin/sh', '-c', CHECK] },
                periodSeconds: 10,
              },
              resources: {
                requests: { cpu: '5m', memory: '16Mi' },
                limits: { memory: '64Mi' },
              },
              volumeMounts: [
                { name: 'profiles', mountPath: '/profiles', readOnly: true },
                { name: 'seccomp', mountPath: '/host/seccomp' },
              ],
            },
          ],
          volumes: [
            { name: 'profiles', configMap: { name: PROFILES_CONFIGMAP } },
            {
              name: 'seccomp',
              hostPath: { path: KUBELET_SECCOMP_ROOT, type: 'DirectoryOrCreate' },
            },
          ],
        },
      },
    },
  };
}

/**
 * The node an installer pod is for: its nodeName once bound, else the node its DaemonSet pins it
 * to (the `metadata.name` field term of its required node affinity, as the DaemonSet controller
 * writes it; the scheduler binds it there later).
 */
export function installerPodNode(pod: V1Pod): string | undefined {
  if (pod.spec?.nodeName) return pod.spec.nodeName;
  const terms =
    pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
      ?.nodeSelectorTerms ?? [];
  for (const term of terms)
    for (const f of term.matchFields ?? [])
      if (f.key === 'metadata.name' && f.operator === 'In' && f.values?.length === 1)
        return f.values[0];
  return undefined;
}

const isReady = (conditions: { type: string; status: string }[] | undefined): boolean =>
  conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

export const isNodeReady = (node: V1Node): boolean => isReady(node.status?.conditions);

/** What the operator's cache keeps of a node: its name and whether it is Ready. */
export function slimNode(node: V1Node): V1Node {
  const { name, resourceVersion } = node.metadata ?? {};
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, resourceVersion },
    status: {
      conditions: isReady(node.status?.conditions) ? [{ type: 'Ready', status: 'True' }] : [],
    },
  };
}

/** What the operator's cache keeps of an installer pod: what installerRolledOut reads. */
export function slimInstallerPod(pod: V1Pod): V1Pod {
  const m = pod.metadata ?? {};
  const hash = m.annotations?.[PROFILES_HASH_ANNOTATION];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: m.name,
      namespace: m.namespace,
      resourceVersion: m.resourceVersion,
      deletionTimestamp: m.deletionTimestamp,
      annotations: hash === undefined ? {} : { [PROFILES_HASH_ANNOTATION]: hash },
    },
    spec: { containers: [], nodeName: installerPodNode(pod) },
    status: {
      conditions: isReady(pod.status?.conditions) ? [{ type: 'Ready', status: 'True' }] : [],
    },
  };
}

/** Whether a node is Ready, by name: undefined for a node the operator does not know. */
export type NodeReadiness = (name: string) => boolean | undefined;

/**
 * Whether the DaemonSet has installed the profiles of hash `hash` on every node that can take
 * pods: each node it runs on has a pod of that hash that is ready (its probe found the files).
 * A node that is not Ready is left out (its pod cannot get ready; its installer catches up once
 * it is back, and a pool pod scheduled there before waits for the file), so that one node down
 * does not hold every pool on RuntimeDefault. It must still hold an installer pod, so that it
 * is known to be the DaemonSet's; a node it has not, or no longer, counts as waiting.
 */
export function installerRolledOut(
  ds: V1DaemonSet | undefined,
  hash: string,
  pods: V1Pod[] = [],
  nodeReady: NodeReadiness = () => undefined,
): boolean {
  const s = ds?.status;
  if (!ds || !s) return false;
  if (
    ds.spec?.template.metadata?.annotations?.[PROFILES_HASH_ANNOTATION] !== hash ||
    (s.observedGeneration ?? 0) < (ds.metadata?.generation ?? 1)
  )
    return false;
  if (
    (s.updatedNumberScheduled ?? 0) === s.desiredNumberScheduled &&
    s.numberReady === s.desiredNumberScheduled
  )
    return true;
  const installed = new Set<string>();
  const down = new Set<string>();
  for (const pod of pods) {
    const node = installerPodNode(pod);
    if (node === undefined) return false; // not yet placed: some node waits for it
    if (nodeReady(node) === false) {
      down.add(node);
      continue;
    }
    if (pod.metadata?.deletionTimestamp) continue; // going away: its node needs another
    if (
      pod.metadata?.annotations?.[PROFILES_HASH_ANNOTATION] !== hash ||
      !isReady(pod.status?.conditions)
    )
      return false; // a node that can take pods is not there yet
    installed.add(node);
  }
  return installed.size + down.size >= s.desiredNumberScheduled;
}
