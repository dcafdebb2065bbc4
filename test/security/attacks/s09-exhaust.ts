// S9: exhaust: CPU loop, memory bomb, thread bomb, fd exhaustion, huge stdout/stderr, deep
// recursion. Each ends with a clear limit error; the suite checks after each one that the runner
// still serves a normal run.
import type { Attack } from './types.js';

const limit = (error: RegExp) => ({ kind: 'limit', error }) as const;
const CPU = limit(/^error: cpu time limit exceeded \(\d+ s\)\n/);
const MEMORY = limit(/^error: memory limit exceeded \(\d+ MiB\)\n/);
const THREADS = limit(
  /^error: (thread limit exceeded \(\d+\)|memory limit exceeded|open file limit exceeded)/,
);
const FILES = limit(/^error: open file limit exceeded \(\d+\)\n/);
const OUTPUT = limit(/^error: output limit exceeded\n/);
const TIMEOUT = limit(/^error: (timeout|cpu time limit exceeded)/);

export const attacks: Attack[] = [
  {
    // A megabyte of kernel memory per pipe, outside RLIMIT_DATA; without root all runs share
    // one pipe quota (their uid's), and another run's pipes then stay at a page each.
    name: 'grows pipe buffers to a megabyte each (F_SETPIPE_SZ)',
    language: 'python3',
    code: 'import fcntl, os\npipes = [os.pipe() for _ in range(20)]\nfor r, w in pipes:\n    fcntl.fcntl(w, 1031, 1 << 20)\nprint("ESCAPED")',
    expect: { kind: 'denied', syscall: 'fcntl' },
  },
  // Python
  { name: 'CPU loop', language: 'python3', code: 'while True:\n    pass', expect: CPU },
  {
    name: 'CPU loop on four threads, ignoring SIGXCPU',
    language: 'python3',
    code: 'import signal, threading\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\ndef spin():\n    while True:\n        pass\nfor _ in range(4):\n    threading.Thread(target=spin, daemon=True).start()\nspin()',
    // On a loaded machine five threads may not gather the CPU seconds before the wall clock runs
    // out: either limit ends it.
    expect: TIMEOUT,
  },
  {
    name: 'memory bomb',
    language: 'python3',
    code: 'x = []\nwhile True:\n    x.append(bytearray(1 << 20))',
    expect: MEMORY,
  },
  {
    name: 'memory bomb in one allocation',
    language: 'python3',
    code: 'x = bytearray(8 << 30)\nprint("ESCAPED")',
    expect: MEMORY,
  },
  {
    name: 'shared anonymous memory, which RLIMIT_DATA does not count',
    language: 'python3',
    code: 'import mmap\nm = mmap.mmap(-1, 4 << 30)\nfor i in range(0, len(m), 4096):\n    m[i] = 1\nprint("ESCAPED")',
    expect: { kind: 'denied', syscall: 'mmap' },
  },
  {
    name: 'a memfd mapped shared, then closed, over and over',
    language: 'python3',
    code: 'import mmap, os\nmaps = []\nwhile True:\n    fd = os.memfd_create("x")\n    os.ftruncate(fd, 4 << 20)\n    maps.append(mmap.mmap(fd, 4 << 20))\n    os.close(fd)',
    expect: { kind: 'denied', syscall: 'memfd_create' },
  },
  {
    name: 'thread bomb',
    language: 'python3',
    code: 'import threading, time\nthreading.stack_size(65536)\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()',
    expect: THREADS,
  },
  {
    name: 'descriptor exhaustion',
    language: 'python3',
    code: 'fds = []\nwhile True:\n    fds.append(open("/dev/null"))',
    expect: FILES,
  },
  {
    name: 'huge stdout',
    language: 'python3',
    code: 'import sys\nwhile True:\n    sys.stdout.write("x" * 65536)',
    expect: OUTPUT,
  },
  {
    name: 'huge stderr',
    language: 'python3',
    code: 'import os\nwhile True:\n    os.write(2, b"e" * 65536)',
    expect: OUTPUT,
  },
  {
    name: 'deep recursion',
    language: 'python3',
    code: 'def f(n):\n    return f(n + 1) + 1\nf(0)',
    expect: { kind: 'fails', error: /RecursionError/ },
  },
  {
    name: 'sleeps past the wall-clock limit',
    language: 'python3',
    code: 'import time\ntime.sleep(3600)',
    expect: limit(/^error: timeout\n/),
  },
  {
    name: 'makes the OOM killer pick the runner instead of itself',
    language: 'python3',
    code: 'score = open("/proc/self/oom_score_adj").read().strip()\nif score != "1000":\n    print("ESCAPED score", score)\nopen("/proc/self/oom_score_adj", "w").write("-1000")\nprint("ESCAPED lowered")',
    expect: { kind: 'fails', error: /Permission|Read-only/ },
  },
  // Memory RLIMIT_DATA does not count: page tables of read-only mappings (4 KiB per 2 MiB
  // touched, charged to the pod), and page cache pinned with mlock.
  {
    name: 'page tables of a huge read-only mapping',
    language: 'python3',
    code: [
      'import mmap',
      'try:',
      '    m = mmap.mmap(-1, 64 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000, prot=mmap.PROT_READ)',
      'except OSError as e:',
      '    print("BLOCKED", e.errno)',
      'else:',
      '    for off in range(0, 1 << 30, 2 << 20): m[off]',
      '    print("ESCAPED", [l for l in open("/proc/self/status") if l.startswith("VmPTE")])',
    ].join('\n'),
    expect: { kind: 'blocked' },
  },
  {
    name: 'page tables of many small read-only mappings far apart',
    language: 'python3',
    code: [
      'import ctypes',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'libc.mmap.restype = ctypes.c_void_p',
      'libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]',
      'for i in range(65000):',
      '    a = libc.mmap(0x100000000000 + (i << 30), 4096, 1, 0x22 | 0x100000, -1, 0)  # PROT_READ; PRIVATE, ANONYMOUS, FIXED_NOREPLACE',
      '    if a is None or a > (1 << 63): break',
      '    ctypes.c_char.from_address(a).value  # a read: the zero page, and its page tables',
      "import time; time.sleep(0.5)  # held past the watchdog's period (100 ms) on any machine",
      'pte = int([l for l in open("/proc/self/status") if l.startswith("VmPTE")][0].split()[1])',
      'print("ESCAPED" if pte > 64 << 10 else "BLOCKED", pte, "kB")',
    ].join('\n'),
    expect: { kind: 'limit', error: /^error: memory limit exceeded/ },
  },
  {
    name: "mlock of a file's pages",
    language: 'python3',
    code: [
      'import ctypes, os, sys',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'libc.mmap.restype = ctypes.c_void_p',
      'libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]',
      'fd = os.open(os.path.realpath(sys.executable), os.O_RDONLY)',
      'size = min(os.fstat(fd).st_size, 4 << 20)',
      'addr = libc.mmap(None, size, 1, 2, fd, 0)  # PROT_READ, MAP_PRIVATE',
      'r = libc.mlock(ctypes.c_void_p(addr), ctypes.c_size_t(size))',
      'print("ESCAPED" if r == 0 else f"BLOCKED errno {ctypes.get_errno()}")',
    ].join('\n'),
    expect: { kind: 'blocked' },
  },
  // Node.js
  { name: 'CPU loop', language: 'nodejs', code: 'for (;;) {}', expect: CPU },
  {
    name: 'heap bomb',
    language: 'nodejs',
    code: 'const a = []; for (;;) a.push(new Array(1e5).fill(Math.random()))',
    expect: limit(/^error: (memory limit exceeded|cpu time limit exceeded)/),
  },
  {
    name: 'ArrayBuffer bomb (outside the V8 heap)',
    language: 'nodejs',
    code: 'const a = []; for (;;) a.push(Buffer.alloc(16 << 20, 1))',
    expect: MEMORY,
  },
  {
    name: 'worker thread bomb',
    language: 'nodejs',
    code: "const { Worker } = require('worker_threads'); for (;;) new Worker('setInterval(() => {}, 1000)', { eval: true, resourceLimits: { maxOldGenerationSizeMb: 4 } })",
    expect: THREADS,
  },
  {
    name: 'descriptor exhaustion',
    language: 'nodejs',
    code: "const fs = require('fs'); for (;;) fs.openSync('/dev/null', 'r')",
    expect: FILES,
  },
  {
    name: 'huge stdout',
    language: 'nodejs',
    code: "const s = 'x'.repeat(65536); for (;;) require('fs').writeSync(1, s)",
    expect: OUTPUT,
  },
  {
    name: 'huge stderr',
    language: 'nodejs',
    code: "const s = 'e'.repeat(65536); for (;;) require('fs').writeSync(2, s)",
    expect: OUTPUT,
  },
  {
    name: 'deep recursion',
    language: 'nodejs',
    code: 'function f(n) { return f(n + 1) + 1 } f(0)',
    expect: { kind: 'fails', error: /Maximum call stack size exceeded/ },
  },
  {
    name: 'keeps the event loop alive forever',
    language: 'nodejs',
    code: 'setInterval(() => {}, 1000)',
    expect: TIMEOUT,
  },
  {
    name: 'makes the OOM killer pick the runner instead of itself',
    language: 'nodejs',
    code: "const fs = require('fs'); const s = fs.readFileSync('/proc/self/oom_score_adj', 'utf8').trim(); if (s !== '1000') console.log('ESCAPED score', s); fs.writeFileSync('/proc/self/oom_score_adj', '-1000'); console.log('ESCAPED lowered')",
    expect: { kind: 'fails', error: /EACCES|EROFS|EPERM/ },
  },
  // The report descriptor (3) is the program's once it runs: what it writes there is bounded
  // (the runner reads every byte of it) ...
  ...(['python3', 'nodejs'] as const).map((language): Attack => ({
    name: 'floods the report descriptor',
    language,
    code:
      language === 'python3'
        ? 'import os\nbuf = b"\\n" * 65536\nwhile True:\n    os.write(3, buf)'
        : 'const fs = require("fs"); const b = Buffer.alloc(65536, 10); for (;;) fs.writeSync(3, b)',
    expect: OUTPUT,
  })),
  // ... and must not pass for the launcher's words (a setup failure takes the runner out of
  // service).
  ...(['python3', 'nodejs'] as const).map((language): Attack => ({
    name: 'forges a sandbox setup failure on the report descriptor',
    language,
    code:
      language === 'python3'
        ? 'import os\nos.write(3, b"sandbox-launcher: forged\\n")\nos._exit(125)'
        : 'require("fs").writeSync(3, "sandbox-launcher: forged\\n"); process.exit(125)',
    expect: { kind: 'fails', error: /^process exited with code 125\n/ },
  })),
];
