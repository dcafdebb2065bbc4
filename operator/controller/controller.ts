// The controller: informers on SandboxPools and on every kind it makes (mapped back to the
// owning pool), a work queue of pool keys, workers that reconcile them while this process leads,
// and a periodic resync. Events only enqueue keys; reconcile() reads the current state.
import type { Logger } from 'pino';
import type { V1ConfigMap, V1DaemonSet, V1Node, V1Pod } from '@kubernetes/client-node';
import { API_VERSION, KIND, type SandboxPool } from '../api/v1alpha1.js';
import { MANAGED_SELECTOR, POOL_LABEL } from '../builders/common.js';
import {
  INSTALLER_SELECTOR,
  isNodeReady,
  slimInstallerPod,
  slimNode,
} from '../builders/seccomp.js';
import type { OperatorConfig } from '../config.js';
import type { OperatorMetrics } from '../metrics.js';
import { EventRecorder } from './events.js';
import { Informer, type Change } from './informer.js';
import { ApiError, type Kube, type KubeObject, type ResourceRef } from './kube.js';
import { WorkQueue } from './queue.js';
import { Reconciler, type Caches, type ChildKind, type SeccompSource } from './reconciler.js';

/** The queue key of the operator-wide seccomp installer (never a valid namespace/name). */
const INSTALLER_KEY = '!seccomp-installer';

const CHILD_KINDS: Record<ChildKind, string> = {
  ServiceAccount: 'v1',
  Secret: 'v1',
  ConfigMap: 'v1',
  Service: 'v1',
  Deployment: 'apps/v1',
  NetworkPolicy: 'networking.k8s.io/v1',
  PodDisruptionBudget: 'policy/v1',
  HorizontalPodAutoscaler: 'autoscaling/v2',
};

/** The pool owning a child: its controller owner reference, else its pool label. */
export function ownerKey(obj: KubeObject): string | undefined {
  const ns = obj.metadata?.namespace;
  if (!ns) return undefined;
  const owner = obj.metadata?.ownerReferences?.find(
    (r) => r.kind === KIND && r.apiVersion.startsWith(`${API_VERSION.split('/')[0]}/`),
  );
  const name = owner?.name ?? obj.metadata?.labels?.[POOL_LABEL];
  return name ? `${ns}/${name}` : undefined;
}

export interface ControllerDeps {
  kube: Kube;
  config: OperatorConfig;
  logger: Logger;
  metrics: OperatorMetrics;
  seccomp: SeccompSource;
}

