// The watchdog against a real process and a real directory: the thread count is looked at every
// tick, also while the walk of a large directory is under way (a security review's run made
// that walk last a third of a second, created thousands of threads meanwhile, and was seen only
// after it).
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { measureTree, Watchdog, type Breach } from '../../runner/src/watchdog.js';

describe('watchdog', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'watchdog-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('sees threads past the limit while it walks a large directory', async () => {
    for (let i = 0; i < 60_000; i++) closeSync(openSync(path.join(dir, `f${i}`), 'w'));
    // The walk alone: what the thread count waited for before (2.5 s here).
    const walkStarted = performance.now();
    await measureTree(dir, 100_000);
    const walkMs = performance.now() - walkStarted;
    expect(walkMs, 'the walk is too fast to tell anything').toBeGreaterThan(400);

    // Starts its threads once the watchdog's first walk is under way.
    const child = spawn('python3', [
      '-c',
      'import threading, time\ntime.sleep(0.1)\nfor _ in range(20):\n    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\ntime.sleep(30)',
    ]);
    try {
      const breached = await new Promise<{ why: Breach; ms: number }>((resolve) => {
        const started = performance.now();
        const watchdog = new Watchdog(
          child.pid!,
          dir,
          { threads: 10, diskBytes: Number.MAX_SAFE_INTEGER, files: 100_000 },
          (why) => {
            watchdog.stop();
            resolve({ why, ms: performance.now() - started });
          },
        );
        watchdog.start();
      });
      expect(breached.why).toBe('thread_limit');
      // 0.1 s, then a tick or two (25 ms each): well before the walk ends.
      expect(breached.ms).toBeLessThan(walkMs / 2);
    } finally {
      child.kill('SIGKILL');
    }
  }, 30_000);
});
