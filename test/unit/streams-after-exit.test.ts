// A process's streams after its exit: read to their end when they end (a normal run's do, as
// it exits), closed after a bound when they do not (a run parked them in a cycle of descriptors
// in flight; test/security/parked-streams.test.ts does that for real, where the kernel's
// garbage collection of unix sockets can hide the difference).
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { closedAfterExit } from '../../runner/src/process.js';

describe('streams after the exit', () => {
  it('are read to their end and resolve when they close', async () => {
    const stream = new PassThrough();
    const read: Buffer[] = [];
    stream.on('data', (c: Buffer) => read.push(c));
    stream.end('last words');
    await closedAfterExit(stream);
    expect(Buffer.concat(read).toString()).toBe('last words');
  });

  it('are closed when they stay open after the exit', async () => {
    const stream = new PassThrough(); // nothing ends it
    const started = performance.now();
    await closedAfterExit(stream);
    expect(stream.destroyed).toBe(true);
    expect(performance.now() - started).toBeLessThan(10_000);
  }, 20_000);
});
