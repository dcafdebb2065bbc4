// An informer: lists a collection, then watches it from the list's resourceVersion, keeping a
// local cache and calling back on each change. A watch the server ends is resumed where it
// stopped; "410 Gone" (the resourceVersion is too old) relists; any other failure (API server
// down, connection reset, stale connection) retries with exponential backoff and jitter.
import type { Logger } from 'pino';
import { backoffMs, sleep } from './backoff.js';
import { ApiError, type Kube, type KubeObject, type ResourceRef, type WatchEvent } from './kube.js';

export type Change = 'add' | 'update' | 'delete';

export interface InformerOptions<T extends KubeObject> {
  kube: Kube;
  /** The collection: apiVersion, kind, and a namespace to watch only that one. */
  resource: ResourceRef;
  /** What its log lines call it (default: the kind). */
  name?: string;
  labelSelector?: string;
  /**
   * Only each object's identity (namespace, name, uid, resourceVersion) is fetched and kept:
   * for kinds whose content the operator must not hold, such as every Secret of a namespace
   * (annotations too are dropped: kubectl's last-applied-configuration holds a Secret's data).
   */
  metadataOnly?: boolean;
  /** What the cache keeps of each object, when not all of it (nodes: their readiness only). */
  slim?: (obj: T) => T;
  logger: Logger;
  onChange: (change: Change, obj: T) => void;
  /** Called after each failure that makes the informer retry (for a metric). */
  onRestart?: (reason: 'gone' | 'error') => void;
  /** The server ends each watch after about this long (randomised ±50 %); default 300. */
  watchTimeoutSeconds?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

const keyOf = (o: KubeObject) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

/** OBJ's identity only (see InformerOptions.metadataOnly). */
function identity<T extends KubeObject>(obj: T, resource: ResourceRef): T {
  const { namespace, name, uid, resourceVersion } = obj.metadata ?? {};
  return {
    apiVersion: resource.apiVersion,
    kind: resource.kind,
    metadata: { namespace, name, uid, resourceVersion },
  } as T;
}

class Gone extends Error {}

export class Informer<T extends KubeObject> {
  private readonly store = new Map<string, T>();
  private resourceVersion = '';
  private stopped = false;
  /** Aborted by stop(): ends the current watch and any backoff sleep. */
  private readonly stopping = new AbortController();
  /** Aborted to end the current watch early (an ERROR event). */
  private watchAbort = new AbortController();
  private pendingError: Error | undefined;
  private loop: Promise<void> | undefined;
  private syncedOnce = false;
  private readonly o: Required<
    Omit<InformerOptions<T>, 'labelSelector' | 'onRestart' | 'name' | 'slim'>
  > &
    Pick<InformerOptions<T>, 'labelSelector' | 'onRestart' | 'name' | 'slim'>;

  constructor(options: InformerOptions<T>) {
    this.o = {
      watchTimeoutSeconds: 300,
      backoffBaseMs: 500,
      backoffMaxMs: 30_000,
      metadataOnly: false,
      ...options,
    };
  }

  /** What the cache keeps of OBJ. */
  private kept(obj: T): T {
    if (this.o.metadataOnly) return identity(obj, this.o.resource);
    return this.o.slim ? this.o.slim(obj) : obj;
  }

  /** True once the first list has filled the cache. */
  get synced(): boolean {
    return this.syncedOnce;
  }

  get(namespace: string, name: string): T | undefined {
    return this.store.get(`${namespace}/${name}`);
  }

  list(): T[] {
    return [...this.store.values()];
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const log = this.o.logger.child({ informer: this.o.name ?? this.o.resource.kind });
    let failures = 0;
    while (!this.stopped) {
      try {
        if (this.resourceVersion === '') await this.relist();
        const started = Date.now();
        this.watchAbort = new AbortController();
        const timeout = Math.round(this.o.watchTimeoutSeconds * (0.5 + Math.random()));
        await this.o.kube.watch<T>(
          this.o.resource,
          {
            resourceVersion: this.resourceVersion,
            labelSelector: this.o.labelSelector,
            timeoutSeconds: timeout,
            metadataOnly: this.o.metadataOnly,
          },
          (e) => this.handle(e),
          AbortSignal.any([this.stopping.signal, this.watchAbort.signal]),
          // Bookmarks come about once a minute; silence well beyond the timeout means the
          // connection is dead without having been closed.
          (timeout + 90) * 1000,
        );
        if (this.pendingError) throw this.pendingError;
        // The server ended the watch (its timeout): resume from the last resourceVersion.
        if (Date.now() - started > 1000) failures = 0;
      } catch (thrown) {
        if (this.stopped) break;
        const err = this.pendingError ?? thrown;
        this.pendingError = undefined;
        if (err instanceof Gone || (err instanceof ApiError && err.status === 410)) {
          log.info(
            { resourceVersion: this.resourceVersion },
            'watch expired (410 Gone): relisting',
          );
          this.resourceVersion = '';
          this.o.onRestart?.('gone');
          continue;
        }
        failures++;
        const delay = backoffMs(failures, this.o.backoffBaseMs, this.o.backoffMaxMs);
        log.warn(
          { err: (err as Error).message, attempt: failures, retryInMs: delay },
          'watch failed: retrying',
        );
        this.o.onRestart?.('error');
        await sleep(delay, this.stopping.signal);
      }
    }
  }

  private async relist(): Promise<void> {
    const list = await this.o.kube.list<T>(this.o.resource, {
      labelSelector: this.o.labelSelector,
      metadataOnly: this.o.metadataOnly,
      keep: (obj) => this.kept(obj),
    });
    const seen = new Set<string>();
    for (const obj of list.items) {
      // Lists omit apiVersion and kind on items (and metadata-only ones name another kind).
      obj.apiVersion ??= this.o.resource.apiVersion;
      obj.kind ??= this.o.resource.kind;
      const key = keyOf(obj);
      seen.add(key);
      const old = this.store.get(key);
      this.store.set(key, obj);
      if (!old) this.o.onChange('add', obj);
      else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion)
        this.o.onChange('update', obj);
    }
    for (const [key, obj] of this.store)
      if (!seen.has(key)) {
        this.store.delete(key);
        this.o.onChange('delete', obj);
      }
    this.resourceVersion = list.metadata.resourceVersion ?? '';
    this.syncedOnce = true;
  }

  private handle(e: WatchEvent<T>): void {
    if (e.type === 'ERROR') {
      const gone = e.object.code === 410;
      // Ends this watch; run() relists (410) or backs off (anything else).
      this.abortWith(
        gone
          ? new Gone('410 Gone')
          : new ApiError(`watch error: ${e.object.message ?? ''}`, e.object.code ?? 0),
      );
      return;
    }
    if (e.object.metadata?.resourceVersion)
      this.resourceVersion = e.object.metadata.resourceVersion;
    if (e.type === 'BOOKMARK') return;
    const obj = this.kept(e.object);
    const key = keyOf(obj);
    if (e.type === 'DELETED') {
      this.store.delete(key);
      this.o.onChange('delete', obj);
    } else {
      const existed = this.store.has(key);
      this.store.set(key, obj);
      this.o.onChange(existed ? 'update' : 'add', obj);
    }
  }

  private abortWith(err: Error): void {
    this.pendingError = err;
    this.watchAbort.abort();
  }
}
