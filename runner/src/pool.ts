// Sandboxed interpreters started ahead of time, so that a request pays for its own code and not
// for interpreter start-up. Every process in a pool is already confined (it reported "ready"
// from inside the sandbox) and serves exactly one request.
import type { Logger } from 'pino';
import type { Language, RunnerConfig } from './config.js';
import type { RunnerMetrics } from './metrics.js';
import { Zygote, launch, type SandboxProcess } from './process.js';
import type { Runtime } from './runtime.js';

const MAX_BACKOFF_MS = 30_000;

/** Keeps `size` processes of one kind starting or waiting; refills in the background. */
class WarmPool {
  private readonly entries: SandboxProcess[] = [];
  /** Entries that reported ready and wait for a run (the sandbox_pool_ready gauge). */
  private readonly waiting = new Set<SandboxProcess>();
  private failures = 0;
  private refillTimer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    readonly language: Language,
    private readonly size: number,
    private readonly spawn: () => SandboxProcess,
    private readonly runtime: Runtime,
    private readonly metrics: RunnerMetrics,
    private readonly log: Logger,
  ) {}

  /** Resolves once every slot of the pool holds a ready process (or none could start). */
  async fill(): Promise<void> {
    this.refill();
    await Promise.all(this.entries.map((p) => p.ready));
  }

  /**
   * The oldest process of the pool (ready, or about to be), or undefined when empty. The pool
   * is not refilled here but by Sandboxes.replenish(), once the run that took it has its answer: starting
   * an interpreter costs milliseconds of CPU that would otherwise compete with that run.
   */
  take(): SandboxProcess | undefined {
    const proc = this.entries.shift();
    if (proc !== undefined) this.setWaiting(proc, false);
    return proc;
  }

  private setWaiting(proc: SandboxProcess, waiting: boolean): void {
    if (waiting) this.waiting.add(proc);
    else this.waiting.delete(proc);
    this.metrics.poolReady.set({ language: this.language }, this.waiting.size);
  }

  /** Starts what the pool lacks (unless it is waiting out a backoff). */
  refill(): void {
    if (this.stopped || this.refillTimer !== undefined) return;
    while (this.entries.length < this.size && this.add());
  }

  /** Refills after a backoff that grows with the failures in a row (no spinning). */
  private refillLater(): void {
    const delay = Math.min(MAX_BACKOFF_MS, 100 * 2 ** this.failures);
    this.refillTimer ??= setTimeout(() => {
      this.refillTimer = undefined;
      this.refill();
    }, delay).unref();
  }

  /** Starts one process; false when it could not even be started (then a refill is due later). */
  private add(): boolean {
    const started = process.hrtime.bigint();
    let proc: SandboxProcess;
    try {
      proc = this.spawn();
    } catch (err) {
      // No uid free, for one: this runs from timers, where a throw would end the runner.
      this.failures++;
      this.log.error({ err, language: this.language }, 'a warm interpreter could not be started');
      this.refillLater();
      return false;
    }
    this.entries.push(proc);
    let ready = false;
    void proc.ready.then((ok) => {
      if (!ok) return;
      ready = true;
      this.failures = 0;
      if (this.entries.includes(proc)) this.setWaiting(proc, true);
      this.metrics.poolSpawnSeconds.observe(
        { language: this.language },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
    });
    void proc.ended.then(() => {
      this.setWaiting(proc, false);
      const i = this.entries.indexOf(proc);
      if (i < 0) return; // taken: its run owns it now
      // Died while waiting in the pool (failed to start, or killed: out of memory, its zygote
      // gone): clean up, and back off, so that interpreters killed as fast as they start do
      // not make the runner start them in a loop.
      this.entries.splice(i, 1);
      void this.runtime.release(proc.id);
      this.failures++;
      this.log.warn(
        {
          language: this.language,
          pid: proc.pid,
          failures: this.failures,
          reports: proc.reportLog.slice(-3),
        },
        ready ? 'a warm interpreter died while waiting' : 'a warm interpreter failed to start',
      );
      this.refillLater();
    });
    return true;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.refillTimer);
    for (const proc of this.entries.splice(0)) proc.kill();
  }
}

/** The longest wait before starting another Python zygote after one ended. */
const MAX_ZYGOTE_BACKOFF_MS = 30_000;
/** A zygote that ran this long ended for a reason of its own: the backoff starts over. */
const ZYGOTE_STABLE_MS = 60_000;

