// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection: the holder
// renews every retryPeriod; it stops leading when it could not renew for renewDeadline; another
// candidate takes the lease once it has seen no renewal for leaseDuration (judged on its own
// clock, from when it observed the record change, so clock skew between hosts does not matter).
// A holder that stops on purpose releases the lease, so the next one takes over at once.
import type { Logger } from 'pino';
import { sleep } from './backoff.js';
import { isConflict, type Kube, type KubeObject } from './kube.js';

interface Lease extends KubeObject {
  spec?: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number;
  };
}

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds: number;
  renewDeadlineSeconds: number;
  retryPeriodSeconds: number;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
const microTime = (d: Date) => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export class LeaderElector {
  private leading = false;
  private stopped = false;
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  /** The last record seen, and when (local clock). */
  private observed: { record: string; at: number } | undefined;
  private lastRenew = 0;

  constructor(
    private readonly kube: Kube,
    private readonly o: LeaderOptions,
    private readonly logger: Logger,
    private readonly callbacks: { onStartedLeading(): void; onStoppedLeading(): void },
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  private async run(): Promise<void> {
    const deadlineMs = this.o.renewDeadlineSeconds * 1000;
    while (!this.stopped) {
      // A leader leads until lastRenew + renewDeadline at the latest, whatever its calls do:
      // no attempt, and no pause, runs past that (the margin to leaseDuration is what keeps
      // another candidate from taking over while it still acts).
      const left = this.leading ? this.lastRenew + deadlineMs - Date.now() : deadlineMs / 2;
      let renewed = false;
      if (left > 0)
        try {
          renewed = await withTimeout(this.tryAcquireOrRenew(), Math.min(deadlineMs / 2, left));
        } catch (err) {
          this.logger.warn(
            { err: (err as Error).message, lease: this.o.name },
            'lease: API call failed',
          );
        }
      const now = Date.now();
      if (renewed) {
        this.lastRenew = now;
        if (!this.leading) {
          this.leading = true;
          this.logger.info({ lease: this.o.name }, 'became the leader');
          this.callbacks.onStartedLeading();
        }
      } else if (this.leading && now - this.lastRenew >= deadlineMs) {
        this.leading = false;
        this.logger.warn(
          { lease: this.o.name },
          'could not renew the lease in time: stopped leading',
        );
        this.callbacks.onStoppedLeading();
      }
      const pause =
        this.o.retryPeriodSeconds * 1000 * (this.leading ? 1 : 0.9 + Math.random() * 0.2);
      await sleep(
        this.leading ? Math.min(pause, Math.max(0, this.lastRenew + deadlineMs - now)) : pause,
        this.stopping.signal,
      );
    }
  }

  private leaseBody(existing: Lease | undefined, now: Date): Lease {
    const held = existing?.spec?.holderIdentity === this.o.identity;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.o.name,
        namespace: this.o.namespace,
        ...(existing?.metadata?.resourceVersion
          ? { resourceVersion: existing.metadata.resourceVersion }
          : {}),
      },
      spec: {
        holderIdentity: this.o.identity,
        leaseDurationSeconds: this.o.leaseDurationSeconds,
        acquireTime:
          held && existing?.spec?.acquireTime ? existing.spec.acquireTime : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: (existing?.spec?.leaseTransitions ?? 0) + (existing && !held ? 1 : 0),
      },
    };
  }

  private leaseRef() {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      namespace: this.o.namespace,
      name: this.o.name,
    };
  }

  /** One round: true when this candidate holds the lease afterwards. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const lease = await this.kube.get<Lease>(this.leaseRef());
    const now = new Date();
    if (!lease) {
      try {
        await this.kube.create(this.leaseBody(undefined, now));
        return true;
      } catch (err) {
        if (isConflict(err)) return false;
        throw err;
      }
    }
    const record = JSON.stringify(lease.spec ?? {});
    if (this.observed?.record !== record) this.observed = { record, at: now.getTime() };
    const holder = lease.spec?.holderIdentity ?? '';
    const duration = (lease.spec?.leaseDurationSeconds ?? this.o.leaseDurationSeconds) * 1000;
    if (holder !== '' && holder !== this.o.identity && this.observed.at + duration > now.getTime())
      return false;
    try {
      await this.kube.update(this.leaseBody(lease, now));
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  /** Stops campaigning; a leader gives the lease up so another candidate takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    await this.loop;
    if (!this.leading) return;
    this.leading = false;
    this.callbacks.onStoppedLeading();
    try {
      const lease = await this.kube.get<Lease>(this.leaseRef());
      if (lease?.spec?.holderIdentity === this.o.identity) {
        await this.kube.update({
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: null,
            leaseDurationSeconds: 1,
            renewTime: microTime(new Date()),
          },
        });
        this.logger.info({ lease: this.o.name }, 'released the lease');
      }
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'could not release the lease');
    }
  }
}
