// The files sandboxed interpreters need, laid out once under the work directory, and the
// arguments that tell the isolation sequence (launcher or libsandbox.so) what to apply.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { ConfigError, type Language, type RunnerConfig } from './config.js';
import { nodeModulePaths, packagesDir } from './dependencies.js';
import {
  BOOTSTRAP_SOURCE,
  BUNDLES,
  DEPENDENCIES_DIR,
  NATIVE_BUILD,
  POLICY_SOURCE,
} from './paths.js';

const execFileAsync = promisify(execFile);

export const LAUNCHER = path.join(NATIVE_BUILD, 'sandbox-launcher');

/** What one sandboxed process is: its language, its network, its directory and identity. */
export interface SandboxIdentity {
  language: Language;
  network: boolean;
  workdir: string;
  /** Its own uid (and gid) when the runner is root; undefined otherwise. */
  uid: number | undefined;
}

/** What the runner needs as root: bit number and name (linux/capability.h). */
const ROOT_CAPABILITIES: ReadonlyArray<[number, string]> = [
  [21, 'CAP_SYS_ADMIN'], // the run's mount namespace, tmpfs, /proc and pivot_root
  [7, 'CAP_SETUID'], // the drop to the run's uid
  [6, 'CAP_SETGID'], // ... and gid, and no supplementary groups
  [5, 'CAP_KILL'], // ending a run (another uid) at its time or output limit
];

/** Hands out uids so that no two live sandboxed processes share one (when root). */
class UidPool {
  private readonly free: number[];
  constructor(base: number, size: number) {
    this.free = Array.from({ length: size }, (_, i) => base + size - 1 - i);
  }
  take(): number {
    const uid = this.free.pop();
    if (uid === undefined)
      throw new Error('no free sandbox uid: more live sandboxes than expected');
    return uid;
  }
  give(uid: number): void {
    this.free.push(uid);
  }
}

export class Runtime {
  readonly runtimeDir: string;
  readonly runsDir: string;
  readonly policyDir: string;
  readonly asRoot = process.geteuid?.() === 0;
  /**
   * Where sandboxed interpreters find libsandbox.so and the bootstraps. As root: copies in the
   * runtime directory, root's files, readable by every run's uid. Without root every file the
   * runner writes has the runs' uid too, and a run could change the modes of what it can open
   * (fchmod): then the installed files are used in place, which belong to someone else.
   */
  readonly library: string;
  readonly bootstrapDir: string;
  /**
   * A V8 startup snapshot of nodejs.cjs, built by prepare() with the flags every Node.js run
   * gets (V8 refuses a snapshot built with others), in the runtime directory. Runs only read it:
   * without root it has their uid, like the policy copies beside it, and, like them, Landlock
   * keeps it read-only to them and the policy refuses their mode changes.
   */
  nodeSnapshot?: string;
  /**
   * Problems found by prepare() that do not stop the runner (logged at start): weaker isolation,
   * or Node.js runs starting without the snapshot.
   */
  readonly warnings: string[] = [];
  private readonly syscallNames = new Map<number, string>();
  /** Per language, the installation prefix of its interpreter (readable in the sandbox). */
  private readonly prefixes = new Map<Language, string>();
  private readonly uids: UidPool;

  constructor(readonly config: RunnerConfig) {
    this.runtimeDir = path.join(config.workDir, 'runtime');
    this.runsDir = path.join(config.workDir, 'runs');
    this.policyDir = path.join(this.runtimeDir, 'policies');
    // libsandbox.so is preloaded into every sandboxed interpreter. As root, runs have uids of
    // their own that may not read the runner's files: they get a copy in the runtime directory
    // (which must then allow executable mappings). Otherwise runs share the runner's uid and
    // the built file serves, so the work directory may be mounted noexec (Docker's tmpfs is).
    this.library = this.asRoot
      ? path.join(this.runtimeDir, 'libsandbox.so')
      : path.join(NATIVE_BUILD, 'libsandbox.so');
    this.bootstrapDir = this.asRoot ? this.runtimeDir : BOOTSTRAP_SOURCE;
    // Live at once: the runs executing, the warm pools, and the ones being torn down.
    const size = 2 * (config.maxWorkers + config.warmPython3 + config.warmNodejs) + 16;
    this.uids = new UidPool(config.uidBase, size);
  }

