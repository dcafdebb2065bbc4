// Fail closed: a missing or corrupt policy, or a kernel that refuses a mandatory layer (seccomp,
// Landlock, the mount namespace as root), makes the runner not ready and every run fail with a
// clear error; it never runs code with fewer layers than configured. Each case starts a real
// runner process whose install or kernel view is broken in that one way.
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, appendFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NATIVE_BUILD, POLICY_SOURCE, REPO_ROOT } from '../../runner/src/paths.js';
import { startTestRunner, type TestRunner } from '../support/runner.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const dir of cleanup) rmSync(dir, { recursive: true, force: true });
});

/** A copy of the runner's install (built code, native/, bootstraps), to break one file of. */
function installCopy(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sbp-install-'));
  cleanup.push(dir);
  for (const part of [
    'dist',
    'native/build',
    'native/policies',
    'runner/bootstrap',
    'dependencies',
  ])
    cpSync(path.join(REPO_ROOT, part), path.join(dir, part), { recursive: true });
  cpSync(path.join(REPO_ROOT, 'package.json'), path.join(dir, 'package.json'));
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

/**
 * A wrapper that starts the runner under a seccomp filter of its own (libseccomp through
 * ctypes): the syscalls named fail with ENOSYS, as on a kernel without them, for the runner and
 * everything it starts.
 */
function kernelWithout(syscalls: Array<[number, number | undefined]>): string[] {
  const rules = syscalls
    .map(([nr, a0]) =>
      a0 === undefined ? `rule(${nr})` : `rule(${nr}, (Cmp * 1)(Cmp(0, 4, ${a0}, 0)))`,
    )
    .join('\n');
  const script = `import ctypes, os, sys
lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]
ctx = ctypes.c_void_p(lib.seccomp_init(0x7fff0000))
def rule(nr, cmps=None):
    if lib.seccomp_rule_add_array(ctx, 0x00050000 | 38, nr, 0 if cmps is None else len(cmps), cmps) != 0:
        sys.exit("rule " + str(nr))
${rules}
if lib.seccomp_load(ctx) != 0:
    sys.exit("seccomp_load")
os.execv(sys.argv[1], sys.argv[1:])
`;
  return ['/usr/bin/python3', '-c', script];
}

async function expectFailsClosed(t: TestRunner, reason: RegExp): Promise<void> {
  const ready = await fetch(`${t.url}/readyz`);
  const body = (await ready.json()) as { ready: boolean; reason: string };
  expect(ready.status, JSON.stringify(body)).toBe(503);
  expect(body.reason).toMatch(reason);
  for (const [language, code] of [
    ['python3', 'print("unconfined")'],
    ['nodejs', 'console.log("unconfined")'],
  ] as const) {
    const { status, body: answer } = await t.post({ language, code });
    expect(status).toBe(503);
    expect(answer.code).toBe(-503);
    expect(answer.message).toMatch(/^sandbox not ready: /);
    expect(JSON.stringify(answer)).not.toContain('unconfined');
  }
  expect(await (await fetch(`${t.url}/metrics`)).text()).toMatch(/^sandbox_ready 0$/m);
}

describe('the runner fails closed', () => {
  it('when a policy file is missing', async () => {
    const install = installCopy();
    rmSync(path.join(install, 'native/policies/python3.policy'));
    const t = await startTestRunner(
      {},
      { process: { main: path.join(install, 'dist/runner/src/main.js') } },
    );
    try {
      await expectFailsClosed(t, /python3 failed: .*open .*python3\.policy: No such file/);
    } finally {
      await t.close();
    }
  });

  it('when a policy file is corrupt', async () => {
    const install = installCopy();
    appendFileSync(path.join(install, 'native/policies/nodejs.policy'), '\nallow read if a0 ==\n');
    const t = await startTestRunner(
      {},
      { process: { main: path.join(install, 'dist/runner/src/main.js') } },
    );
    try {
      await expectFailsClosed(t, /nodejs failed: .*nodejs\.policy:\d+: bad condition/);
    } finally {
      await t.close();
    }
  });

  it('when the kernel refuses seccomp filters', async () => {
    // seccomp(2) (317), and prctl(PR_SET_SECCOMP) (157 with a0 == 22), libseccomp's fallback.
    const t = await startTestRunner(
      {},
      {
        process: {
          wrapper: kernelWithout([
            [317, undefined],
            [157, 22],
          ]),
        },
      },
    );
    try {
      await expectFailsClosed(t, /python3 failed: error: sandbox setup failed: seccomp/);
    } finally {
      await t.close();
    }
  });

  it('when the kernel has no Landlock and Landlock is required', async () => {
    const t = await startTestRunner(
      {},
      { process: { wrapper: kernelWithout([[444, undefined]]) } },
    );
    try {
      await expectFailsClosed(t, /landlock: Landlock is not available in this kernel \(required\)/);
    } finally {
      await t.close();
    }
  });

  it('as root without CAP_SYS_ADMIN: not ready, and the launcher itself refuses to run', async () => {
    const t = await startTestRunner(
      {},
      { process: { wrapper: ['setpriv', '--bounding-set=-sys_admin', '--inh-caps=-sys_admin'] } },
    );
    try {
      await expectFailsClosed(t, /^started as root without CAP_SYS_ADMIN: /);
    } finally {
      await t.close();
    }
    // The launcher, on its own: no mount namespace, so nothing runs.
    const workdir = path.join(mkdtempSync(path.join(os.tmpdir(), 'sbp-nocap-')), 'run');
    cleanup.push(path.dirname(workdir));
    const r = spawnSync(
      'setpriv',
      [
        '--bounding-set=-sys_admin',
        '--inh-caps=-sys_admin',
        path.join(NATIVE_BUILD, 'sandbox-launcher'),
        ...['--policy-dir', POLICY_SOURCE, '--policy', 'python3', '--workdir', workdir],
        ...['--uid', '60998', '--gid', '60998', '--', '/usr/bin/python3', '-c', 'print("ran")'],
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe', 'pipe'] },
    );
    expect(r.status).toBe(125);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^sandbox-launcher: filesystem: unshare\(CLONE_NEWNS\): Operation not permitted/,
    );
  });

  it('as root without CAP_KILL: runs of other uids could not be ended at their time limit', async () => {
    const t = await startTestRunner(
      { SANDBOX_WARM_PYTHON3: '0', SANDBOX_WARM_NODEJS: '0' },
      { process: { wrapper: ['setpriv', '--bounding-set=-kill', '--inh-caps=-kill'] } },
    );
    try {
      await expectFailsClosed(t, /^started as root without CAP_KILL: /);
    } finally {
      await t.close();
    }
  });

  it('as root with exactly the capabilities the README names, it serves and ends runs on time', async () => {
    const t = await startTestRunner(
      { WORKER_TIMEOUT: '2', SANDBOX_WARM_PYTHON3: '1', SANDBOX_WARM_NODEJS: '1' },
      {
        process: {
          wrapper: [
            'setpriv',
            '--bounding-set=-all,+sys_admin,+setuid,+setgid,+kill',
            '--inh-caps=-all',
          ],
        },
      },
    );
    try {
      expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
      expect((await t.run('python3', 'print("py")')).stdout).toBe('py\n');
      expect((await t.run('nodejs', 'console.log("js")')).stdout).toBe('js\n');
      const started = Date.now();
      const slow = await t.run('python3', 'import time\ntime.sleep(30)');
      expect(slow.error).toBe('error: timeout\n');
      expect(Date.now() - started).toBeLessThan(6000);
    } finally {
      await t.close();
    }
  });

  it('when a policy breaks while it serves: not ready, runs refused, ready again once fixed', async () => {
    const t = await startTestRunner({ SANDBOX_WARM_PYTHON3: '0', SANDBOX_WARM_NODEJS: '0' });
    try {
      expect((await t.run('nodejs', 'console.log("before")')).stdout).toBe('before\n');
      // nodejs: its policy is read at every start (python3's the zygote compiles once).
      const policy = path.join(t.config.workDir, 'runtime/policies/nodejs.policy');
      const good = (await import('node:fs')).readFileSync(policy, 'utf8');
      writeFileSync(policy, 'allow no_such_syscall\n');
      const broken = await t.run('nodejs', 'console.log("unconfined")');
      expect(broken.stdout).toBe('');
      expect(broken.error).toMatch(
        /^error: sandbox setup failed: seccomp policy: .*unknown syscall 'no_such_syscall'/,
      );
      const refused = await t.post({ language: 'python3', code: 'print(1)' });
      expect(refused.status).toBe(503);
      expect(refused.body.message).toMatch(/^sandbox not ready: error: sandbox setup failed/);
      writeFileSync(policy, good);
      const deadline = Date.now() + 20_000;
      while ((await fetch(`${t.url}/readyz`)).status !== 200) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((r) => setTimeout(r, 200));
      }
      expect((await t.run('nodejs', 'console.log("after")')).stdout).toBe('after\n');
    } finally {
      await t.close();
    }
  });
});
