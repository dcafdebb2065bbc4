// A run must not be able to make the runner's own memory grow far beyond what its output cap
// allows: the pod's memory limit would then end every run in flight.
// - A program writing one byte at a time, paced so that the runner reads each alone, made
//   millions of chunks, each kept as a Buffer of its own (over 500 MB of the runner's heap for
//   one run in a security review).
// - Control bytes take six characters each in the answer's JSON, and stderr is there twice:
//   built whole, the answer of 4 MiB of them on both streams was a 50 MB string, then a 50 MB
//   buffer (the runner's peak RSS rose by ~190 MB).
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestRunner, TEST_KEY, type TestRunner } from '../support/runner.js';

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

/** The peak resident memory of process PID (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1]) * 1024;
}

describe('the runner’s memory', () => {
  const runners: TestRunner[] = [];
  afterAll(async () => {
    await Promise.all(runners.map((r) => r.close()));
  });

  it('does not grow with the number of chunks a run writes its output in', async () => {
    // Its own process, so that its heap is the runner's alone.
    const t = await startTestRunner({ WORKER_TIMEOUT: '30' }, { process: {} });
    runners.push(t);
    const before = await heapUsedBytes(t);
    const answer = await t.run('nodejs', DRIP);
    expect(answer.exit_code, answer.error).toBe(0);
    expect(answer.stdout.length).toBeGreaterThan(1000);
    const grown = (await heapUsedBytes(t)) - before;
    // Both streams' text is at most 8 MiB (2 × SANDBOX_MAX_OUTPUT_BYTES); 200 MB before.
    expect(grown).toBeLessThan(64 * 1024 * 1024);
  }, 60_000);

  it('peaks near the outputs, not at many times them, for an answer of control bytes', async () => {
    const t = await startTestRunner({}, { process: {} });
    runners.push(t);
    const before = peakRss(t.pid);
    const res = await fetch(`${t.url}/v1/sandbox/run`, {
      method: 'POST',
      headers: { 'X-Api-Key': TEST_KEY, 'Content-Type': 'application/json' },
      body: JSON.stringify({
        language: 'python3',
        code: 'import sys\nb = b"\\x01" * (4 << 20)\nsys.stdout.buffer.write(b)\nsys.stdout.flush()\nsys.stderr.buffer.write(b)',
        preload: '',
        enable_network: true,
      }),
    });
    const body = await res.text();
    const parsed = JSON.parse(body) as { data: { stdout: string; exit_code: number } };
    expect(parsed.data.stdout).toBe('\x01'.repeat(4 << 20));
    expect(parsed.data.exit_code).toBe(0);
    // The bytes JSON.stringify makes of it, as DifySandbox's (and express's) whole answers.
    expect(body === JSON.stringify(parsed)).toBe(true);
    // 190 MB before; now the outputs (2 × 4 MiB, as bytes and as text) and pieces of the answer.
    expect(peakRss(t.pid) - before).toBeLessThan(110 * 1024 * 1024);
  }, 60_000);
});
