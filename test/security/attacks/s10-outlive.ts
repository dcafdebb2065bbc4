// S10: outlive the run: daemon threads, background tasks, orphaned children. Each program says
// "PID <pid> CWD <dir>" first; once the answer is in, that process can run no more code (it is
// gone, or killed: the kernel may still be taking it apart), its directory is gone, and soon
// the process too.
import { existsSync } from 'node:fs';
import { expect } from 'vitest';
import { processState, waitGone } from '../../support/processes.js';
import type { RunData } from '../../support/runner.js';
import type { Attack, Context } from './types.js';

async function goneAfterwards(_c: Context, data: RunData): Promise<void> {
  const m = /PID (\d+) CWD (\S+)/.exec(data.stdout);
  expect(m, `no PID line in ${JSON.stringify(data)}`).not.toBeNull();
  const pid = m![1]!;
  // A process killed just before the answer can be read between taking SIGKILL off its pending
  // set and marking itself exiting: microseconds, unless the CPU is taken from it right then. A
  // second look a little later tells that from a process nobody killed (it would still run).
  let state = processState(pid);
  if (state === 'alive') {
    await new Promise((r) => setTimeout(r, 50));
    state = processState(pid);
  }
  expect(state, `process ${pid} still runs`).not.toBe('alive');
  expect(existsSync(m![2]!), `${m![2]} still exists`).toBe(false);
  expect(await waitGone(pid), `process ${pid} not gone 5 s after the answer`).toBe(true);
}

const PY =
  'import os, sys, threading, time\nprint("PID", os.getpid(), "CWD", os.getcwd(), flush=True)\n';
const JS = "console.log('PID', process.pid, 'CWD', process.cwd());\nconst fs = require('fs');\n";
const ended = {
  kind: 'fails',
  error: /^(error: (timeout|cpu time limit exceeded)|process exited)/,
} as const;
const done = { kind: 'blocked' } as const;

export const attacks: Attack[] = [
  // Python
  {
    name: 'a daemon thread writing after main returns',
    language: 'python3',
    code: `${PY}def keep():\n    while True:\n        open("still-here", "a").write("x")\n        time.sleep(0.01)\nthreading.Thread(target=keep, daemon=True).start()\nprint("BLOCKED")`,
    expect: done,
    after: goneAfterwards,
  },
  {
    name: 'a non-daemon thread, then os._exit',
    language: 'python3',
    code: `${PY}threading.Thread(target=time.sleep, args=(3600,)).start()\nprint("BLOCKED", flush=True)\nos._exit(0)`,
    expect: done,
    after: goneAfterwards,
  },
  {
    name: 'an atexit handler that never returns',
    language: 'python3',
    code: `${PY}import atexit\natexit.register(lambda: time.sleep(3600))\nprint("BLOCKED", flush=True)`,
    expect: { kind: 'limit', error: /^error: timeout/ },
    after: goneAfterwards,
  },
  {
    name: 'ignores SIGTERM and SIGINT and spins',
    language: 'python3',
    code: `${PY}import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)`,
    expect: { kind: 'limit', error: /^error: timeout/ },
    after: goneAfterwards,
  },
  {
    name: 'daemonizes (double fork, setsid)',
    language: 'python3',
    code: `${PY}if os.fork() == 0:\n    os.setsid()\n    time.sleep(3600)\nprint("ESCAPED")`,
    expect: { kind: 'denied', syscall: /^(clone|fork)$/ },
    after: goneAfterwards,
  },
  {
    name: 'a timer thread set far in the future',
    language: 'python3',
    code: `${PY}t = threading.Timer(3600, print, args=("late",))\nt.daemon = True\nt.start()\nprint("BLOCKED")`,
    expect: done,
    after: goneAfterwards,
  },
  {
    name: 'fakes the end of the run (an exit report, streams closed) and keeps running',
    language: 'python3',
    code: `${PY}print("BLOCKED", flush=True)\nos.write(3, b"exit 0\\n")\nos.closerange(0, 4)\nwhile True:\n    time.sleep(0.01)`,
    expect: done,
    after: goneAfterwards,
  },
  // Node.js
  {
    name: 'fakes the end of the run (an exit report, streams closed) and keeps running',
    language: 'nodejs',
    code: `${JS}console.log('BLOCKED'); fs.writeSync(3, 'exit 0\\n'); for (const fd of [0, 1, 2, 3]) fs.closeSync(fd); setInterval(() => {}, 10)`,
    expect: done,
    after: goneAfterwards,
  },
  {
    name: 'an interval, then process.exit',
    language: 'nodejs',
    code: `${JS}setInterval(() => fs.appendFileSync('still-here', 'x'), 5); console.log('BLOCKED'); setTimeout(() => process.exit(0), 50)`,
    expect: done,
    after: goneAfterwards,
  },
  {
    name: 'a worker thread spinning after main exits',
    language: 'nodejs',
    code: `${JS}const { Worker } = require('worker_threads'); new Worker('for (;;) {}', { eval: true }); console.log('BLOCKED'); setTimeout(() => process.exit(0), 100)`,
    expect: done,
    after: goneAfterwards,
  },
  {
    name: "an 'exit' handler that spins",
    language: 'nodejs',
    code: `${JS}process.on('exit', () => { for (;;) {} }); console.log('BLOCKED')`,
    expect: ended,
    after: goneAfterwards,
  },
  {
    name: 'ignores SIGTERM and keeps the loop alive',
    language: 'nodejs',
    code: `${JS}process.on('SIGTERM', () => {}); process.on('SIGINT', () => {}); setInterval(() => {}, 1000)`,
    expect: { kind: 'limit', error: /^error: timeout/ },
    after: goneAfterwards,
  },
  {
    name: 'a detached child left behind',
    language: 'nodejs',
    code: `${JS}const c = require('child_process').spawn('/bin/sleep', ['3600'], { detached: true, stdio: 'ignore' }); c.on('error', (e) => { throw e }); c.unref()`,
    expect: { kind: 'denied', syscall: /^(clone|clone3|fork|vfork)$/ },
    after: goneAfterwards,
  },
  {
    name: 'a promise chain that never settles',
    language: 'nodejs',
    code: `${JS}const forever = () => new Promise((r) => setTimeout(r, 10)).then(forever); forever(); console.log('BLOCKED'); setTimeout(() => process.exit(0), 50)`,
    expect: done,
    after: goneAfterwards,
  },
];
