// Admission and scheduling: at most MAX_WORKERS runs execute, at most MAX_REQUESTS are
// executing or queued (beyond that: Busy, HTTP 503). Each run gets a fresh sandboxed process.
import type { Logger } from 'pino';
import {
  runRequest,
  type Execution,
  type ExecutionRequest,
  type ExecutionResult,
} from './execution.js';
import type { RunnerMetrics } from './metrics.js';
import type { Sandboxes } from './pool.js';
import type { Runtime } from './runtime.js';

export class Busy extends Error {
  override name = 'Busy';
}

/** The client went away while its run was queued: it was never started. */
export class Abandoned extends Error {
  override name = 'Abandoned';
}

/** Processes one request may be given when each ends before it takes the request. */
const MAX_ATTEMPTS = 3;

export class Engine {
  /** Told when a run could not be confined (the sandbox setup failed): fail closed. */
  onSandboxError?: (reason: string) => void;
  private admitted = 0;
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly runtime: Runtime,
    private readonly sandboxes: Sandboxes,
    private readonly metrics: RunnerMetrics,
  ) {}

  /** Requests admitted and not yet answered (executing or queued). */
  get underWay(): number {
    return this.admitted;
  }

  /** Runs the request, or throws Busy when MAX_REQUESTS runs are already admitted. */
  async run(req: ExecutionRequest, log: Logger): Promise<ExecutionResult> {
    if (this.admitted >= this.runtime.config.maxRequests) {
      this.metrics.rejected.inc();
      throw new Busy('Too many requests');
    }
    this.admitted++;
    const queuedAt = process.hrtime.bigint();
    if (!(await this.acquireWorker(req.abandoned))) {
      this.admitted--;
      this.metrics.executions.inc({ language: req.language, outcome: 'abandoned' });
      log.info(
        { language: req.language, outcome: 'abandoned' },
        'the client went away while the run was queued: not started',
      );
      throw new Abandoned('the client went away');
    }
    const startedAt = process.hrtime.bigint();
    this.metrics.queueWait.observe(Number(startedAt - queuedAt) / 1e9);
    this.metrics.inFlight.inc();
    // The request counts against MAX_REQUESTS until its answer; the worker is held until the
    // process has exited and its uid is free, which may be a little after the answer.
    let settled: Promise<void> = Promise.resolve();
    try {
      const execution = await this.execute(req, log, true);
      settled = execution.settled;
      const { result } = execution;
      if (result.outcome === 'sandbox_error') this.onSandboxError?.(result.error.trim());
      const seconds = Number(process.hrtime.bigint() - startedAt) / 1e9;
      this.metrics.duration.observe({ language: req.language }, seconds);
      this.metrics.executions.inc({ language: req.language, outcome: result.outcome });
      log.info(
        {
          language: req.language,
          outcome: result.outcome,
          exitCode: result.exitCode,
          durationMs: Math.round(seconds * 1000),
          deniedSyscall: result.deniedSyscall,
        },
        'execution finished',
      );
      return result;
    } finally {
      this.admitted--;
      void settled.finally(() => {
        this.sandboxes.replenish(req.language);
        this.metrics.inFlight.dec();
        this.releaseWorker();
      });
    }
  }

  /**
   * A self-test run: outside MAX_REQUESTS, the worker limit and the metrics (it is not traffic,
   * and a runner full of runs must still be able to test itself).
   */
  async runSelfTest(req: ExecutionRequest, log: Logger): Promise<ExecutionResult> {
    const execution = await this.execute(req, log, false);
    void execution.settled.finally(() => this.sandboxes.replenish(req.language));
    return execution.result;
  }

  /**
   * REQ in a sandboxed process, to its end; in another when one ends before it took the request
   * (nothing of it ran). COUNTED: in the pool and retry metrics. SETTLED covers every process.
   */
  private async execute(req: ExecutionRequest, log: Logger, counted: boolean): Promise<Execution> {
    let execution = await runRequest(
      this.runtime,
      this.sandboxes.acquire(req.language, req.network, counted),
      req,
    );
    let { settled } = execution;
    for (let attempt = 2; execution.unstarted && attempt <= MAX_ATTEMPTS; attempt++) {
      log.warn(
        { language: req.language, attempt, error: execution.result.error.trim() },
        'the sandboxed process ended before it took the request: running it in another',
      );
      if (counted) this.metrics.runRetries.inc({ language: req.language });
      execution = await runRequest(
        this.runtime,
        this.sandboxes.acquire(req.language, req.network, counted),
        req,
      );
      settled = Promise.all([settled, execution.settled]).then(() => undefined);
    }
    return { ...execution, settled };
  }

  /** Resolves true with a worker, false when ABANDONED is aborted first (no worker taken). */
  private acquireWorker(abandoned?: AbortSignal): Promise<boolean> {
    if (this.running < this.runtime.config.maxWorkers) {
      this.running++;
      return Promise.resolve(true);
    }
    if (abandoned?.aborted === true) return Promise.resolve(false);
    this.metrics.queued.inc();
    return new Promise<boolean>((resolve) => {
      const leave = () => {
        const at = this.waiting.indexOf(granted);
        if (at >= 0) this.waiting.splice(at, 1);
        resolve(false);
      };
      const granted = () => {
        abandoned?.removeEventListener('abort', leave);
        resolve(true);
      };
      this.waiting.push(granted);
      abandoned?.addEventListener('abort', leave, { once: true });
    }).finally(() => this.metrics.queued.dec());
  }

  private releaseWorker(): void {
    const next = this.waiting.shift();
    if (next !== undefined)
      next(); // the worker passes straight to the next run
    else this.running--;
  }
}
