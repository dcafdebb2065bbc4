// A run must not be able to make the runner's own memory grow beyond what its output cap
// allows: a program writing one byte at a time, paced so that the runner reads each alone,
// made millions of chunks, each kept as a Buffer of its own (over 500 MB of the runner's heap
// for one run in a security review; the pod's memory limit then ends every run in flight).
import { afterAll, describe, expect, it } from 'vitest';
import { startTestRunner, type TestRunner } from '../support/runner.js';

const DRIP = [
  "const fs = require('fs');",
  "const b = Buffer.from('x');",
  'const t0 = Date.now();',
  'let n = 0;',
  'while (Date.now() - t0 < 6000 && n < 4000000) {',
  '  fs.writeSync(1 + (n & 1), b);',
  '  n++;',
  '  for (let i = 0; i < 10; i++);',
  '}',
].join('\n');

async function heapUsedBytes(t: TestRunner): Promise<number> {
  const text = await (await fetch(`${t.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('nodejs_heap_size_used_bytes '));
  return Number(line?.split(' ')[1]);
}

describe('the runner’s memory', () => {
  let t: TestRunner | undefined;
  afterAll(async () => {
    await t?.close();
  });

  it('does not grow with the number of chunks a run writes its output in', async () => {
    // Its own process, so that its heap is the runner's alone.
    t = await startTestRunner({ WORKER_TIMEOUT: '30' }, { process: {} });
    const before = await heapUsedBytes(t);
    const answer = await t.run('nodejs', DRIP);
    expect(answer.exit_code, answer.error).toBe(0);
    expect(answer.stdout.length).toBeGreaterThan(1000);
    const grown = (await heapUsedBytes(t)) - before;
    // Both streams' text is at most 8 MiB (2 × SANDBOX_MAX_OUTPUT_BYTES); 200 MB before.
    expect(grown).toBeLessThan(64 * 1024 * 1024);
  }, 60_000);
});
