// Events on a SandboxPool (kubectl describe sbp) for the transitions that matter: children
// created, scaled, problems found and solved. The same event is not repeated within 10 minutes;
// failing to record one is logged, never fatal.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { SandboxPool } from '../api/v1alpha1.js';
import type { Kube } from './kube.js';

const REPEAT_AFTER_MS = 10 * 60_000;

export class EventRecorder {
  private readonly recent = new Map<string, number>();

  constructor(
    private readonly kube: Kube,
    private readonly identity: string,
  ) {}

  async record(
    pool: SandboxPool,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
    log: Logger,
  ): Promise<void> {
    const now = Date.now();
    const key = `${pool.metadata.uid}|${type}|${reason}|${message}`;
    if ((this.recent.get(key) ?? 0) > now - REPEAT_AFTER_MS) return;
    this.recent.set(key, now);
    if (this.recent.size > 5000)
      for (const [k, at] of this.recent) if (at < now - REPEAT_AFTER_MS) this.recent.delete(k);
    const time = new Date(now).toISOString().replace(/\.\d+Z$/, 'Z');
    try {
      await this.kube.create({
        apiVersion: 'v1',
        kind: 'Event',
        metadata: {
          name: `${pool.metadata.name}.${now.toString(16)}${randomBytes(2).toString('hex')}`,
          namespace: pool.metadata.namespace,
        },
        involvedObject: {
          apiVersion: pool.apiVersion,
          kind: pool.kind,
          name: pool.metadata.name,
          namespace: pool.metadata.namespace,
          uid: pool.metadata.uid,
          resourceVersion: pool.metadata.resourceVersion,
        },
        type,
        reason,
        message,
        source: { component: 'sandboxpool-operator' },
        reportingComponent: 'sandboxpool.dev/operator',
        reportingInstance: this.identity.slice(0, 128),
        firstTimestamp: time,
        lastTimestamp: time,
        count: 1,
      });
      log.info({ event: reason, type }, message);
    } catch (err) {
      log.warn({ err: (err as Error).message, event: reason }, 'could not record an event');
    }
  }
}