export class Controller {
  readonly queue = new WorkQueue();
  private readonly caches: Caches;
  private readonly informers: Informer<KubeObject>[] = [];
  private readonly reconciler: Reconciler;
  private leading = false;
  /** Workers waiting for leadership (or a synced cache: polled). */
  private readonly wakers = new Set<() => void>();
  private stopped = false;
  private workers: Promise<void>[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;
  /** Informers that reconciling does not wait for (see the constructor). */
  private readonly optional = new Set<Informer<KubeObject>>();

  constructor(private readonly d: ControllerDeps) {
    const { config } = d;
    const watchNs = config.watchNamespace || undefined;
    const informer = <T extends KubeObject>(
      resource: ResourceRef,
      labelSelector: string | undefined,
      onChange: (change: Change, obj: T) => void,
      { keep, optional = false }: { keep?: 'metadata' | ((obj: T) => T); optional?: boolean } = {},
    ): Informer<T> => {
      const metadataOnly = keep === 'metadata';
      const name = metadataOnly ? `${resource.kind} (metadata)` : resource.kind;
      const inf = new Informer<T>({
        kube: d.kube,
        resource,
        name,
        labelSelector,
        metadataOnly,
        slim: typeof keep === 'function' ? keep : undefined,
        logger: d.logger,
        onChange,
        onRestart: (reason) => d.metrics.watchRestarts.inc({ kind: name, reason }),
      });
      this.informers.push(inf as unknown as Informer<KubeObject>);
      if (optional) this.optional.add(inf as unknown as Informer<KubeObject>);
      return inf;
    };

    const pools = informer<SandboxPool>(
      { apiVersion: API_VERSION, kind: KIND, namespace: watchNs },
      undefined,
      (_change, pool) => {
        this.queue.add(`${pool.metadata.namespace}/${pool.metadata.name}`);
        this.queue.add(INSTALLER_KEY);
      },
    );
    const children = {} as Record<ChildKind, Informer<KubeObject>>;
    for (const [kind, apiVersion] of Object.entries(CHILD_KINDS) as [ChildKind, string][])
      children[kind] = informer<KubeObject>(
        { apiVersion, kind, namespace: watchNs },
        MANAGED_SELECTOR,
        (_c, obj) => {
          const key = ownerKey(obj);
          if (key) this.queue.add(key);
        },
      );
    // The Secrets that pools name in spec.apiKeySecretRef, metadata only (their data stays out
    // of the cache): one created late, or a rotated key, is acted on at once, not at a resync.
    // Only a shortcut (each reconcile reads the Secret itself): reconciling does not wait for it.
    informer<KubeObject>(
      { apiVersion: 'v1', kind: 'Secret', namespace: watchNs },
      undefined,
      (_change, secret) => {
        for (const p of this.caches.pools.list())
          if (
            p.metadata.namespace === secret.metadata?.namespace &&
            p.spec?.apiKeySecretRef?.name === secret.metadata?.name
          )
            this.queue.add(`${p.metadata.namespace}/${p.metadata.name}`);
      },
      { keep: 'metadata', optional: true },
    );
    // The seccomp installer lives in the operator's namespace; any change to it may let pools
    // switch to their Localhost profile.
    const onInstaller = () => {
      this.queue.add(INSTALLER_KEY);
      for (const p of this.caches.pools.list())
        if (p.spec?.seccomp?.podProfile === 'Localhost')
          this.queue.add(`${p.metadata.namespace}/${p.metadata.name}`);
    };
    const installerConfigMaps = informer<V1ConfigMap & KubeObject>(
      { apiVersion: 'v1', kind: 'ConfigMap', namespace: config.namespace },
      INSTALLER_SELECTOR,
      onInstaller,
    );
    const installerDaemonSets = informer<V1DaemonSet & KubeObject>(
      { apiVersion: 'apps/v1', kind: 'DaemonSet', namespace: config.namespace },
      INSTALLER_SELECTOR,
      onInstaller,
    );
    const installerPods = informer<V1Pod & KubeObject>(
      { apiVersion: 'v1', kind: 'Pod', namespace: config.namespace },
      INSTALLER_SELECTOR,
      onInstaller,
      // Not waited for either: unsynced (no right to list them), it holds no pod, and a node
      // whose installer is not ready everywhere only waits, as before.
      {
        keep: slimInstallerPod as (pod: V1Pod & KubeObject) => V1Pod & KubeObject,
        optional: true,
      },
    );
    // Nodes, for whether each is Ready (installerRolledOut leaves out those that are not). Only
    // a change of that matters: a node's status is rewritten every few minutes regardless. Not
    // waited for: without the right to list nodes (a namespaced install may strip the chart's
    // ClusterRole) every node counts as Ready, and the installer waits for all of them.
    const nodeReady = new Map<string, boolean>();
    const nodes = informer<V1Node & KubeObject>(
      { apiVersion: 'v1', kind: 'Node' },
      undefined,
      (change, node) => {
        const name = node.metadata?.name ?? '';
        const ready = isNodeReady(node);
        if (change === 'delete') nodeReady.delete(name);
        else if (nodeReady.get(name) === ready) return;
        else nodeReady.set(name, ready);
        onInstaller();
      },
      { keep: slimNode as (node: V1Node & KubeObject) => V1Node & KubeObject, optional: true },
    );
    this.caches = {
      pools,
      children,
      installerConfigMaps,
      installerDaemonSets,
      installerPods,
      nodes,
    };
    // Writes stop with leadership: a reconcile under way when the lease is lost stops at its
    // next call instead of acting beside the next leader.
    const kube = d.kube.withWriteCheck(() => (this.leading ? undefined : 'not the leader'));
    this.reconciler = new Reconciler({
      kube,
      config,
      caches: this.caches,
      events: new EventRecorder(kube, config.identity),
      seccomp: d.seccomp,
      requestInstaller: () => this.queue.add(INSTALLER_KEY),
    });
    d.metrics.queueSource = () => ({ ready: this.queue.length, waiting: this.queue.delayedLength });
    d.metrics.poolsSource = () =>
      this.caches.pools.list().map((p) => ({
        namespace: p.metadata.namespace,
        name: p.metadata.name,
        ready:
          p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
        scaledToZero:
          p.status?.conditions?.some((c) => c.type === 'Ready' && c.reason === 'ScaledToZero') ??
          false,
      }));
  }

  /** True once every informer has listed its collection. */
  get synced(): boolean {
    return this.informers.every((i) => i.synced || this.optional.has(i));
  }

  get isLeading(): boolean {
    return this.leading;
  }

  /** Starts the informers and the workers (which wait for leadership and a synced cache). */
  start(): void {
    for (const i of this.informers) i.start();
    for (let n = 0; n < this.d.config.workers; n++) this.workers.push(this.work());
    this.resyncTimer = setInterval(() => this.resync(), this.d.config.resyncSeconds * 1000);
    this.resyncTimer.unref();
  }

  setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    this.d.metrics.leader.set(leading ? 1 : 0);
    // A new leader looks at everything once.
    if (leading) this.resync();
    this.wakeWorkers();
  }

