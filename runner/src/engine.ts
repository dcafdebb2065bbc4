// Admission and scheduling: at most MAX_WORKERS runs execute, at most MAX_REQUESTS are
// executing or queued; each executing run holds a worker slot, which gives it its own uid.
import type { Logger } from 'pino';
import type { Language } from './config.js';
import type { RunnerMetrics } from './metrics.js';
import { execute, type ExecutionResult, type Runtime } from './sandbox.js';

export interface RunRequest {
  language: Language;
  code: string;
  preload: string;
  network: boolean;
}

export class Busy extends Error {
  override name = 'Busy';
}

export class Engine {
  private admitted = 0;
  private readonly freeSlots: number[];
  private readonly waiting: Array<(slot: number) => void> = [];

  constructor(
    private readonly runtime: Runtime,
    private readonly metrics: RunnerMetrics,
  ) {
    this.freeSlots = Array.from({ length: runtime.config.maxWorkers }, (_, i) => i);
  }

  /** Runs the request, or throws Busy when MAX_REQUESTS runs are already admitted. */
  async run(req: RunRequest, log: Logger): Promise<ExecutionResult> {
    if (this.admitted >= this.runtime.config.maxRequests) {
      this.metrics.rejected.inc();
      throw new Busy('Too many requests');
    }
    this.admitted++;
    const queuedAt = process.hrtime.bigint();
    const slot = await this.acquire();
    const startedAt = process.hrtime.bigint();
    this.metrics.queueWait.observe(Number(startedAt - queuedAt) / 1e9);
    this.metrics.inFlight.inc();
    try {
      const result = await execute(this.runtime, { ...req, slot });
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
      this.metrics.inFlight.dec();
      this.release(slot);
      this.admitted--;
    }
  }

  private acquire(): Promise<number> {
    const slot = this.freeSlots.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    this.metrics.queued.inc();
    return new Promise((resolve) => this.waiting.push(resolve)).then((s) => {
      this.metrics.queued.dec();
      return s as number;
    });
  }

  private release(slot: number): void {
    const next = this.waiting.shift();
    if (next !== undefined) next(slot);
    else this.freeSlots.push(slot);
  }
}
