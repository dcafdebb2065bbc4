// One request in one sandboxed process: write the request, collect output within the caps,
// enforce the wall-clock timeout, and explain how it ended in the words of api.md.
import { isUtf8 } from 'node:buffer';
import type { Readable } from 'node:stream';
import type { Language } from './config.js';
import { REPORTS_OVERFLOW, SETUP_FAILED, type Exit, type SandboxProcess } from './process.js';
import type { Runtime } from './runtime.js';
import { measureTree, Watchdog } from './watchdog.js';

/** How a run ended: the `outcome` label of sandbox_executions_total. */
export const OUTCOMES = [
  'success',
  'error', // the program failed on its own (non-zero exit, uncaught exception)
  'denied', // the program failed on a syscall the policy refused
  'timeout',
  'memory_limit',
  'cpu_limit',
  'file_limit', // one file over RLIMIT_FSIZE
  'disk_limit', // the run's directory over its bytes or files
  'open_files_limit',
  'thread_limit',
  'output_limit',
  'killed', // a signal, e.g. the dangerous set of the policy
  'sandbox_error', // the sandbox could not be set up: nothing of the user ran
  'abandoned', // the client went away before the answer: stopped, or never started
] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface ExecutionRequest {
  language: Language;
  code: string;
  preload: string;
  network: boolean;
  /** Aborted when the client goes away: the run is stopped (nobody waits for its answer). */
  abandoned?: AbortSignal;
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

/**
 * Collects a stream up to a byte cap; reports when the cap is crossed. Each chunk is copied into
 * one buffer (grown by doubling, never past the cap): a program writing a byte at a time makes
 * as many chunks, and kept as they came, each a Buffer object of its own, 4 MiB of them took
 * over 500 MB of the runner's heap (a security review's run).
 */
class CappedBuffer {
  private buffer = Buffer.alloc(0);
  size = 0;
  constructor(
    private readonly cap: number,
    private readonly onOverflow: () => void,
  ) {}
  push(chunk: Buffer): void {
    const room = this.cap - this.size;
    // At the cap, more output is over it (a stream can reach the cap exactly, then go on).
    if (room <= 0) {
      if (chunk.length > 0) this.onOverflow();
      return;
    }
    const taken = Math.min(chunk.length, room);
    if (this.size + taken > this.buffer.length) {
      const grown = Buffer.allocUnsafe(
        Math.min(this.cap, Math.max(this.size + taken, this.buffer.length * 2, 4096)),
      );
      this.buffer.copy(grown, 0, 0, this.size);
      this.buffer = grown;
    }
    this.size += chunk.copy(this.buffer, this.size, 0, taken);
    if (chunk.length > room) this.onOverflow();
  }
  text(): string {
    return decodeAsDifySandbox(this.buffer.subarray(0, this.size));
  }
}

/** Whether BYTES[AT] is a byte from LO to HI (a continuation byte by default). */
function byteIn(bytes: Buffer, at: number, lo = 0x80, hi = 0xbf): boolean {
  const b = bytes[at];
  return b !== undefined && b >= lo && b <= hi;
}

/** The length of the well-formed UTF-8 sequence at BYTES[AT] (Unicode table 3-7), else 0. */
function sequenceLength(bytes: Buffer, at: number): number {
  const b0 = bytes[at]!;
  if (b0 < 0x80) return 1;
  if (b0 >= 0xc2 && b0 <= 0xdf) return byteIn(bytes, at + 1) ? 2 : 0;
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const [lo, hi] = b0 === 0xe0 ? [0xa0, 0xbf] : b0 === 0xed ? [0x80, 0x9f] : [0x80, 0xbf];
    return byteIn(bytes, at + 1, lo, hi) && byteIn(bytes, at + 2) ? 3 : 0;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const [lo, hi] = b0 === 0xf0 ? [0x90, 0xbf] : b0 === 0xf4 ? [0x80, 0x8f] : [0x80, 0xbf];
    return byteIn(bytes, at + 1, lo, hi) && byteIn(bytes, at + 2) && byteIn(bytes, at + 3) ? 4 : 0;
  }
  return 0;
}

/**
 * Output as text the way DifySandbox answers it: each byte that does not start a well-formed
 * UTF-8 sequence becomes one U+FFFD (Go's encoding/json), where Node.js's decoder replaces a
 * truncated sequence ("\xe4\xb8") once. Replaced, never dropped. In one pass into one buffer
 * (U+FFFD is three bytes): a string grown a piece per invalid byte took 0.4 s for 4 MiB of
 * them, on the event loop every run shares.
 */
