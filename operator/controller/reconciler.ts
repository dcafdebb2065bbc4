// One reconcile of one SandboxPool: read it, decide what only cluster state can decide (the API
// key Secret, the seccomp profile), build every child with its pure builder, apply them with
// server-side apply, delete the ones no longer wanted, and write the status. Level-triggered and
// idempotent: it does the same whatever event brought it here.
import path from 'node:path';
import type { Logger } from 'pino';
import type {
  V1ConfigMap,
  V1DaemonSet,
  V1Deployment,
  V1Node,
  V1Pod,
  V1Secret,
} from '@kubernetes/client-node';
import { applyDefaults } from '../api/schema.js';
import { sandboxPoolSpecSchema, type SandboxPool } from '../api/v1alpha1.js';
import {
  FIELD_MANAGER,
  MANAGED_BY,
  childNames,
  type BuildContext,
  type SeccompChoice,
} from '../builders/common.js';
import { buildConfigMap, configMapName } from '../builders/configmap.js';
import { buildDeployment, memoryShortfall } from '../builders/deployment.js';
import { buildHorizontalPodAutoscaler } from '../builders/hpa.js';
import { buildNetworkPolicy } from '../builders/networkpolicy.js';
import { buildPodDisruptionBudget } from '../builders/pdb.js';
import {
  INSTALLER_DAEMONSET,
  isNodeReady,
  PROFILES_CONFIGMAP,
  buildInstallerDaemonSet,
  buildProfilesConfigMap,
  installerRolledOut,
  profilesHash,
  renderPodProfile,
  type RenderedProfile,
  type SeccompProfile,
} from '../builders/seccomp.js';
import { GENERATED_KEY, buildApiKeySecret, generateApiKey } from '../builders/secret.js';
import { buildService } from '../builders/service.js';
import { buildServiceAccount } from '../builders/serviceaccount.js';
import {
  buildStatus,
  autoscalerRecheckMs,
  degradedRecheckMs,
  type Observation,
  type Problem,
} from '../builders/status.js';
import type { OperatorConfig } from '../config.js';
import type { EventRecorder } from './events.js';
import type { Informer } from './informer.js';
import { ApiError, isConflict, isNotFound, type Kube, type KubeObject } from './kube.js';

export interface Caches {
  pools: Informer<SandboxPool>;
  /** Children by kind, as the informers (label-selected) see them. */
  children: Record<ChildKind, Informer<KubeObject>>;
  installerConfigMaps: Informer<V1ConfigMap & KubeObject>;
  installerDaemonSets: Informer<V1DaemonSet & KubeObject>;
  /** The installer's pods (slimInstallerPod) and every node's readiness (slimNode). */
  installerPods: Informer<V1Pod & KubeObject>;
  nodes: Informer<V1Node & KubeObject>;
}

export type ChildKind =
  | 'ServiceAccount'
  | 'Secret'
  | 'ConfigMap'
  | 'Service'
  | 'Deployment'
  | 'NetworkPolicy'
  | 'PodDisruptionBudget'
  | 'HorizontalPodAutoscaler';

/** The pod seccomp profile file the operator read at start, or why it has none. */
export type SeccompSource = { profile: SeccompProfile } | { error: string };

export type Outcome =
  | { result: 'success'; requeueAfterMs?: number }
  /** A problem the pool's status now reports; retry: it may clear without an event. */
  | { result: 'invalid'; retry: boolean };

/** The field manager that holds spec.replicas while handing it from the operator to the HPA. */
export const HANDOVER_MANAGER = 'sandboxpool-operator-handover';

const SECRET_REF = { apiVersion: 'v1', kind: 'Secret' } as const;

/** Whether `manager` owns the field at `path` (fieldsV1 keys, e.g. ['f:spec', 'f:replicas']). */
export function ownsField(obj: KubeObject, manager: string, path: string[]): boolean {
  return (obj.metadata?.managedFields ?? []).some((m) => {
    if (m.manager !== manager || m.operation !== 'Apply' || m.subresource) return false;
    let node: unknown = m.fieldsV1;
    for (const p of path) {
      if (node === null || typeof node !== 'object' || !(p in node)) return false;
      node = (node as Record<string, unknown>)[p];
    }
    return true;
  });
}

