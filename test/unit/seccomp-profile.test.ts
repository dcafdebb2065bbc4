// The pod-level seccomp profile: rendered from the policy files, a superset of every language
// filter, without the dangerous set, and committed in sync (manifests/seccomp/).
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NATIVE_BUILD, POLICY_SOURCE, REPO_ROOT } from '../../runner/src/paths.js';
import { loadPolicy, PolicyError, type Policy } from '../../native/tools/policy.js';
import {
  allowedNames,
  COMMITTED_PROFILE,
  formatProfile,
  LANGUAGE_POLICIES,
  profileFromFiles,
  renderProfile,
  uncoveredRules,
  type SeccompProfile,
} from '../../native/tools/seccomp-profile.js';

const SYSCALLS_JSON = path.join(NATIVE_BUILD, 'syscalls.json');
if (!existsSync(SYSCALLS_JSON))
  throw new Error(`${SYSCALLS_JSON} is missing: run 'npm run build' (it builds native/)`);

const profile = profileFromFiles(POLICY_SOURCE, SYSCALLS_JSON);
const policy = (name: string): Policy => loadPolicy(POLICY_SOURCE, name);

/** The execveat rule native/sandbox.c adds to every language filter (not in a policy file). */
const LAUNCHER_EXEC: Policy = {
  name: 'launcher-exec',
  read: [],
  exec: [],
  rules: [
    {
      syscall: 'execveat',
      action: { kind: 'allow' },
      conditions: [
        { arg: 0, op: '==', value: 1000n },
        { arg: 4, op: '==', value: 0x1000n },
      ],
      source: 'native/sandbox.c',
    },
  ],
};

function policyDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sbp-policy-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

describe('the committed profile', () => {
  it(`${COMMITTED_PROFILE} is what the policies render (npm run profile -- --update)`, () => {
    const committed = readFileSync(path.join(REPO_ROOT, COMMITTED_PROFILE), 'utf8');
    expect(committed).toBe(formatProfile(profile));
  });
});