  private resync(): void {
    for (const p of this.caches.pools.list())
      this.queue.add(`${p.metadata.namespace}/${p.metadata.name}`);
    this.queue.add(INSTALLER_KEY);
  }

  private async untilLeadingAndSynced(): Promise<void> {
    while (!this.stopped && !(this.leading && this.synced)) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.wakers.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, 200);
        this.wakers.add(wake);
      });
    }
  }

  private wakeWorkers(): void {
    for (const wake of [...this.wakers]) wake();
  }

  private async work(): Promise<void> {
    while (!this.stopped) {
      await this.untilLeadingAndSynced();
      const key = await this.queue.get();
      if (key === undefined) return;
      if (!this.leading) {
        // Lost the lease while waiting: keep the key for whoever leads next here.
        this.queue.done(key);
        this.queue.add(key);
        continue;
      }
      try {
        await this.process(key);
      } finally {
        this.queue.done(key);
      }
    }
  }

  private async process(key: string): Promise<void> {
    const log = this.d.logger.child({ key });
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      if (key === INSTALLER_KEY) {
        await this.reconciler.reconcileInstaller(log);
        this.queue.forget(key);
        return;
      }
      const outcome = await this.reconciler.reconcile(key, log);
      this.d.metrics.reconciles.inc({ result: outcome.result });
      this.d.metrics.reconcileSeconds.observe({ result: outcome.result }, seconds());
      if (outcome.result === 'invalid') {
        log.info(
          { durationSeconds: seconds() },
          'reconciled: the pool has a problem (see its status)',
        );
        if (outcome.retry) this.queue.addRateLimited(key);
        else this.queue.forget(key);
        return;
      }
      this.queue.forget(key);
      if (outcome.requeueAfterMs !== undefined) this.queue.addAfter(key, outcome.requeueAfterMs);
      log.debug({ durationSeconds: seconds() }, 'reconciled');
    } catch (err) {
      const cause =
        err instanceof ApiError
          ? err.status === 0
            ? 'unreachable'
            : String(err.status)
          : 'internal';
      if (key !== INSTALLER_KEY) {
        this.d.metrics.reconciles.inc({ result: 'error' });
        this.d.metrics.reconcileSeconds.observe({ result: 'error' }, seconds());
      }
      this.d.metrics.reconcileErrors.inc({ cause });
      const retryInMs = this.queue.addRateLimited(key);
      log.warn({ err: (err as Error).message, retryInMs }, 'reconcile failed: retrying');
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    this.queue.shutdown();
    this.wakeWorkers();
    await Promise.all(this.workers);
    await Promise.all(this.informers.map((i) => i.stop()));
  }
}
