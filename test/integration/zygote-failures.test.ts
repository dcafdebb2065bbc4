// What the runner does when the Python zygote, or the kernel under it, fails: a zygote that dies
// is replaced (after a backoff) and the run it took down is answered; a fork the kernel refuses
// fails that run alone; a zygote that stops forking is ended and replaced, but not for a killed
// child the kernel takes long to take apart; running out of descriptors fails a run instead of
// ending the runner. Real processes, rlimits, signals and ptrace.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { childrenOf, commandLine, processState, stateOf, waitGone } from '../support/processes.js';
import { gaugeReaches, startTestRunner, type TestRunner } from '../support/runner.js';
import { waitFor } from '../support/wait.js';

/** The zygote of runner T (a child of its process, with its socket), or undefined. */
function zygoteOf(t: TestRunner): number | undefined {
  return childrenOf(t.pid).find((pid) =>
    commandLine(pid).includes(`zygote.py ${t.config.workDir}/runtime/zygote.sock`),
  );
}

/** The name of process PID (/proc/PID/comm), '' once it is gone. */
function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

async function metric(t: TestRunner, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${t.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

/** Lets a stopped process go on (when it is still there, which it should not be). */
function resume(pid: number): void {
  try {
    process.kill(pid, 'SIGCONT');
  } catch {
    // gone, as it should be
  }
}

/**
 * Sets the soft limit RESOURCE of process PID (of uid UID) to VALUE, or back to its hard limit
 * (undefined). As that uid: this host's root lacks CAP_SYS_RESOURCE, which changing another
 * user's limits needs (and raising a hard limit).
 */
function softLimit(pid: number, uid: number, resource: 'nproc' | 'nofile', value?: number): void {
  const asUid = ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', 'prlimit'];
  const hard = execFileSync('setpriv', [
    ...asUid, '--pid', String(pid), `--${resource}`, '--raw', '--noheadings', '-o', 'HARD',
  ]).toString().trim(); // prettier-ignore
  execFileSync('setpriv', [
    ...asUid,
    '--pid',
    String(pid),
    `--${resource}=${value ?? hard}:${hard}`,
  ]);
}

describe('the Python zygote', () => {
  it('is replaced when it dies; the run it took down is answered as killed', async () => {
    const t = await startTestRunner({ SANDBOX_WARM_PYTHON3: '1', SANDBOX_WARM_NODEJS: '0' });
    try {
      const first = zygoteOf(t)!;
      expect(first).toBeDefined();
      expect(await metric(t, 'sandbox_zygote_up')).toBe(1);
      const running = t.run(
        'python3',
        'import time\nprint("started", flush=True)\ntime.sleep(10)\nprint("finished")',
      );
      await new Promise((r) => setTimeout(r, 700)); // it runs
      process.kill(first, 'SIGKILL');
      const data = await running;
      expect(data.stdout).toBe('started\n');
      expect(data.error).toMatch(/^error: process killed by signal SIGKILL\n/);
      expect(await waitGone(first)).toBe(true);
      const second = await waitFor('another zygote', async () => zygoteOf(t), 10_000, 50);
      expect(second).not.toBe(first);
      await gaugeReaches(t.url, 'sandbox_zygote_up', 1, 10_000);
      // Runs are forked from the new one again.
      await waitFor(
        'a run forked from the new zygote',
        async () => {
          const r = await t.run('python3', 'import os\nprint(os.getppid())');
          return Number(r.stdout) === second || undefined;
        },
        10_000,
        50,
      );
    } finally {
      await t.close();
    }
  });

  it('fails only the run whose fork the kernel refuses, and goes on', async () => {
    // Without root the zygote is subject to RLIMIT_NPROC (root is exempt).
    const t = await startTestRunner(
      { SANDBOX_WARM_PYTHON3: '0', SANDBOX_WARM_NODEJS: '0' },
      { mode: 'unprivileged' },
    );
    try {
      const zygote = zygoteOf(t)!;
      expect(zygote).toBeDefined();
      // The uid has the runner and the zygote at least: no fork of it fits under 1.
      softLimit(zygote, t.uid, 'nproc', 1);
      const { status, body } = await t.post({ language: 'python3', code: 'print(1)', preload: '' });
      expect({ status, message: body.message }).toMatchObject({ status: 200 });
      expect(body.data?.error ?? body.message).toMatch(
        /sandbox setup failed: zygote: fork: EAGAIN \(resource temporarily unavailable\)/,
      );
      softLimit(zygote, t.uid, 'nproc');
      // Still the same zygote, forking again (once the self-test passed after that failure).
      await waitFor(
        'ready again',
        async () => (await fetch(`${t.url}/readyz`)).status === 200 || undefined,
        10_000,
        50,
      );
      const r = await t.run('python3', 'import os\nprint(os.getppid())');
      expect(Number(r.stdout)).toBe(zygote);
      expect(zygoteOf(t)).toBe(zygote);
    } finally {
      await t.close();
    }
  });

  it('is ended and replaced when it stops forking; the run ends at its time limit', async () => {
    const t = await startTestRunner({
      SANDBOX_WARM_PYTHON3: '0',
      SANDBOX_WARM_NODEJS: '0',
      WORKER_TIMEOUT: '2',
    });
    const stuck = zygoteOf(t)!;
    try {
      process.kill(stuck, 'SIGSTOP');
      await waitFor(
        'the zygote stopped',
        async () => stateOf(stuck) === 'T' || undefined,
        10_000,
        50,
      );
      const started = Date.now();
      const data = await t.run('python3', 'print(1)');
      // The run's timeout asked for its end; the zygote's fork deadline (10 s) delivered it.
      const elapsed = Date.now() - started;
      const seen = `${JSON.stringify(data)}; zygote ${stuck} ${stateOf(stuck)}, now ${zygoteOf(t)}`;
      expect(data.error, seen).toMatch(/^error: timeout\n/);
      expect(elapsed, 'ms until the answer').toBeLessThan(20_000);
      expect(await waitGone(stuck)).toBe(true);
      const next = await waitFor('another zygote', async () => zygoteOf(t), 10_000, 50);
      expect(next).not.toBe(stuck);
    } finally {
      resume(stuck);
      await t.close();
    }
  });
  it("is ended and replaced when it does not report a killed child's end", async () => {
    const t = await startTestRunner({
      SANDBOX_WARM_PYTHON3: '1',
      SANDBOX_WARM_NODEJS: '0',
      WORKER_TIMEOUT: '1',
    });
    const stuck = zygoteOf(t)!;
    try {
      const started = Date.now();
      const running = t.run('python3', 'import time\ntime.sleep(60)', { enable_network: true });
      await new Promise((r) => setTimeout(r, 300)); // taken from the pool, running
      process.kill(stuck, 'SIGSTOP');
      await waitFor(
        'the zygote stopped',
        async () => stateOf(stuck) === 'T' || undefined,
        10_000,
        50,
      );
      const data = await running;
      // Killed at its time limit; the end the zygote did not report came at its deadline (20 s).
      const elapsed = Date.now() - started;
      expect(data.error, JSON.stringify(data)).toMatch(/^error: timeout\n/);
      expect(elapsed, 'ms until the answer').toBeLessThan(30_000);
      expect(await waitGone(stuck)).toBe(true);
      expect(await waitFor('another zygote', async () => zygoteOf(t), 10_000, 50)).not.toBe(stuck);
    } finally {
      resume(stuck);
      await t.close();
    }
  });
});

/**
 * A tracer (python3 -c HOLDER PID) that stops process PID at its exit (PTRACE_O_TRACEEXIT, also
 * after a SIGKILL) and holds it there until the tracer ends: to the runner, a child whose
 * teardown takes as long as the test wants. Prints "seized", then "held" at the exit stop.
 */
const HOLDER = `
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
pid = int(sys.argv[1])
if libc.ptrace(0x4206, pid, None, 0x40) != 0:  # PTRACE_SEIZE, PTRACE_O_TRACEEXIT
    sys.exit("seize: " + os.strerror(ctypes.get_errno()))
print("seized", flush=True)
while True:
    _, status = os.waitpid(pid, 0x40000000)  # __WALL
    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
        break
    if status >> 8 == (signal.SIGTRAP | (6 << 8)):  # PTRACE_EVENT_EXIT
        print("held", flush=True)
        signal.pause()
    libc.ptrace(7, pid, None, os.WSTOPSIG(status))  # PTRACE_CONT, the signal delivered
`;

describe('a killed child the kernel takes long to take apart', () => {
  it('keeps its zygote, and the runs the zygote forked run on', async () => {
    const t = await startTestRunner({
      SANDBOX_WARM_PYTHON3: '2',
      SANDBOX_WARM_NODEJS: '0',
      WORKER_TIMEOUT: '40',
      SANDBOX_MAX_OUTPUT_BYTES: '1024',
      // The held run keeps its worker slot until its exit: one more for the other run.
      MAX_WORKERS: '2',
    });
    const zygote = zygoteOf(t)!;
    let holder: ChildProcess | undefined;
    try {
      // Names itself, waits until it is traced, then writes past the output limit: killed.
      let answered = false;
      const killed = t
        .run(
          'python3',
          [
            'import ctypes, time',
            'ctypes.CDLL(None).prctl(15, b"held-at-exit", 0, 0, 0)',
            'while "TracerPid:\\t0\\n" in open("/proc/self/status").read():',
            '    time.sleep(0.01)',
            'print("x" * 100000)',
            'time.sleep(60)',
          ].join('\n'),
        )
        .finally(() => (answered = true));
      const held = await waitFor(
        'the run that names itself',
        async () => childrenOf(zygote).find((pid) => commOf(pid) === 'held-at-exit'),
        10_000,
        20,
      );
      holder = spawn('python3', ['-c', HOLDER, String(held)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let said = '';
      holder.stdout!.on('data', (chunk: Buffer) => (said += chunk.toString()));
      holder.stderr!.on('data', (chunk: Buffer) => (said += chunk.toString()));
      await waitFor(
        'the exit stop',
        async () => {
          // Tracing another uid's process takes CAP_SYS_PTRACE: say so rather than time out.
          if (said.includes('seize:')) throw new Error(`the tracer could not attach: ${said}`);
          return said.includes('held') || undefined;
        },
        10_000,
        20,
      );
      expect(stateOf(held), said).toBe('t');
      // Runs across the killed child's deadline (20 s after its kill): before, the zygote was
      // ended there, and this run with it.
      const other = await t.run('python3', 'import time\ntime.sleep(23)\nprint("still here")');
      expect(other.stdout, JSON.stringify(other)).toBe('still here\n');
      expect(zygoteOf(t)).toBe(zygote);
      expect(stateOf(held)).toBe('t');
      // Its run was answered at that deadline, while its process was still held.
      expect(answered).toBe(true);
      const data = await killed;
      expect(data.error, JSON.stringify(data)).toMatch(/output limit/);
      // The tracer gone, the kernel finishes the exit.
      holder.kill('SIGKILL');
      expect(await waitGone(held)).toBe(true);
      expect(zygoteOf(t)).toBe(zygote);
    } finally {
      holder?.kill('SIGKILL');
      await t.close();
    }
  }, 60_000);
});

describe('what the zygote says on its stderr', () => {
  it('is logged as it comes: a child that cannot connect back says why', async () => {
    const t = await startTestRunner(
      { SANDBOX_WARM_PYTHON3: '0', SANDBOX_WARM_NODEJS: '0', LOG_LEVEL: 'info' },
      { process: {} },
    );
    try {
      // Children connect back to this socket by path: gone, a child cannot.
      rmSync(`${t.config.workDir}/runtime/zygote.sock`);
      const { body } = await t.post({ language: 'python3', code: 'print(1)' });
      expect(body.data?.error ?? body.message, JSON.stringify(body)).not.toBe('');
      const said = await waitFor(
        'the log line',
        async () =>
          t.logs!()
            .split('\n')
            .find((l) => l.includes('"msg":"the Python zygote said"')),
        10_000,
        50,
      );
      expect(JSON.parse(said)).toMatchObject({
        level: 40,
        line: 'sandbox-launcher: zygote child: connect: No such file or directory',
      });
      expect(JSON.parse(said).zygotePid).toBeGreaterThan(0);
    } finally {
      await t.close();
    }
  });
});

describe('warm interpreters killed as fast as they start', () => {
  it('are started again with a backoff, not in a loop', async () => {
    const t = await startTestRunner({ SANDBOX_WARM_PYTHON3: '2', SANDBOX_WARM_NODEJS: '0' });
    try {
      const zygote = zygoteOf(t)!;
      const spawned = async () => {
        const text = await (await fetch(`${t.url}/metrics`)).text();
        const m = /^sandbox_pool_spawn_seconds_count\{language="python3"\} (\d+)/m.exec(text);
        return Number(m?.[1]);
      };
      const before = await spawned();
      // Out of memory, say: whatever waits in the pool is killed, every 20 ms for 2 s.
      const end = Date.now() + 2000;
      while (Date.now() < end) {
        for (const pid of childrenOf(zygote))
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone meanwhile
          }
        await new Promise((r) => setTimeout(r, 20));
      }
      // Without a backoff each death is replaced at once (over 60 here); with it, a few.
      expect((await spawned()) - before).toBeLessThan(25);
      // And the pool fills again once they are left alone.
      await waitFor(
        'the pool full again',
        async () => {
          const text = await (await fetch(`${t.url}/metrics`)).text();
          return /^sandbox_pool_ready\{language="python3"\} 2$/m.test(text) || undefined;
        },
        10_000,
        50,
      );
    } finally {
      await t.close();
    }
  });
});

describe("a child faster than its zygote's report", () => {
  it('is run only once its pid is known: watched, and killed at its end', async () => {
    const t = await startTestRunner(
      { SANDBOX_WARM_PYTHON3: '0', SANDBOX_WARM_NODEJS: '0' },
      { mode: 'unprivileged' },
    );
    const zygote = zygoteOf(t)!;
    // Every write of the zygote (its {"forked": ...} report among them) waits 400 ms; its
    // children are not traced and go on at full speed.
    const tracer = spawn(
      'strace',
      ['-qq', '-e', 'trace=write', '-e', 'inject=write:delay_enter=400000', '-p', String(zygote)],
      { stdio: 'ignore' },
    );
    tracer.on('error', () => undefined); // no strace: the wait below says so
    try {
      await waitFor(
        'strace attached',
        async () =>
          /^TracerPid:\s+[1-9]/m.test(readFileSync(`/proc/${zygote}/status`, 'utf8')) || undefined,
        10_000,
        50,
      );
      // Ends its run as a bootstrap does (an exit report, streams closed), then keeps running.
      const data = await t.run(
        'python3',
        'import os, time\nprint("PID", os.getpid(), flush=True)\nos.write(3, b"exit 0\\n")\nos.closerange(0, 4)\nwhile True:\n    time.sleep(0.01)',
      );
      const pid = Number(/^PID (\d+)/.exec(data.stdout)?.[1]);
      expect(pid).toBeGreaterThan(1);
      let state = processState(pid);
      if (state === 'alive') {
        await new Promise((r) => setTimeout(r, 50)); // see s10-outlive.ts
        state = processState(pid);
      }
      expect(state, `process ${pid} still runs after its answer`).not.toBe('alive');
    } finally {
      if (tracer.exitCode === null && tracer.signalCode === null) {
        const detached = new Promise((r) => tracer.once('exit', r));
        tracer.kill('SIGINT');
        await detached;
      }
      await t.close();
    }
  });
});

describe('a warm interpreter that dies after it was taken, before it read the request', () => {
  it.each([
    ['python3', 'print("ran", 6 * 7)'],
    ['nodejs', 'console.log("ran", 6 * 7)'],
  ] as const)('%s: the request runs in another, once', async (language, code) => {
    const t = await startTestRunner({
      SANDBOX_WARM_PYTHON3: language === 'python3' ? '1' : '0',
      SANDBOX_WARM_NODEJS: language === 'nodejs' ? '1' : '0',
    });
    let warm: number | undefined;
    try {
      await gaugeReaches(t.url, `sandbox_pool_ready{language="${language}"}`, 1, 10_000);
      [warm] = childrenOf(zygoteOf(t)!);
      // Stopped, it cannot read the request the run writes; killed then, it never did (its
      // zygote gone, out of memory): nothing of the request ran.
      process.kill(warm!, 'SIGSTOP');
      const answer = t.run(language, code);
      // Taken by the run (the pool refills only after its answer).
      await gaugeReaches(t.url, `sandbox_pool_ready{language="${language}"}`, 0, 10_000);
      await new Promise((r) => setTimeout(r, 100)); // and to write the request
      process.kill(warm!, 'SIGKILL');
      const data = await answer;
      expect(data).toEqual({ stdout: 'ran 42\n', stderr: '', error: '', exit_code: 0 });
      expect(await metric(t, `sandbox_run_retries_total{language="${language}"}`)).toBe(1);
      // A run that took its request is not run again, whatever its end.
      expect((await t.run(language, code)).stdout).toBe('ran 42\n');
      const failing = await t.run(
        language,
        language === 'python3'
          ? 'import os\nos.kill(os.getpid(), 9)'
          : 'process.kill(process.pid, 9)',
      );
      expect(failing.error).toMatch(/^error: process killed by signal SIGKILL/);
      expect(await metric(t, `sandbox_run_retries_total{language="${language}"}`)).toBe(1);
    } finally {
      if (warm !== undefined) resume(warm);
      await t.close();
    }
  });
});

describe('a runner out of descriptors', () => {
  it('fails what it cannot start, stays up, and serves again once it has descriptors', async () => {
    // Through the launcher (no zygote), so that the runner itself creates each run's pipes; the
    // warm pool refills from a timer, where a throw would end the runner.
    const t = await startTestRunner(
      { SANDBOX_PYTHON_ZYGOTE: 'false', SANDBOX_WARM_PYTHON3: '1', SANDBOX_WARM_NODEJS: '0' },
      { mode: 'unprivileged' },
    );
    try {
      const open = readdirSync(`/proc/${t.pid}/fd`).length;
      // Room for the request's connection, not for another interpreter's eight pipe ends.
      softLimit(t.pid, t.uid, 'nofile', open + 1);
      // With network, as the pool is warmed: the run takes the pooled interpreter, and its refill fails.
      await t.post({ language: 'python3', code: 'print(1)', preload: '', enable_network: true });
      await waitFor(
        'a refill that fails',
        async () => /could not be started|failed to start/.test(t.logs!()) || undefined,
        10_000,
        50,
      ).catch((err: Error) => {
        throw new Error(`${err.message}:\n${t.logs!().slice(-3000)}`);
      });
      await new Promise((r) => setTimeout(r, 500));
      expect(t.alive(), t.logs!().slice(-2000)).toBe(true);
      softLimit(t.pid, t.uid, 'nofile');
      await waitFor(
        'ready again',
        async () => (await fetch(`${t.url}/readyz`)).status === 200 || undefined,
        10_000,
        50,
      );
      expect((await t.run('python3', 'print(2)')).stdout).toBe('2\n');
    } finally {
      await t.close();
    }
  });
});