export function decodeAsDifySandbox(bytes: Buffer): string {
  if (isUtf8(bytes)) return bytes.toString('utf8');
  const out = Buffer.allocUnsafe(bytes.length * 3);
  let length = 0;
  let start = 0;
  for (let at = 0; at < bytes.length;) {
    const n = sequenceLength(bytes, at);
    if (n > 0) {
      at += n;
      continue;
    }
    if (at > start) length += bytes.copy(out, length, start, at);
    out[length++] = 0xef;
    out[length++] = 0xbf;
    out[length++] = 0xbd;
    start = ++at;
  }
  length += bytes.copy(out, length, start);
  return out.toString('utf8', 0, length);
}

/** A run's answer, and when what it used is given back. */
export interface Execution {
  result: ExecutionResult;
  /** Resolves once the process has exited and its directory and uid are released. */
  settled: Promise<void>;
  /**
   * The process ended before it took the request (it never said "run"), on no limit and no
   * sandbox failure: killed while it waited (its zygote gone, out of memory), or it could not
   * connect back. Nothing of the request ran, so another process may run it.
   */
  unstarted: boolean;
}

/** Resolves once STREAM has delivered everything and ended (or closed). */
function endOf(stream: Readable): Promise<void> {
  return new Promise((resolve) => {
    if (stream.readableEnded || stream.destroyed) return resolve();
    stream.once('end', resolve);
    stream.once('close', resolve);
  });
}

/** N of a bootstrap's report line "exit N", or undefined for any other line. */
function exitReport(line: string | undefined): number | undefined {
  return line !== undefined && /^exit \d{1,3}$/.test(line) ? Number(line.slice(5)) : undefined;
}

/**
 * Runs REQ in PROC, a process that has not served a request, to its end. Answers as soon as
 * the program is over and nothing of it can run any more; the process's directory and uid are
 * released once the kernel confirms its exit (`settled`). Never throws for anything the
 * program does.
 */
export async function runRequest(
  runtime: Runtime,
  proc: SandboxProcess,
  req: ExecutionRequest,
): Promise<Execution> {
  const { config } = runtime;
  let limitHit: Outcome | undefined;
  const kill = (why: Outcome) => {
    limitHit ??= why;
    proc.kill();
  };
  const stdout = new CappedBuffer(config.maxOutputBytes, () => kill('output_limit'));
  const stderr = new CappedBuffer(config.maxOutputBytes, () => kill('output_limit'));
  // The wall clock runs from here, and a client that goes away stops the run, also while the
  // process is still starting (a stuck start must not hold its worker for ever).
  const timer = setTimeout(() => kill('timeout'), config.workerTimeoutSeconds * 1000);
  req.abandoned?.addEventListener('abort', () => kill('abandoned'), { once: true });
  if (req.abandoned?.aborted === true) kill('abandoned');
  let watchdog: Watchdog | undefined;
  // The bootstraps end a program by reporting "exit N" and closing every stream; the kernel
  // then takes the process apart (its memory, its mounts) for milliseconds before its exit is
  // known. The answer does not wait for that: with the report in and every stream ended, the
  // process is killed (whatever of it is left can run no more code) and its directory removed.
  let finished: Promise<Exit | undefined> = Promise.resolve(undefined);
  if (await proc.ready) {
    const streams = proc.streams();
    finished = Promise.all([
      endOf(streams.stdout),
      endOf(streams.stderr),
      endOf(streams.reports),
    ]).then(() => {
      const code = limitHit === undefined ? exitReport(proc.reportLog.at(-1)) : undefined;
      return code === undefined ? undefined : { code, signal: null };
    });
    streams.stdout.on('data', (c: Buffer) => stdout.push(c)).resume();
    streams.stderr.on('data', (c: Buffer) => stderr.push(c)).resume();
    if (proc.pid !== undefined) {
      // As root the kernel bounds threads (RLIMIT_NPROC of the run's uid) and the directory
      // (its tmpfs); otherwise the watchdog does.
      // Page tables in both modes: as much as the memory limit can need (1/256 of it), and
      // 32 MiB more.
      const pageTableBytes = (config.memoryMiB * 1024 * 1024) / 256 + 32 * 1024 * 1024;
      const limits = runtime.asRoot
        ? { pageTableBytes }
        : {
            threads: config.maxThreads,
            diskBytes: config.maxDiskBytes,
            files: config.maxFiles,
            fileBytes: config.maxFileBytes,
            pageTableBytes,
          };
      watchdog = new Watchdog(proc.pid, proc.id.workdir, limits, kill);
      watchdog.start();
    }
    if (limitHit === undefined)
      streams.stdin.end(JSON.stringify({ code: req.code, preload: req.preload }));
  } else {
    proc.kill();
  }
  const { exit, early } = await Promise.race([
    proc.ended.then((e) => ({ exit: e, early: false })),
    finished.then((reported) =>
      reported === undefined
        ? proc.ended.then((e) => ({ exit: e, early: false }))
        : { exit: reported, early: true },
    ),
    // Killed, and still being taken apart long after: what the kernel will report is known.
    ...(proc.lingering === undefined
      ? []
      : [
          proc.lingering.then(() => ({
            exit: { code: null, signal: 'SIGKILL' } satisfies Exit,
            early: true,
          })),
        ]),
  ]);
  if (early) proc.kill();
  clearTimeout(timer);
  watchdog?.stop();
  // Without root the directory is only sampled: look once more at what the run left, so that a
  // run that went over and ended between two samples fails all the same.
  if (watchdog !== undefined && !runtime.asRoot && limitHit === undefined) {
    const usage = await measureTree(proc.id.workdir, config.maxFiles + 1).catch(() => undefined);
    if (
      usage !== undefined &&
      (usage.entries > config.maxFiles || usage.bytes > config.maxDiskBytes)
    )
      limitHit = 'disk_limit';
  }
  let settled: Promise<void>;
  if (early) {
    // Nothing of the program is left to write there; the uid waits for the confirmed exit.
    await runtime.removeDirectory(proc.id);
    settled = proc.ended.then(() => runtime.release(proc.id));
  } else {
    await runtime.release(proc.id);
    settled = Promise.resolve();
  }
  const result = explain({
    ...selfKilled(exit, limitHit, proc.reportLog),
    limitHit,
    stderr: stderr.text(),
    reports: proc.reportLog,
    runtime,
    network: req.network,
    language: proc.id.language,
    cpuSeconds: watchdog?.cpuSeconds ?? 0,
  });
  const ready = proc.reportLog.indexOf('ready');
  const unstarted =
    limitHit === undefined &&
    result.outcome !== 'sandbox_error' &&
    // Any "run" after "ready": a line before it (a denied call's report from another thread,
    // say) must not make a run that started look unstarted; a program can only add lines later.
    (ready === -1 || proc.reportLog.indexOf('run', ready + 1) === -1);
  return { result: { ...result, stdout: stdout.text() }, settled, unstarted };
}

