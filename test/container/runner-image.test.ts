// The runner image, run the way a restricted pod runs it: its non-root user, no capabilities,
// a read-only root filesystem with a tmpfs for the run directories, no-new-privileges, and the
// pod-level seccomp profile rendered from native/policies/. Against it: the health check, Dify
// conformance, and a sample of the security baseline.
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenericContainer, Wait, type StartedTestContainer } from 'testcontainers';
import { conformanceSuite } from '../support/conformance.js';
import { documentedMetrics, undocumentedDifferences } from '../support/metrics-docs.js';
import {
  PROFILE_PATH,
  RunnerClient,
  containerIp,
  docker,
  images,
  seccompOption,
  type ContainerImages,
} from './docker.js';

const NAME = `sbp-restricted-${process.pid}`;
const NETWORK = `sbp-restricted-net-${process.pid}`;
const API_KEY = `restricted-key-${process.pid}`;
const CANARY = `canary-${process.pid}-${Date.now()}`;

/** GenericContainer with the one setting it lacks: a read-only root filesystem. */
class PodLikeContainer extends GenericContainer {
  withReadOnlyRootFilesystem(): this {
    this.hostConfig.ReadonlyRootfs = true;
    return this;
  }
}

/** The runner image as a restricted pod runs it, named NAME, on the internal network. */
function podLike(name: string): PodLikeContainer {
  return new PodLikeContainer(built.runner)
    .withName(name)
    .withNetworkMode(NETWORK)
    .withUser('10001:10001')
    .withDroppedCapabilities('ALL')
    .withReadOnlyRootFilesystem()
    .withTmpFs({ '/tmp': 'rw,noexec,nosuid,nodev,size=256m' })
    .withSecurityOpt('no-new-privileges', seccompOption());
}

let built: ContainerImages;
let container: StartedTestContainer | undefined;
let client: RunnerClient;

beforeAll(async () => {
  built = images();
  // Internal: the runner has no route out (network runs here reach nothing but this network).
  await docker(['network', 'create', '--internal', NETWORK]);
  container = await podLike(NAME)
    // SANDBOXPOOL_CANARY: a secret in the runner's environment, for the attacks to look for.
    // SANDBOX_METRICS_PORT as a SandboxPool's pods have it (its Service's `metrics` port).
    .withEnvironment({
      API_KEY,
      SANDBOXPOOL_CANARY: CANARY,
      LOG_LEVEL: 'warn',
      SANDBOX_METRICS_PORT: '9464',
    })
    .withWaitStrategy(Wait.forHealthCheck())
    .withStartupTimeout(120_000)
    .start();
  client = new RunnerClient(`http://${await containerIp(NAME, NETWORK)}:8194`, API_KEY);
});

afterAll(async () => {
  await container?.stop({ remove: true, timeout: 5_000 });
  await docker(['network', 'rm', NETWORK]).catch(() => undefined);
});

