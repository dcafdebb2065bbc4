// The work queue, as client-go's: a key is queued at most once however often it is added
// (de-duplication), is never processed by two workers at once (a key added while processing is
// queued again when done), and failed keys come back after a per-key exponential backoff,
// limited overall by a token bucket.
import { backoffMs } from './backoff.js';

export interface QueueOptions {
  /** First retry delay of a failing key; doubles per failure. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Overall retry rate (token bucket), so many failing keys do not hammer the API server. */
  qps?: number;
  burst?: number;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private readonly waiters: Array<(key: string | undefined) => void> = [];
  private shuttingDown = false;
  private tokens: number;
  private refilledAt = Date.now();
  private readonly o: Required<QueueOptions>;

  constructor(options: QueueOptions = {}) {
    this.o = { baseDelayMs: 200, maxDelayMs: 120_000, qps: 10, burst: 100, ...options };
    this.tokens = this.o.burst;
  }

  /** Queues the key unless it is already queued. */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      this.dirty.delete(key);
      this.processing.add(key);
      waiter(key);
    } else this.queue.push(key);
  }

  /** Queues the key after `ms` (the earliest of several pending requests wins). */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) return this.add(key);
    const at = Date.now() + ms;
    const pending = this.delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.delayed.set(key, { at, timer });
  }

  /** Queues a key that failed: per-key exponential backoff, and the overall rate limit. */
  addRateLimited(key: string): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const delay = Math.max(
      backoffMs(n, this.o.baseDelayMs, this.o.maxDelayMs),
      this.reserveToken(),
    );
    this.addAfter(key, delay);
    return delay;
  }

  /** The key succeeded: its next failure starts the backoff again. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  private reserveToken(): number {
    const now = Date.now();
    this.tokens = Math.min(
      this.o.burst,
      this.tokens + ((now - this.refilledAt) / 1000) * this.o.qps,
    );
    this.refilledAt = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.o.qps) * 1000);
  }

  /** The next key to process (waits for one); undefined once shut down. Call done(key) after. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      this.add(key);
    }
  }

  /** Keys waiting to be processed (not counting delayed ones). */
  get length(): number {
    return this.queue.length;
  }

  /** Keys waiting for their backoff or requeue delay. */
  get delayedLength(): number {
    return this.delayed.size;
  }

  shutdown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }
}
