// S6: signals, ptrace, process_vm_readv, or /proc into the runner or other executions.
import { expect } from 'vitest';
import type { Attack, Context } from './types.js';
import { jsTry, pySyscall, pyTry } from './types.js';

const NET_TABLE_PY = `import os, threading
escaped = []
def probe(paths):
    for p in paths:
        try:
            open(p, "rb").read()
            escaped.append(p)
        except OSError:
            pass
pid = os.getpid()
probe([f"/proc/self/net/{n}" for n in ("tcp", "tcp6", "udp", "unix", "packet")])
probe(["/proc/net/tcp", f"/proc/{pid}/net/unix", f"/proc/self/task/{pid}/net/tcp", "/proc/thread-self/net/tcp"])
def in_thread():
    tid = threading.get_native_id()
    probe([f"/proc/{tid}/net/tcp", f"/proc/self/task/{tid}/net/unix", "/proc/thread-self/net/unix"])
t = threading.Thread(target=in_thread)
t.start()
t.join()
print("ESCAPED", escaped) if escaped else print("BLOCKED")
`;

const NET_TABLE_JS = `const fs = require('fs');
const { Worker } = require('worker_threads');
const escaped = [];
const probe = (paths) => { for (const p of paths) { try { fs.readFileSync(p); escaped.push(p); } catch {} } };
probe(['tcp', 'tcp6', 'udp', 'unix'].map((n) => '/proc/self/net/' + n));
probe(['/proc/net/tcp', '/proc/' + process.pid + '/net/unix', '/proc/thread-self/net/tcp']);
let tids = [];
try { tids = fs.readdirSync('/proc/self/task'); } catch {}
probe(tids.flatMap((t) => ['/proc/self/task/' + t + '/net/tcp', '/proc/' + t + '/net/unix']));
const w = new Worker("const fs = require('fs'); const { parentPort } = require('worker_threads'); const out = []; for (const p of ['/proc/thread-self/net/tcp', '/proc/thread-self/net/unix']) { try { fs.readFileSync(p); out.push(p); } catch {} } parentPort.postMessage(out);", { eval: true });
w.on('message', (m) => { escaped.push(...m); });
w.on('exit', () => console.log(escaped.length > 0 ? 'ESCAPED ' + escaped.join(' ') : 'BLOCKED'));
`;

const KILL = { kind: 'denied', syscall: /^(kill|tgkill|tkill)$/ } as const;

/** The runner's CPU affinity is what it was: no run pinned it. */
async function runnerAffinityIntact(c: Context): Promise<void> {
  const status = await import('node:fs/promises').then((fs) =>
    fs.readFile(`/proc/${c.runnerPid}/status`, 'utf8'),
  );
  expect(status).toMatch(/Cpus_allowed_list:\s+\S+/);
  const allowed = /Cpus_allowed_list:\s+(\S+)/.exec(status)![1];
  const all = await import('node:fs/promises').then((fs) => fs.readFile('/proc/1/status', 'utf8'));
  expect(allowed).toBe(/Cpus_allowed_list:\s+(\S+)/.exec(all)![1]);
}