  /** Creates the work directory layout; fails with a clear message when it is unsafe. */
  async prepare(): Promise<void> {
    const { workDir } = this.config;
    await fs.mkdir(workDir, { recursive: true, mode: 0o711 }).catch((err: Error) => {
      throw new Error(
        `SANDBOX_WORK_DIR ${workDir} cannot be created (${err.message}): it must be writable (with a read-only root filesystem, mount a tmpfs or an emptyDir there or above)`,
      );
    });
    const st = await fs.lstat(workDir);
    if (!st.isDirectory() || st.uid !== process.geteuid?.())
      throw new Error(`${workDir} must be a directory owned by the runner's user`);
    await fs.chmod(workDir, 0o711);
    await this.claim();
    await removeTree(this.runtimeDir);
    await removeTree(this.runsDir);
    await fs.mkdir(this.runsDir, { mode: 0o711 });
    await fs.mkdir(this.policyDir, { recursive: true, mode: 0o755 });
    await fs.chmod(this.runtimeDir, 0o755);

    for (const name of await fs.readdir(POLICY_SOURCE))
      if (name.endsWith('.policy'))
        await fs.copyFile(path.join(POLICY_SOURCE, name), path.join(this.policyDir, name));
    for (const name of await fs.readdir(BOOTSTRAP_SOURCE))
      await fs.copyFile(path.join(BOOTSTRAP_SOURCE, name), path.join(this.runtimeDir, name));
    // Runs of uids of their own (as root) may not read the runner's files: they get copies.
    await fs.copyFile(
      path.join(NATIVE_BUILD, 'libsandbox.so'),
      path.join(this.runtimeDir, 'libsandbox.so'),
    );
    const bundle = path.join(BUNDLES, 'proxy-agents.cjs');
    await fs.copyFile(bundle, path.join(this.runtimeDir, 'proxy-agents.cjs')).catch(() => {
      throw new Error(`${bundle} is missing: run 'npm run build'`);
    });
    for (const name of await fs.readdir(this.runtimeDir, { recursive: true }))
      await fs.chmod(path.join(this.runtimeDir, name), name.includes('.') ? 0o644 : 0o755);
    await this.buildNodeSnapshot();

    const table = JSON.parse(
      await fs.readFile(path.join(NATIVE_BUILD, 'syscalls.json'), 'utf8'),
    ) as Record<string, string>;
    for (const [nr, name] of Object.entries(table)) this.syscallNames.set(Number(nr), name);
    const known = new Set(this.syscallNames.values());
    const extra = this.config.allowedSyscalls.map((s) => {
      if (!/^\d+$/.test(s)) {
        // Refused here, not by the launcher at the first run (a runner that never gets ready).
        if (!known.has(s))
          throw new ConfigError(`ALLOWED_SYSCALLS: no syscall named '${s}' on this machine`);
        return s;
      }
      const name = this.syscallNames.get(Number(s));
      if (name === undefined)
        throw new ConfigError(`ALLOWED_SYSCALLS: no syscall number ${s} on this machine`);
      return name;
    });
    await fs.writeFile(
      path.join(this.policyDir, 'extra.policy'),
      `# ALLOWED_SYSCALLS from the runner's configuration\n${extra.length > 0 ? `allow ${extra.join(' ')}\n` : ''}`,
      { mode: 0o644 },
    );
    await fs.access(LAUNCHER, fsConstants.X_OK).catch(() => {
      throw new Error(`${LAUNCHER} is missing: run 'npm run build'`);
    });
    const work = await fs.realpath(this.config.workDir);
    for (const [language, setting, file] of [
      ['python3', 'PYTHON_PATH', this.config.pythonPath],
      ['nodejs', 'NODEJS_PATH', this.config.nodejsPath],
    ] as const) {
      const real = await fs.realpath(file).catch(() => {
        throw new ConfigError(`${setting}: ${file} does not exist`);
      });
      // What runs may read of the interpreter's installation: its prefix (/usr of /usr/bin/node).
      // Not / (everything), nor a directory holding the work directory (other runs' files, and
      // without root nothing else keeps one run out of another's directory).
      const prefix = path.dirname(path.dirname(real));
      const why =
        prefix === path.parse(prefix).root
          ? 'its prefix would be /, which would let runs read the whole filesystem'
          : work === prefix || work.startsWith(`${prefix}${path.sep}`)
            ? `its prefix ${prefix} holds SANDBOX_WORK_DIR ${work}, which would let runs read each other's files`
            : undefined;
      if (why !== undefined)
        throw new ConfigError(
          `${setting}: ${real}: ${why}; install it under a directory of its own, e.g. /opt/${language}/bin/`,
        );
      this.prefixes.set(language, prefix);
    }
    if (!this.asRoot) await this.checkOwnership();
  }

