// S4: fork or clone new processes or namespaces (threads are allowed).
import type { Attack } from './types.js';
import { jsTry, pySyscall, pySyscallOrRaise } from './types.js';

const START = /^(clone|clone3|fork|vfork)$/;

// clone(flags) through libc's syscall(): the child, if any, exits at once.
const pyClone = (flags: string) =>
  `import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\nr = libc.syscall(56, ${flags}, 0, 0, 0, 0)\nif r == 0:\n    os._exit(0)\nraise OSError(ctypes.get_errno(), "clone")\n`;

export const attacks: Attack[] = [
  // A descriptor table per thread: each its own RLIMIT_NOFILE, and files the watchdog (which
  // reads one table) does not see.
  {
    name: 'close_range(CLOSE_RANGE_UNSHARE): a thread with a descriptor table of its own',
    language: 'python3',
    code: pySyscallOrRaise(436, ['1000', '1001', '2']),
    expect: { kind: 'denied', syscall: 'close_range' },
  },
  // Python
  {
    name: 'os.fork',
    language: 'python3',
    code: 'import os\nif os.fork() == 0:\n    os._exit(0)\nprint("ESCAPED")',
    expect: { kind: 'denied', syscall: START },
  },
  {
    name: 'raw fork syscall',
    language: 'python3',
    code: pySyscallOrRaise(57),
    expect: { kind: 'denied', syscall: 'fork' },
  },
  {
    name: 'raw clone of a process (SIGCHLD, no CLONE_THREAD)',
    language: 'python3',
    code: pyClone('17'),
    expect: { kind: 'denied', syscall: 'clone' },
  },
  {
    // A descriptor table of its own would hide what the thread holds from the watchdog.
    name: 'raw clone of a thread without CLONE_FILES',
    language: 'python3',
    code: pyClone('0x100 | 0x200 | 0x800 | 0x10000 | 0x40000'),
    expect: { kind: 'denied', syscall: 'clone' },
  },
  {
    name: 'clone with CLONE_THREAD and CLONE_NEWUSER',
    language: 'python3',
    code: pyClone('0x10000 | 0x10000000 | 0x800 | 0x100'),
    expect: { kind: 'denied', syscall: 'clone' },
  },
  {
    name: "clone3 (its flags are out of the filter's sight)",
    language: 'python3',
    code: pySyscall(435, ['0', '0']),
    expect: { kind: 'blocked' },
  },
  {
    name: 'vfork through libc',
    language: 'python3',
    code: 'import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nif libc.vfork() == 0:\n    os._exit(0)\nraise OSError(ctypes.get_errno(), "vfork")',
    expect: { kind: 'denied', syscall: START },
  },
  {
    name: 'multiprocessing.Process',
    language: 'python3',
    code: 'import multiprocessing\np = multiprocessing.Process(target=print, args=("child",))\np.start()\np.join()\nprint("ESCAPED", p.exitcode)',
    expect: { kind: 'fails', error: /operation not permitted|Error/ },
  },
  {
    name: 'unshare a user namespace',
    language: 'python3',
    code: pySyscall(272, ['0x10000000']),
    expect: { kind: 'killed', syscall: 'unshare' },
  },
  // Node.js
  {
    name: 'child_process.fork',
    language: 'nodejs',
    code: "require('child_process').fork('/dev/null').on('error', (e) => { throw e })",
    expect: { kind: 'denied', syscall: START },
  },
  {
    name: 'cluster.fork',
    language: 'nodejs',
    code: "const cluster = require('cluster'); const w = cluster.fork(); w.on('error', (e) => { throw e }); w.process.on('error', (e) => { throw e })",
    expect: { kind: 'denied', syscall: START },
  },
  {
    name: 'child_process.exec with detached process group',
    language: 'nodejs',
    code: "const c = require('child_process').spawn('/bin/sh', ['-c', 'sleep 100'], { detached: true, stdio: 'ignore' }); c.on('error', (e) => { throw e }); c.unref()",
    expect: { kind: 'denied', syscall: START },
  },
  {
    name: 'spawns a shell through execSync with a shell option',
    language: 'nodejs',
    code: "require('child_process').execSync('echo ESCAPED', { shell: '/bin/bash', stdio: 'inherit' })",
    expect: { kind: 'denied', syscall: START },
  },
  {
    name: 'worker thread that tries to fork',
    language: 'nodejs',
    code: jsTry(
      "const { Worker } = require('worker_threads'); await new Promise((resolve, reject) => { const w = new Worker(\"require('child_process').execSync('id')\", { eval: true }); w.on('error', reject); w.on('exit', (c) => (c === 0 ? resolve() : reject(new Error('exit ' + c)))) })",
    ),
    expect: { kind: 'blocked' },
  },
];
