// The attack table's vocabulary: every family module (s01-...ts) exports a list of Attack, and
// one runner (suite.ts) plays them against a real runner in each mode.
import type { RunData, RunnerMode } from '../../support/runner.js';

export type Language = 'python3' | 'nodejs';

/** What an attack program may know: everything an attacker who read the source would. */
export interface Context {
  mode: RunnerMode;
  /** The runner's process id. */
  runnerPid: number;
  /** The runner's port on 127.0.0.1. */
  runnerPort: number;
  /** The runner's SANDBOX_WORK_DIR (runtime/ and runs/ beneath it). */
  workDir: string;
  /** The repository the runner runs from (its code and config). */
  repoRoot: string;
  /** A world-readable file outside every allowlist, holding `secret`. */
  canaryFile: string;
  /** A world-writable directory outside every allowlist, holding canaryFile. */
  canaryDir: string;
  /** Set in the runner's environment and written to canaryFile: must never come out. */
  secret: string;
  /** The API key: must never come out either. */
  apiKey: string;
  /** A loopback HTTP server of the test, answering "pong" (for network attacks and controls). */
  echoPort: number;
}

export type Expectation =
  /** The program prints BLOCKED (it caught the failure itself) and never ESCAPED. */
  | { kind: 'blocked' }
  /** The program fails on a refused syscall and the answer names it. */
  | { kind: 'denied'; syscall: string | RegExp }
  /** The dangerous set: the process is killed (and the answer names the call, when given). */
  | { kind: 'killed'; syscall?: string }
  /** The run ends with a limit error matching `error`. */
  | { kind: 'limit'; error: RegExp }
  /** The run fails (non-zero exit) with `error` matching. */
  | { kind: 'fails'; error: RegExp };

export interface ProgramAttack {
  name: string;
  language: Language;
  code: string | ((ctx: Context) => string);
  preload?: string | ((ctx: Context) => string);
  /** Ask for network (the suite's runners allow it); off by default. */
  network?: boolean;
  /** Other request fields, e.g. ones the runner must ignore. */
  extra?: Record<string, unknown>;
  /** What must happen; a function when the two modes differ. */
  expect: Expectation | ((mode: RunnerMode) => Expectation);
  /** Checks after the answer, in the test process (files left, processes alive, ...). */
  after?: (ctx: Context, data: RunData) => void | Promise<void>;
}

/** An attack on the HTTP surface itself (S12): a raw request, judged by its answer. */
export interface HttpAttack {
  name: string;
  language: Language;
  http: (ctx: Context) => Promise<{ status: number; body: string }>;
  /** Accepted HTTP statuses, and the envelope code when the body must be one. */
  status: number[];
  code?: number;
}

export type Attack = ProgramAttack | HttpAttack;

export const isHttp = (a: Attack): a is HttpAttack => 'http' in a;

/** Python: run ATTEMPT (indented block), print ESCAPED if it completes, BLOCKED if it raises. */
export function pyTry(attempt: string, escaped = '"ESCAPED"'): string {
  const body = attempt
    .trim()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
  return `try:\n${body}\n    print(${escaped})\nexcept BaseException as e:\n    print("BLOCKED", type(e).__name__, e)\n`;
}

/** Node.js: run ATTEMPT (may await), print ESCAPED if it completes, BLOCKED if it throws. */
export function jsTry(attempt: string, escaped = "'ESCAPED'"): string {
  return `(async () => {\n  try {\n    ${attempt.trim()}\n    console.log(${escaped});\n  } catch (e) {\n    console.log('BLOCKED', e && (e.code || e.message));\n  }\n})();\n`;
}

/** Python: a raw syscall through libc that raises the errno when refused (so it is named). */
export function pySyscallOrRaise(nr: number, args: string[] = []): string {
  const a = [...args, '0', '0', '0', '0', '0'].slice(0, 5).join(', ');
  return `import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\nr = libc.syscall(${nr}, ${a})\nif r == 0:\n    os._exit(0)\nif r < 0:\n    raise OSError(ctypes.get_errno(), "refused")\nprint("ESCAPED")\n`;
}

/** Python: a raw syscall through libc, printing ESCAPED if the kernel ran it. */
export function pySyscall(nr: number, args: string[] = []): string {
  const a = [...args, '0', '0', '0', '0', '0'].slice(0, 5).join(', ');
  return `import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\nr = libc.syscall(${nr}, ${a})\nprint("ESCAPED" if r >= 0 else f"BLOCKED errno {ctypes.get_errno()}")\n`;
}
