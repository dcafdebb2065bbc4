// One execution through the native launcher: prepare the runtime files once, then for each run
// spawn native/build/sandbox-launcher, feed the request on stdin, collect output within the
// caps, enforce the wall-clock timeout and explain the outcome.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Language, RunnerConfig } from './config.js';
import { BOOTSTRAP_SOURCE, NATIVE_BUILD, POLICY_SOURCE } from './paths.js';

const LAUNCHER = path.join(NATIVE_BUILD, 'sandbox-launcher');
const LAUNCHER_FAILED = 125;
const REPORT_LIMIT = 64 * 1024;

export type Outcome =
  | 'success'
  | 'error' // the program failed on its own (non-zero exit, uncaught exception)
  | 'denied' // the program failed on a syscall the policy refused
  | 'timeout'
  | 'memory_limit'
  | 'cpu_limit'
  | 'file_limit'
  | 'output_limit'
  | 'killed' // a signal, e.g. the dangerous set of the policy
  | 'sandbox_error'; // the sandbox could not be set up: nothing of the user ran

export interface ExecutionRequest {
  language: Language;
  code: string;
  preload: string;
  network: boolean;
  /** Distinct per concurrently running execution: selects its uid when the runner is root. */
  slot: number;
}

export interface ExecutionResult {
  stdout: string;
  stderr: string;
  /** '' when the program exited 0, else a reason line followed by stderr. */
  error: string;
  exitCode: number;
  outcome: Outcome;
  /** The syscall the policy refused, when that is why the program failed. */
  deniedSyscall?: string;
}

/** Files the sandboxed interpreters read, copied to one place under the work directory. */
export class Runtime {
  readonly runtimeDir: string;
  readonly runsDir: string;
  readonly policyDir: string;
  private syscallNames = new Map<number, string>();
  /** Per language, the installation prefix of its interpreter (readable in the sandbox). */
  private prefixes = new Map<Language, string>();
  readonly asRoot = process.geteuid?.() === 0;

  constructor(readonly config: RunnerConfig) {
    this.runtimeDir = path.join(config.workDir, 'runtime');
    this.runsDir = path.join(config.workDir, 'runs');
    this.policyDir = path.join(this.runtimeDir, 'policies');
  }

  /** Creates the work directory layout; fails with a clear message when it is unsafe. */
  async prepare(): Promise<void> {
    const { workDir } = this.config;
    await fs.mkdir(workDir, { recursive: true, mode: 0o711 });
    const st = await fs.lstat(workDir);
    if (!st.isDirectory() || st.uid !== process.geteuid?.())
      throw new Error(`${workDir} must be a directory owned by the runner's user`);
    await fs.chmod(workDir, 0o711);
    await removeTree(this.runtimeDir);
    await removeTree(this.runsDir);
    await fs.mkdir(this.runsDir, { mode: 0o711 });
    await fs.mkdir(this.policyDir, { recursive: true, mode: 0o755 });
    await fs.chmod(this.runtimeDir, 0o755);

    for (const name of await fs.readdir(POLICY_SOURCE))
      if (name.endsWith('.policy'))
        await fs.copyFile(path.join(POLICY_SOURCE, name), path.join(this.policyDir, name));
    for (const name of await fs.readdir(BOOTSTRAP_SOURCE))
      await fs.copyFile(path.join(BOOTSTRAP_SOURCE, name), path.join(this.runtimeDir, name));
    await fs.copyFile(
      path.join(NATIVE_BUILD, 'libsandbox.so'),
      path.join(this.runtimeDir, 'libsandbox.so'),
    );
    for (const name of await fs.readdir(this.runtimeDir, { recursive: true }))
      await fs.chmod(path.join(this.runtimeDir, name), name.includes('.') ? 0o644 : 0o755);

    const table = JSON.parse(
      await fs.readFile(path.join(NATIVE_BUILD, 'syscalls.json'), 'utf8'),
    ) as Record<string, string>;
    for (const [nr, name] of Object.entries(table)) this.syscallNames.set(Number(nr), name);
    const extra = this.config.allowedSyscalls.map((s) => {
      if (!/^\d+$/.test(s)) return s;
      const name = this.syscallNames.get(Number(s));
      if (name === undefined)
        throw new Error(`ALLOWED_SYSCALLS: no syscall number ${s} on this machine`);
      return name;
    });
    await fs.writeFile(
      path.join(this.policyDir, 'extra.policy'),
      `# ALLOWED_SYSCALLS from the runner's configuration\n${extra.length > 0 ? `allow ${extra.join(' ')}\n` : ''}`,
      { mode: 0o644 },
    );
    await fs.access(LAUNCHER, fsConstants.X_OK).catch(() => {
      throw new Error(`${LAUNCHER} is missing: run 'npm run build'`);
    });
    for (const [language, setting, file] of [
      ['python3', 'PYTHON_PATH', this.config.pythonPath],
      ['nodejs', 'NODEJS_PATH', this.config.nodejsPath],
    ] as const) {
      const real = await fs.realpath(file).catch(() => {
        throw new Error(`${setting}: ${file} does not exist`);
      });
      this.prefixes.set(language, path.dirname(path.dirname(real)));
    }
  }

