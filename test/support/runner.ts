// Starts a real runner (in this process, on a free loopback port, with its own work directory)
// for a test file, and talks to it the way Dify does.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig, type RunnerConfig } from '../../runner/src/config.js';
import { startRunner, type StartedRunner } from '../../runner/src/server.js';

export const TEST_KEY = 'test-key-0123456789abcdef';

export interface RunData {
  stdout: string;
  stderr: string;
  error: string;
  exit_code: number;
}

export interface Envelope<T = RunData> {
  code: number;
  message: string;
  data: T | null;
}

export interface TestRunner {
  url: string;
  config: RunnerConfig;
  runner: StartedRunner;
  /** POST /v1/sandbox/run; returns HTTP status and the parsed body. */
  post(
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: Envelope }>;
  /** Runs code and returns `data`, failing the test when the envelope is not a success. */
  run(
    language: 'python3' | 'nodejs',
    code: string,
    extra?: Record<string, unknown>,
  ): Promise<RunData>;
  close(): Promise<void>;
}

// Runners of parallel test files must not share uids: each gets its own range.
let uidBase = 61000 + (process.pid % 500) * 40;

export async function startTestRunner(env: Record<string, string> = {}): Promise<TestRunner> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'sandboxpool-test-'));
  const config = loadConfig({
    env: {
      SANDBOX_HOST: '127.0.0.1',
      SANDBOX_PORT: '0',
      API_KEY: TEST_KEY,
      SANDBOX_WORK_DIR: workDir,
      SANDBOX_UID_BASE: String((uidBase += 20)),
      ...env,
    },
    configPath: null,
  });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const runner = await startRunner(config, logger);
  const address = runner.server.address();
  if (address === null || typeof address !== 'object') throw new Error('runner has no address');
  const url = `http://127.0.0.1:${address.port}`;

  const post: TestRunner['post'] = async (body, headers = {}) => {
    const res = await fetch(`${url}/v1/sandbox/run`, {
      method: 'POST',
      headers: { 'X-Api-Key': TEST_KEY, 'Content-Type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Envelope };
  };
  const run: TestRunner['run'] = async (language, code, extra = {}) => {
    const { status, body } = await post({ language, code, enable_network: true, ...extra });
    if (status !== 200 || body.code !== 0 || body.data === null)
      throw new Error(`run failed: HTTP ${status} ${JSON.stringify(body)}`);
    return body.data;
  };
  return { url, config, runner, post, run, close: () => runner.close() };
}
