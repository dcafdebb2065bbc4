// A small JSON client for the Kubernetes API: authentication and TLS come from client-node's
// KubeConfig; requests, server-side apply (also on the status subresource) and watches are plain
// HTTPS here, so every object stays the JSON the API server sent (client-node's typed clients
// re-shape objects) and every error names the call.
import http from 'node:http';
import https from 'node:https';
import { createInterface } from 'node:readline';
import type { KubeConfig } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../builders/common.js';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{
      apiVersion: string;
      kind: string;
      name: string;
      uid: string;
      controller?: boolean;
    }>;
    deletionTimestamp?: unknown;
    managedFields?: Array<{
      manager?: string;
      operation?: string;
      subresource?: string;
      fieldsV1?: unknown;
    }>;
    creationTimestamp?: unknown;
  };
}

export interface KubeList<T> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

/** A refused or failed API call; `status` is the HTTP status (0: no answer). */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string = '',
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A list's continue token expired before its last page (410): list again, in one request. */
class ContinueExpired extends Error {}

export const isNotFound = (err: unknown): boolean => err instanceof ApiError && err.status === 404;
export const isConflict = (err: unknown): boolean => err instanceof ApiError && err.status === 409;

interface ResourceType {
  plural: string;
  namespaced: boolean;
}

/** The kinds the operator touches: apiVersion/kind → plural (no discovery round trips). */
const RESOURCES: Record<string, ResourceType> = {
  'v1/ServiceAccount': { plural: 'serviceaccounts', namespaced: true },
  'v1/Secret': { plural: 'secrets', namespaced: true },
  'v1/ConfigMap': { plural: 'configmaps', namespaced: true },
  'v1/Service': { plural: 'services', namespaced: true },
  'v1/Event': { plural: 'events', namespaced: true },
  'v1/Namespace': { plural: 'namespaces', namespaced: false },
  'v1/Node': { plural: 'nodes', namespaced: false },
  'v1/Pod': { plural: 'pods', namespaced: true },
  'apps/v1/Deployment': { plural: 'deployments', namespaced: true },
  'apps/v1/DaemonSet': { plural: 'daemonsets', namespaced: true },
  'networking.k8s.io/v1/NetworkPolicy': { plural: 'networkpolicies', namespaced: true },
  'policy/v1/PodDisruptionBudget': { plural: 'poddisruptionbudgets', namespaced: true },
  'autoscaling/v2/HorizontalPodAutoscaler': {
    plural: 'horizontalpodautoscalers',
    namespaced: true,
  },
  'coordination.k8s.io/v1/Lease': { plural: 'leases', namespaced: true },
  'sandboxpool.dev/v1alpha1/SandboxPool': { plural: 'sandboxpools', namespaced: true },
};

export interface ResourceRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name?: string;
}

/** The API path of a collection (no name) or of an object. */
export function resourcePath(ref: ResourceRef, subresource?: string): string {
  const type = RESOURCES[`${ref.apiVersion}/${ref.kind}`];
  if (!type) throw new Error(`unknown kind ${ref.apiVersion} ${ref.kind}`);
  const root = ref.apiVersion.includes('/') ? `/apis/${ref.apiVersion}` : `/api/${ref.apiVersion}`;
  const ns =
    type.namespaced && ref.namespace ? `/namespaces/${encodeURIComponent(ref.namespace)}` : '';
  const name = ref.name ? `/${encodeURIComponent(ref.name)}` : '';
  return `${root}${ns}/${type.plural}${name}${subresource ? `/${subresource}` : ''}`;
}

export function refOf(obj: KubeObject): ResourceRef & { name: string } {
  const name = obj.metadata?.name;
  if (!obj.apiVersion || !obj.kind || !name)
    throw new Error('object without apiVersion, kind or name');
  return { apiVersion: obj.apiVersion, kind: obj.kind, namespace: obj.metadata?.namespace, name };
}

const describe = (ref: ResourceRef) =>
  `${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name ?? '*'}`;

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  /** The Accept header (default application/json). */
  accept?: string;
  timeoutMs?: number;
}

/**
 * Accept headers asking for objects' metadata only (PartialObjectMetadata), as
 * controller-runtime's metadata-only watches do: no Secret's data field reaches the operator
 * (its annotations still may, kubectl's last-applied-configuration among them; the informer
 * drops them as each page arrives).
 */
export const METADATA_ONLY = {
  list: 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1',
  watch: 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1',
} as const;