describe('the profile is a superset of every language filter', () => {
  it.each([...LANGUAGE_POLICIES])('everything %s may do, with network, is allowed', (language) => {
    for (const p of [policy(language), policy('network'), LAUNCHER_EXEC])
      expect(uncoveredRules(p, profile), `rules of ${p.name} the profile refuses`).toEqual([]);
  });

  it('states the argument checks of the policies (socket families, ioctl requests)', () => {
    // family, type and protocol: unix sockets; IPv4 and IPv6 streams and datagrams of TCP and
    // UDP only (other protocols would pass Landlock's TCP port rules)
    const socket = profile.syscalls
      .filter((e) => e.names.includes('socket'))
      .map((e) => (e.args ?? []).map((a) => `a${a.index} ${a.op} ${a.value} ${a.valueTwo ?? ''}`));
    const ip = (family: number) =>
      [
        [1, 0],
        [1, 6],
        [2, 0],
        [2, 17],
      ].map(([type, protocol]) => [
        `a0 SCMP_CMP_EQ ${family} 0`,
        `a1 SCMP_CMP_MASKED_EQ 15 ${type}`,
        `a2 SCMP_CMP_EQ ${protocol} 0`,
      ]);
    expect(socket.sort()).toEqual([['a0 SCMP_CMP_EQ 1 0'], ...ip(2), ...ip(10)].sort());
    const ioctl = profile.syscalls.filter((e) => e.names.includes('ioctl'));
    expect(ioctl.length).toBeGreaterThan(0);
    expect(ioctl.every((e) => e.args?.[0]?.index === 1 && e.args[0].op === 'SCMP_CMP_EQ')).toBe(
      true,
    );
  });

  it('answers clone3 with ENOSYS, so that glibc falls back to clone', () => {
    expect(profile.syscalls).toContainEqual({
      names: ['clone3'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: 38,
    });
  });

  it('refuses by default, with EPERM', () => {
    expect(profile.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(profile.defaultErrnoRet).toBe(1);
  });
});

describe('the dangerous set stays out', () => {
  it('allows none of the syscalls dangerous.policy kills', () => {
    const allowed = allowedNames(profile);
    const dangerous = policy('dangerous').rules.map((r) => r.syscall);
    expect(dangerous.length).toBeGreaterThan(20);
    expect(dangerous.filter((name) => allowed.has(name))).toEqual([]);
  });

  it('a syscall a policy kills is allowed only when another policy allows it', () => {
    const dir = policyDir({
      'a.policy': 'kill ptrace\nallow read\n',
      'b.policy': 'allow ptrace\n',
    });
    expect(allowedNames(renderProfile([loadPolicy(dir, 'a')])).has('ptrace')).toBe(false);
    expect(
      allowedNames(renderProfile([loadPolicy(dir, 'a'), loadPolicy(dir, 'b')])).has('ptrace'),
    ).toBe(true);
  });
});

describe('the superset check can fail', () => {
  it('names a rule the profile does not cover', () => {
    const narrower: SeccompProfile = {
      ...profile,
      syscalls: profile.syscalls.map((e) => ({
        ...e,
        names: e.names.filter((n) => n !== 'futex'),
      })),
    };
    expect(uncoveredRules(policy('python3'), narrower)).toEqual([
      expect.stringMatching(/common\.policy:\d+ allow futex$/),
    ]);
  });

  it('an entry with other argument values does not cover a conditional rule', () => {
    const dir = policyDir({ 'p.policy': 'allow socket if a0 == 2\n' });
    const other = renderProfile([
      loadPolicy(policyDir({ 'q.policy': 'allow socket if a0 == 16\n' }), 'q'),
    ]);
    expect(uncoveredRules(loadPolicy(dir, 'p'), other)).toHaveLength(1);
    const broader = renderProfile([loadPolicy(policyDir({ 'q.policy': 'allow socket\n' }), 'q')]);
    expect(uncoveredRules(loadPolicy(dir, 'p'), broader)).toEqual([]);
  });

  it('a rule on the run’s own pid is covered only by an unconditional entry', () => {
    const dir = policyDir({ 'p.policy': 'allow kill if a0 == $pid\n' });
    const p = loadPolicy(dir, 'p');
    // The pod profile cannot name a run's pid: it allows the syscall whole.
    const alone = renderProfile([p]);
    expect(alone.syscalls[0]!.names).toContain('kill');
    expect(uncoveredRules(p, alone)).toEqual([]);
    const withRunner = renderProfile([
      p,
      loadPolicy(policyDir({ 'r.policy': 'allow kill\n' }), 'r'),
    ]);
    expect(uncoveredRules(p, withRunner)).toEqual([]);
  });
});

describe('rendering', () => {
  it('states masked compares with the mask first, as libseccomp does', () => {
    const dir = policyDir({ 'p.policy': 'allow clone if a0 & 0x7E020000 == 0\n' });
    expect(renderProfile([loadPolicy(dir, 'p')]).syscalls[1]).toEqual({
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
    });
  });

  it('refuses what the launcher would refuse', () => {
    const known = new Set(['read']);
    for (const [text, message] of [
      ['allow nosuchcall\n', /unknown syscall 'nosuchcall'/],
      ['deny read\n', /unknown statement 'deny'/],
      ['errno EWHAT read\n', /unknown errno 'EWHAT'/],
      ['allow read write if a0 == 1\n', /names exactly one syscall/],
      ['allow read if a9 == 1\n', /bad condition/],
      // A zygote can patch the run's pid into equality tests only.
      ['allow kill if a0 <= $pid\n', /bad condition/],
      ['allow kill if a0 & $pid == 0\n', /bad condition/],
      ['allow kill if a0 & 0xff == $pid\n', /bad condition/],
      ['read relative/path\n', /not an absolute path/],
    ] as const) {
      const dir = policyDir({ 'p.policy': text });
      expect(() => loadPolicy(dir, 'p', known), text).toThrow(PolicyError);
      expect(() => loadPolicy(dir, 'p', known), text).toThrow(message);
    }
  });

  it('reads numbers as strtoull(…, 0) does: decimal, hex and octal', () => {
    const dir = policyDir({ 'p.policy': 'allow ioctl if a1 == 0x5401 && a2 == 010 && a3 == 9\n' });
    expect(loadPolicy(dir, 'p').rules[0]?.conditions.map((c) => c.value)).toEqual([
      0x5401n,
      8n,
      9n,
    ]);
  });
});
