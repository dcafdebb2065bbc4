// S7: escalate: setuid binaries, capabilities, no_new_privs bypass, personality, prctl tricks.
import type { Attack, Context } from './types.js';
import { jsTry, pySyscall, pyTry } from './types.js';

/**
 * Python: what the kernel says of this process: no capabilities, no_new_privs, seccomp, and as
 * root a uid and gid of its own with no supplementary groups (dify-sandbox before #249 dropped
 * the uid before the gid and left group 0).
 */
const pyIdentity = (c: Context) => `import os
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
field = lambda k: status[k].split()
problems = []
if field("CapEff") != ["0000000000000000"] or field("CapPrm") != ["0000000000000000"]:
    problems.append("capabilities " + status["CapEff"])
if field("NoNewPrivs") != ["1"]:
    problems.append("no_new_privs off")
if field("Seccomp") != ["2"]:
    problems.append("no seccomp filter")
uids, gids = os.getresuid(), os.getresgid()
if 0 in uids or 0 in gids or os.getgroups():
    problems.append(f"uids {uids} gids {gids} groups {os.getgroups()}")
if ${c.mode === 'root' ? 'True' : 'False'} and (len(set(uids)) != 1 or uids[0] < 1000):
    problems.append(f"not a uid of its own: {uids}")
print("ESCAPED " + "; ".join(problems) if problems else "BLOCKED confined")
`;

export const attacks: Attack[] = [
  // Python
  {
    name: 'dify-sandbox <#249: gid 0, groups or capabilities left after the drop',
    language: 'python3',
    code: pyIdentity,
    expect: { kind: 'blocked' },
  },
  {
    name: 'setuid(0)',
    language: 'python3',
    code: 'import os\nos.setuid(0)\nprint("ESCAPED")',
    expect: { kind: 'denied', syscall: 'setuid' },
  },
  {
    name: 'setgid(0) and setgroups([0])',
    language: 'python3',
    code: 'import os\nos.setgroups([0])\nos.setgid(0)\nprint("ESCAPED")',
    expect: { kind: 'denied', syscall: /^set(groups|gid)$/ },
  },
  {
    name: 'capset: raise every capability',
    language: 'python3',
    code: 'import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nhdr = (ctypes.c_uint32 * 2)(0x20080522, 0)\ndata = (ctypes.c_uint32 * 6)(*([0xffffffff] * 6))\nif libc.capset(hdr, data) != 0:\n    raise OSError(ctypes.get_errno(), "capset")\nprint("ESCAPED")',
    expect: { kind: 'denied', syscall: 'capset' },
  },
  {
    name: 'prctl: turn no_new_privs off, become dumpable, set a seccomp mode',
    language: 'python3',
    code: pyTry(
      'import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nfor args in ((38, 0), (4, 1), (22, 0)):\n    if libc.prctl(*args, 0, 0, 0) == 0:\n        print("ESCAPED", args)\nraise OSError(ctypes.get_errno(), "prctl refused")',
    ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'personality(READ_IMPLIES_EXEC)',
    language: 'python3',
    code: pySyscall(135, ['0x0400000']),
    expect: { kind: 'killed', syscall: 'personality' },
  },
  {
    name: 'executes a setuid-root binary',
    language: 'python3',
    code: 'import os\nfor b in ("/usr/bin/su", "/usr/bin/passwd", "/bin/mount"):\n    if os.path.exists(b):\n        os.execv(b, [b])\nraise PermissionError(1, "no setuid binary to try")',
    expect: { kind: 'fails', error: /operation not permitted|PermissionError/ },
  },
  // Node.js
  {
    name: 'dify-sandbox <#249: gid 0, groups or capabilities left after the drop',
    language: 'nodejs',
    code: (
      c,
    ) => `const s = require('fs').readFileSync('/proc/self/status', 'utf8'); const f = (k) => new RegExp('^' + k + ':[ \\\\t]*(.*)$', 'm').exec(s)[1].trim();
const problems = [];
if (f('CapEff') !== '0000000000000000' || f('CapPrm') !== '0000000000000000') problems.push('caps ' + f('CapEff'));
if (f('NoNewPrivs') !== '1') problems.push('no_new_privs off');
if (f('Seccomp') !== '2') problems.push('no seccomp');
const ids = [...f('Uid').split(/\\s+/), ...f('Gid').split(/\\s+/)].map(Number);
if (ids.includes(0) || f('Groups') !== '') problems.push('ids ' + ids + ' groups ' + f('Groups'));
if (${c.mode === 'root'} && new Set(f('Uid').split(/\\s+/)).size !== 1) problems.push('uids differ');
console.log(problems.length ? 'ESCAPED ' + problems.join('; ') : 'BLOCKED confined');`,
    expect: { kind: 'blocked' },
  },
  {
    name: 'process.setuid(0)',
    language: 'nodejs',
    code: "process.setuid(0); console.log('ESCAPED')",
    expect: { kind: 'denied', syscall: 'setuid' },
  },
  {
    name: 'process.setgid(0)',
    language: 'nodejs',
    code: "process.setgid(0); console.log('ESCAPED')",
    expect: { kind: 'denied', syscall: 'setgid' },
  },
  {
    name: 'process.setgroups([0])',
    language: 'nodejs',
    code: "process.setgroups([0]); console.log('ESCAPED')",
    expect: { kind: 'denied', syscall: 'setgroups' },
  },
  {
    name: 'process.seteuid(0) and setegid(0)',
    language: 'nodejs',
    code: jsTry('process.setegid(0); process.seteuid(0)'),
    expect: { kind: 'blocked' },
  },
  {
    name: 'executes a setuid-root binary',
    language: 'nodejs',
    code: "require('child_process').execFileSync('/usr/bin/su', ['-c', 'id'])",
    expect: { kind: 'denied', syscall: /^(clone|clone3|fork|vfork|execve)$/ },
  },
];
