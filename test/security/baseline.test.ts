// The security baseline: attack programs, in Python and in Node.js, that try and must fail.
// Each asserts both that the attack did not succeed and that the answer explains why.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRunner, TEST_KEY, type RunData, type TestRunner } from '../support/runner.js';

const CANARY = `canary-${process.pid}-${Date.now()}`;
let t: TestRunner;

beforeAll(async () => {
  // Something secret in the runner's own environment, for the attacks to look for.
  process.env.SANDBOXPOOL_TEST_SECRET = CANARY;
  t = await startTestRunner({ ENABLE_NETWORK: 'false' });
});
afterAll(async () => {
  await t.close();
  delete process.env.SANDBOXPOOL_TEST_SECRET;
});

function expectNoLeak(data: RunData): void {
  const all = data.stdout + data.stderr + data.error;
  expect(all).not.toContain(CANARY);
  expect(all).not.toContain(TEST_KEY);
  expect(all).not.toMatch(/root:[^:]*:\d+:/); // a line of /etc/shadow
}

describe("S1: reading what is not the run's", () => {
  const targets = [
    '/etc/shadow',
    `/proc/${process.pid}/environ`,
    `/proc/${process.pid}/cmdline`,
    '/proc/1/environ',
  ];

  it.each(targets)('python3 cannot read %s', async (target) => {
    const data = await t.run('python3', `print(open(${JSON.stringify(target)}, "rb").read())`);
    expect(data.exit_code).toBe(1);
    expect(data.stderr).toMatch(/PermissionError|FileNotFoundError/);
    expectNoLeak(data);
  });

  it.each(targets)('nodejs cannot read %s', async (target) => {
    const data = await t.run(
      'nodejs',
      `console.log(require('fs').readFileSync(${JSON.stringify(target)}, 'latin1'))`,
    );
    expect(data.exit_code).toBe(1);
    expect(data.stderr).toMatch(/EACCES|EPERM|ENOENT/);
    expectNoLeak(data);
  });

  it('python3 finds no secret in its environment or any process it can see', async () => {
    const data = await t.run(
      'python3',
      [
        'import os',
        'print(dict(os.environ))',
        `for pid in (1, ${process.pid}, os.getppid(), "self"):`,
        '    for f in ("environ", "cmdline"):',
        '        try: print(open(f"/proc/{pid}/{f}", "rb").read())',
        '        except OSError: pass',
      ].join('\n'),
    );
    expect(data.exit_code).toBe(0);
    expectNoLeak(data);
  });

  it('nodejs finds no secret in process.env or /proc of the runner', async () => {
    const data = await t.run(
      'nodejs',
      `console.log(JSON.stringify(process.env)); try { console.log(require('fs').readFileSync('/proc/' + process.ppid + '/environ', 'latin1')) } catch (e) { console.log(e.code) }`,
    );
    expect(data.exit_code).toBe(0);
    expect(data.stdout).toMatch(/EACCES|ENOENT/); // ENOENT: as root, /proc shows only the run
    expectNoLeak(data);
  });
});

describe('S2: writing outside the run directory', () => {
  it.each(['/tmp/sandboxpool-escape', '/etc/escape', 'RUNTIME'])(
    'python3 cannot write %s',
    async (target) => {
      const file =
        target === 'RUNTIME' ? path.join(t.config.workDir, 'runtime', 'python3.py') : target;
      const data = await t.run('python3', `open(${JSON.stringify(file)}, "a").write("pwned")`);
      expect(data.exit_code).toBe(1);
      // As root the run's root filesystem is a read-only view: EROFS rather than EACCES.
      expect(data.stderr).toMatch(/PermissionError|Read-only file system/);
      if (target !== 'RUNTIME') expect(existsSync(file)).toBe(false);
    },
  );

  it('nodejs cannot write outside its directory', async () => {
    const data = await t.run(
      'nodejs',
      `require('fs').writeFileSync('/tmp/sandboxpool-escape-js', 'pwned')`,
    );
    expect(data.exit_code).toBe(1);
    expect(existsSync('/tmp/sandboxpool-escape-js')).toBe(false);
  });

  it("a run's files are gone for the next run", async () => {
    const first = await t.run(
      'python3',
      'import os\nopen("secret.txt", "w").write("from run one")\nprint(os.getcwd())',
    );
    const dir = first.stdout.trim();
    expect(dir).toContain(t.config.workDir);
    expect(existsSync(dir)).toBe(false);
    const second = await t.run(
      'python3',
      `import os\nprint(sorted(os.listdir(".")))\ntry:\n    print(open(${JSON.stringify(dir + '/secret.txt')}).read())\nexcept OSError as e:\n    print(type(e).__name__)`,
    );
    expect(second.stdout).toBe('[]\nFileNotFoundError\n');
    const js = await t.run('nodejs', `console.log(JSON.stringify(require('fs').readdirSync('.')))`);
    expect(js.stdout).toBe('[]\n');
  });
});