export const attacks: Attack[] = [
  // Python
  {
    // The pod's network namespace lists every socket in it: other runs' connections (their
    // addresses, ports and timing) and the pod's unix sockets. Through the process's own entry,
    // a thread's (task/TID, thread-self, /proc/TID), and /proc/net.
    name: "reads the pod's socket table through /proc/self/net and its threads' entries",
    language: 'python3',
    code: NET_TABLE_PY,
    expect: { kind: 'blocked' },
  },
  {
    name: 'SIGKILL to the runner',
    language: 'python3',
    code: (c) => `import os, signal\nos.kill(${c.runnerPid}, signal.SIGKILL)\nprint("ESCAPED")`,
    expect: KILL,
  },
  {
    name: 'SIGKILL to every process it may signal (kill -1)',
    language: 'python3',
    code: 'import os, signal\nos.kill(-1, signal.SIGKILL)\nprint("ESCAPED")',
    expect: KILL,
  },
  {
    name: 'tgkill and tkill to the runner',
    language: 'python3',
    code: (c) =>
      pyTry(
        `import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nif libc.syscall(234, ${c.runnerPid}, ${c.runnerPid}, 9) != 0 and libc.syscall(200, ${c.runnerPid}, 9) != 0:\n    raise OSError(ctypes.get_errno(), "refused")`,
      ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'ptrace attach to the runner',
    language: 'python3',
    code: (c) => pySyscall(101, ['16', String(c.runnerPid)]),
    expect: { kind: 'killed', syscall: 'ptrace' },
  },
  {
    name: "process_vm_readv of the runner's memory",
    language: 'python3',
    code: (c) => pySyscall(310, [String(c.runnerPid), '0', '0', '0', '0']),
    expect: { kind: 'killed', syscall: 'process_vm_readv' },
  },
  {
    name: "reads the runner's memory through /proc",
    language: 'python3',
    code: (c) =>
      pyTry(
        `maps = open("/proc/${c.runnerPid}/maps").read()\nprint(len(maps))\nopen("/proc/${c.runnerPid}/mem", "rb").read(16)`,
      ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'pins the runner to one CPU (sched_setaffinity)',
    language: 'python3',
    code: (c) => `import os\nos.sched_setaffinity(${c.runnerPid}, {0})\nprint("ESCAPED")`,
    expect: { kind: 'denied', syscall: 'sched_setaffinity' },
    after: runnerAffinityIntact,
  },
  {
    name: 'has the kernel send SIGIO to the runner (F_SETOWN)',
    language: 'python3',
    code: (c) =>
      `import fcntl, os\nr, w = os.pipe()\nfcntl.fcntl(r, fcntl.F_SETOWN, ${c.runnerPid})\nfcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC)\nos.write(w, b"x")\nprint("ESCAPED")`,
    expect: { kind: 'denied', syscall: 'fcntl' },
  },
  {
    name: "reads the runner's rlimits (prlimit)",
    language: 'python3',
    code: (c) =>
      `import resource\nprint(resource.prlimit(${c.runnerPid}, resource.RLIMIT_NOFILE))\nprint("ESCAPED")`,
    expect: { kind: 'denied', syscall: 'prlimit64' },
  },
  // Asked of another process, these tell whether it exists, when it starts and ends, and how
  // it is scheduled: the runner's, or another tenant's run.
  ...(
    [
      ['session (getsid)', 'os.getsid(PID)', 'getsid'],
      ['process group (getpgid)', 'os.getpgid(PID)', 'getpgid'],
      ['priority (getpriority)', 'os.getpriority(os.PRIO_PROCESS, PID)', 'getpriority'],
      ['scheduling priority (sched_getparam)', 'os.sched_getparam(PID)', 'sched_getparam'],
      [
        'scheduling policy (sched_getscheduler)',
        'os.sched_getscheduler(PID)',
        'sched_getscheduler',
      ],
    ] as const
  ).map(([what, call, syscall]): Attack => ({
    name: `learns the runner's ${what}`,
    language: 'python3',
    code: (c) => `import os\nprint(${call.replace('PID', String(c.runnerPid))})\nprint("ESCAPED")`,
    expect: { kind: 'denied', syscall },
  })),
  {
    // Answered "not implemented" (see libsandbox.c), for any other id alike.
    name: "learns the runner's CPU affinity (sched_getaffinity)",
    language: 'python3',
    code: (c) => pyTry(`import os\nprint(os.sched_getaffinity(${c.runnerPid}))`),
    expect: { kind: 'blocked' },
  },
  // Node.js
  {
    name: "learns the runner's priority (os.getPriority)",
    language: 'nodejs',
    code: (c) => `console.log(require('os').getPriority(${c.runnerPid})); console.log('ESCAPED')`,
    expect: { kind: 'denied', syscall: 'getpriority' },
  },
  {
    name: 'SIGKILL to the runner',
    language: 'nodejs',
    code: (c) => `process.kill(${c.runnerPid}, 'SIGKILL'); console.log('ESCAPED')`,
    expect: KILL,
  },
  {
    name: 'SIGTERM to its parent',
    language: 'nodejs',
    code: "process.kill(process.ppid, 'SIGTERM'); console.log('ESCAPED')",
    expect: KILL,
  },
  {
    name: 'SIGKILL to every process it may signal (kill -1)',
    language: 'nodejs',
    code: "process.kill(-1, 'SIGKILL'); console.log('ESCAPED')",
    expect: KILL,
  },
  {
    name: 'SIGKILL to its process group',
    language: 'nodejs',
    code: "process.kill(0, 'SIGKILL'); console.log('ESCAPED')",
    expect: KILL,
  },
  {
    name: "reads the runner's memory map and command line",
    language: 'nodejs',
    code: (c) =>
      jsTry(
        `const fs = require('fs'); console.log(fs.readFileSync('/proc/${c.runnerPid}/maps', 'utf8').length, fs.readFileSync('/proc/${c.runnerPid}/cmdline', 'utf8'))`,
      ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'lists every process in /proc',
    language: 'nodejs',
    code: jsTry(
      "const pids = require('fs').readdirSync('/proc').filter((n) => /^\\d+$/.test(n)); if (pids.length <= 1) throw new Error('only itself: ' + pids); console.log(pids)",
    ),
    expect: { kind: 'blocked' },
  },
  {
    name: "reads the pod's socket table through /proc/self/net and its threads' entries",
    language: 'nodejs',
    code: NET_TABLE_JS,
    expect: { kind: 'blocked' },
  },
];