  syscallName(nr: number): string {
    return this.syscallNames.get(nr) ?? `syscall ${nr}`;
  }

  interpreterArgs(language: Language): string[] {
    const { config } = this;
    if (language === 'python3')
      return [
        config.pythonPath,
        '-I',
        '-B',
        '-X',
        'utf8',
        path.join(this.runtimeDir, 'python3.py'),
      ];
    // V8's heap limit below the memory limit, so that running out is a clean, named error.
    const heapMiB = Math.max(16, Math.floor(config.memoryMiB * 0.75));
    return [
      config.nodejsPath,
      `--max-old-space-size=${heapMiB}`,
      '--no-addons',
      path.join(this.runtimeDir, 'nodejs.cjs'),
    ];
  }

  launcherArgs(req: ExecutionRequest, workdir: string): string[] {
    const { config } = this;
    const args = [
      '--policy-dir', this.policyDir,
      '--policy', req.language,
      '--policy', 'extra',
      '--workdir', workdir,
      '--memory-bytes', String(config.memoryMiB * 1024 * 1024),
      '--cpu-seconds', String(config.cpuSeconds),
      '--file-bytes', String(config.maxFileBytes),
      '--open-files', String(config.maxOpenFiles),
      '--processes', String(config.maxThreads),
      '--read', this.runtimeDir,
      '--read', this.prefixes.get(req.language) ?? '/usr',
      '--landlock', config.landlock,
      '--env', `LD_PRELOAD=${path.join(this.runtimeDir, 'libsandbox.so')}`,
    ]; // prettier-ignore
    if (this.asRoot) {
      const id = String(config.uidBase + req.slot);
      args.push('--uid', id, '--gid', id);
    }
    if (req.network) {
      args.push('--policy', 'network', '--network');
      for (const [name, value] of [
        ['HTTP_PROXY', config.httpProxy],
        ['HTTPS_PROXY', config.httpsProxy],
        ['NO_PROXY', config.noProxy],
      ] as const) {
        if (value === '') continue;
        args.push('--env', `${name}=${value}`, '--env', `${name.toLowerCase()}=${value}`);
      }
    }
    return args;
  }
}

