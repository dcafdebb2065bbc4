// Sandboxed interpreter processes: started through the launcher, or forked from the Python
// zygote. Either way a process is confined before it reads a byte of user code, reports
// "ready" from inside the sandbox, serves exactly one request, and exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { getSystemErrorMap } from 'node:util';
import type { Logger } from 'pino';
import { LAUNCHER, type Runtime, type SandboxIdentity } from './runtime.js';
import { packagesDir } from './dependencies.js';
import { procStat } from './watchdog.js';

/** The exit status of a process whose sandbox could not be set up (sandbox.h's SANDBOX_SETUP_FAILED). */
export const SETUP_FAILED = 125;
/** libsandbox.so's report that exec is closed behind a launched interpreter. */
const EXEC_LOCKED = 'locked';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Streams {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /** Carries the sandbox's report lines: "ready", "sys NNN", "eperm", "memory", failures. */
  reports: Readable;
}

/** One sandboxed interpreter, waiting for (or running) its single request. */
export interface SandboxProcess {
  readonly id: SandboxIdentity;
  /** Report lines so far (bounded). */
  readonly reportLog: string[];
  /** The process's streams: true once it is confined and waiting; false if it ended first. */
  readonly ready: Promise<boolean>;
  /** Valid once `ready` resolved true. */
  streams(): Streams;
  /** Resolves when the process has exited and all of its output has been read. */
  readonly ended: Promise<Exit>;
  /** Its process id, once known (the limits watchdog reads /proc/PID). */
  readonly pid: number | undefined;
  /** Resolves if the process, killed, is still being taken apart by the kernel at its deadline:
   * nothing of it can run any more, and its run may be answered; `ended` comes once it is gone
   * (its uid and directory wait for that). Only for a zygote's children. */
  readonly lingering?: Promise<void>;
  kill(): void;
}

const REPORT_LOG_LIMIT = 1000;
/** How long the zygote may take to start (import what Dify's scripts use). */
const ZYGOTE_START_MS = 30_000;
/** How long a fork may take before the zygote counts as stuck (it takes milliseconds). */
const FORK_DEADLINE_MS = 10_000;
/** How long the zygote may take to report the end of a child the runner killed (its teardown
 * runs at nice 19, slow on a busy machine; the zygote reaps it at once). Checked again after as
 * long while the kernel is still taking the child apart (see stillExiting), up to
 * EXIT_WAIT_MAX_MS in all. */
const EXIT_DEADLINE_MS = 20_000;
const EXIT_WAIT_MAX_MS = 120_000;
/** The longest command line native/zygote.c takes (sandbox_zygote_line_max), with its newline. */
const ZYGOTE_LINE_MAX = 65536;
/** Bytes of report lines a process may send (a line per refused call: ~100000 lines). */
const REPORT_BYTES_LIMIT = 1024 * 1024;
/** The last report line of a process killed for sending more: its run failed on output. */
export const REPORTS_OVERFLOW = 'reports over the limit';

/**
 * Records report lines (the first REPORT_LOG_LIMIT - 1 and always the latest, which may be the
 * bootstrap's "exit N" after any number of denials); resolves true at "ready", false when the
 * stream closes first. A process that sends more than REPORT_BYTES_LIMIT is killed (KILL): the
 * descriptor is the program's once it runs, and reading without end would keep the runner busy.
 */
function watchReports(stream: Readable, log: string[], kill: () => void): Promise<boolean> {
  return new Promise((resolve) => {
    let rest = '';
    let bytes = 0;
    const record = (line: string) => {
      if (log.length < REPORT_LOG_LIMIT) log.push(line);
      else log[REPORT_LOG_LIMIT - 1] = line;
    };
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > REPORT_BYTES_LIMIT) {
        if (bytes - chunk.length <= REPORT_BYTES_LIMIT) {
          record(REPORTS_OVERFLOW);
          kill();
        }
        return; // drained unread until it closes
      }
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = (lines.pop() ?? '').slice(0, 4096);
      for (const line of lines) {
        record(line);
        if (line === 'ready') resolve(true);
      }
    });
    stream.on('close', () => resolve(false));
    stream.on('error', () => resolve(false));
    stream.resume(); // the zygote's connections arrive paused
  });
}