export type WatchEvent<T> =
  | { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK'; object: T }
  | {
      type: 'ERROR';
      object: { code?: number; reason?: string; message?: string };
    };

export class Kube {
  private readonly server: URL;
  private readonly agent: http.Agent;

  constructor(private readonly kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.server = new URL(cluster.server);
    this.agent =
      this.server.protocol === 'https:'
        ? new https.Agent({ keepAlive: true })
        : new http.Agent({ keepAlive: true });
  }

  private async options(
    method: string,
    path: string,
    headers: Record<string, string>,
  ): Promise<https.RequestOptions> {
    const opts: https.RequestOptions = {
      method,
      protocol: this.server.protocol,
      hostname: this.server.hostname.replace(/^\[|\]$/g, ''),
      port: this.server.port || (this.server.protocol === 'https:' ? 443 : 80),
      path: `${this.server.pathname.replace(/\/$/, '')}${path}`,
      headers: { Accept: 'application/json', ...headers },
    };
    // Credentials (and a fresh token, for exec or in-cluster auth) on every request.
    await this.kc.applyToHTTPSOptions(opts);
    opts.agent = this.agent;
    return opts;
  }

  private send(
    opts: https.RequestOptions,
    body: string | undefined,
    timeoutMs: number,
  ): Promise<http.IncomingMessage> {
    const lib = this.server.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = lib.request(opts, resolve);
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /**
   * A client on the same connections whose writes (anything but GET) first ask REFUSAL: a
   * reason to refuse the call, or undefined. The reconciler's client refuses once the operator
   * is no longer the leader, so that a reconcile under way stops at its next write.
   */
  withWriteCheck(refusal: () => string | undefined): Kube {
    const checked = Object.create(this) as Kube;
    checked.request = <T>(method: string, path: string, o?: RequestOptions): Promise<T> => {
      const why = method === 'GET' ? undefined : refusal();
      if (why !== undefined)
        return Promise.reject(new Error(`${method} ${path}: not sent: ${why}`));
      return this.request<T>(method, path, o);
    };
    return checked;
  }

  /** One API call; resolves with the parsed JSON body, throws ApiError naming the call. */
  async request<T>(method: string, path: string, o: RequestOptions = {}): Promise<T> {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(o.query ?? {}))
      if (v !== undefined) query.set(k, String(v));
    const full = query.size > 0 ? `${path}?${query}` : path;
    const body = o.body === undefined ? undefined : JSON.stringify(o.body);
    // Content-Length always: Node sends a DELETE body neither chunked nor sized, and the API
    // server would read it as the next request on the kept-alive connection.
    const headers: Record<string, string> = {
      ...(o.accept ? { Accept: o.accept } : {}),
      ...(body
        ? {
            'Content-Type': o.contentType ?? 'application/json',
            'Content-Length': String(Buffer.byteLength(body)),
          }
        : {}),
    };
    const what = `${method} ${path}`;
    let res: http.IncomingMessage;
    try {
      res = await this.send(await this.options(method, full, headers), body, o.timeoutMs ?? 30_000);
    } catch (err) {
      throw new ApiError(`${what}: ${(err as Error).message}`, 0, 'Unreachable', { cause: err });
    }
    let text = '';
    try {
      for await (const chunk of res) text += (chunk as Buffer).toString('utf8');
    } catch (err) {
      throw new ApiError(
        `${what}: reading the answer: ${(err as Error).message}`,
        0,
        'Unreachable',
        {
          cause: err,
        },
      );
    }
    const status = res.statusCode ?? 0;
    let parsed: unknown;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch {
      parsed = { message: text.slice(0, 500) };
    }
    if (status < 200 || status >= 300) {
      const s = parsed as { message?: string; reason?: string };
      throw new ApiError(
        `${what}: ${status} ${s.reason ?? ''}: ${s.message ?? text.slice(0, 500)}`,
        status,
        s.reason,
      );
    }
    return parsed as T;
  }

  async get<T extends KubeObject>(ref: ResourceRef & { name: string }): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', resourcePath(ref));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Lists a collection, 500 objects a page. `metadataOnly`: only the objects' metadata
   * (PartialObjectMetadata). `keep` maps each object as its page arrives, so that only what it
   * keeps of a big collection is ever held at once. A continue token that expired (410) before
   * the last page restarts the list in one request, as client-go's pager does.
   */
  async list<T extends KubeObject>(
    ref: ResourceRef,
    o: { labelSelector?: string; metadataOnly?: boolean; keep?: (obj: T) => T } = {},
  ): Promise<KubeList<T>> {
    try {
      return await this.listPages(ref, o, 500);
    } catch (err) {
      if (!(err instanceof ContinueExpired)) throw err;
      return this.listPages(ref, o, undefined);
    }
  }

  private async listPages<T extends KubeObject>(
    ref: ResourceRef,
    o: { labelSelector?: string; metadataOnly?: boolean; keep?: (obj: T) => T },
    limit: number | undefined,
  ): Promise<KubeList<T>> {
    const items: T[] = [];
    let cont: string | undefined;
    let resourceVersion: string | undefined;
    do {
      let page: KubeList<T>;
      try {
        page = await this.request<KubeList<T>>('GET', resourcePath(ref), {
          query: { labelSelector: o.labelSelector, limit, continue: cont },
          ...(o.metadataOnly ? { accept: METADATA_ONLY.list } : {}),
        });
      } catch (err) {
        if (cont !== undefined && err instanceof ApiError && err.status === 410)
          throw new ContinueExpired(err.message);
        throw err;
      }
      // (An empty metadata-only list has `items: null`.)
      for (const obj of page.items ?? []) items.push(o.keep ? o.keep(obj) : obj);
      cont = page.metadata.continue || undefined;
      resourceVersion = page.metadata.resourceVersion;
    } while (cont);
    return { metadata: { resourceVersion }, items };
  }

  /** Server-side apply as the operator's field manager, forcing ownership of conflicts. */
  apply<T extends KubeObject>(
    obj: T,
    o: { subresource?: string; fieldManager?: string; force?: boolean } = {},
  ): Promise<T> {
    const ref = refOf(obj);
    return this.request<T>('PATCH', resourcePath(ref, o.subresource), {
      query: {
        fieldManager: o.fieldManager ?? FIELD_MANAGER,
        force: o.force ?? true,
        fieldValidation: 'Strict',
      },
      body: obj,
      contentType: 'application/apply-patch+yaml',
    }).catch((err: unknown) => {
      if (err instanceof ApiError)
        throw new ApiError(`applying ${describe(ref)}: ${err.message}`, err.status, err.reason, {
          cause: err,
        });
      throw err;
    });
  }

  create<T extends KubeObject>(obj: T): Promise<T> {
    const ref = refOf(obj);
    return this.request<T>('POST', resourcePath({ ...ref, name: undefined }), {
      body: obj,
      query: { fieldManager: FIELD_MANAGER },
    });
  }

  update<T extends KubeObject>(obj: T): Promise<T> {
    return this.request<T>('PUT', resourcePath(refOf(obj)), {
      body: obj,
      query: { fieldManager: FIELD_MANAGER },
    });
  }

  /** Deletes; true when it was there. `uid` guards against deleting a newer namesake. */
  async delete(ref: ResourceRef & { name: string }, uid?: string): Promise<boolean> {
    try {
      await this.request('DELETE', resourcePath(ref), {
        body: {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          propagationPolicy: 'Background',
          ...(uid ? { preconditions: { uid } } : {}),
        },
      });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Watches a collection from `resourceVersion`; calls onEvent per event and resolves when the
   * server ends the watch. Rejects on HTTP errors (ApiError with the status) and when no byte
   * arrives for `idleMs` (a stale connection). `signal` aborts it.
   */
  async watch<T>(
    ref: ResourceRef,
    query: {
      resourceVersion: string;
      labelSelector?: string;
      timeoutSeconds: number;
      /** Only the objects' metadata (PartialObjectMetadata). */
      metadataOnly?: boolean;
    },
    onEvent: (e: WatchEvent<T>) => void,
    signal: AbortSignal,
    idleMs: number,
  ): Promise<void> {
    const path = resourcePath(ref);
    const q = new URLSearchParams({
      watch: 'true',
      allowWatchBookmarks: 'true',
      resourceVersion: query.resourceVersion,
      timeoutSeconds: String(query.timeoutSeconds),
      ...(query.labelSelector ? { labelSelector: query.labelSelector } : {}),
    });
    const opts = await this.options(
      'GET',
      `${path}?${q}`,
      query.metadataOnly ? { Accept: METADATA_ONLY.watch } : {},
    );
    const lib = this.server.protocol === 'https:' ? https : http;
    await new Promise<void>((resolve, reject) => {
      let idle: NodeJS.Timeout | undefined;
      const req = lib.request({ ...opts, signal }, (res) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          let text = '';
          const failed = () => {
            let message = text.slice(0, 300);
            try {
              message = (JSON.parse(text) as { message?: string }).message ?? message;
            } catch {
              // not JSON (or cut off)
            }
            reject(new ApiError(`watch ${path}: ${status}: ${message}`, status));
          };
          res.on('data', (c: Buffer) => (text += c.toString('utf8')));
          res.on('end', failed);
          // Cut off before its end, the answer is still an error (else the watch would wait
          // for ever, and its informer with it); the first of these settles the promise.
          res.on('error', failed);
          res.on('close', failed);
          return;
        }
        const arm = () => {
          clearTimeout(idle);
          idle = setTimeout(
            () => req.destroy(new Error(`watch ${path}: nothing received for ${idleMs} ms`)),
            idleMs,
          );
        };
        arm();
        res.on('data', arm);
        const lines = createInterface({ input: res, crlfDelay: Infinity });
        // A connection cut mid-stream (the API server went away) errors here too.
        lines.on('error', (err) => {
          clearTimeout(idle);
          reject(new ApiError(`watch ${path}: ${err.message}`, 0, 'Unreachable', { cause: err }));
        });
        lines.on('line', (line) => {
          if (line.trim() === '') return;
          let event: WatchEvent<T>;
          try {
            event = JSON.parse(line) as WatchEvent<T>;
          } catch {
            req.destroy(new Error(`watch ${path}: unparsable event`));
            return;
          }
          onEvent(event);
        });
        res.on('end', () => {
          clearTimeout(idle);
          resolve();
        });
        res.on('error', (err) => {
          clearTimeout(idle);
          reject(err);
        });
      });
      req.on('error', (err) => {
        clearTimeout(idle);
        reject(
          signal.aborted
            ? new Error('watch aborted')
            : new ApiError(`watch ${path}: ${err.message}`, 0, 'Unreachable', { cause: err }),
        );
      });
      req.on('close', () => clearTimeout(idle));
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
