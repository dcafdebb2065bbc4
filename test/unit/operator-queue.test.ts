// The work queue: de-duplication, one worker per key, per-key exponential backoff.
import { describe, expect, it } from 'vitest';
import { backoffMs } from '../../operator/controller/backoff.js';
import { WorkQueue } from '../../operator/controller/queue.js';

describe('WorkQueue', () => {
  it('queues a key once however often it is added', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(q.length).toBe(0);
  });

  it('never hands out a key being processed; an add meanwhile comes back after done()', async () => {
    const q = new WorkQueue();
    q.add('a');
    const key = await q.get();
    q.add('a');
    expect(q.length).toBe(0);
    q.done(key!);
    expect(q.length).toBe(1);
    expect(await q.get()).toBe('a');
  });

  it('wakes a waiting worker', async () => {
    const q = new WorkQueue();
    const next = q.get();
    q.add('x');
    expect(await next).toBe('x');
  });

  it('backs off a failing key exponentially, and forget() starts over', () => {
    const q = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1000 });
    const delays = [1, 2, 3, 4, 5].map(() => q.addRateLimited('k'));
    expect(delays[0]).toBeGreaterThanOrEqual(80);
    expect(delays[0]).toBeLessThanOrEqual(120);
    expect(delays[2]).toBeGreaterThanOrEqual(320);
    expect(delays[4]).toBeLessThanOrEqual(1200);
    expect(q.failureCount('k')).toBe(5);
    q.forget('k');
    expect(q.failureCount('k')).toBe(0);
    q.shutdown();
  });

  it('addAfter queues the key after the delay, the earliest request winning', async () => {
    const q = new WorkQueue();
    q.addAfter('k', 5000);
    q.addAfter('k', 30);
    expect(q.delayedLength).toBe(1);
    const started = Date.now();
    expect(await q.get()).toBe('k');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('releases waiting workers on shutdown', async () => {
    const q = new WorkQueue();
    const next = q.get();
    q.shutdown();
    expect(await next).toBeUndefined();
  });

  it('caps the backoff and jitters it', () => {
    for (let i = 0; i < 50; i++) expect(backoffMs(30, 500, 30_000)).toBeLessThanOrEqual(36_000);
    const samples = new Set(Array.from({ length: 20 }, () => backoffMs(3, 500, 30_000)));
    expect(samples.size).toBeGreaterThan(1);
  });
});