/**
 * How long a process's streams may stay open after its exit. A process's own ends close as it
 * exits, so its streams end at once, unless it sent those ends over a socket pair of its own
 * (SCM_RIGHTS) into a cycle of descriptors in flight, which the kernel frees only at its next
 * garbage collection of unix sockets, whenever any process closes one. Nothing can write to
 * them any more: what they hold is read by then, and they are closed.
 */
const STREAMS_AFTER_EXIT_MS = 5000;

/**
 * Resolves when STREAM, of a process that has exited, has closed, or is closed after
 * STREAMS_AFTER_EXIT_MS; drains it, so that output nobody reads cannot hold it.
 */
export function closedAfterExit(stream: Readable): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || stream.closed) return resolve();
    const late = setTimeout(() => stream.destroy(), STREAMS_AFTER_EXIT_MS);
    stream.once('close', () => {
      clearTimeout(late);
      resolve();
    });
    stream.resume();
  });
}

/** 11 -> "EAGAIN (resource temporarily unavailable)". */
function errnoName(errno: number): string {
  const [name, message] = getSystemErrorMap().get(-errno) ?? [`errno ${errno}`, ''];
  return message === '' ? name : `${name} (${message})`;
}

function signalName(signo: number): NodeJS.Signals | null {
  const entry = Object.entries(osConstants.signals).find(([, n]) => n === signo);
  return entry === undefined ? null : (entry[0] as NodeJS.Signals);
}

/** The launcher's command line for a run that PARENT starts (the run dies with it). */
function launcherCommand(runtime: Runtime, id: SandboxIdentity, parent: number): string[] {
  return [
    LAUNCHER,
    ...runtime.sandboxArgs(id),
    '--parent',
    String(parent),
    '--',
    ...runtime.interpreterArgs(id.language),
  ];
}

