// The operator's Prometheus metrics (GET /metrics): one registry, created once.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prefix of prom-client's default process_* and nodejs_* metrics of the operator. */
export const OPERATOR_METRICS_PREFIX = 'sandboxpool_operator_';

export class OperatorMetrics {
  readonly registry = new Registry();
  /** Set by the controller: what the queue holds right now. */
  queueSource: () => { ready: number; waiting: number } = () => ({ ready: 0, waiting: 0 });
  /** Set by the controller: every watched pool and whether its Ready condition is True (the
   * managed_pools and pool_ready gauges are read from it at each scrape). */
  poolsSource: () => {
    namespace: string;
    name: string;
    ready: boolean;
    /** Ready=False because the pool has 0 replicas on purpose: nothing to be ready. */
    scaledToZero: boolean;
  }[] = () => [];
  readonly reconciles = new Counter({
    name: 'sandboxpool_operator_reconciles_total',
    help: 'Reconciles of a SandboxPool, by result: success, invalid (the pool has a problem only the operator could detect: Ready=False), error (retried with backoff).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly reconcileSeconds = new Histogram({
    name: 'sandboxpool_operator_reconcile_duration_seconds',
    help: 'Time one reconcile of a SandboxPool took, by result.',
    labelNames: ['result'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: 'sandboxpool_operator_reconcile_errors_total',
    help: 'Reconciles that failed and were retried, by cause: the HTTP status of the failed API call, or unreachable.',
    labelNames: ['cause'] as const,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'sandboxpool_operator_queue_depth',
    help: 'Keys in the work queue: ready to process, or waiting for their retry delay.',
    labelNames: ['state'] as const,
    registers: [this.registry],
    collect: () => {
      const { ready, waiting } = this.queueSource();
      this.queueDepth.set({ state: 'ready' }, ready);
      this.queueDepth.set({ state: 'waiting' }, waiting);
    },
  });
  readonly managedPools = new Gauge({
    name: 'sandboxpool_operator_managed_pools',
    help: 'SandboxPools the operator watches.',
    registers: [this.registry],
    collect: () => {
      this.managedPools.set(this.poolsSource().length);
    },
  });
  readonly poolReady = new Gauge({
    name: 'sandboxpool_operator_pool_ready',
    help: "1 when the SandboxPool's Ready condition is True, else 0, by the pool's namespace and name (from the watch cache: every replica reports it, leader or not); absent for a pool scaled to 0 on purpose, which has nothing to be ready (no SandboxPoolNotReady alert).",
    labelNames: ['pool_namespace', 'pool'] as const,
    registers: [this.registry],
    collect: () => {
      this.poolReady.reset();
      for (const p of this.poolsSource())
        if (!p.scaledToZero)
          this.poolReady.set({ pool_namespace: p.namespace, pool: p.name }, p.ready ? 1 : 0);
    },
  });
  readonly leader = new Gauge({
    name: 'sandboxpool_operator_leader',
    help: '1 while this process holds the leader Lease and reconciles, else 0.',
    registers: [this.registry],
  });
  readonly watchRestarts = new Counter({
    name: 'sandboxpool_operator_watch_restarts_total',
    help: 'Watches restarted, by kind and reason: gone (410, relisted) or error (retried with backoff).',
    labelNames: ['kind', 'reason'] as const,
    registers: [this.registry],
  });

  constructor() {
    // Event-loop lag sampled every 100 ms, not prom-client's 10 ms: an idle operator need not
    // wake 100 times a second (a stall still shows in full: each sample measures how late its
    // timer fired).
    collectDefaultMetrics({
      register: this.registry,
      prefix: OPERATOR_METRICS_PREFIX,
      eventLoopMonitoringPrecision: 100,
    });
  }
}
