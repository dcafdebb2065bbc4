// A run that hands its own output streams to itself over a socket pair (SCM_RIGHTS) leaves them
// in a cycle of descriptors in flight when it exits: they stay open until the kernel's next
// garbage collection of unix sockets, which only a close of some unix socket somewhere starts.
// The runner must not wait for that: such a run would hold its worker past its exit and its
// timeout (its kill finds nothing left to kill), and a few of them would stop the runner.
// Run alone, this fails without the bound on how long streams may outlive their process; among
// other test files, their runs' closed sockets may start a collection and let it pass anyway.
import { afterAll, describe, expect, it } from 'vitest';
import { MODES, startTestRunner, type TestRunner } from '../support/runner.js';

const PARK = [
  'import socket, array',
  'a, b = socket.socketpair()',
  'fds = array.array("i", [a.fileno(), b.fileno(), 0, 1, 2, 3])',
  'a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])',
  'b.sendmsg([b"y"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])',
  'print("parked", flush=True)',
].join('\n');

describe.each(MODES)('%s runner', (mode) => {
  const runners: TestRunner[] = [];
  afterAll(async () => {
    await Promise.all(runners.map((r) => r.close()));
  });

  it.each([
    ['forked from the zygote (its streams are connections to the runner)', 'true'],
    ['started by the launcher (its streams are socket pairs libuv made)', 'false'],
  ])(
    'a run %s that parks its streams in flight is answered, and frees its worker',
    async (_kind, zygote) => {
      // One worker: a run holding it holds the runner. The timeout cannot help (the process is
      // gone), so it is long enough not to be what ends the wait.
      const t = await startTestRunner(
        { MAX_WORKERS: '1', WORKER_TIMEOUT: '60', SANDBOX_PYTHON_ZYGOTE: zygote },
        { mode },
      );
      runners.push(t);
      const started = Date.now();
      const answer = await t.run('python3', PARK);
      expect(answer).toEqual({ stdout: 'parked\n', stderr: '', error: '', exit_code: 0 });
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(await t.run('python3', 'print("next")')).toMatchObject({ stdout: 'next\n' });
    },
    40_000,
  );
});
