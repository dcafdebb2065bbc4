// S3: start programs: subprocess, os.system, os.exec*, child_process.*, process.dlopen of an
// arbitrary .so, ctypes calls into libc's system().
import type { Attack } from './types.js';
import { jsTry } from './types.js';

const START = /^(clone|clone3|fork|vfork|execve|execveat)$/;
const PROC = { kind: 'denied', syscall: START } as const;

export const attacks: Attack[] = [
  // Python
  {
    name: 'subprocess.run',
    language: 'python3',
    code: 'import subprocess\nprint(subprocess.run(["id"], capture_output=True).stdout)',
    expect: PROC,
  },
  {
    name: 'os.system',
    language: 'python3',
    code: 'import os\nif os.system("id > /dev/null") != 0:\n    raise PermissionError(1, "system refused")\nprint("ESCAPED")',
    expect: PROC,
  },
  {
    name: 'os.execv of a host binary',
    language: 'python3',
    code: 'import os\nos.execv("/usr/bin/id", ["id"])',
    expect: { kind: 'denied', syscall: 'execve' },
  },
  {
    name: 'os.posix_spawn',
    language: 'python3',
    code: 'import os\nos.posix_spawn("/usr/bin/id", ["id"], {})',
    expect: PROC,
  },
  {
    name: "ctypes: libc's system()",
    language: 'python3',
    code: 'import ctypes\nif ctypes.CDLL(None).system(b"id") != 0:\n    raise PermissionError(1, "system refused")\nprint("ESCAPED")',
    expect: PROC,
  },
  {
    name: 'ctypes: raw execve syscall',
    language: 'python3',
    code: 'import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nargv = (ctypes.c_char_p * 2)(b"/usr/bin/id", None)\nr = libc.syscall(59, b"/usr/bin/id", argv, None)\nraise OSError(ctypes.get_errno(), "execve")',
    expect: { kind: 'denied', syscall: 'execve' },
  },
  // The launcher's filter lets execveat through on the interpreter's descriptor (1000) only,
  // but an absolute path makes the kernel ignore the descriptor: the dynamic loader (which
  // Landlock lets be executed) would then run any readable program.
  {
    name: "ctypes: execveat of the dynamic loader with the interpreter's descriptor number",
    language: 'python3',
    code: [
      'import ctypes, os',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'nr = {"x86_64": 322, "aarch64": 281}[os.uname().machine]',
      'loader = next(p for p in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1") if os.path.exists(p))',
      'argv = (ctypes.c_char_p * 4)(loader.encode(), b"/usr/bin/echo", b"ESCAPED", None)',
      'libc.syscall(nr, 1000, loader.encode(), argv, None, 0x1000)  # AT_EMPTY_PATH',
      'raise OSError(ctypes.get_errno(), "execveat")',
    ].join('\n'),
    expect: { kind: 'denied', syscall: 'execveat' },
  },
  {
    name: 'os.popen',
    language: 'python3',
    code: 'import os\nprint(os.popen("id").read() or "")\nraise PermissionError(1, "nothing ran")',
    expect: PROC,
  },
  {
    name: 'execs a copy of itself written to its directory',
    language: 'python3',
    code: 'import os, shutil\nshutil.copyfile("/usr/bin/true", "t")\nos.execv("./t", ["t"])',
    expect: { kind: 'denied', syscall: 'execve' },
  },
  // Node.js
  {
    name: 'child_process.execSync',
    language: 'nodejs',
    code: "require('child_process').execSync('id')",
    expect: PROC,
  },
  {
    name: 'child_process.spawnSync',
    language: 'nodejs',
    code: "const r = require('child_process').spawnSync('/usr/bin/id'); if (r.error) throw r.error; console.log('ESCAPED', String(r.stdout))",
    expect: PROC,
  },
  {
    name: 'child_process.execFile (async)',
    language: 'nodejs',
    code: "require('child_process').execFile('/usr/bin/id', (err, out) => { if (err) throw err; console.log('ESCAPED', out) })",
    expect: PROC,
  },
  {
    name: 'child_process.spawn of node itself',
    language: 'nodejs',
    code: "const c = require('child_process').spawn(process.execPath, ['-e', 'console.log(1)']); c.on('error', (e) => { throw e }); c.stdout.on('data', () => console.log('ESCAPED'))",
    expect: PROC,
  },
  {
    name: 'process.dlopen of a shared object',
    language: 'nodejs',
    code: jsTry(
      "const m = { exports: {} }; process.dlopen(m, '/usr/lib/x86_64-linux-gnu/libc.so.6')",
    ),
    expect: { kind: 'blocked' },
  },
  {
    name: "process.binding('spawn_sync') directly",
    language: 'nodejs',
    code: jsTry(
      "const r = process.binding('spawn_sync').spawn({ file: '/usr/bin/id', args: ['id'], envPairs: [], stdio: [{ type: 'pipe', readable: true }, { type: 'pipe', writable: true }, { type: 'pipe', writable: true }] }); if (!(r.pid > 0 && r.status === 0)) throw new Error('spawn failed: ' + r.error)",
    ),
    expect: { kind: 'blocked' },
  },
];
