// S2: write outside its own directory, fill the disk, leave files for the next run.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import type { RunnerMode } from '../../support/runner.js';
import type { Attack, Context, Expectation } from './types.js';
import { jsTry, pyTry } from './types.js';

const q = JSON.stringify;
const DISK = /^error: (disk limit exceeded|file size limit exceeded)/;
// Without root no mode can be changed at all (the run shares the runner's uid): fchmod is denied.
const UNREADABLE_TREE = (mode: RunnerMode): Expectation =>
  mode === 'root' ? { kind: 'blocked' } : { kind: 'denied', syscall: 'fchmod' };

/** The canary directory holds exactly what the suite put there, unchanged. */
function canaryIntact(c: Context): void {
  expect(readdirSync(c.canaryDir)).toEqual([path.basename(c.canaryFile)]);
  expect(readFileSync(c.canaryFile, 'utf8')).toBe(c.secret);
}

/** No run directory left holding the deep tree (its cleanup walks by descriptors). */
function noDeepTreeLeft(c: Context): void {
  const runs = path.join(c.workDir, 'runs');
  for (const run of existsSync(runs) ? readdirSync(runs) : [])
    for (const top of ['d'.repeat(250), 'hidden'])
      expect(existsSync(path.join(runs, run, top)), `${run}/${top.slice(0, 8)}`).toBe(false);
}

/** Both bootstraps, where the runner reads them (its copy as root) and in the repository. */
function bootstrapIntact(c: Context): void {
  // An append shows at the end: each file still ends as it was written.
  const lastLine = {
    'python3.py': '    main()\n',
    'nodejs.cjs': 'else main(2);\n',
  };
  for (const dir of [path.join(c.workDir, 'runtime'), path.join(c.repoRoot, 'runner/bootstrap')])
    for (const [file, text] of Object.entries(lastLine))
      if (existsSync(path.join(dir, file)))
        expect(readFileSync(path.join(dir, file), 'utf8').endsWith(text), file).toBe(true);
}

/** The Node.js startup snapshot, where the runner built it (as root), is unchanged. */
function snapshotIntact(c: Context): void {
  const blob = path.join(c.workDir, 'runtime', 'nodejs.blob');
  if (existsSync(blob))
    expect(readFileSync(blob).subarray(0, 5).toString('latin1')).not.toBe('pwned');
}

/** The runner's directories and installed files keep their modes. */
function modesIntact(c: Context): void {
  const mode = (f: string) => statSync(f).mode & 0o7777;
  expect(mode(path.join(c.workDir, 'runs'))).toBe(0o711);
  expect(mode(path.join(c.workDir, 'runtime'))).toBe(0o755);
  for (const f of ['runner/bootstrap/python3.py', 'runner/bootstrap/nodejs.cjs'])
    expect(mode(path.join(c.repoRoot, f))).toBe(0o644);
  expect(mode(path.join(c.repoRoot, 'native/build/libsandbox.so'))).toBe(0o755);
  for (const f of ['python3.py', 'nodejs.cjs', 'libsandbox.so'])
    expect(mode(path.join(c.workDir, 'runtime', f)) & 0o444).toBe(0o444);
}