/** Removes a run directory even when the program left it unreadable for us (chmod 000). */
export async function removeTree(dir: string): Promise<void> {
  try {
    await fs.rm(dir, { recursive: true, force: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
    await makeWritable(dir);
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function makeWritable(dir: string): Promise<void> {
  await fs.chmod(dir, 0o700);
  for (const entry of await fs.readdir(dir, { withFileTypes: true }))
    if (entry.isDirectory()) await makeWritable(path.join(dir, entry.name));
}

/** Collects a stream up to a byte cap; reports when the cap is crossed. */
class CappedBuffer {
  private chunks: Buffer[] = [];
  size = 0;
  constructor(
    private readonly cap: number,
    private readonly onOverflow: () => void,
  ) {}
  push(chunk: Buffer): void {
    const room = this.cap - this.size;
    if (room <= 0) return;
    if (chunk.length > room) {
      this.chunks.push(chunk.subarray(0, room));
      this.size = this.cap;
      this.onOverflow();
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
  }
  text(): string {
    // Invalid UTF-8 becomes U+FFFD: replaced, never dropped.
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

const NETWORK_SYSCALLS = new Set([
  'socket',
  'connect',
  'bind',
  'listen',
  'accept',
  'accept4',
  'sendto',
  'sendmsg',
]);
const PROCESS_SYSCALLS = new Set(['clone', 'clone3', 'fork', 'vfork', 'execve', 'execveat']);

function denialHint(syscall: string, network: boolean): string {
  if (NETWORK_SYSCALLS.has(syscall))
    return network ? ' (this kind of socket is not allowed)' : ' (network is disabled)';
  if (PROCESS_SYSCALLS.has(syscall)) return ' (starting processes is not allowed)';
  return '';
}

/** Runs one execution to its end; never throws for anything the program does. */
export async function execute(runtime: Runtime, req: ExecutionRequest): Promise<ExecutionResult> {
  const { config } = runtime;
  const workdir = path.join(runtime.runsDir, randomUUID());
  const args = [
    ...runtime.launcherArgs(req, workdir),
    '--',
    ...runtime.interpreterArgs(req.language),
  ];

  let limitHit: Outcome | undefined;
  const child = spawn(LAUNCHER, args, {
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    detached: true, // its own process group, so that a kill reaches everything of the run
    env: {},
  });
  const kill = (why: Outcome) => {
    limitHit ??= why;
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const stdout = new CappedBuffer(config.maxOutputBytes, () => kill('output_limit'));
  const stderr = new CappedBuffer(config.maxOutputBytes, () => kill('output_limit'));
  const reports = new CappedBuffer(REPORT_LIMIT, () => undefined);
  child.stdout.on('data', (c: Buffer) => stdout.push(c));
  child.stderr.on('data', (c: Buffer) => stderr.push(c));
  const reportStream = child.stdio[3] as NodeJS.ReadableStream;
  reportStream.on('data', (c: Buffer) => reports.push(c));
  // A program that exits without reading its stdin makes our write fail with EPIPE: harmless.
  child.stdin.on('error', () => undefined);
  child.stdin.end(JSON.stringify({ code: req.code, preload: req.preload }));

  const timer = setTimeout(() => kill('timeout'), config.workerTimeoutSeconds * 1000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.on('error', () => resolve([LAUNCHER_FAILED, null]));
    child.on('close', (c, s) => resolve([c, s]));
  });
  clearTimeout(timer);
  await removeTree(workdir).catch(() => undefined);

  const result = explain({
    code,
    signal,
    limitHit,
    stderr: stderr.text(),
    reports: reports.text(),
    runtime,
    network: req.network,
  });
  return { ...result, stdout: stdout.text() };
}

interface Ending {
  code: number | null;
  signal: NodeJS.Signals | null;
  limitHit: Outcome | undefined;
  stderr: string;
  reports: string;
  runtime: Runtime;
  network: boolean;
}

function explain(e: Ending): Omit<ExecutionResult, 'stdout'> {
  const { config } = e.runtime;
  const lines = e.reports.split('\n');
  const launcherFailure = lines.find((l) => l.startsWith('sandbox-launcher: '));
  const denied = lines
    .filter((l) => l.startsWith('sys '))
    .map((l) => e.runtime.syscallName(Number(l.slice(4))));
  const lastDenied = denied.at(-1);
  const fail = (outcome: Outcome, reason: string, exitCode = -1, deniedSyscall?: string) => ({
    stderr: e.stderr,
    error: `${reason}\n${e.stderr}`,
    exitCode,
    outcome,
    ...(deniedSyscall !== undefined ? { deniedSyscall } : {}),
  });

  if (launcherFailure !== undefined && e.code === LAUNCHER_FAILED)
    return {
      ...fail('sandbox_error', `error: sandbox setup failed: ${launcherFailure.slice(18)}`),
      stderr: '',
    };
  if (e.limitHit === 'timeout') return fail('timeout', 'error: timeout');
  if (e.limitHit === 'output_limit') return fail('output_limit', 'error: output limit exceeded');
  if (e.signal === 'SIGXCPU')
    return fail('cpu_limit', `error: cpu time limit exceeded (${config.cpuSeconds} s)`);
  if (e.signal === 'SIGXFSZ') return fail('file_limit', 'error: file size limit exceeded');
  const memory = lines.includes('memory') || /JavaScript heap out of memory/.test(e.stderr);
  if (memory) return fail('memory_limit', `error: memory limit exceeded (${config.memoryMiB} MiB)`);
  if (e.signal === 'SIGSYS') {
    const name = lastDenied ?? 'a forbidden system call';
    return fail(
      'killed',
      `error: operation not permitted: ${name}${denialHint(name, e.network)} (killed)`,
      -1,
      lastDenied,
    );
  }
  if (e.signal !== null) return fail('killed', `error: process killed by signal ${e.signal}`);
  if (e.code === 0) return { stderr: e.stderr, error: '', exitCode: 0, outcome: 'success' };
  const exitCode = e.code ?? -1;
  if (lines.includes('eperm') && lastDenied !== undefined)
    return fail(
      'denied',
      `error: operation not permitted: ${lastDenied}${denialHint(lastDenied, e.network)}`,
      exitCode,
      lastDenied,
    );
  return fail('error', `process exited with code ${exitCode}`, exitCode);
}