describe('the container', () => {
  it('runs as the pod spec says, and its health check turned healthy', async () => {
    const info = JSON.parse(await docker(['inspect', NAME])) as Array<{
      Config: { User: string };
      HostConfig: { ReadonlyRootfs: boolean; CapDrop: string[]; SecurityOpt: string[] };
      State: { Health: { Status: string } };
    }>;
    const [c] = info;
    expect(c?.State.Health.Status).toBe('healthy');
    expect(c?.Config.User).toBe('10001:10001');
    expect(c?.HostConfig.ReadonlyRootfs).toBe(true);
    expect(c?.HostConfig.CapDrop).toEqual(['ALL']);
    expect(c?.HostConfig.SecurityOpt.some((o) => o.startsWith('seccomp='))).toBe(true);
  });

  it('sandboxed code runs under both filters, without privileges', async () => {
    const data = await client.run(
      'python3',
      'for line in open("/proc/self/status"):\n    if line.split(":")[0] in ("Uid", "CapEff", "NoNewPrivs", "Seccomp", "Seccomp_filters"):\n        print(line.strip())',
    );
    const status = Object.fromEntries(
      data.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(/:\s+/)),
    ) as Record<string, string>;
    expect(status.Uid?.split(/\s+/)).toEqual(['10001', '10001', '10001', '10001']);
    expect(status.CapEff).toBe('0000000000000000');
    expect(status.NoNewPrivs).toBe('1');
    expect(status.Seccomp).toBe('2');
    // the pod profile and the language filter (at least)
    expect(Number(status.Seccomp_filters)).toBeGreaterThanOrEqual(2);
  });

  it('Node.js runs start from the startup snapshot the runner built at start', async () => {
    const data = await client.run(
      'nodejs',
      "console.log(require('fs').readFileSync('/proc/self/cmdline', 'latin1').split('\\0').join(' '))",
    );
    expect(data.stdout).toMatch(/ --snapshot-blob \/tmp\/sandboxpool\/runtime\/nodejs\.blob /);
  });

  it('the pod profile also confines what runs outside the sandboxes', async () => {
    // personality(0xffffffff) only asks; Docker's default profile allows it, ours (which leaves
    // the dangerous set out) does not.
    const out = await docker([
      'exec', NAME, 'python3', '-c',
      'import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nrc = libc.personality(ctypes.c_ulong(0xffffffff))\nprint(rc, os.strerror(ctypes.get_errno()) if rc == -1 else "allowed")',
    ]); // prettier-ignore
    expect(out).toBe('-1 Operation not permitted\n');
  });

  it('the image has Node.js 20 and the Python packages sandboxed code can import', async () => {
    const js = await client.run('nodejs', 'console.log(process.versions.node)');
    expect(js.stdout).toMatch(/^20\.\d+\.\d+\n$/);
    const res = await fetch(`${client.url}/v1/sandbox/dependencies?language=python3`, {
      headers: { 'X-Api-Key': API_KEY },
    });
    const body = (await res.json()) as { data: { dependencies: { name: string }[] } };
    expect(body.data.dependencies.map((d) => d.name)).toEqual([
      'jinja2',
      'requests',
      'httpx',
      'pysocks',
      'socksio',
    ]);
  });
});

describe('metrics', () => {
  it('serves every metric the README documents, with its type, on the metrics port', async () => {
    await client.run('python3', 'print(1)');
    const base = client.url.replace(/:8194$/, ':9464');
    const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(10_000) });
    expect(res.status).toBe(200);
    const text = await res.text();
    const documented = documentedMetrics('runner-metrics');
    expect(undocumentedDifferences(text, documented)).toEqual([]);
    expect(documented.length).toBeGreaterThanOrEqual(12);
    // The run above is counted.
    expect(text).toMatch(
      /^sandbox_executions_total\{language="python3",outcome="success"\} [1-9]/m,
    );
  });
});

describe('misconfigured', () => {
  it('without a writable work directory it stops at once, and says why', async () => {
    const started = docker(
      [
        'run', '--rm', '--network', 'none', '--read-only', '--cap-drop', 'ALL',
        '--security-opt', 'no-new-privileges', '--security-opt', `seccomp=${PROFILE_PATH}`,
        '-e', `API_KEY=${API_KEY}`, built.runner,
      ], // prettier-ignore
      60_000,
    );
    await expect(started).rejects.toThrow(
      /SANDBOX_WORK_DIR \/tmp\/sandboxpool cannot be created .*mount a tmpfs/,
    );
  });
});

describe("a mounted config.yaml (DifySandbox's /conf/config.yaml)", () => {
  it('sets what the image does not fix (its interpreters), the port included, and the health check follows it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sbp-conf-'));
    chmodSync(dir, 0o755);
    const file = path.join(dir, 'config.yaml');
    // As Dify's config.yaml.example has it: its interpreter paths are DifySandbox's image's.
    writeFileSync(
      file,
      'app:\n  port: 8195\n  key: yaml-key\nworker_timeout: 7\npython_path: /usr/local/bin/python3\nnodejs_path: /usr/local/bin/node\n',
      { mode: 0o644 },
    );
    const name = `${NAME}-yaml`;
    const c = await podLike(name)
      .withBindMounts([{ source: file, target: '/conf/config.yaml', mode: 'ro' }])
      .withWaitStrategy(Wait.forHealthCheck())
      .withStartupTimeout(120_000)
      .start();
    try {
      const yamlClient = new RunnerClient(
        `http://${await containerIp(name, NETWORK)}:8195`,
        'yaml-key',
      );
      expect((await yamlClient.run('python3', 'print(6 * 7)')).stdout).toBe('42\n');
    } finally {
      await c.stop({ remove: true, timeout: 5_000 });
    }
  }, 180_000);
});

describe('Dify conformance', () => {
  conformanceSuite(() => client);
});

/** Fails when the canary or the key shows up in anything the run returned. */
function expectNoLeak(data: { stdout: string; stderr: string; error: string }): void {
  const all = data.stdout + data.stderr + data.error;
  expect(all).not.toContain(CANARY);
  expect(all).not.toContain(API_KEY);
}

