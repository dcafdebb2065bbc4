// The launcher on its own, and the runner when the sandbox cannot be set up: fail closed.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  mkdtempSync,
  mkdirSync,
  writeFileSync,
  copyFileSync,
  readdirSync,
  renameSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NATIVE_BUILD, POLICY_SOURCE } from '../../runner/src/paths.js';
import { waitFor } from '../support/wait.js';
import { startTestRunner } from '../support/runner.js';

const LAUNCHER = path.join(NATIVE_BUILD, 'sandbox-launcher');

const AS_ROOT = process.getuid?.() === 0;

function launch(
  policyDir: string,
  policy: string,
  code: string,
  {
    workdir = path.join(mkdtempSync(path.join(os.tmpdir(), 'sbp-launcher-')), 'run'),
    ids = AS_ROOT,
    // Started as this uid (through setpriv, from root): the launcher as a runner without root.
    user = undefined as number | undefined,
    // Started with these limits (prlimit's options, e.g. --nofile=600:600).
    limits = [] as string[],
    extra = [] as string[],
  } = {},
) {
  const idArgs = ids ? ['--uid', '60999', '--gid', '60999'] : [];
  const asUser =
    user === undefined
      ? []
      : ['setpriv', '--reuid', String(user), '--regid', String(user), '--clear-groups'];
  const [command, ...wrapped] = [
    ...(limits.length === 0 ? [] : ['prlimit', ...limits]),
    ...asUser,
    LAUNCHER,
  ];
  return spawnSync(
    command!,
    [
      ...wrapped,
      '--policy-dir',
      policyDir,
      '--policy',
      policy,
      '--workdir',
      workdir,
      ...idArgs,
      ...extra,
      '--',
      '/usr/bin/python3',
      '-I',
      '-c',
      code,
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe', 'pipe'] },
  );
}

function policyCopy(extraPolicy?: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sbp-policies-'));
  for (const name of readdirSync(POLICY_SOURCE))
    copyFileSync(path.join(POLICY_SOURCE, name), path.join(dir, name));
  if (extraPolicy !== undefined) writeFileSync(path.join(dir, 'broken.policy'), extraPolicy);
  return dir;
}

describe('sandbox-launcher', () => {
  it('runs the interpreter with its own uid, gid 0 gone and no groups', () => {
    const r = launch(
      POLICY_SOURCE,
      'python3',
      'import os; print(os.getuid(), os.getgid(), os.getgroups(), os.getcwd())',
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const [uid, gid, groups] = r.stdout.trim().split(' ');
    if (AS_ROOT) {
      expect(uid).toBe('60999');
      expect(gid).toBe('60999');
    }
    expect(groups).toBe('[]');
  });

  it.each([
    [
      'an unknown syscall',
      'include python3\nallow no_such_syscall\n',
      /unknown syscall 'no_such_syscall'/,
    ],
    ['an unknown statement', 'include python3\npermit read\n', /unknown statement 'permit'/],
    ['a bad condition', 'include python3\nallow ioctl if a9 == 1\n', /bad condition/],
    // A zygote patches the run's pid into equality tests only: an ordering would keep its sentinel.
    ['$pid in an ordering', 'include python3\nallow kill if a0 <= $pid\n', /bad condition/],
    ['$pid in a mask', 'include python3\nallow kill if a0 & 0xff == $pid\n', /bad condition/],
    ['a missing include', 'include nothing_here\n', /open .*nothing_here\.policy/],
  ])('refuses to run anything with %s in the policy', (_what, text, message) => {
    const r = launch(policyCopy(text), 'broken', 'print("ran")');
    expect(r.status).toBe(125);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^sandbox-launcher: seccomp policy: /);
    expect(r.stderr).toMatch(message);
  });

  // A run dies with the process that started it (PR_SET_PDEATHSIG). One orphaned before the
  // launcher gets there has a new parent already, which it must not take for the right one.
  it('runs only as a child of the process --parent names', () => {
    const ok = launch(POLICY_SOURCE, 'python3', 'print("ran")', {
      extra: ['--parent', String(process.pid)],
    });
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toBe('ran\n');
    const orphan = launch(POLICY_SOURCE, 'python3', 'print("ran")', {
      extra: ['--parent', String(process.ppid)],
    });
    expect(orphan.status).toBe(125);
    expect(orphan.stdout).toBe('');
    expect(orphan.stderr).toBe(
      'sandbox-launcher: parent: the process that started the run is gone\n',
    );
    const bad = launch(POLICY_SOURCE, 'python3', 'print("ran")', { extra: ['--parent', '0'] });
    expect(bad.status).toBe(125);
    expect(bad.stderr).toMatch(/^sandbox-launcher: arguments: --parent needs a process id/);
  });

  // The interpreter is executed through a descriptor beyond the run's open file limit (1000),
  // or below a lower hard limit of the launcher's, as in a container with nofile=600.
  it('runs under a hard open file limit below 1000, and the run still executes nothing', () => {
    const ok = launch(POLICY_SOURCE, 'python3', 'print("ran")', {
      limits: ['--nofile=600:600'],
      extra: ['--open-files', '256'],
    });
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toBe('ran\n');
    // The program can neither put a descriptor at the interpreter's number (599) nor execute
    // through it; any other execve is the dangerous set's (killed).
    const exec = launch(
      POLICY_SOURCE,
      'python3',
      [
        'import os',
        'try: os.dup2(0, 599); print("dup2 worked", flush=True)',
        'except OSError as e: print("dup2", e.errno, flush=True)',
        'try: os.execve(599, ["true"], {})',
        'except OSError as e: print("execve", e.errno, flush=True)',
        'os.execv("/bin/true", ["true"])',
      ].join('\n'),
      { limits: ['--nofile=600:600'], extra: ['--open-files', '256'] },
    );
    expect(exec.stdout).toBe('dup2 9\nexecve 9\n');
    expect(exec.signal).toBe('SIGSYS');
    const low = launch(POLICY_SOURCE, 'python3', 'print("ran")', {
      limits: ['--nofile=100:100'],
      extra: ['--open-files', '256'],
    });
    expect(low.status).toBe(125);
    expect(low.stdout).toBe('');
    expect(low.stderr).toMatch(
      /^sandbox-launcher: interpreter: the hard open file limit \(100\) must be above the runs' limit \(256\)/,
    );
  });

  // The descriptors that keep the run's /proc entries cached (their Landlock rules name inodes)
  // sit right below the interpreter's, above every descriptor the run may open.
  it("pins its /proc entries above the run's open file limit, and says so when they do not fit", () => {
    const r = launch(
      POLICY_SOURCE,
      'python3',
      [
        'import os',
        'pins = []',
        'for n in sorted(int(n) for n in os.listdir("/proc/self/fd")):',
        '    try:',
        '        if n > 3 and os.readlink(f"/proc/self/fd/{n}").startswith("/proc/"): pins.append(n)',
        "    except OSError: pass  # the listing's own descriptor, closed since",
        'held = []',
        'try:',
        '    while True: held.append(os.open("/dev/null", os.O_RDONLY))',
        'except OSError as e:',
        '    print(len(pins) > 10, pins[0] >= 256, pins[-1], max(held), e.errno)',
      ].join('\n'),
      { limits: ['--nofile=600:600'], extra: ['--open-files', '256'] },
    );
    expect(r.stderr).toBe('');
    // Pins up to 598 (the interpreter's is 599), the run's own descriptors up to 255, then EMFILE.
    expect(r.stdout).toBe('True True 598 255 24\n');
    const tight = launch(POLICY_SOURCE, 'python3', 'print("ran")', {
      limits: ['--nofile=270:270'],
      extra: ['--open-files', '256'],
    });
    expect(tight.status).toBe(125);
    expect(tight.stdout).toBe('');
    expect(tight.stderr).toMatch(
      /^sandbox-launcher: landlock: the hard open file limit leaves no room above the runs' limit \(256\) for the \/proc pins/,
    );
  });

  // Without root a hard limit cannot be raised: the address space and locked memory limits
  // then keep the lower one in force instead of failing every run.
  it('keeps lower hard limits of address space and locked memory in force without root', () => {
    const parent = mkdtempSync(path.join(os.tmpdir(), 'sbp-launcher-'));
    chmodSync(parent, 0o777); // the run's directory is made by the uid below
    const r = launch(
      POLICY_SOURCE,
      'python3',
      'import resource as r\nprint(r.getrlimit(r.RLIMIT_MEMLOCK), r.getrlimit(r.RLIMIT_AS))',
      {
        workdir: path.join(parent, 'run'),
        ids: false,
        user: AS_ROOT ? 60998 : undefined,
        limits: ['--memlock=4096:4096', '--as=8589934592:8589934592'],
        extra: ['--address-space-bytes', String(32 * 1024 ** 3)],
      },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('(4096, 4096) (8589934592, 8589934592)\n');
  });

  it('takes TCP ports for connect() only with network, and only valid ones', () => {
    for (const [extra, message] of [
      [['--connect-port', '3128'], '--connect-port needs --network'],
      [['--network', '--connect-port', '0'], "--connect-port needs a TCP port, got '0'"],
      [['--network', '--connect-port', '65536'], "--connect-port needs a TCP port, got '65536'"],
      [
        [
          '--network',
          ...Array.from({ length: 17 }, (_, i) => ['--connect-port', `${i + 1}`]).flat(),
        ],
        'at most 16 --connect-port',
      ],
    ] as const) {
      const r = launch(POLICY_SOURCE, 'python3', 'print("ran")', { extra: [...extra] });
      expect(r.status).toBe(125);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`sandbox-launcher: arguments: ${message}\n`);
    }
  });

  it('without root, refuses to reuse an existing working directory', () => {
    const parent = mkdtempSync(path.join(os.tmpdir(), 'sbp-launcher-'));
    chmodSync(parent, 0o755); // reachable by the uid below
    const workdir = path.join(parent, 'run');
    mkdirSync(workdir);
    const r = launch(POLICY_SOURCE, 'python3', 'print(1)', {
      workdir,
      ids: false,
      user: AS_ROOT ? 60997 : undefined,
    });
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(/^sandbox-launcher: workdir: mkdir .*File exists/);
  });

  it.runIf(AS_ROOT)(
    'as root, creates nothing on the host and never shows the host directory to the run',
    () => {
      const parent = mkdtempSync(path.join(os.tmpdir(), 'sbp-launcher-'));
      const planted = path.join(parent, 'planted');
      mkdirSync(planted);
      writeFileSync(path.join(planted, 'secret'), 'host file');
      writeFileSync(path.join(parent, 'sibling'), 'host file');
      const r = launch(
        POLICY_SOURCE,
        'python3',
        'import os\nprint(os.listdir("."), os.getcwd())\nprint(os.path.exists(os.path.join("..", "sibling")))',
        { workdir: planted },
      );
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      // Its own empty tmpfs at that path: nothing of the host's directory or its neighbours.
      expect(r.stdout).toBe(`[] ${planted}\nFalse\n`);
      const fresh = path.join(parent, 'fresh');
      expect(
        launch(POLICY_SOURCE, 'python3', 'open("f", "w").write("x")', { workdir: fresh }).status,
      ).toBe(0);
      expect(readdirSync(parent).sort()).toEqual(['planted', 'sibling']);
    },
  );

  it.runIf(AS_ROOT)('as root, refuses to run without a uid to drop to', () => {
    const r = launch(POLICY_SOURCE, 'python3', 'print(1)', { ids: false });
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(/^sandbox-launcher: privileges: running as root requires/);
  });
});

describe('runner with a sandbox that cannot be set up', () => {
  it("refuses --env of its own SANDBOX_ names (getenv would find the caller's first)", () => {
    const r = launch(POLICY_SOURCE, 'python3', 'print("ran")', {
      extra: ['--env', 'SANDBOX_EXEC_LOCK=0'],
    });
    expect(r.status).toBe(125);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/--env may not set SANDBOX_EXEC_LOCK=0/);
  });

  // An interpreter that ignores LD_PRELOAD (one with file capabilities, without root) runs
  // without the filter that closes exec: the runner must refuse it, not serve it.
  // Spawned by the runner (Python without the zygote), or executed by a zygote child (Node.js).
  it.skipIf(!AS_ROOT).each([
    ['python3', 'print("unlocked")', { SANDBOX_PYTHON_ZYGOTE: 'false' }],
    ['nodejs', 'console.log("unlocked")', {}],
  ] as const)(
    'refuses a launched %s interpreter in which libsandbox.so did not run',
    async (language, code, env) => {
      const t = await startTestRunner({
        ...env,
        SANDBOX_WARM_PYTHON3: '0',
        SANDBOX_WARM_NODEJS: '0',
      });
      try {
        expect(await t.run(language, code)).toMatchObject({ stdout: 'unlocked\n' });
        // A library ld.so cannot load (it says so, and goes on without it); renamed into
        // place, so that processes that map the real one keep it.
        const library = path.join(t.config.workDir, 'runtime', 'libsandbox.so');
        writeFileSync(`${library}.broken`, 'not an ELF file');
        chmodSync(`${library}.broken`, 0o644);
        renameSync(`${library}.broken`, library);
        const data = await t.run(language, code);
        expect(data.stdout).toBe('');
        expect(data.error).toMatch(
          /^error: sandbox setup failed: exec lock: libsandbox.so did not run in the interpreter/,
        );
        const ready = await fetch(`${t.url}/readyz`);
        expect(ready.status).toBe(503);
      } finally {
        await t.close();
      }
    },
  );

  it('is not ready, says why, and refuses runs instead of running them unconfined', async () => {
    // A hard stack limit below the 8 MiB the launcher sets: without root it cannot raise it.
    const t = await startTestRunner(
      {},
      { mode: 'unprivileged', process: { wrapper: ['prlimit', '--stack=4194304:4194304'] } },
    );
    try {
      const ready = await fetch(`${t.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { reason: string }).reason).toMatch(
        /sandbox setup failed: rlimits: RLIMIT_STACK: Operation not permitted/,
      );
      const { status, body } = await t.post(
        { language: 'python3', code: 'print("unconfined")' },
        { 'X-Request-Id': 'refused-run' },
      );
      expect(status).toBe(503);
      // Logged; the readiness probes (every 5 s in a pod) are not, one line each.
      await fetch(`${t.url}/readyz`, { headers: { 'X-Request-Id': 'probe' } });
      await t.post({ language: 'python3', code: '' }, { 'X-Request-Id': 'after-probe' });
      await waitFor(
        'the log line',
        async () => t.logs!().includes('"reqId":"after-probe"') || undefined,
        5000,
        50,
      );
      expect(t.logs!()).toContain('"reqId":"refused-run"');
      expect(t.logs!()).not.toContain('"reqId":"probe"');
      expect(body.code).toBe(-503);
      expect(body.message).toMatch(/^sandbox not ready: /);
      const metrics = await (await fetch(`${t.url}/metrics`)).text();
      expect(metrics).toMatch(/^sandbox_ready 0$/m);
    } finally {
      await t.close();
    }
  });
});
