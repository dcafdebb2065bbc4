// Starts a real runner for a test file, on a free loopback port with its own work directory,
// and talks to it the way Dify does. Two ways, the two ways the runner is deployed:
// - 'root': in this process (the tests run as root), so each run gets its own uid and
//   filesystem;
// - 'unprivileged': as a separate `node dist/runner/src/main.js` under a uid of its own with no
//   capabilities, no groups and no_new_privs (setpriv), as in a pod under the restricted Pod
//   Security Standard.
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig, type RunnerConfig } from '../../runner/src/config.js';
import { REPO_ROOT } from '../../runner/src/paths.js';
import { startRunner, type StartedRunner } from '../../runner/src/server.js';

export const TEST_KEY = 'test-key-0123456789abcdef';

export type RunnerMode = 'root' | 'unprivileged';
export const MODES: readonly RunnerMode[] = ['root', 'unprivileged'];

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
  mode: RunnerMode;
  url: string;
  config: RunnerConfig;
  /** The runner's process id (this process in root mode). */
  pid: number;
  /** The uid the runner runs as. */
  uid: number;
  /** The in-process runner (root mode only). */
  runner?: StartedRunner;
  /** Whether the runner process is still running. */
  alive(): boolean;
  /** What a runner process wrote (its log lines, the last 100 kB); not for in-process ones. */
  logs?: () => string;
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

const MAIN = path.join(REPO_ROOT, 'dist/runner/src/main.js');

// Runners of parallel test files must not share uids: each gets its own range.
let uidBase = 61000 + (process.pid % 500) * 40;
// The uid an unprivileged runner runs as, distinct per runner.
let runnerUid = 40000 + (process.pid % 2000) * 8;

/**
 * Waits until the runner at URL reports VALUE for the gauge NAME on /metrics, labels included as
 * exposed (`sandbox_pool_ready{language="python3"}`): a run executing, a queue emptied, however
 * slow the machine; throws after TIMEOUT_MS.
 */
export async function gaugeReaches(
  url: string,
  name: string,
  value: number,
  timeoutMs = 20_000,
): Promise<void> {
  const line = `${name} ${value}`;
  const deadline = Date.now() + timeoutMs;
  while (!(await (await fetch(`${url}/metrics`)).text()).split('\n').includes(line)) {
    if (Date.now() > deadline)
      throw new Error(`${name} did not reach ${value} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface StartOptions {
  mode?: RunnerMode;
  /**
   * Run the runner as its own process (root mode; the unprivileged one always is), from this
   * main.js (a copy of the install, say; root mode only) and under this command prefix (a
   * wrapper that changes the process first).
   */
  process?: { main?: string; wrapper?: string[] };
}

export async function startTestRunner(
  env: Record<string, string> = {},
  { mode = 'root', process: asProcess }: StartOptions = {},
): Promise<TestRunner> {
  if (process.getuid?.() !== 0)
    throw new Error('the runner tests run as root (they start runners in both modes)');
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'sandboxpool-test-'));
  const fullEnv: Record<string, string> = {
    SANDBOX_HOST: '127.0.0.1',
    SANDBOX_PORT: '0',
    API_KEY: TEST_KEY,
    SANDBOX_WORK_DIR: workDir,
    SANDBOX_UID_BASE: String((uidBase += 20)),
    ...env,
  };
  const config = loadConfig({ env: fullEnv, configPath: null });
  const started =
    mode === 'unprivileged'
      ? await startUnprivileged(fullEnv, workDir, asProcess?.wrapper)
      : asProcess !== undefined
        ? await startProcess(
            fullEnv,
            [...(asProcess.wrapper ?? []), process.execPath, asProcess.main ?? MAIN],
            0,
          )
        : await startInProcess(config);
  const { url } = started;

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
  return {
    mode,
    config,
    post,
    run,
    ...started,
    close: async () => {
      await started.close();
      rmSync(workDir, { recursive: true, force: true });
    },
  };
}

type Started = Pick<TestRunner, 'url' | 'pid' | 'uid' | 'runner' | 'alive' | 'logs' | 'close'>;

async function startInProcess(config: RunnerConfig): Promise<Started> {
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const runner = await startRunner(config, logger);
  const address = runner.server.address();
  if (address === null || typeof address !== 'object') throw new Error('runner has no address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    pid: process.pid,
    uid: 0,
    runner,
    alive: () => true,
    close: () => runner.close(),
  };
}

async function startUnprivileged(
  env: Record<string, string>,
  workDir: string,
  wrapper: string[] = [],
): Promise<Started> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run 'npm run build'`);
  const uid = (runnerUid += 1);
  chownSync(workDir, uid, uid);
  // What a restricted pod gives: another uid, no groups, no capabilities (not even in the
  // bounding set), no_new_privs.
  const command = [
    ...wrapper,
    'setpriv',
    `--reuid=${uid}`,
    `--regid=${uid}`,
    '--clear-groups',
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--no-new-privs',
    process.execPath,
    MAIN,
  ];
  return startProcess(env, command, uid);
}

/** Starts COMMAND (a runner) and waits until it serves. */
async function startProcess(
  env: Record<string, string>,
  [file, ...args]: string[],
  uid: number,
): Promise<Started> {
  const child: ChildProcess = spawn(file!, args, {
    // info: the line 'listening on' says when it serves
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let exited = false;
  child.once('exit', () => (exited = true));
  let out = '';
  const echo = process.env.TEST_LOG_LEVEL !== undefined;
  child.stdout!.on('data', (c: Buffer) => {
    out = (out + c.toString()).slice(-100_000);
    if (echo) process.stderr.write(c);
  });
  child.stderr!.on('data', (c: Buffer) => {
    out = (out + c.toString()).slice(-100_000);
    if (echo) process.stderr.write(c);
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`runner process: not listening within 60 s:\n${out}`));
    }, 60_000);
    const look = () => {
      // Ready ('config init success: listening on ...') or not ('listening on ..., but not ready').
      const m = /listening on \S+:(\d+)/.exec(out);
      if (m === null) return;
      clearTimeout(timer);
      child.stdout!.off('data', look);
      resolve(Number(m[1]));
    };
    child.stdout!.on('data', look);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`runner process exited (${code ?? signal}) before serving:\n${out}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    uid,
    alive: () => !exited,
    logs: () => out,
    close: async () => {
      if (exited) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    },
  };
}