/** Starts an interpreter through native/build/sandbox-launcher, spawned from the runner. */
export function launch(runtime: Runtime, id: SandboxIdentity): SandboxProcess {
  const [command, ...args] = launcherCommand(runtime, id, process.pid);
  let child: ChildProcess;
  try {
    child = spawn(command!, args, {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      detached: true, // its own process group, so that a kill reaches everything of the run
      env: {},
    });
  } catch (err) {
    // Out of descriptors (EMFILE) or processes: this run fails, the runner goes on.
    return failedProcess(id, `spawn: ${(err as Error).message}`);
  }
  // Without descriptors for its pipes spawn() starts nothing and returns no streams.
  if (child.stdin === null || child.stdout === null || child.stderr === null || !child.stdio?.[3]) {
    // Node.js says why on 'error' (EMFILE: no descriptors for the pipes) on the next tick.
    child.once('error', () => undefined);
    return failedProcess(id, 'spawn: no descriptors left for its pipes (EMFILE)');
  }
  const streams: Streams = {
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    reports: child.stdio[3] as Readable,
  };
  streams.stdin.on('error', () => undefined); // EPIPE when it exits without reading: harmless
  const reportLog: string[] = [];
  const exit = new Promise<Exit>((resolve) => {
    child.once('error', (err) => {
      reportLog.push(`sandbox-launcher: spawn: ${err.message}`);
      resolve({ code: SETUP_FAILED, signal: null });
    });
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  let gone = false;
  void exit.then(() => (gone = true));
  const kill = () => {
    // Not once it has exited: its process group id may belong to someone else by then.
    if (gone) return;
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  let refused = false;
  const ready = watchReports(streams.reports, reportLog, kill).then((ok) => {
    if (!ok) return false;
    if (execLocked(reportLog)) return true;
    refused = true;
    kill();
    return false;
  });
  return {
    id,
    reportLog,
    pid: child.pid,
    ready,
    streams: () => streams,
    // Drained only after the exit: until then a run may still attach its collectors.
    ended: exit.then(async (e) => {
      await Promise.all([
        closedAfterExit(streams.stdout),
        closedAfterExit(streams.stderr),
        closedAfterExit(streams.reports),
      ]);
      return refused ? { code: SETUP_FAILED, signal: null } : e;
    }),
    kill,
  };
}

/**
 * Whether an interpreter the launcher executed reported libsandbox.so's exec lock
 * (native/libsandbox.c's lock_exec) before "ready". One that ignored LD_PRELOAD runs without it
 * and could execute any program through the launcher's one allowed execveat: it is refused as a
 * sandbox that could not be set up (the reason goes first in LOG, where explain() looks for the
 * launcher's failure; the caller kills it and reports exit status SETUP_FAILED).
 */
function execLocked(log: string[]): boolean {
  const locked = log.indexOf(EXEC_LOCKED);
  if (locked !== -1 && locked < log.indexOf('ready')) return true;
  log.unshift(
    'sandbox-launcher: exec lock: libsandbox.so did not run in the interpreter (LD_PRELOAD ignored: an interpreter with file capabilities, or the library unreadable)',
  );
  return false;
}

/** A process that could not be started: it ended before it was ready, saying why. */
function failedProcess(id: SandboxIdentity, why: string): SandboxProcess {
  const exit: Exit = { code: SETUP_FAILED, signal: null };
  return {
    id,
    reportLog: [`sandbox-launcher: ${why}`],
    pid: undefined,
    ready: Promise.resolve(false),
    streams: () => {
      throw new Error('a process that never started has no streams');
    },
    ended: Promise.resolve(exit),
    kill: () => undefined,
  };
}

/**
 * Whether process PID (killed), a child of PARENT, is still being taken apart by the kernel: it
 * exists, is PARENT's (not a process that got the pid after PARENT reaped it), and is not a
 * zombie PARENT could reap (a thread-group leader stays a zombie that cannot be reaped until its
 * last thread is gone). False when it is reapable or gone, or /proc cannot tell.
 */
export async function stillExiting(pid: number, parent: number): Promise<boolean> {
  try {
    const fields = await procStat(pid);
    // state, ppid and num_threads are fields 3, 4 and 20 of proc(5): 0, 1 and 17 here.
    if (Number(fields[1]) !== parent) return false;
    return fields[0] !== 'Z' || Number(fields[17]) > 1;
  } catch {
    return false;
  }
}

/** A child of the zygote, from the fork command until its exit. */
class ZygoteChild implements SandboxProcess {
  readonly reportLog: string[] = [];
  readonly ready: Promise<boolean>;
  readonly ended: Promise<Exit>;
  private knownPid: number | undefined;
  /** Whether it reported ready (a run may have its code). */
  isReady = false;
  exited!: (exit: Exit) => void;
  private gone = false;
  /** kill() came before the zygote said which pid the child has: done once it does. */
  private killWanted = false;
  private exitDeadline?: NodeJS.Timeout;
  /** Resolves once the zygote said which pid the child has. */
  readonly forked: Promise<void>;
  private markForked!: () => void;
  private readonly sockets: Array<net.Socket | undefined> = [undefined, undefined, undefined];
  private connected!: () => void;
  private reported!: (ready: boolean) => void;

  /** It executed the launcher, and ignored LD_PRELOAD there (see execLocked). */
  private refused = false;

  readonly lingering: Promise<void>;
  private markLingering!: () => void;

  constructor(
    readonly id: SandboxIdentity,
    /** The zygote's pid: the child's parent. */
    private readonly parentPid: number,
    /** Called when the zygote does not report the end of a killed child in time. */
    private readonly exitOverdue: (waitedMs: number) => void,
    /** Called at the deadline when the kernel is still taking the killed child apart: not the
     * zygote's fault, so it is left to report the end (and its other children to run). */
    private readonly exitSlow: (pid: number, waitedMs: number) => void,
    /** It executes the launcher (else it is confined in the zygote's child itself). */
    private readonly launched = false,
  ) {
    const exit = new Promise<Exit>(
      (resolve) =>
        (this.exited = (e) => {
          this.gone = true;
          clearTimeout(this.exitDeadline);
          resolve(e);
        }),
    );
    this.forked = new Promise<void>((resolve) => (this.markForked = resolve));
    this.lingering = new Promise<void>((resolve) => (this.markLingering = resolve));
    const connected = new Promise<void>((resolve) => (this.connected = resolve));
    const reported = new Promise<boolean>((resolve) => (this.reported = resolve));
    // Ready: all three connections are here, it said so from inside the sandbox, and the
    // zygote said which pid it has. A child can be faster than its zygote's report: without
    // its pid a run would have no watchdog, and its end could not be made sure by a kill.
    this.ready = Promise.race([
      Promise.all([connected, reported, this.forked]).then(([, ok]) => {
        if (!ok || !this.launched || execLocked(this.reportLog)) return ok;
        this.refused = true;
        this.kill();
        return false;
      }),
      exit.then(() => false),
    ]);
    void this.ready.then((ok) => (this.isReady = ok));
    this.ended = exit.then(async (e) => {
      // The zygote may tell of the exit before the runner has accepted the child's
      // connections (they carry the reason of a failure): give them a moment.
      await Promise.race([connected, new Promise((r) => setTimeout(r, 1000).unref())]);
      await Promise.all(
        this.sockets.map((s) => (s === undefined ? undefined : closedAfterExit(s))),
      );
      return this.refused ? { code: SETUP_FAILED, signal: null } : e;
    });
  }

  get hasExited(): boolean {
    return this.gone;
  }

  /** It never started (a failed fork, a bad command, its zygote gone before it was confined):
   * nothing will connect, and it ends now, saying WHY. */
  failed(why: string): void {
    this.reportLog.push(`sandbox-launcher: zygote: ${why}`);
    this.connected();
    this.exited({ code: SETUP_FAILED, signal: null });
  }

  /** Attaches connection STREAM (0: stdin and reports, 1: stdout, 2: stderr). */
  attach(stream: number, socket: net.Socket): boolean {
    if (!(stream >= 0 && stream <= 2) || this.sockets[stream] !== undefined) return false;
    this.sockets[stream] = socket;
    if (stream === 0)
      void watchReports(socket, this.reportLog, () => this.kill()).then(this.reported);
    if (this.sockets.every((s) => s !== undefined)) this.connected();
    return true;
  }

  streams(): Streams {
    const [control, stdout, stderr] = this.sockets as net.Socket[];
    return { stdin: control!, stdout: stdout!, stderr: stderr!, reports: control! };
  }

  get pid(): number | undefined {
    return this.knownPid;
  }

  /** The zygote forked it as PID. */
  set pid(pid: number | undefined) {
    this.knownPid = pid;
    this.markForked();
    if (this.killWanted) this.kill();
  }

  kill(): void {
    // Not once the zygote reaped it: its pid may belong to another process by then.
    if (this.gone) return;
    if (this.knownPid === undefined) {
      this.killWanted = true;
      return;
    }
    try {
      process.kill(this.knownPid, 'SIGKILL');
    } catch {
      // already gone
    }
    // Its end comes from the zygote; a zygote that does not tell must not hold the run for ever.
    if (this.exitDeadline === undefined) this.awaitExit(this.knownPid, 0);
  }

  /** At each deadline: a child the kernel is still taking apart (a teardown of minutes, say) is
   * waited for, up to EXIT_WAIT_MAX_MS, and its run may be answered meanwhile (`lingering`);
   * else the zygote is overdue. Ending the zygote would end every other run it forked, and
   * would not make this child's teardown any faster. */
  private awaitExit(pid: number, waitedMs: number): void {
    this.exitDeadline = setTimeout(() => {
      const waited = waitedMs + EXIT_DEADLINE_MS;
      void (async () => {
        const exiting = waited < EXIT_WAIT_MAX_MS && (await stillExiting(pid, this.parentPid));
        if (this.gone) return;
        if (!exiting) return this.exitOverdue(waited);
        this.exitSlow(pid, waited);
        this.markLingering();
        this.awaitExit(pid, waited);
      })();
    }, EXIT_DEADLINE_MS).unref();
  }
}

/**
 * The Python zygote (runner/bootstrap/zygote.py): a Python process that has pre-imported what
 * Dify's scripts use and forks one child per sandboxed process. It runs outside the sandbox,
 * with the runner's privileges, and never runs user code. Each child connects its stdin (also
 * its report channel), stdout and stderr back to the runner's socket, applies every layer
 * through libsandbox.so's sandbox_enter(), reports "ready", and only then reads user code.
 */
export class Zygote {
  private process?: ChildProcess;
  private server?: net.Server;
  private readonly socketPath: string;
  private readonly children = new Map<string, ZygoteChild>();
  /** Every connection of a child, so that stop() can close them (the server waits for them). */
  private readonly connections = new Set<net.Socket>();
  private alive = false;
  private stopping = false;
  /** Resolves when the zygote process has exited (or could not be started). */
  readonly exited: Promise<void>;
  private markExited!: () => void;

  constructor(
    private readonly runtime: Runtime,
    private log: Logger,
  ) {
    this.socketPath = path.join(runtime.runtimeDir, 'zygote.sock');
    this.exited = new Promise((resolve) => (this.markExited = resolve));
  }

  /** Its process id while it runs. */
  get pid(): number | undefined {
    return this.process?.pid;
  }

  get isAlive(): boolean {
    return this.alive;
  }

  /** The parent of every run it starts (0 before it started: then no run is sent to it). */
  private get zygotePid(): number {
    return this.process?.pid ?? 0;
  }

  /**
   * Starts the socket server and the zygote; resolves once the zygote said hello. On failure
   * `exited` resolves too (whatever was started is for stop() to end).
   */
  async start(): Promise<void> {
    try {
      await this.listen();
      await this.spawnZygote();
    } catch (err) {
      this.markExited();
      throw err;
    }
  }

  private async listen(): Promise<void> {
    await fs.rm(this.socketPath, { force: true });
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
    // Only the runner's user (and root) may connect.
    await fs.chmod(this.socketPath, 0o600);
  }

  private async spawnZygote(): Promise<void> {
    const { runtime } = this;
    const child = spawn(
      runtime.config.pythonPath,
      [
        '-I',
        '-B',
        '-X',
        'utf8',
        path.join(runtime.bootstrapDir, 'zygote.py'),
        this.socketPath,
        packagesDir(runtime.config).python,
      ],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { LD_PRELOAD: runtime.library, SANDBOX_ZYGOTE: '1', LANG: 'C.UTF-8' },
      },
    );
    this.process = child;
    // Every line about this zygote names it: one that ended and its successor are told apart.
    this.log = this.log.child({ zygotePid: child.pid });
    let stderr = '';
    let rest = '';
    let stderrRest = '';
    const said = (line: string) => {
      if (line.trim() !== '')
        this.log.warn({ line: line.slice(0, 2000) }, 'the Python zygote said');
    };
    const hello = new Promise<void>((resolve, reject) => {
      let isGone = false;
      const gone = (how: string) => {
        if (isGone) return; // 'error' and 'close' may both come
        isGone = true;
        this.alive = false;
        this.process = undefined;
        const why = stderr.trim().split('\n').at(-1) ?? '';
        if (!this.stopping)
          this.log.error({ how, stderr: stderr.trim() }, 'the Python zygote exited');
        reject(new Error(`the Python zygote exited (${how}): ${why}`));
        // Its children die with it (a parent-death SIGKILL): a run under way was killed; one
        // not yet confined never started.
        for (const c of this.children.values()) {
          if (c.hasExited) continue; // reaped and reported before the zygote went
          if (c.isReady) c.exited({ code: null, signal: 'SIGKILL' });
          else c.failed('the Python zygote exited');
        }
        this.children.clear();
        this.markExited();
      };
      // Before anything else: without descriptors for its pipes (EMFILE) spawn() returns no
      // streams and says why on 'error'. 'close' comes after its last reports were read.
      child.once('error', (err) => gone(err.message));
      child.once('close', (code, signal) => {
        said(stderrRest); // a last line without its newline
        gone(String(code ?? signal));
      });
      child.stdin?.on('error', () => undefined);
      // Decoded as a stream: a character split between two chunks stays whole.
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (text: string) => {
        stderr = (stderr + text).slice(-4000);
        // Said as it comes, not only if the zygote ends: why a child could not connect back
        // (native/zygote.c), a warm-up that failed. Only the zygote and its children before they
        // are confined write here (a child's stderr is its own connection from then on).
        const lines = (stderrRest + text).split('\n');
        stderrRest = (lines.pop() ?? '').slice(0, 2000);
        for (const line of lines) said(line);
      });
      child.stdout?.on('data', (chunk: Buffer) => {
        const lines = (rest + chunk.toString('utf8')).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) if (line !== '') this.onMessage(line, resolve);
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        child.kill('SIGKILL'); // not left running unused
        reject(new Error('the Python zygote did not start within 30 s'));
      }, ZYGOTE_START_MS).unref();
    });
    try {
      await Promise.race([hello, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A zygote that does not fork, or does not report a killed child's end, within its deadline
   * is stuck: it is ended (and the runner starts another). */
  private overdue(what: string): void {
    if (!this.alive) return;
    this.log.error(`the Python zygote did not ${what}: ending it`);
    this.process?.kill('SIGKILL');
  }

  private onMessage(line: string, hello: () => void): void {
    let msg: {
      hello?: boolean;
      forked?: string;
      pid?: number;
      exit?: string;
      code?: number;
      failed?: string;
      errno?: number;
    };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      this.log.warn({ line }, 'unreadable message from the Python zygote');
      return;
    }
    if (msg.hello === true) {
      this.alive = true;
      hello();
    } else if (msg.forked !== undefined) {
      const c = this.children.get(msg.forked);
      if (c !== undefined) c.pid = msg.pid;
    } else if (msg.failed !== undefined && typeof msg.errno === 'number') {
      // fork() failed for this child alone (the pod's pid limit, memory): the loop goes on.
      const c = this.children.get(msg.failed);
      if (c === undefined) return;
      this.children.delete(msg.failed);
      c.failed(`fork: ${errnoName(msg.errno)}`);
    } else if (msg.exit !== undefined && typeof msg.code === 'number') {
      const token = msg.exit;
      const c = this.children.get(token);
      if (c === undefined) return;
      // The fork loop's exit code (native/zygote.c): negative for a signal.
      c.exited(
        msg.code >= 0
          ? { code: msg.code, signal: null }
          : { code: null, signal: signalName(-msg.code) },
      );
      // Late connections of an exited child are still accepted (they carry its last words).
      void c.ended.then(() => this.children.delete(token));
    }
  }

  /** A connection from a child: "<token> <stream>\n", then the stream itself. */
  private accept(socket: net.Socket): void {
    this.connections.add(socket);
    socket.once('close', () => this.connections.delete(socket));
    socket.on('error', () => socket.destroy());
    let hello = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      hello = Buffer.concat([hello, chunk]);
      const nl = hello.indexOf(10);
      if (nl < 0) {
        if (hello.length > 100) socket.destroy();
        return;
      }
      socket.off('data', onData);
      socket.pause();
      const [token, stream] = hello.subarray(0, nl).toString('latin1').split(' ');
      const child = token === undefined ? undefined : this.children.get(token);
      if (child === undefined || !child.attach(Number(stream), socket)) {
        socket.destroy();
        return;
      }
      const rest = hello.subarray(nl + 1);
      if (rest.length > 0) socket.unshift(rest);
    };
    socket.on('data', onData);
  }

  /** A Python child, confined in-process by sandbox_enter() after the fork. */
  fork(id: SandboxIdentity): SandboxProcess {
    // The program's environment travels as the options' --env (sandbox.c builds it).
    const args = [...this.runtime.sandboxArgs(id), '--parent', String(this.zygotePid)];
    return this.send(id, ['enter', ...args]);
  }

  /** A child that executes the launcher (any language): cheaper than spawning from here. */
  launch(id: SandboxIdentity): SandboxProcess {
    return this.send(id, ['exec', ...launcherCommand(this.runtime, id, this.zygotePid)], true);
  }

  /** Sends a command of native/zygote.c's fork loop: fields separated by tabs, one a line. */
  private send(id: SandboxIdentity, fields: string[], launched = false): SandboxProcess {
    const token = randomBytes(16).toString('hex');
    // Killed, a child's end is reported by the zygote within moments (it reaps it at once).
    const child = new ZygoteChild(
      id,
      this.zygotePid,
      (waitedMs) => this.overdue(`report a killed child's end within ${waitedMs / 1000} s`),
      (pid, waitedMs) =>
        this.log.warn(
          { pid, waitedSeconds: waitedMs / 1000 },
          `a killed child is still exiting after ${waitedMs / 1000} s (the kernel is taking it apart): waiting for it, up to ${EXIT_WAIT_MAX_MS / 1000} s`,
        ),
      launched,
    );
    this.children.set(token, child);
    const line = [token, ...fields].join('\t');
    const fail = (why: string) => {
      this.children.delete(token);
      child.failed(why);
    };
    if (fields.some((f) => /[\t\n\0]/.test(f)))
      fail('a sandbox option or launcher argument holds a tab, a newline or a NUL');
    else if (Buffer.byteLength(line) >= ZYGOTE_LINE_MAX)
      fail(`the command is longer than ${ZYGOTE_LINE_MAX} bytes`);
    else if (!this.alive || this.process?.stdin?.write(`${line}\n`) === undefined)
      fail('the Python zygote is not running');
    else {
      const deadline = setTimeout(
        () => this.overdue(`fork within ${FORK_DEADLINE_MS / 1000} s`),
        FORK_DEADLINE_MS,
      ).unref();
      void Promise.race([child.forked, child.ended]).then(() => clearTimeout(deadline));
    }
    return child;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.alive = false;
    this.process?.stdin?.end();
    this.process?.kill('SIGTERM');
    const server = this.server;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.connections) socket.destroy();
    await closed;
  }
}