describe('security baseline (a sample)', () => {
  it.each(['/proc/1/environ', '/etc/shadow', '/opt/sandboxpool/package.json'])(
    'S1: python3 cannot read %s',
    async (target) => {
      const data = await client.run('python3', `print(open(${JSON.stringify(target)}).read())`);
      expect(data.exit_code).toBe(1);
      expect(data.stderr).toMatch(/PermissionError/);
      expectNoLeak(data);
    },
  );

  it('S1: nodejs finds no secret in its environment or in the runner’s', async () => {
    const data = await client.run(
      'nodejs',
      `console.log(JSON.stringify(process.env)); for (const p of [1, process.ppid]) { try { console.log(require('fs').readFileSync('/proc/' + p + '/environ', 'latin1')) } catch (e) { console.log(e.code) } }`,
    );
    expect(data.exit_code).toBe(0);
    expect(data.stdout).toMatch(/EACCES\nEACCES\n$/);
    expectNoLeak(data);
  });

  it('S2: nothing outside the run directory can be written', async () => {
    const data = await client.run(
      'python3',
      [
        'import errno',
        'for path in ("/tmp/sandboxpool/escape", "/tmp/escape", "/opt/sandboxpool/escape"):',
        '    try:',
        '        open(path, "w").write("x")',
        '        print("wrote", path)',
        '    except OSError as e:',
        '        print(errno.errorcode[e.errno])',
      ].join('\n'),
    );
    // Landlock refuses the writable tmpfs; the read-only root refuses before it looks.
    expect(data.stdout).toBe('EACCES\nEACCES\nEROFS\n');
  });

  it.each([
    ['python3', 'subprocess', 'import subprocess\nsubprocess.run(["id"])', 'clone'],
    ['python3', 'os.fork', 'import os\nos.fork()', 'clone'],
    ['python3', 'os.execv', 'import os\nos.execv("/usr/bin/id", ["id"])', 'execve'],
    ['nodejs', 'execSync', `require('child_process').execSync('id')`, undefined],
  ] as const)('S3/S4: %s %s cannot start a process', async (language, _name, code, syscall) => {
    const data = await client.run(language, code);
    expect(data.exit_code).not.toBe(0);
    expect(data.stdout).not.toMatch(/uid=/);
    expect(data.error).toMatch(
      syscall === undefined
        ? /^error: operation not permitted: \w+/
        : new RegExp(`operation not permitted: ${syscall}`),
    );
  });

  it('S5: a run without network cannot open a socket, and is told why', async () => {
    const py = await client.run(
      'python3',
      'import socket\nsocket.create_connection(("1.1.1.1", 80), timeout=2)',
      { enable_network: false },
    );
    expect(py.error).toMatch(/^error: operation not permitted: socket \(network is disabled\)\n/);
    const js = await client.run(
      'nodejs',
      `fetch('http://1.1.1.1/').catch((e) => { console.log(e.cause?.code); throw e })`,
      { enable_network: false },
    );
    expect(js.stdout).toBe('EPERM\n');
    expect(js.error).toMatch(/^error: operation not permitted: socket \(network is disabled\)\n/);
  });

  it('S6: the runner’s processes cannot be signalled', async () => {
    const data = await client.run('python3', 'import os, signal\nos.kill(1, signal.SIGTERM)');
    expect(data.error).toContain('operation not permitted: kill');
  });

  it.each([
    ['ptrace', 'import ctypes\nctypes.CDLL(None).ptrace(16, 1, 0, 0)\nprint("attached")'],
    ['io_uring_setup', 'import ctypes\nctypes.CDLL(None).syscall(425, 8, 0)\nprint("io_uring")'],
  ])('S8: %s kills the run', async (_name, code) => {
    const data = await client.run('python3', code);
    expect(data.stdout).toBe('');
    expect(data.exit_code).toBe(-1);
    expect(data.error).toMatch(/^error: operation not permitted: .*\(killed\)/);
  });

  it('S9: a memory bomb ends with a limit error, and the runner serves on', async () => {
    const data = await client.run('python3', 'x = bytearray(1024 * 1024 * 1024)');
    expect(data.error).toMatch(/^error: memory limit exceeded/);
    expect((await client.run('python3', 'print("still here")')).stdout).toBe('still here\n');
    const health = await fetch(`${client.url}/readyz`);
    expect(health.status).toBe(200);
  });
});
