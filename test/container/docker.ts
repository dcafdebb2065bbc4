// What the container tests share: the images global-setup.ts built (handed over through
// provide/inject), the docker and docker-compose commands, and a client that talks to a runner
// the way Dify does.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import { REPO_ROOT } from '../../runner/src/paths.js';
import type { Envelope, RunData } from '../support/runner.js';

export interface ContainerImages {
  base: string;
  runner: string;
  squid: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    containerImages: ContainerImages | undefined;
    /** Why the images could not be built, when they could not. */
    containerSetupError: string | undefined;
  }
}

export const SETUP_HINT =
  'run `bash test/container/setup.sh` as root (the README test command does)';

/** The images of this run; fails the test with the setup's own error when there are none. */
export function images(): ContainerImages {
  const error = inject('containerSetupError');
  if (error !== undefined) throw new Error(error);
  const built = inject('containerImages');
  if (built === undefined)
    throw new Error(
      'no container images: run these tests with `npx vitest run --project container`',
    );
  return built;
}

/** The pod-level seccomp profile as committed (what docker-compose and the operator use). */
export const PROFILE_PATH = path.join(REPO_ROOT, 'manifests', 'seccomp', 'sandboxpool-runner.json');
export const COMPOSE_DIR = path.join(REPO_ROOT, 'manifests', 'docker-compose');

/** The profile as the Docker API takes it (the docker command takes the file's path). */
export function seccompOption(): string {
  return `seccomp=${readFileSync(PROFILE_PATH, 'utf8')}`;
}

const execFileAsync = promisify(execFile);

/**
 * Certificates this machine added to its trust store (update-ca-certificates' local directory):
 * where outbound TLS is inspected, the image builds' downloads need them too.
 */
export function localCaCerts(): string {
  const dir = '/usr/local/share/ca-certificates';
  let names: string[] = [];
  try {
    names = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((n) =>
      n.endsWith('.crt'),
    );
  } catch {
    return '';
  }
  return names.map((n) => readFileSync(path.join(dir, n), 'utf8').trim()).join('\n');
}

/** The Debian base image every image here starts from (built by base-image.sh, cached by tag). */
export const BASE_IMAGE = 'sandboxpool/debian-base:bookworm-slim';

/** Builds the base image if missing; one build per machine at a time (base-image.sh locks). */
export async function ensureBaseImage(tag = BASE_IMAGE): Promise<void> {
  await run('bash', [path.join(REPO_ROOT, 'test/container/base-image.sh'), tag], {
    timeoutMs: 900_000,
  }).catch((err: Error) => {
    throw new Error(`building ${tag} failed: ${err.message}\n${SETUP_HINT}`);
  });
}

/** Runs a command to its end within TIMEOUT_MS; the error names the command and its output. */
export async function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      timeout: options.timeoutMs ?? 120_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string; code?: string | number };
    if (e.code === 'ENOENT') throw new Error(`${command} is not installed: ${SETUP_HINT}`);
    const output = `${e.stderr ?? ''}${e.stdout ?? ''}`.trim().split('\n').slice(-25).join('\n');
    throw new Error(`${command} ${args.join(' ')} failed: ${e.message.split('\n')[0]}\n${output}`);
  }
}

export const docker = (args: string[], timeoutMs?: number) => run('docker', args, { timeoutMs });

/** The address of CONTAINER on NETWORK (the host reaches containers on its bridges). */
export async function containerIp(container: string, network: string): Promise<string> {
  const ip = (
    await docker([
      'inspect',
      '-f',
      `{{with index .NetworkSettings.Networks "${network}"}}{{.IPAddress}}{{end}}`,
      container,
    ])
  ).trim();
  if (ip === '') throw new Error(`${container} has no address on network ${network}`);
  return ip;
}

/** Waits until CONTAINER's health check says healthy; fails with its last check's output. */
export async function waitHealthy(container: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    last = (await docker(['inspect', '-f', '{{json .State}}', container])).trim();
    const state = JSON.parse(last) as {
      Status: string;
      Health?: { Status: string; Log?: { Output: string }[] };
    };
    if (state.Health?.Status === 'healthy') return;
    if (state.Status === 'exited' || state.Status === 'dead') break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const logs = await docker(['logs', '--tail', '20', container]).catch((e: Error) => e.message);
  throw new Error(`${container} did not turn healthy: ${last}\n${logs}`);
}

/** A runner reached over HTTP, as Dify reaches it. */
export class RunnerClient {
  constructor(
    readonly url: string,
    readonly apiKey: string,
  ) {}

  async post(body: unknown): Promise<{ status: number; body: Envelope }> {
    const res = await fetch(`${this.url}/v1/sandbox/run`, {
      method: 'POST',
      headers: { 'X-Api-Key': this.apiKey, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    return { status: res.status, body: (await res.json()) as Envelope };
  }

  /** Runs code and returns `data`; throws when the envelope is not a success. */
  async run(
    language: 'python3' | 'nodejs',
    code: string,
    extra: Record<string, unknown> = {},
  ): Promise<RunData> {
    const { status, body } = await this.post({ language, code, enable_network: true, ...extra });
    if (status !== 200 || body.code !== 0 || body.data === null)
      throw new Error(`run failed: HTTP ${status} ${JSON.stringify(body)}`);
    return body.data;
  }
}
