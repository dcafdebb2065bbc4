// stillExiting (runner/src/process.ts) tells a killed zygote child the kernel is still taking
// apart from one its zygote should have reaped: real processes in each state.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { stillExiting } from '../../runner/src/process.js';
import { childrenOf, stateOf } from '../support/processes.js';
import { waitFor } from '../support/wait.js';

const started: ChildProcess[] = [];
afterEach(() => {
  for (const p of started.splice(0)) p.kill('SIGKILL');
});

function start(command: string, args: string[]): number {
  const p = spawn(command, args, { stdio: 'ignore' });
  started.push(p);
  return p.pid!;
}

describe('stillExiting', () => {
  it('is true for a process that is not a zombie yet, of the parent named only', async () => {
    const pid = start('/bin/sleep', ['30']);
    await waitFor('sleep to run', async () => stateOf(pid) === 'S' || undefined, 5000, 25);
    expect(await stillExiting(pid, process.pid)).toBe(true);
    // Another parent's: the pid was reaped and taken by another process since.
    expect(await stillExiting(pid, process.pid + 1)).toBe(false);
  });

  it('is false for a zombie its parent could reap, and for no process', async () => {
    // sh starts "sleep 0" and becomes "sleep 30", which never reaps it.
    const parent = start('/bin/sh', ['-c', 'sleep 0 & exec sleep 30']);
    const zombie = await waitFor(
      'a zombie child',
      async () => childrenOf(parent).find((pid) => stateOf(pid) === 'Z'),
      5000,
      25,
    );
    expect(await stillExiting(zombie, parent)).toBe(false);
    const pidMax = Number(await fs.readFile('/proc/sys/kernel/pid_max', 'latin1'));
    expect(await stillExiting(pidMax + 1, process.pid)).toBe(false);
  });

  it('is true for a zombie leader whose other thread still runs (not reapable yet)', async () => {
    // The main thread ends alone (the exit system call, not exit_group); a thread sleeps on.
    const pid = start('/usr/bin/python3', [
      '-c',
      [
        'import ctypes, os, threading, time',
        'threading.Thread(target=time.sleep, args=(30,)).start()',
        'time.sleep(0.1)',
        // exit(2), not exit_group(2): 60 on x86_64, 93 on aarch64
        'ctypes.CDLL(None).syscall({"x86_64": 60, "aarch64": 93}[os.uname().machine], 0)',
      ].join('\n'),
    ]);
    await waitFor(
      'the leader to be a zombie',
      async () => stateOf(pid) === 'Z' || undefined,
      5000,
      25,
    );
    expect(await stillExiting(pid, process.pid)).toBe(true);
  });
});