  /** Builds nodeSnapshot; when Node.js cannot, runs start from the script (and a warning says why). */
  private async buildNodeSnapshot(): Promise<void> {
    const blob = path.join(this.runtimeDir, 'nodejs.blob');
    try {
      await execFileAsync(
        this.config.nodejsPath,
        [
          ...this.nodeFlags(),
          '--snapshot-blob',
          blob,
          '--build-snapshot',
          path.join(this.bootstrapDir, 'nodejs.cjs'),
        ],
        { env: {}, cwd: this.runtimeDir, timeout: 60_000 },
      );
      await fs.chmod(blob, 0o644);
      this.nodeSnapshot = blob;
    } catch (err) {
      const why = ((err as { stderr?: string }).stderr ?? (err as Error).message).trim();
      this.warnings.push(
        `the Node.js startup snapshot could not be built (${why.split('\n').at(-1)}): Node.js runs start from the script, about 10 ms of CPU slower`,
      );
    }
  }

  /**
   * As root, the capabilities the runner needs and may have been denied (a container's
   * `--cap-drop`): undefined when all are there. The launcher fails closed without the first
   * three; without CAP_KILL the runner could not end a run of another uid at its time limit.
   */
  async missingCapabilities(): Promise<string | undefined> {
    if (!this.asRoot) return undefined;
    const status = await fs.readFile('/proc/self/status', 'utf8');
    const effective = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
    const missing = ROOT_CAPABILITIES.filter(([bit]) => (effective & (1n << BigInt(bit))) === 0n);
    if (missing.length === 0) return undefined;
    return `started as root without ${missing.map(([, name]) => name).join(', ')}: as root the runner needs CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID and CAP_KILL (or start it as a non-root user)`;
  }

  /** Without root: what runs may open must not be the runner's (runs share its uid). */
  private async checkOwnership(): Promise<void> {
    const uid = process.geteuid?.();
    // Every path a run is granted to read, for either language (what sandboxArgs passes).
    const granted = new Set<string>();
    for (const language of ['python3', 'nodejs'] as const) {
      const args = this.sandboxArgs({ language, network: false, workdir: '/', uid: undefined });
      args.forEach((arg, i) => {
        if (arg === '--read' && args[i + 1] !== undefined) granted.add(args[i + 1]!);
      });
    }
    // The snapshot is the runner's by construction (see nodeSnapshot).
    if (this.nodeSnapshot !== undefined) granted.delete(this.nodeSnapshot);
    for (const file of granted) {
      const st = await fs.stat(file).catch(() => undefined);
      if (st?.uid === uid)
        this.warnings.push(
          `${file} belongs to the runner's uid ${uid}, which sandboxed runs share when the runner is not root: a run could change its mode (install the runner and interpreters as another user, e.g. root, as in the container image)`,
        );
    }
  }

