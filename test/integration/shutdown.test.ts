// SIGTERM, as a rolling update or an eviction sends it: the runs under way are answered (Dify is
// waiting for them), no new connection is taken meanwhile, and then the runner exits.
import { describe, expect, it } from 'vitest';
import { startTestRunner } from '../support/runner.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the runner at URL has RUNS executing (its gauge), however slow the machine. */
async function executing(url: string, runs: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  const line = new RegExp(`^sandbox_executions_in_flight ${runs}$`, 'm');
  while (!line.test(await (await fetch(`${url}/metrics`)).text())) {
    expect(Date.now()).toBeLessThan(deadline);
    await sleep(50);
  }
}

describe('shutdown', () => {
  it('answers the runs under way, refuses new connections, then exits', async () => {
    const t = await startTestRunner({}, { mode: 'unprivileged' });
    try {
      const running = t.post({
        language: 'python3',
        code: 'import time\ntime.sleep(2)\nprint("done")',
      });
      await executing(t.url, 1);
      const signalled = Date.now();
      process.kill(t.pid, 'SIGTERM');
      await sleep(200);
      // A new connection finds no listener.
      await expect(fetch(`${t.url}/health`)).rejects.toThrow();
      const { status, body } = await running;
      expect(status).toBe(200);
      expect(body.data).toEqual({ stdout: 'done\n', stderr: '', error: '', exit_code: 0 });
      while (t.alive()) {
        expect(Date.now() - signalled).toBeLessThan(10_000);
        await sleep(50);
      }
    } finally {
      await t.close();
    }
  });
});