describe('S3/S4: starting processes and forking', () => {
  const python: Array<[string, string, string]> = [
    ['subprocess', 'import subprocess\nsubprocess.run(["id"])', 'clone'],
    [
      'os.system',
      'import os\nif os.system("id") != 0: raise PermissionError(1, "system refused")',
      'clone',
    ],
    ['os.execv', 'import os\nos.execv("/usr/bin/id", ["id"])', 'execve'],
    ['os.posix_spawn', 'import os\nos.posix_spawn("/usr/bin/id", ["id"], {})', 'clone'],
    ['os.fork', 'import os\nos.fork()', 'clone'],
    [
      'raw fork syscall',
      'import ctypes, os\nif ctypes.CDLL(None).syscall(57) < 0: raise OSError(ctypes.get_errno() or 1, "fork")',
      'fork',
    ],
  ];
  it.each(python)('python3 %s is blocked and named', async (_name, code, syscall) => {
    const data = await t.run('python3', code);
    expect(data.exit_code).not.toBe(0);
    expect(data.stdout).not.toMatch(/uid=/);
    expect(data.error).toContain(`operation not permitted: ${syscall}`);
  });

  const node: Array<[string, string]> = [
    ['execSync', `require('child_process').execSync('id')`],
    [
      'spawnSync',
      `const r = require('child_process').spawnSync('/usr/bin/id'); if (r.error) throw r.error; console.log(String(r.stdout))`,
    ],
    ['execFileSync', `require('child_process').execFileSync('/usr/bin/id')`],
    ['fork', `require('child_process').fork('/dev/null')`],
  ];
  it.each(node)('nodejs child_process.%s is blocked and named', async (_name, code) => {
    const data = await t.run('nodejs', code);
    expect(data.exit_code).not.toBe(0);
    expect(data.stdout).not.toMatch(/uid=/);
    expect(data.error).toMatch(/^error: operation not permitted: \w+/);
  });
});

describe('S5: network while disabled', () => {
  it('python3 socket.socket() fails and the error says network is disabled', async () => {
    const data = await t.run(
      'python3',
      'import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)',
    );
    expect(data.error).toMatch(/^error: operation not permitted: socket \(network is disabled\)\n/);
  });

  it('python3 urllib cannot connect', async () => {
    const data = await t.run(
      'python3',
      'import urllib.request\nurllib.request.urlopen("http://127.0.0.1:9/", timeout=2)',
    );
    expect(data.exit_code).toBe(1);
    expect(data.error).toContain('operation not permitted: socket (network is disabled)');
  });

  it('python3 cannot open unix or netlink sockets either', async () => {
    for (const family of ['AF_UNIX', 'AF_NETLINK', 'AF_PACKET']) {
      const data = await t.run(
        'python3',
        `import socket\nsocket.socket(socket.${family}, socket.SOCK_DGRAM)`,
      );
      expect(data.error).toContain('operation not permitted: socket');
    }
  });

  it('nodejs net.connect fails with EPERM and the error says network is disabled', async () => {
    const data = await t.run('nodejs', `require('net').connect(9, '127.0.0.1')`);
    expect(data.exit_code).toBe(1);
    expect(data.error).toMatch(/^error: operation not permitted: socket \(network is disabled\)\n/);
  });

  it('nodejs fetch fails', async () => {
    const data = await t.run(
      'nodejs',
      `fetch('http://127.0.0.1:8123/').then(() => console.log('connected'), (e) => { console.log('failed:', e.cause?.code); throw e })`,
    );
    expect(data.stdout).toBe('failed: EPERM\n');
    expect(data.error).toMatch(/^error: operation not permitted: socket \(network is disabled\)\n/);
  });
});

describe('S6: signals and ptrace against the runner', () => {
  it('python3 cannot signal the runner', async () => {
    const data = await t.run(
      'python3',
      `import os, signal\nos.kill(${process.pid}, signal.SIGTERM)`,
    );
    expect(data.error).toContain('operation not permitted: kill');
  });

  it('nodejs cannot signal the runner', async () => {
    const data = await t.run('nodejs', `process.kill(${process.pid}, 'SIGTERM')`);
    expect(data.error).toContain('operation not permitted: kill');
  });

  it('python3 ptrace of the runner kills the run', async () => {
    const data = await t.run(
      'python3',
      `import ctypes\nctypes.CDLL(None).ptrace(16, ${process.pid}, 0, 0)\nprint("attached")`,
    );
    expect(data.stdout).toBe('');
    expect(data.exit_code).toBe(-1);
    expect(data.error).toMatch(/^error: operation not permitted: .*\(killed\)/);
  });

  it('the runner is alive and serving after all of it', async () => {
    expect((await t.run('python3', 'print("still here")')).stdout).toBe('still here\n');
  });
});