const ownedBy = (obj: KubeObject | undefined, pool: SandboxPool) =>
  obj?.metadata?.ownerReferences?.some((r) => r.uid === pool.metadata.uid) ?? false;

/** A child's name is held by an object this pool does not own. */
class NameTaken extends Error {
  constructor(kind: string, found: KubeObject) {
    const { namespace, name } = found.metadata ?? {};
    super(
      `${kind} ${namespace}/${name} exists and does not belong to this pool: delete or rename it (the pool's children take their names from the pool's)`,
    );
  }
}

/** JSON with sorted keys: equal values give equal strings. */
function stable(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stable).join(',')}]`;
  if (value !== null && typeof value === 'object')
    return `{${Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stable((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(value);
}

export interface ReconcilerDeps {
  kube: Kube;
  config: OperatorConfig;
  caches: Caches;
  events: EventRecorder;
  seccomp: SeccompSource;
  /** Asks for a reconcile of the seccomp installer (a pool needs a profile installed). */
  requestInstaller: () => void;
}

export class Reconciler {
  constructor(private readonly d: ReconcilerDeps) {}

  async reconcile(key: string, log: Logger): Promise<Outcome> {
    const [namespace = '', name = ''] = key.split('/');
    const cached = this.d.caches.pools.get(namespace, name);
    // Gone or going: the garbage collector removes the children (owner references).
    if (!cached || cached.metadata.deletionTimestamp) return { result: 'success' };
    // The API server defaults on write and read; this covers objects stored before a default.
    const pool: SandboxPool = {
      ...cached,
      spec: applyDefaults(sandboxPoolSpecSchema, cached.spec ?? {}),
    };
    const obs: Observation = {};
    const fail = async (problem: Problem, retry: boolean): Promise<Outcome> => {
      obs.problem = problem;
      // The pods that exist keep running: report them.
      obs.deployment ??= this.deploymentOf(pool);
      await this.writeStatus(pool, obs, log);
      return { result: 'invalid', retry };
    };

    const apiKey = await this.apiKey(pool, log);
    if ('reason' in apiKey) return fail(apiKey, true);
    obs.apiKey = apiKey.ref;

    const seccomp = this.seccompChoice(pool);
    if ('reason' in seccomp) return fail(seccomp, false);
    obs.seccomp = seccomp.choice;
    if (seccomp.pending) obs.pending = seccomp.pending;

    const ctx: BuildContext = {
      image: pool.spec.image || this.d.config.runnerImage,
      apiKey: apiKey.ref,
      apiKeyVersion: apiKey.version,
      seccomp: seccomp.choice,
    };
    try {
      await this.applyChild(pool, buildServiceAccount(pool), log);
      await this.applyChild(pool, buildConfigMap(pool), log);
      await this.applyChild(pool, buildService(pool), log);
      await this.applyChild(pool, buildNetworkPolicy(pool), log);
      await this.handOverReplicas(pool, log);
      const before = this.deploymentOf(pool);
      const deployment = await this.applyChild<V1Deployment>(pool, buildDeployment(pool, ctx), log);
      obs.deployment = deployment;
      const [from, to] = [before?.spec?.replicas, deployment.spec?.replicas];
      if (from !== undefined && to !== undefined && from !== to && !pool.spec.autoscaling)
        await this.d.events.record(
          pool,
          'Normal',
          'Scaled',
          `Scaled the runner pods from ${from} to ${to}`,
          log,
        );
      const pdb = buildPodDisruptionBudget(pool);
      if (pdb) await this.applyChild(pool, pdb, log);
      else
        await this.deleteChild(
          pool,
          'PodDisruptionBudget',
          'policy/v1',
          childNames(pool).podDisruptionBudget,
          log,
        );
      const hpa = buildHorizontalPodAutoscaler(pool);
      if (hpa)
        obs.autoscaler = {
          hpa: await this.applyChild(pool, hpa, log),
          graceSeconds: this.d.config.autoscalerGraceSeconds,
        };
      else
        await this.deleteChild(
          pool,
          'HorizontalPodAutoscaler',
          'autoscaling/v2',
          childNames(pool).horizontalPodAutoscaler,
          log,
        );
      await this.pruneConfigMaps(pool, deployment, log);
    } catch (err) {
      // Retried with backoff: the other object may be renamed or deleted, which no event of
      // ours tells of.
      if (err instanceof NameTaken)
        return fail({ reason: 'NameTaken', message: err.message }, true);
      // The API server refused what the spec asks (e.g. an invalid affinity, requests above
      // limits): nothing to retry until the spec changes.
      if (err instanceof ApiError && (err.status === 422 || err.status === 400))
        return fail({ reason: 'InvalidSpec', message: err.message }, false);
      // Anything else is retried with backoff; meanwhile the status says what failed.
      obs.failure = { reason: 'ApplyFailed', message: (err as Error).message };
      obs.deployment ??= this.deploymentOf(pool);
      await this.writeStatus(pool, obs, log).catch((statusErr: unknown) =>
        log.debug({ err: (statusErr as Error).message }, 'could not write the status either'),
      );
      throw err;
    }
    await this.writeStatus(pool, obs, log);
    // A warning, not a problem: the pool works until its runs fill the pod's memory together.
    const shortfall = memoryShortfall(pool);
    if (shortfall !== undefined)
      await this.d.events.record(pool, 'Warning', 'MemoryOvercommitted', shortfall, log);
    // Looked at again while the installer works, and when pods missing after a rollout have
    // been missing for long (Degraded): nothing else may happen by then.
    const again = [
      seccomp.pending ? 10_000 : undefined,
      degradedRecheckMs(pool, obs.deployment, new Date()),
      autoscalerRecheckMs(obs.autoscaler, new Date()),
    ].filter((ms) => ms !== undefined);
    return {
      result: 'success',
      ...(again.length > 0 ? { requeueAfterMs: Math.min(...again) } : {}),
    };
  }

  private child(kind: ChildKind, pool: SandboxPool, name: string): KubeObject | undefined {
    return this.d.caches.children[kind].get(pool.metadata.namespace, name);
  }

  /** The pool's Deployment as the cache last saw it. */
  private deploymentOf(pool: SandboxPool): V1Deployment | undefined {
    return this.child('Deployment', pool, childNames(pool).deployment) as V1Deployment | undefined;
  }

  private async applyChild<T extends KubeObject>(
    pool: SandboxPool,
    obj: T,
    log: Logger,
  ): Promise<T> {
    const kind = obj.kind as ChildKind;
    const name = obj.metadata?.name ?? '';
    const existed = this.child(kind, pool, name) !== undefined;
    if (!existed) {
      // The caches see only objects with our labels: one of that name made by someone else
      // would be taken over by a forced apply (and collected with the pool). Not ours: refuse.
      const found = await this.d.kube.get<KubeObject>({
        apiVersion: obj.apiVersion ?? '',
        kind,
        namespace: pool.metadata.namespace,
        name,
      });
      if (found !== undefined && !ownedBy(found, pool)) throw new NameTaken(kind, found);
    }
    const applied = await this.d.kube.apply(obj);
    if (!existed)
      await this.d.events.record(pool, 'Normal', 'Created', `Created ${kind} ${name}`, log);
    return applied;
  }

  private async deleteChild(
    pool: SandboxPool,
    kind: ChildKind,
    apiVersion: string,
    name: string,
    log: Logger,
  ) {
    const existing = this.child(kind, pool, name);
    if (!existing || !ownedBy(existing, pool)) return;
    const ref = { apiVersion, kind, namespace: pool.metadata.namespace, name };
    if (await this.d.kube.delete(ref, existing.metadata?.uid))
      await this.d.events.record(
        pool,
        'Normal',
        'Deleted',
        `Deleted ${kind} ${name} (no longer wanted)`,
        log,
      );
  }

  /**
   * Deletes the pool's ConfigMaps of earlier configurations (and the single one of operators
   * before they were named by content) once the rollout to the current one is complete: until
   * then a pod of an older template that restarts still mounts its own.
   */
  private async pruneConfigMaps(pool: SandboxPool, d: V1Deployment, log: Logger): Promise<void> {
    const status = d.status ?? {};
    const rolledOut =
      (status.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1) &&
      (status.replicas ?? 0) === (status.updatedReplicas ?? 0);
    if (!rolledOut) return;
    const { configMap: prefix } = childNames(pool);
    const current = configMapName(pool);
    for (const cm of this.d.caches.children.ConfigMap.list()) {
      const name = cm.metadata?.name ?? '';
      if (cm.metadata?.namespace !== pool.metadata.namespace || name === current) continue;
      if (name === prefix || name.startsWith(`${prefix}-`))
        await this.deleteChild(pool, 'ConfigMap', 'v1', name, log);
    }
  }

  /**
   * With autoscaling, the operator stops applying spec.replicas. Dropping a field it alone owns
   * would make the API server reset it (to 1) before the HPA acts; so first another manager
   * applies the same value, then the operator's apply leaves it out and the count stays.
   */
  private async handOverReplicas(pool: SandboxPool, log: Logger): Promise<void> {
    if (!pool.spec.autoscaling) return;
    const name = childNames(pool).deployment;
    const d = this.child('Deployment', pool, name) as (V1Deployment & KubeObject) | undefined;
    const current = d?.spec?.replicas;
    if (!d || current === undefined || !ownsField(d, FIELD_MANAGER, ['f:spec', 'f:replicas']))
      return;
    // Within the autoscaler's range: it leaves a Deployment at 0 replicas alone for good
    // (scaling disabled), so a pool scaled to 0 before would never come back.
    const { minReplicas, maxReplicas } = pool.spec.autoscaling;
    const replicas = Math.min(maxReplicas, Math.max(minReplicas, current));
    await this.d.kube.apply(
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name, namespace: pool.metadata.namespace },
        spec: { replicas },
      },
      { fieldManager: HANDOVER_MANAGER },
    );
    log.info(
      { replicas },
      'handed spec.replicas of the Deployment over to the HorizontalPodAutoscaler',
    );
  }

  /** The Secret and key with the API key: the user's, or the generated one (made once). */
  private async apiKey(
    pool: SandboxPool,
    log: Logger,
  ): Promise<{ ref: { name: string; key: string }; version: string } | Problem> {
    const ns = pool.metadata.namespace;
    const ref = pool.spec.apiKeySecretRef;
    if (ref) {
      const secret = await this.d.kube.get<V1Secret & KubeObject>({
        ...SECRET_REF,
        namespace: ns,
        name: ref.name,
      });
      if (!secret)
        return {
          reason: 'SecretNotFound',
          message: `spec.apiKeySecretRef: Secret ${ns}/${ref.name} does not exist`,
        };
      if (secret.data?.[ref.key] === undefined)
        return {
          reason: 'SecretKeyNotFound',
          message: `spec.apiKeySecretRef: Secret ${ns}/${ref.name} has no key "${ref.key}"`,
        };
      return {
        ref: { name: ref.name, key: ref.key },
        version: `${secret.metadata?.uid}/${secret.metadata?.resourceVersion}`,
      };
    }
    const name = childNames(pool).apiKeySecret;
    let secret =
      (this.child('Secret', pool, name) as (V1Secret & KubeObject) | undefined) ??
      (await this.d.kube.get<V1Secret & KubeObject>({ ...SECRET_REF, namespace: ns, name }));
    if (!secret) {
      try {
        secret = await this.d.kube.create(
          buildApiKeySecret(pool, generateApiKey()) as V1Secret & KubeObject,
        );
        await this.d.events.record(
          pool,
          'Normal',
          'Created',
          `Generated the API key into Secret ${name}`,
          log,
        );
      } catch (err) {
        if (!isConflict(err)) throw err;
        secret = await this.d.kube.get<V1Secret & KubeObject>({
          ...SECRET_REF,
          namespace: ns,
          name,
        });
      }
    }
    if (!secret || !ownedBy(secret, pool))
      return {
        reason: 'SecretNameTaken',
        message: `Secret ${ns}/${name} exists and was not generated for this pool: set spec.apiKeySecretRef to use it, or delete it`,
      };
    return {
      ref: { name, key: GENERATED_KEY },
      version: `${secret.metadata?.uid}/${secret.metadata?.resourceVersion}`,
    };
  }

  private profileFor(pool: SandboxPool, base: SeccompProfile): RenderedProfile {
    return renderPodProfile(base, pool.spec.seccomp.extraSyscalls);
  }

  /** The pods' seccomp profile: Localhost only once the installer has put it on the nodes. */
  private seccompChoice(pool: SandboxPool): { choice: SeccompChoice; pending?: Problem } | Problem {
    if (pool.spec.seccomp.podProfile === 'RuntimeDefault')
      return { choice: { type: 'RuntimeDefault' } };
    const source = this.d.seccomp;
    if (!('profile' in source))
      return {
        reason: 'SeccompProfileUnavailable',
        message: `spec.seccomp.podProfile is Localhost, but the operator has no seccomp profile to install: ${source.error}`,
      };
    const rendered = this.profileFor(pool, source.profile);
    const ns = this.d.config.namespace;
    const cm = this.d.caches.installerConfigMaps.get(ns, PROFILES_CONFIGMAP);
    const ds = this.d.caches.installerDaemonSets.get(ns, INSTALLER_DAEMONSET);
    const data = cm?.data ?? {};
    const installed =
      data[rendered.fileName] === rendered.content &&
      installerRolledOut(
        ds,
        profilesHash(
          Object.entries(data).map(([fileName, content]) => ({
            fileName,
            content,
            localhostProfile: '',
          })),
        ),
        this.d.caches.installerPods.list(),
        (name) => {
          const node = this.d.caches.nodes.get('', name);
          return node === undefined ? undefined : isNodeReady(node);
        },
      );
    if (installed)
      return { choice: { type: 'Localhost', localhostProfile: rendered.localhostProfile } };
    this.d.requestInstaller();
    const installing = `installing the seccomp profile ${rendered.localhostProfile} on the nodes (DaemonSet ${ns}/${INSTALLER_DAEMONSET})`;
    // The installer is busy for reasons of its own too: a node joined, one of its pods restarted,
    // another pool's profile was added. Pods already on a Localhost profile that it still ships
    // keep it (a pod on a new node waits for the file, the kubelet retries), rather than every
    // pool rolling to RuntimeDefault and back.
    const inUse = this.deploymentOf(pool)?.spec?.template.spec?.securityContext?.seccompProfile;
    if (
      inUse?.type === 'Localhost' &&
      inUse.localhostProfile !== undefined &&
      data[path.posix.basename(inUse.localhostProfile)] !== undefined
    )
      return {
        choice: { type: 'Localhost', localhostProfile: inUse.localhostProfile },
        pending: {
          reason: 'SeccompProfilePending',
          message: `${installing}; the pods keep ${inUse.localhostProfile} until it is everywhere`,
        },
      };
    return {
      choice: { type: 'RuntimeDefault' },
      pending: {
        reason: 'SeccompProfilePending',
        message: `${installing}; the pods use RuntimeDefault until it is everywhere`,
      },
    };
  }

  /** The operator-wide seccomp installer: the profiles of every Localhost pool, on every node. */
  async reconcileInstaller(log: Logger): Promise<void> {
    const source = this.d.seccomp;
    if (!('profile' in source)) return;
    const ns = this.d.config.namespace;
    const shipped = this.d.caches.installerConfigMaps.get(ns, PROFILES_CONFIGMAP)?.data ?? {};
    const profiles = new Map<string, RenderedProfile>();
    for (const p of this.d.caches.pools.list()) {
      if (p.metadata.deletionTimestamp) continue;
      const pool: SandboxPool = { ...p, spec: applyDefaults(sandboxPoolSpecSchema, p.spec ?? {}) };
      if (pool.spec.seccomp.podProfile !== 'Localhost') continue;
      const r = this.profileFor(pool, source.profile);
      profiles.set(r.fileName, r);
      // The profile its pods run now stays shipped while they do: until the new one is on
      // every node they keep it (seccompChoice), rather than going through RuntimeDefault.
      const inUse = this.deploymentOf(pool)?.spec?.template.spec?.securityContext?.seccompProfile;
      const fileName = path.posix.basename(inUse?.localhostProfile ?? '');
      if (inUse?.type === 'Localhost' && shipped[fileName] !== undefined && !profiles.has(fileName))
        profiles.set(fileName, {
          fileName,
          content: shipped[fileName],
          localhostProfile: inUse.localhostProfile!,
        });
    }
    const list = [...profiles.values()].sort((a, b) => a.fileName.localeCompare(b.fileName));
    if (list.length === 0) {
      const managed = (o: KubeObject | undefined) =>
        o?.metadata?.labels?.['app.kubernetes.io/managed-by'] === MANAGED_BY;
      const ds = this.d.caches.installerDaemonSets.get(ns, INSTALLER_DAEMONSET);
      if (managed(ds))
        await this.d.kube.delete({
          apiVersion: 'apps/v1',
          kind: 'DaemonSet',
          namespace: ns,
          name: INSTALLER_DAEMONSET,
        });
      const cm = this.d.caches.installerConfigMaps.get(ns, PROFILES_CONFIGMAP);
      if (managed(cm))
        await this.d.kube.delete({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          namespace: ns,
          name: PROFILES_CONFIGMAP,
        });
      if (ds || cm) log.info('no pool uses a Localhost seccomp profile: removed the installer');
      return;
    }
    await this.d.kube.apply(buildProfilesConfigMap(ns, list) as V1ConfigMap & KubeObject);
    await this.d.kube.apply(
      buildInstallerDaemonSet(
        ns,
        this.d.config.seccompInstallerImage,
        list,
        this.d.config.imagePullSecrets,
      ) as V1DaemonSet & KubeObject,
    );
  }

  private async writeStatus(pool: SandboxPool, obs: Observation, log: Logger): Promise<void> {
    const status = buildStatus(pool, obs, new Date());
    const old = pool.status ?? {};
    if (stable(old) === stable(status)) return;
    try {
      await this.d.kube.apply(
        {
          apiVersion: pool.apiVersion,
          kind: pool.kind,
          metadata: { name: pool.metadata.name, namespace: pool.metadata.namespace },
          status,
        },
        { subresource: 'status' },
      );
    } catch (err) {
      if (isNotFound(err)) return; // deleted meanwhile
      throw err;
    }
    await this.transitionEvents(pool, old.conditions ?? [], status.conditions ?? [], obs, log);
  }

  private async transitionEvents(
    pool: SandboxPool,
    before: NonNullable<SandboxPool['status']>['conditions'] & object,
    after: NonNullable<SandboxPool['status']>['conditions'] & object,
    obs: Observation,
    log: Logger,
  ): Promise<void> {
    const find = (list: typeof before, type: string) => list.find((c) => c.type === type);
    const [r0, r1] = [find(before, 'Ready'), find(after, 'Ready')];
    const [d0, d1] = [find(before, 'Degraded'), find(after, 'Degraded')];
    if (obs.problem && (r0?.reason !== r1?.reason || r0?.message !== r1?.message))
      await this.d.events.record(pool, 'Warning', obs.problem.reason, obs.problem.message, log);
    else if (
      !obs.problem &&
      d1?.status === 'True' &&
      (d0?.status !== 'True' || d0.reason !== d1.reason)
    )
      await this.d.events.record(pool, 'Warning', 'Degraded', `${d1.reason}: ${d1.message}`, log);
    if (r1?.status === 'True' && r0?.status !== 'True')
      await this.d.events.record(pool, 'Normal', 'Ready', r1.message, log);
    if (
      r0 &&
      !obs.problem &&
      r0.status === 'False' &&
      [
        'SecretNotFound',
        'SecretKeyNotFound',
        'SecretNameTaken',
        'NameTaken',
        'InvalidSpec',
        'SeccompProfileUnavailable',
      ].includes(r0.reason)
    )
      await this.d.events.record(pool, 'Normal', 'Resolved', `${r0.reason} is resolved`, log);
  }
}