/**
 * The exit status a bootstrap reported ("exit N") before it killed itself, sparing the
 * interpreter's teardown (nodejs.cjs): the status the program ended with. Not when the runner
 * killed the process.
 */
function selfKilled(exit: Exit, limitHit: Outcome | undefined, reports: string[]): Exit {
  if (exit.signal !== 'SIGKILL' || limitHit !== undefined) return exit;
  const code = exitReport(reports.findLast((l) => exitReport(l) !== undefined));
  return code === undefined ? exit : { code, signal: null };
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

interface Ending extends Exit {
  limitHit: Outcome | undefined;
  stderr: string;
  reports: string[];
  runtime: Runtime;
  network: boolean;
  language: Language;
  /** CPU seconds the watchdog last saw the program at. */
  cpuSeconds: number;
}

/** 16777216 -> "16 MiB"; other numbers of bytes as they are. */
function bytes(n: number): string {
  return n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)} MiB` : `${n} bytes`;
}

function explain(e: Ending): Omit<ExecutionResult, 'stdout'> {
  const { config } = e.runtime;
  const lines = e.reports;
  // Only what came before "ready" is the launcher's: after it the program holds the report
  // descriptor and could forge a failure (which would make the runner not ready).
  const ready = lines.indexOf('ready');
  const launcherFailure = (ready === -1 ? lines : lines.slice(0, ready)).find((l) =>
    l.startsWith('sandbox-launcher: '),
  );
  const denied = lines
    .filter((l) => l.startsWith('sys '))
    .map((l) => e.runtime.syscallName(Number(l.slice(4))));
  const lastDenied = denied.at(-1);
  // A call of the dangerous set that libsandbox.so saw go out just before the kernel killed us.
  const lastKilled = lines
    .filter((l) => l.startsWith('kill '))
    .map((l) => e.runtime.syscallName(Number(l.slice(5))))
    .at(-1);
  const fail = (outcome: Outcome, reason: string, exitCode = -1, deniedSyscall?: string) => ({
    stderr: e.stderr,
    error: `${reason}\n${e.stderr}`,
    exitCode,
    outcome,
    ...(deniedSyscall !== undefined ? { deniedSyscall } : {}),
  });

  const limit: Partial<Record<Outcome, string>> = {
    timeout: 'error: timeout',
    output_limit: 'error: output limit exceeded',
    cpu_limit: `error: cpu time limit exceeded (${config.cpuSeconds} s)`,
    memory_limit: `error: memory limit exceeded (${config.memoryMiB} MiB)`,
    file_limit: `error: file size limit exceeded (${bytes(config.maxFileBytes)})`,
    disk_limit: `error: disk limit exceeded (${bytes(config.maxDiskBytes)} or ${config.maxFiles} files in the run's directory)`,
    open_files_limit: `error: open file limit exceeded (${config.maxOpenFiles})`,
    thread_limit: `error: thread limit exceeded (${config.maxThreads})`,
    abandoned: 'error: the client went away',
  };
  const limitFail = (outcome: Outcome) => fail(outcome, limit[outcome] ?? `error: ${outcome}`);
  // A run stopped while it was still starting (its time limit, its client gone) failed on that.
  if (e.limitHit !== undefined && ready === -1) return limitFail(e.limitHit);
  if (launcherFailure !== undefined && e.code === SETUP_FAILED)
    return {
      ...fail('sandbox_error', `error: sandbox setup failed: ${launcherFailure.slice(18)}`),
      stderr: '',
    };
  if (e.limitHit !== undefined) return limitFail(e.limitHit);
  // Never ready, so no code of the request ran: not the program's failure (it could not
  // connect back to the runner, say, or was killed while starting).
  if (ready === -1)
    return fail(
      'error',
      `error: the sandboxed interpreter ended before it was ready (${e.signal ?? `exit code ${e.code}`})`,
    );
  if (lines.at(-1) === REPORTS_OVERFLOW) return limitFail('output_limit');
  if (e.signal === 'SIGXCPU') return limitFail('cpu_limit');
  // SIGKILL that the runner did not send: the hard CPU limit, a second after the soft one
  // (the program ignored SIGXCPU).
  if (e.signal === 'SIGKILL' && e.cpuSeconds >= config.cpuSeconds - 0.5)
    return limitFail('cpu_limit');
  if (e.signal === 'SIGXFSZ') return limitFail('file_limit');
  // A program that ended well succeeded, whatever it wrote to stderr.
  if (e.code === 0) return { stderr: e.stderr, error: '', exitCode: 0, outcome: 'success' };
  // V8 says so in several ways when memory runs out (its OOM report starts "Last few GCs");
  // C++ code of Node.js aborts with std::bad_alloc.
  const memory =
    lines.includes('memory') ||
    /JavaScript heap out of memory|Fatal (process|javascript) (out of memory|OOM)|<--- Last few GCs --->|std::bad_alloc/.test(
      e.stderr,
    );
  if (memory) return limitFail('memory_limit');
  if (e.signal === 'SIGSYS') {
    const name = lastKilled ?? lastDenied ?? 'a system call of the dangerous set';
    return fail(
      'killed',
      `error: operation not permitted: ${name}${denialHint(name, e.network)} (killed)`,
      -1,
      lastKilled ?? lastDenied,
    );
  }
  const exitCode = e.code ?? -1;
  // The bootstraps report which limit an uncaught error came from. It stays the reason when
  // the interpreter's teardown then crashes (Node.js after new Worker() failed with EAGAIN).
  const reported: Array<[string, Outcome]> = [
    ['disk', 'disk_limit'],
    ['fsize', 'file_limit'],
    ['nofile', 'open_files_limit'],
    ['threads', 'thread_limit'],
  ];
  for (const [word, outcome] of reported)
    if (lines.includes(word)) return fail(outcome, limit[outcome]!, exitCode);
  if (e.signal === 'SIGSEGV')
    // Node.js turns a stack overflow into a RangeError; it crashes like this when memory runs
    // out at the data limit before V8's own heap limit (the young generation, a GC's own needs).
    return fail(
      'killed',
      `error: process killed by signal SIGSEGV (${e.language === 'nodejs' ? `e.g. out of memory: the limit is ${config.memoryMiB} MiB` : 'e.g. a stack overflow'})`,
    );
  if (e.signal !== null) return fail('killed', `error: process killed by signal ${e.signal}`);
  // Without network, a refused socket explains the failure even when the program saw another
  // error: a name lookup turns the resolver's EPERM into "name not known".
  const cause =
    lines.includes('eperm') && lastDenied !== undefined
      ? lastDenied
      : e.network
        ? undefined
        : denied.findLast((s) => NETWORK_SYSCALLS.has(s));
  if (cause !== undefined)
    return fail(
      'denied',
      `error: operation not permitted: ${cause}${denialHint(cause, e.network)}`,
      exitCode,
      cause,
    );
  return fail('error', `process exited with code ${exitCode}`, exitCode);
}
