// S8: dangerous kernel surface: io_uring, bpf, perf_event_open, userfaultfd, keyctl/add_key,
// mount, unshare, setns, kexec, module loading, ptrace. From Python through raw syscalls (the
// dangerous set kills the run); from Node.js, which has no raw syscalls, through the files and
// APIs that reach the same surface.
import type { Attack } from './types.js';
import { jsTry, pySyscall, pySyscallOrRaise } from './types.js';

const KILLED = { kind: 'killed' } as const;

// x86_64 numbers: the suite runs on x86_64 (the policies cover aarch64 too).
const DANGEROUS: Array<[string, number, string[]]> = [
  ['io_uring_setup', 425, ['8', '0']],
  ['bpf(BPF_PROG_LOAD)', 321, ['5', '0', '0']],
  ['perf_event_open', 298, ['0', '0', '-1', '-1', '0']],
  ['userfaultfd', 323, ['0']],
  ['keyctl', 250, ['0', '0']],
  ['add_key', 248, ['0', '0', '0', '0', '0']],
  ['mount of a tmpfs', 165, ['0', '0', '0', '0', '0']],
  ['setns', 308, ['0', '0']],
  ['kexec_load', 246, ['0', '0', '0', '0']],
  ['finit_module', 313, ['0', '0', '0']],
  ['open_by_handle_at (the "shocker" escape)', 304, ['0', '0', '0']],
  ['pivot_root', 155, ['0', '0']],
];

export const attacks: Attack[] = [
  ...DANGEROUS.map(([name, nr, args]) => ({
    name,
    language: 'python3' as const,
    code: pySyscall(nr, args),
    expect: { kind: 'killed', syscall: name.split(/[ (]/)[0] } as const,
  })),
  {
    name: 'a syscall of the i386 ABI (int 0x80) to slip past the x86_64 filter',
    language: 'python3',
    // mov eax, 20 (getpid on i386); int 0x80; ret
    code: 'import ctypes, mmap\nbuf = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\nbuf.write(bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3]))\naddr = ctypes.addressof(ctypes.c_char.from_buffer(buf))\nprint("ESCAPED", ctypes.CFUNCTYPE(ctypes.c_int)(addr)())',
    expect: KILLED,
  },
  // No filter of the program's own: SECCOMP_RET_LOG would write to the host's audit log for
  // each of its calls (only libsandbox.so adds one, before the program runs).
  {
    name: 'seccomp: adds a filter of its own',
    language: 'python3',
    code: pySyscallOrRaise(317, ['1', '0', '0']),
    expect: { kind: 'denied', syscall: 'seccomp' },
  },
  {
    name: 'seccomp: a filter with a user-notification listener (NEW_LISTENER)',
    language: 'python3',
    code: pySyscallOrRaise(317, ['1', '8', '0']),
    expect: { kind: 'denied', syscall: 'seccomp' },
  },
  // Node.js
  {
    name: 'writes /proc/sysrq-trigger',
    language: 'nodejs',
    code: jsTry("require('fs').writeFileSync('/proc/sysrq-trigger', 'h')"),
    expect: { kind: 'blocked' },
  },
  {
    name: 'reads the kernel log (/dev/kmsg)',
    language: 'nodejs',
    code: jsTry("console.log(require('fs').readFileSync('/dev/kmsg', 'utf8'))"),
    expect: { kind: 'blocked' },
  },
  {
    name: 'opens /dev/mem and /proc/kcore',
    language: 'nodejs',
    code: jsTry(
      "const fs = require('fs'); for (const f of ['/dev/mem', '/proc/kcore']) { try { fs.closeSync(fs.openSync(f, 'r')); console.log('ESCAPED', f) } catch {} } throw new Error('none opened')",
    ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'reads the bpf and security filesystems',
    language: 'nodejs',
    code: jsTry(
      "const fs = require('fs'); for (const d of ['/sys/fs/bpf', '/sys/kernel/security', '/sys/kernel/debug']) { try { console.log('ESCAPED', d, fs.readdirSync(d)) } catch {} } throw new Error('none listed')",
    ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'patches its own code through /proc/self/mem',
    language: 'nodejs',
    code: jsTry(
      "const fs = require('fs'); const fd = fs.openSync('/proc/self/mem', 'r+'); fs.writeSync(fd, Buffer.from([0xcc]), 0, 1, 0x400000)",
    ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'opens the inspector (a debugger port)',
    language: 'nodejs',
    code: jsTry(
      "const inspector = require('inspector'); inspector.open(0, '127.0.0.1'); if (!inspector.url()) throw new Error('no inspector')",
    ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'raises its own priority (setpriority)',
    language: 'nodejs',
    code: "require('os').setPriority(-20); console.log('ESCAPED')",
    expect: { kind: 'denied', syscall: 'setpriority' },
  },
  // A run may only lower its own priority to nice 19 (zygote.py does, once the run has ended).
  {
    name: 'raises its own priority (setpriority)',
    language: 'python3',
    code: 'import os\nos.setpriority(os.PRIO_PROCESS, 0, -5)\nprint("ESCAPED")',
    expect: { kind: 'denied', syscall: 'setpriority' },
  },
  {
    name: "lowers the runner's priority (setpriority of its parent)",
    language: 'python3',
    code: 'import os\nos.setpriority(os.PRIO_PROCESS, os.getppid(), 19)\nprint("ESCAPED")',
    expect: { kind: 'denied', syscall: 'setpriority' },
  },
  {
    name: "lowers the priority of every process of its uid (PRIO_USER: the runner's, without root)",
    language: 'python3',
    code: 'import os\nos.setpriority(os.PRIO_USER, 0, 19)\nprint("ESCAPED")',
    expect: { kind: 'denied', syscall: 'setpriority' },
  },
];