/** Where sandboxed processes come from: the warm pools, the zygote, or the launcher. */
export class Sandboxes {
  /** The zygote last created: forking once it said hello (isAlive), until it ends. */
  private zygote?: Zygote;
  /** Its start (stop() waits for it). */
  private zygoteStarting?: Promise<unknown>;
  /** Zygotes that ended in a row (the backoff before the next). */
  private zygoteRestarts = 0;
  private zygoteTimer?: NodeJS.Timeout;
  private stopping = false;
  private readonly pools = new Map<Language, WarmPool>();
  /** The network mode the pools are warmed for: what Dify's requests get under this config. */
  private readonly pooledNetwork: boolean;

  constructor(
    private readonly runtime: Runtime,
    private readonly metrics: RunnerMetrics,
    private readonly log: Logger,
  ) {
    this.pooledNetwork = runtime.config.enableNetwork;
  }

  async start(): Promise<void> {
    const config: RunnerConfig = this.runtime.config;
    if (config.pythonZygote) await this.startZygote();
    if (this.stopping) return; // stopped while the zygote started: no pools after stop()
    for (const [language, size] of [
      ['python3', config.warmPython3],
      ['nodejs', config.warmNodejs],
    ] as const) {
      if (size === 0) continue;
      this.pools.set(
        language,
        new WarmPool(
          language,
          size,
          () => this.spawn(language, this.pooledNetwork),
          this.runtime,
          this.metrics,
          this.log,
        ),
      );
    }
    await Promise.all([...this.pools.values()].map((p) => p.fill()));
  }

  /** A process for one run: a warm one when there is one, else a new one. COUNTED: in the hit and miss metrics. */
  acquire(language: Language, network: boolean, counted = true): SandboxProcess {
    const pool = network === this.pooledNetwork ? this.pools.get(language) : undefined;
    const warm = pool?.take();
    if (warm !== undefined) {
      if (counted) this.metrics.poolHits.inc({ language });
      return warm;
    }
    if (counted) this.metrics.poolMisses.inc({ language });
    return this.spawn(language, network);
  }

  /**
   * Refills LANGUAGE's pool after a run that took from it, once the run's answer is on its way
   * (the next turn of the event loop, after the response was written).
   */
  replenish(language: Language): void {
    const pool = this.pools.get(language);
    if (pool !== undefined) setImmediate(() => pool.refill());
  }

  /**
   * Starts a Python zygote. Whenever one ends (killed, out of memory, stuck and ended by the
   * runner) or cannot start, another is started after a backoff; meanwhile interpreters start
   * through the launcher (slower, not less safe).
   */
  private async startZygote(): Promise<void> {
    const zygote = new Zygote(this.runtime, this.log);
    this.zygote = zygote;
    const started = Date.now();
    void zygote.exited.then(async () => {
      this.metrics.zygoteUp.set(0);
      await zygote.stop(); // its socket: the next zygote listens at the same path
      if (this.stopping) return;
      if (Date.now() - started >= ZYGOTE_STABLE_MS) this.zygoteRestarts = 0;
      const delay = Math.min(MAX_ZYGOTE_BACKOFF_MS, 500 * 2 ** this.zygoteRestarts++);
      this.log.warn({ retryMs: delay }, 'another Python zygote will be started');
      this.zygoteTimer = setTimeout(() => {
        this.zygoteTimer = undefined;
        void this.startZygote();
      }, delay).unref();
    });
    const starting = zygote.start();
    this.zygoteStarting = starting.catch(() => undefined);
    try {
      await starting;
    } catch (err) {
      this.log.error(
        { err },
        'Python zygote unavailable: interpreters start through the launcher until another starts',
      );
      return;
    }
    if (this.stopping) return;
    this.metrics.zygoteUp.set(1);
    if (this.zygoteRestarts > 0)
      this.log.info(
        { zygotePid: zygote.pid },
        'another Python zygote started: Python interpreters fork from it again',
      );
  }

  private spawn(language: Language, network: boolean): SandboxProcess {
    const id = this.runtime.allocate(language, network);
    if (this.zygote?.isAlive !== true) return launch(this.runtime, id);
    return language === 'python3' ? this.zygote.fork(id) : this.zygote.launch(id);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.zygoteTimer);
    for (const pool of this.pools.values()) pool.stop();
    await this.zygoteStarting; // a zygote still starting is stopped too
    await this.zygote?.stop();
  }
}
