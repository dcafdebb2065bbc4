// SIGTERM, as a rolling update or an eviction sends it: the runs under way are answered (Dify is
// waiting for them), no new connection is taken meanwhile, and then the runner exits.
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { TEST_KEY, gaugeReaches, startTestRunner } from '../support/runner.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('shutdown', () => {
  it('answers the runs under way, refuses new connections, then exits', async () => {
    const t = await startTestRunner({}, { mode: 'unprivileged' });
    try {
      // Through a keep-alive agent, as Dify's client: the answer must tell it not to reuse the
      // connection, although the request came before the shutdown.
      const agent = new http.Agent({ keepAlive: true });
      const running = new Promise<{ status: number; connection: string; body: string }>(
        (resolve, reject) => {
          const req = http.request(
            `${t.url}/v1/sandbox/run`,
            {
              method: 'POST',
              agent,
              headers: { 'X-Api-Key': TEST_KEY, 'Content-Type': 'application/json' },
            },
            (res) => {
              let body = '';
              res.on('data', (c: Buffer) => (body += c.toString()));
              res.on('end', () =>
                resolve({
                  status: res.statusCode ?? 0,
                  connection: String(res.headers.connection),
                  body,
                }),
              );
            },
          );
          req.on('error', reject);
          req.end(
            JSON.stringify({
              language: 'python3',
              code: 'import time\ntime.sleep(2)\nprint("done")',
            }),
          );
        },
      );
      await gaugeReaches(t.url, 'sandbox_executions_in_flight', 1);
      const signalled = Date.now();
      process.kill(t.pid, 'SIGTERM');
      await sleep(200);
      // A new connection finds no listener.
      await expect(fetch(`${t.url}/health`)).rejects.toThrow();
      const answer = await running;
      agent.destroy();
      expect(answer.status).toBe(200);
      expect(answer.connection).toBe('close');
      expect(JSON.parse(answer.body)).toMatchObject({
        data: { stdout: 'done\n', stderr: '', error: '', exit_code: 0 },
      });
      while (t.alive()) {
        expect(Date.now() - signalled).toBeLessThan(10_000);
        await sleep(50);
      }
    } finally {
      await t.close();
    }
  });
});
