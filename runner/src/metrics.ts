// The runner's Prometheus metrics: one registry, created once, passed to what records.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { OUTCOMES } from './execution.js';

/** The event-loop lag sampling period of the default metrics (prom-client's: 10 ms). */
const EVENT_LOOP_SAMPLE_MS = 100;

export class RunnerMetrics {
  readonly registry = new Registry();
  readonly executions = new Counter({
    name: 'sandbox_executions_total',
    help: `Executions finished, by language and outcome (${OUTCOMES.join(', ')}).`,
    labelNames: ['language', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'sandbox_execution_duration_seconds',
    help: 'Wall-clock time of one run in its sandboxed interpreter, from taking the interpreter to its answer, by language.',
    labelNames: ['language'] as const,
    // Up to WORKER_TIMEOUT's maximum (3600 s): a run cut at a long timeout is not just "> 30 s".
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: 'sandbox_queue_wait_seconds',
    help: 'Time a run waited for a free worker before it started.',
    buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60],
    registers: [this.registry],
  });
  readonly queued = new Gauge({
    name: 'sandbox_queue_depth',
    help: 'Runs admitted and waiting for a free worker.',
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({
    name: 'sandbox_executions_in_flight',
    help: 'Runs executing right now (from taking a worker until the process has exited and is cleaned up).',
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: 'sandbox_rejected_requests_total',
    help: 'Runs refused with HTTP 503 because MAX_REQUESTS runs were already executing or queued.',
    registers: [this.registry],
  });
  readonly ready = new Gauge({
    name: 'sandbox_ready',
    help: '1 when the self-test of the sandbox passed (at start, and again after a run whose sandbox could not be set up) and runs are accepted, else 0.',
    registers: [this.registry],
  });
  readonly landlockAbi = new Gauge({
    name: 'sandbox_landlock_abi',
    help: 'The Landlock ABI version of the kernel (0: Landlock unavailable).',
    registers: [this.registry],
  });

  readonly poolReady = new Gauge({
    name: 'sandbox_pool_ready',
    help: 'Warm interpreters confined and waiting for a run, by language.',
    labelNames: ['language'] as const,
    registers: [this.registry],
  });
  readonly poolHits = new Counter({
    name: 'sandbox_pool_hits_total',
    help: 'Runs served by a warm interpreter, by language.',
    labelNames: ['language'] as const,
    registers: [this.registry],
  });
  readonly poolMisses = new Counter({
    name: 'sandbox_pool_misses_total',
    help: 'Runs that had to start their interpreter (pool empty, disabled, or another network mode), by language.',
    labelNames: ['language'] as const,
    registers: [this.registry],
  });
  readonly runRetries = new Counter({
    name: 'sandbox_run_retries_total',
    help: 'Runs given to another interpreter because theirs ended before it took the request (killed while it waited: its zygote gone, out of memory), by language.',
    labelNames: ['language'] as const,
    registers: [this.registry],
  });
  readonly zygoteUp = new Gauge({
    name: 'sandbox_zygote_up',
    help: '1 while the Python zygote runs and starts the interpreters; 0 while they start through the launcher instead (disabled, or ended: another is started after a backoff).',
    registers: [this.registry],
  });
  readonly poolSpawnSeconds = new Histogram({
    name: 'sandbox_pool_spawn_seconds',
    help: 'Time from starting a warm interpreter to its "ready" from inside the sandbox, by language.',
    labelNames: ['language'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor() {
    // The event-loop lag histogram samples with a timer; prom-client's default (10 ms) woke an
    // idle runner ~100 times a second (1.3% of a core here, against 0.4% at 100 ms). A stall
    // still shows in full: each sample measures how late its timer fired.
    collectDefaultMetrics({
      register: this.registry,
      eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
    });
  }
}