  /** Two runners on one work directory would delete each other's files: refuse to start. */
  private async claim(): Promise<void> {
    const pidFile = path.join(this.config.workDir, 'runner.pid');
    const other = Number((await fs.readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (other > 0 && other !== process.pid) {
      const cmdline = await fs.readFile(`/proc/${other}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.includes('node'))
        throw new Error(
          `SANDBOX_WORK_DIR ${this.config.workDir} is in use by another runner (pid ${other}); give each runner its own`,
        );
    }
    await fs.writeFile(pidFile, `${process.pid}\n`, { mode: 0o644 });
  }

  syscallName(nr: number): string {
    return this.syscallNames.get(nr) ?? `syscall ${nr}`;
  }

  /** A fresh identity for one sandboxed process; give it back with release(). */
  allocate(language: Language, network: boolean): SandboxIdentity {
    return {
      language,
      network,
      workdir: path.join(this.runsDir, randomUUID()),
      uid: this.asRoot ? this.uids.take() : undefined,
    };
  }

  /**
   * Removes the process's directory: without root the run's files are in it. As root there is
   * none on the host (the run's directory was a tmpfs of its own mount namespace).
   */
  async removeDirectory(id: SandboxIdentity): Promise<void> {
    if (!this.asRoot) await removeTree(id.workdir).catch(() => undefined);
  }

  /** Removes the process's directory and frees its uid; call once it has exited. */
  async release(id: SandboxIdentity): Promise<void> {
    await this.removeDirectory(id);
    if (id.uid !== undefined) this.uids.give(id.uid);
  }

  /** The interpreter command line for a process started through the launcher. */
  interpreterArgs(language: Language): string[] {
    const { config } = this;
    if (language === 'python3')
      return [
        config.pythonPath,
        '-I',
        '-B',
        '-X',
        'utf8',
        path.join(this.bootstrapDir, 'python3.py'),
        // Where import also looks: SANDBOX_PYTHON_PACKAGES.
        packagesDir(config).python,
      ];
    return [
      config.nodejsPath,
      ...this.nodeFlags(),
      ...(this.nodeSnapshot !== undefined
        ? ['--snapshot-blob', this.nodeSnapshot]
        : [path.join(this.bootstrapDir, 'nodejs.cjs')]),
      // Where require() also looks: the packages of dependencies/ and SANDBOX_NODEJS_PACKAGES.
      nodeModulePaths(config).join(':'),
    ];
  }

  /** Node.js's options for every run (and for building its snapshot). */
  private nodeFlags(): string[] {
    // V8's heap limit below the memory limit, so that running out is a clean, named error.
    const heapMiB = Math.max(16, Math.floor(this.config.memoryMiB * 0.75));
    return [`--max-old-space-size=${heapMiB}`, '--no-addons'];
  }

  /** The environment a sandboxed program sees (besides PATH, HOME, TMPDIR and LANG). */
  programEnv(id: SandboxIdentity): Record<string, string> {
    // One computation thread per run: runs already fill the CPUs (MAX_WORKERS), and OpenBLAS
    // with a thread per CPU wants more memory than a run has (it then retries forever).
    const env: Record<string, string> = {
      OPENBLAS_NUM_THREADS: '1',
      OMP_NUM_THREADS: '1',
      MKL_NUM_THREADS: '1',
    };
    if (!id.network) return env;
    for (const [name, value] of [
      ['HTTP_PROXY', this.config.httpProxy],
      ['HTTPS_PROXY', this.config.httpsProxy],
      ['NO_PROXY', this.config.noProxy],
    ] as const) {
      if (value === '') continue;
      env[name] = value;
      env[name.toLowerCase()] = value;
    }
    return env;
  }

  /** The options of the isolation sequence (the launcher's, without "-- INTERPRETER"). */
  sandboxArgs(id: SandboxIdentity): string[] {
    const { config } = this;
    const args = [
      '--policy-dir', this.policyDir,
      '--policy', id.language,
      '--policy', 'extra',
      '--workdir', id.workdir,
      '--memory-bytes', String(config.memoryMiB * 1024 * 1024),
      // Python: address space bounded (page tables of read-only mappings; see sandbox.c).
      ...(id.language === 'python3' ? ['--address-space-bytes', String(pythonAddressSpace(config))] : []),
      '--cpu-seconds', String(config.cpuSeconds),
      '--file-bytes', String(config.maxFileBytes),
      '--open-files', String(config.maxOpenFiles),
      '--processes', String(config.maxThreads),
      '--disk-bytes', String(config.maxDiskBytes),
      '--disk-files', String(config.maxFiles),
      '--read', this.bootstrapDir,
      '--read', packagesDir(config).root,
      '--read', DEPENDENCIES_DIR,
      '--read', this.library,
      // Without root the proxy agents are read where they were built (see nodejs.cjs).
      ...(this.asRoot ? [] : ['--read', BUNDLES]),
      ...(id.language === 'nodejs' && this.nodeSnapshot !== undefined
        ? ['--read', this.nodeSnapshot]
        : []),
      '--read', this.prefixes.get(id.language) ?? '/usr',
      '--landlock', config.landlock,
      '--env', `LD_PRELOAD=${this.library}`,
    ]; // prettier-ignore
    // With a uid of its own, a run may change modes by path (it reaches only its own files) and
    // allocate within its tmpfs (fallocate).
    if (id.uid !== undefined)
      args.push('--uid', String(id.uid), '--gid', String(id.uid), '--policy', 'own-uid');
    if (id.network) {
      args.push('--policy', 'network', '--network');
      for (const port of config.connectPorts ?? []) args.push('--connect-port', String(port));
    }
    for (const [name, value] of Object.entries(this.programEnv(id)))
      args.push('--env', `${name}=${value}`);
    return args;
  }
}

/**
 * A Python run's address space (RLIMIT_AS): its memory limit, what each of its threads may
 * reserve beyond it (glibc's malloc arena of up to 64 MiB and an 8 MiB stack, so that the limit
 * never fails a thread below SANDBOX_MAX_THREADS), and 16 GiB for anything else (a zygote child
 * starts with the zygote's mappings). The page tables of one big mapping stay at 1/512 of it;
 * many small mappings far apart cost a page table each, which the watchdog bounds (VmPTE). Not
 * for Node.js, whose V8 reserves ~10 GiB for each WebAssembly memory and whose code cannot map
 * memory.
 */
function pythonAddressSpace(config: RunnerConfig): number {
  const MiB = 1024 * 1024;
  return config.memoryMiB * MiB + config.maxThreads * 72 * MiB + 16 * 1024 * MiB;
}

/** Removes a run directory even when the program left it unreadable for us (chmod 000). */
export async function removeTree(dir: string): Promise<void> {
  try {
    // Most runs leave their directory empty: one rmdir, not a recursive walk.
    await fs.rmdir(dir);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw err;
  }
  try {
    await fs.rm(dir, { recursive: true, force: true });
  } catch {
    // What a run can leave that fs.rm cannot take: directories it made unreadable (mkdir with
    // mode 0300 needs no chmod), a tree nested deeper than a path can name (ENAMETOOLONG), or
    // both. chmod(1) and rm(1) walk by directory descriptors and follow no symlink. Left
    // behind, the tree would keep its space for good, and the next start's cleanup of the runs
    // directory would fail.
    await execFileAsync('/bin/chmod', ['-R', 'u+rwx', '--', dir]).catch(() => undefined);
    await execFileAsync('/bin/rm', ['-rf', '--one-file-system', '--', dir]).catch(
      (e: Error & { stderr?: string }) => {
        throw new Error(`rm -rf ${dir}: ${e.stderr?.trim() || e.message}`);
      },
    );
  }
}