/** Python: chmod 0 what the runner needs: by path, and through a descriptor of each file. */
const pyChmod = (c: Context) => `import glob, os
targets = [".."] + glob.glob(${q(`${c.workDir}/runtime/*`)}) + [${q(`${c.workDir}/runtime`)}, ${q(`${c.repoRoot}/runner/bootstrap/python3.py`)}, ${q(`${c.repoRoot}/native/build/libsandbox.so`)}, os.environ.get("LD_PRELOAD", "")]
changed = []
for t in targets:
    try:
        os.chmod(t, 0)
        changed.append(t)
    except OSError:
        pass
    try:
        fd = os.open(t, os.O_RDONLY)
        os.fchmod(fd, 0)
        changed.append(t)
    except OSError:
        pass
print("ESCAPED", changed) if changed else print("BLOCKED")
`;

export const attacks: Attack[] = [
  {
    name: 'chmod 0 of the runs directory, the runtime, the bootstraps and libsandbox.so',
    language: 'python3',
    code: pyChmod,
    expect: { kind: 'blocked' },
    after: modesIntact,
  },
  // Python
  {
    name: 'creates a file in a host directory anyone may write',
    language: 'python3',
    code: (c) => pyTry(`open(${q(`${c.canaryDir}/planted`)}, "w").write("x")`),
    expect: { kind: 'blocked' },
    after: canaryIntact,
  },
  {
    name: 'overwrites a host file anyone may write',
    language: 'python3',
    code: (c) => pyTry(`open(${q(c.canaryFile)}, "w").write("pwned")`),
    expect: { kind: 'blocked' },
    after: canaryIntact,
  },
  {
    name: "overwrites the runner's bootstrap",
    language: 'python3',
    code: (c) =>
      pyTry(
        `import glob\nfor f in glob.glob(${q(`${c.workDir}/runtime/*.py`)}) + [${q(`${c.repoRoot}/runner/bootstrap/python3.py`)}]:\n    open(f, "a").write("pwned")`,
      ),
    expect: { kind: 'blocked' },
    after: bootstrapIntact,
  },
  {
    // As root the runner builds a V8 startup snapshot every Node.js run starts from.
    name: 'overwrites the Node.js startup snapshot',
    language: 'python3',
    code: (c) =>
      pyTry(
        `import glob\nfiles = glob.glob(${q(`${c.workDir}/runtime/*.blob`)})\nfor f in files:\n    open(f, "r+b").write(b"pwned")\nif not files:\n    raise PermissionError("no snapshot here")`,
      ),
    expect: { kind: 'blocked' },
    after: snapshotIntact,
  },
  {
    // truncate(2) by path: Landlock governs it only from ABI 3 (Linux 6.2), so without root it is
    // refused outright (the run shares the runner's uid); as root DAC and Landlock refuse it.
    name: 'truncates the bootstraps, the snapshot, libsandbox.so and the canary by path',
    language: 'python3',
    code: (c) => `import errno, glob, os
targets = glob.glob(${q(`${c.workDir}/runtime/*`)}) + [${q(`${c.repoRoot}/runner/bootstrap/python3.py`)}, ${q(`${c.repoRoot}/runner/bootstrap/nodejs.cjs`)}, ${q(c.canaryFile)}]
changed = []
for t in targets:
    try:
        os.truncate(t, 0)
        changed.append(t)
    except OSError as e:
        if e.errno == errno.EPERM:
            raise  # the policy refused the call: the answer names it
print("ESCAPED", changed) if changed else print("BLOCKED")
`,
    expect: (mode) =>
      mode === 'root' ? { kind: 'blocked' } : { kind: 'denied', syscall: 'truncate' },
    after: (c) => {
      bootstrapIntact(c);
      snapshotIntact(c);
      canaryIntact(c);
    },
  },
  {
    name: 'creates a directory beside its own, in the runs directory',
    language: 'python3',
    code: () => pyTry('import os\nos.mkdir("../planted")'),
    expect: { kind: 'blocked' },
  },
  {
    name: 'writes to /dev/shm, /var/tmp and /tmp',
    language: 'python3',
    code: () =>
      pyTry(
        'for d in ("/dev/shm", "/var/tmp", "/tmp"):\n    try:\n        open(d + "/planted", "w").write("x")\n        print("ESCAPED", d)\n    except OSError:\n        pass\nraise PermissionError("none writable")',
      ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'fills the disk with one growing file',
    language: 'python3',
    code: 'f = open("big", "wb")\nwhile True:\n    f.write(b"x" * 65536)',
    expect: { kind: 'limit', error: DISK },
  },
  {
    name: 'fills the disk with many files',
    language: 'python3',
    code: 'i = 0\nwhile True:\n    open(f"f{i}", "wb").write(b"x" * 60000)\n    i += 1',
    expect: { kind: 'limit', error: DISK },
  },
  {
    // Deleted while open: no name in the directory, the space still taken.
    name: 'fills the disk with files it deletes but keeps open',
    language: 'python3',
    code: 'import os, time\nfds = []\nfor i in range(12):\n    fd = os.open(f"h{i}", os.O_CREAT | os.O_RDWR, 0o600)\n    os.write(fd, b"x" * (3 << 20))\n    os.unlink(f"h{i}")\n    fds.append(fd)\ntime.sleep(3)\nprint("ESCAPED")',
    expect: { kind: 'limit', error: DISK },
  },
  {
    // The first thread ends (exit(2), not exit_group), another holds the files: its /proc
    // entries show none of them.
    name: 'fills the disk with deleted files held by a thread after the first thread exits',
    language: 'python3',
    code: 'import ctypes, os, threading, time\ndef hold():\n    time.sleep(0.5)  # once the first thread is gone\n    fds = []\n    try:\n        for i in range(12):\n            fd = os.open(f"t{i}", os.O_CREAT | os.O_RDWR, 0o600)\n            os.write(fd, b"x" * (3 << 20))\n            os.unlink(f"t{i}")\n            fds.append(fd)\n    except OSError as e:\n        print("BLOCKED", e, flush=True)\n        return\n    time.sleep(3)\n    print("ESCAPED", flush=True)\nthreading.Thread(target=hold).start()\nctypes.CDLL(None).syscall(60, 0)',
    // As root the run's tmpfs refuses the writes; without root the watchdog ends the run.
    expect: (mode) => (mode === 'root' ? { kind: 'blocked' } : { kind: 'limit', error: DISK }),
  },
  {
    name: 'fills the disk with files it deletes but keeps mapped',
    language: 'python3',
    code: 'import ctypes, os, time\nlibc = ctypes.CDLL(None)\nlibc.mmap.restype = ctypes.c_void_p\nlibc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]\nfor i in range(12):\n    fd = os.open(f"m{i}", os.O_CREAT | os.O_RDWR, 0o600)\n    os.write(fd, b"x" * (3 << 20))\n    assert libc.mmap(None, 4096, 1, 1, fd, 0) not in (None, 2**64 - 1)\n    os.close(fd)\n    os.unlink(f"m{i}")\ntime.sleep(3)\nprint("ESCAPED")',
    expect: { kind: 'limit', error: DISK },
  },
  {
    // Beneath a path longer than PATH_MAX the watchdog's lstat and the cleanup's unlink fail
    // (ENAMETOOLONG): the files went uncounted, and the directory stayed for good.
    name: 'fills the disk beneath a path too long to name',
    language: 'python3',
    code: 'import os, time\nfor _ in range(20):\n    os.mkdir("d" * 250)\n    os.chdir("d" * 250)\nfor i in range(12):\n    with open(f"f{i}", "wb") as f:\n        f.write(b"x" * (3 << 20))\ntime.sleep(3)\nprint("ESCAPED")',
    expect: { kind: 'limit', error: DISK },
    after: noDeepTreeLeft,
  },
  {
    // Both: beneath a directory the cleanup cannot list (mkdir 0300 needs no chmod), a tree it
    // cannot name. Each way out alone (make it readable; walk by descriptors) failed.
    name: 'fills the disk beneath an unlistable directory and a path too long to name',
    language: 'python3',
    code: 'import os, time\nos.mkdir("hidden", 0o300)\nos.chdir("hidden")\nfor _ in range(20):\n    os.mkdir("d" * 250)\n    os.chdir("d" * 250)\nfor i in range(12):\n    with open(f"f{i}", "wb") as f:\n        f.write(b"x" * (3 << 20))\ntime.sleep(3)\nprint("ESCAPED")',
    expect: { kind: 'limit', error: DISK },
    after: noDeepTreeLeft,
  },
  {
    // Then the tree goes, the files stay open: /proc's links to them are too long to read.
    name: 'fills the disk with files it keeps open in a deleted tree too deep to name',
    language: 'python3',
    code: 'import os, time\nfor _ in range(20):\n    os.mkdir("d" * 250)\n    os.chdir("d" * 250)\nfds = []\nfor i in range(12):\n    fd = os.open(f"h{i}", os.O_CREAT | os.O_RDWR, 0o600)\n    os.write(fd, b"x" * (3 << 20))\n    os.unlink(f"h{i}")\n    fds.append(fd)\nfor _ in range(20):\n    os.chdir("..")\n    os.rmdir("d" * 250)\ntime.sleep(3)\nprint("ESCAPED")',
    expect: { kind: 'limit', error: DISK },
  },
  {
    // FALLOC_FL_KEEP_SIZE allocates past the end without RLIMIT_FSIZE's check.
    name: 'allocates gigabytes past the end of a file (fallocate KEEP_SIZE)',
    language: 'python3',
    code: 'import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]\nfd = os.open("big", os.O_CREAT | os.O_RDWR, 0o600)\nif libc.fallocate(fd, 1, 0, 2 << 30) != 0:\n    raise OSError(ctypes.get_errno(), "fallocate")\nprint("ESCAPED", os.fstat(fd).st_blocks * 512)',
    expect: { kind: 'denied', syscall: 'fallocate' },
  },
  {
    // 4 MiB a call, no byte written: without root, where only the watchdog's samples bound the
    // directory, a run took 19 GiB between two samples so; refused there. As root the run's
    // tmpfs is full at once.
    name: 'allocates files without writing them (posix_fallocate)',
    language: 'python3',
    code: 'import os\nfor i in range(200):\n    fd = os.open(f"f{i}", os.O_CREAT | os.O_RDWR, 0o600)\n    os.posix_fallocate(fd, 0, 4 << 20)\nprint("ESCAPED")',
    expect: (mode) =>
      mode === 'root' ? { kind: 'limit', error: DISK } : { kind: 'denied', syscall: 'fallocate' },
  },
  {
    name: 'CVE-2024-28189: leaves symlinks and an unreadable tree for the cleanup',
    language: 'python3',
    code: (c) =>
      `import os\nos.symlink(${q(c.canaryDir)}, "dir-link")\nos.symlink(${q(c.canaryFile)}, "file-link")\nos.makedirs("a/b")\nos.symlink("/", "a/b/root")\nfor d in ("a/b", "a"):\n    fd = os.open(d, os.O_RDONLY)\n    os.fchmod(fd, 0)\nprint("BLOCKED")`,
    expect: UNREADABLE_TREE,
    after: canaryIntact,
  },
  // Node.js
  {
    name: 'chmod 0 of the runs directory and the bootstrap',
    language: 'nodejs',
    code: (c) =>
      `const fs = require('fs'); const changed = []; for (const t of ['..', ${q(`${c.workDir}/runtime`)}, ${q(`${c.repoRoot}/runner/bootstrap/nodejs.cjs`)}, process.env.LD_PRELOAD]) { try { fs.chmodSync(t, 0); changed.push(t) } catch {} try { fs.fchmodSync(fs.openSync(t, 'r'), 0); changed.push(t) } catch {} } console.log(changed.length ? 'ESCAPED ' + changed : 'BLOCKED')`,
    expect: { kind: 'blocked' },
    after: modesIntact,
  },
  {
    name: 'creates a file in a host directory anyone may write',
    language: 'nodejs',
    code: (c) => jsTry(`require('fs').writeFileSync(${q(`${c.canaryDir}/planted`)}, 'x')`),
    expect: { kind: 'blocked' },
    after: canaryIntact,
  },
  {
    name: 'overwrites a host file anyone may write',
    language: 'nodejs',
    code: (c) => jsTry(`require('fs').writeFileSync(${q(c.canaryFile)}, 'pwned')`),
    expect: { kind: 'blocked' },
    after: canaryIntact,
  },
  {
    name: "appends to the runner's bootstrap",
    language: 'nodejs',
    code: (c) =>
      jsTry(
        `require('fs').appendFileSync(${q(`${c.repoRoot}/runner/bootstrap/nodejs.cjs`)}, 'pwned')`,
      ),
    expect: { kind: 'blocked' },
    after: bootstrapIntact,
  },
  {
    name: 'renames its own directory away',
    language: 'nodejs',
    code: () => jsTry(`require('fs').renameSync(process.cwd(), process.cwd() + '-kept')`),
    expect: { kind: 'blocked' },
  },
  {
    name: 'fills the disk with one growing file',
    language: 'nodejs',
    code: "const fs = require('fs'); const fd = fs.openSync('big', 'w'); const b = Buffer.alloc(65536); for (;;) fs.writeSync(fd, b)",
    expect: { kind: 'limit', error: DISK },
  },
  {
    name: 'fills the disk with many files',
    language: 'nodejs',
    code: "const fs = require('fs'); const b = Buffer.alloc(60000); for (let i = 0; ; i++) fs.writeFileSync('f' + i, b)",
    expect: { kind: 'limit', error: DISK },
  },
  {
    name: 'fills the disk beneath a path too long to name',
    language: 'nodejs',
    code: "const fs = require('fs'); for (let i = 0; i < 20; i++) { fs.mkdirSync('d'.repeat(250)); process.chdir('d'.repeat(250)) } const b = Buffer.alloc(3 << 20, 120); for (let i = 0; i < 12; i++) fs.writeFileSync('f' + i, b); setTimeout(() => console.log('ESCAPED'), 3000)",
    expect: { kind: 'limit', error: DISK },
    after: noDeepTreeLeft,
  },
  {
    name: 'CVE-2024-28189: leaves symlinks and an unreadable tree for the cleanup',
    language: 'nodejs',
    code: (c) =>
      `const fs = require('fs'); fs.symlinkSync(${q(c.canaryDir)}, 'dir-link'); fs.mkdirSync('a/b', { recursive: true }); fs.symlinkSync('/', 'a/b/root'); for (const d of ['a/b', 'a']) fs.fchmodSync(fs.openSync(d, 'r'), 0); console.log('BLOCKED')`,
    expect: UNREADABLE_TREE,
    after: canaryIntact,
  },
  {
    name: 'hard-links a host file into its directory to keep it',
    language: 'nodejs',
    code: (c) => jsTry(`require('fs').linkSync(${q(c.canaryFile)}, 'kept')`),
    expect: { kind: 'blocked' },
    after: canaryIntact,
  },
];
