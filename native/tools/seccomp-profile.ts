// The pod-level seccomp profile (OCI runtime format: Docker's --security-opt seccomp=FILE,
// Kubernetes' seccompProfile type Localhost), rendered from native/policies/.
//
// A pod profile filters every process of the container at once: the runner (Node.js), the
// Python zygote, the launcher before its own filter is loaded, and every sandboxed interpreter
// under its per-language filter. Both filters apply to a sandboxed process, and the stricter
// action wins, so the profile must be the UNION of what each of them needs: every language
// policy, network.policy, and runner.policy (the runner's, the zygote's and the launcher's own
// needs). The dangerous set (`kill` lines) stays out unless runner.policy allows a call; what is
// out fails with EPERM, and the per-language filter still kills a sandboxed process for it.
import path from 'node:path';
import {
  ERRNOS,
  PolicyError,
  knownSyscalls,
  loadPolicy,
  type Condition,
  type Policy,
  type Rule,
} from './policy.js';

/** The policies whose union the profile allows, in the order they are read. */
export const PROFILE_POLICIES = ['python3', 'nodejs', 'network', 'own-uid', 'runner'] as const;

/** The languages whose filters must stay within the profile. */
export const LANGUAGE_POLICIES = ['python3', 'nodejs'] as const;

/** Where the rendered profile is committed (relative to the repository), for docker-compose
 * and the operator; a unit test fails when it differs from what the policies render. */
export const COMMITTED_PROFILE = path.join('manifests', 'seccomp', 'sandboxpool-runner.json');

/**
 * Reads PROFILE_POLICIES from POLICY_DIR, checking every syscall name (and EXTRA) against the
 * machine's table (native/build/syscalls.json), and renders the profile.
 */
export function profileFromFiles(
  policyDir: string,
  syscallsJson: string,
  extra: string[] = [],
): SeccompProfile {
  const known = knownSyscalls(syscallsJson);
  for (const name of extra)
    if (!known.has(name)) throw new PolicyError(`--allow: unknown syscall '${name}'`);
  return renderProfile(
    PROFILE_POLICIES.map((name) => loadPolicy(policyDir, name, known)),
    extra,
  );
}

export interface ProfileArg {
  index: number;
  value: number;
  valueTwo: number;
  op:
    | 'SCMP_CMP_EQ'
    | 'SCMP_CMP_NE'
    | 'SCMP_CMP_LT'
    | 'SCMP_CMP_LE'
    | 'SCMP_CMP_GT'
    | 'SCMP_CMP_GE'
    | 'SCMP_CMP_MASKED_EQ';
}

export interface ProfileEntry {
  names: string[];
  action: 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO';
  errnoRet?: number;
  args?: ProfileArg[];
}

export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ERRNO';
  defaultErrnoRet: number;
  architectures: string[];
  syscalls: ProfileEntry[];
}

/** The architectures the policies are written for (x86-64 and arm64; no 32-bit entry points). */
export const ARCHITECTURES = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_AARCH64'];

const OPS: Record<Condition['op'], ProfileArg['op']> = {
  '==': 'SCMP_CMP_EQ',
  '!=': 'SCMP_CMP_NE',
  '<': 'SCMP_CMP_LT',
  '<=': 'SCMP_CMP_LE',
  '>': 'SCMP_CMP_GT',
  '>=': 'SCMP_CMP_GE',
  '&': 'SCMP_CMP_MASKED_EQ',
};

function toNumber(v: bigint, source: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new PolicyError(`${source}: ${v} does not fit a JSON number exactly`);
  return Number(v);
}

/** A condition as the profile states it. libseccomp's masked compare takes the mask first. */
export function toArg(c: Condition, source: string): ProfileArg {
  if (c.value === '$pid')
    throw new PolicyError(
      `${source}: a condition on $pid cannot be stated in a pod profile (the pid of each run is not known there)`,
    );
  return c.op === '&'
    ? {
        index: c.arg,
        value: toNumber(c.mask ?? 0n, source),
        valueTwo: toNumber(c.value, source),
        op: OPS['&'],
      }
    : { index: c.arg, value: toNumber(c.value, source), valueTwo: 0, op: OPS[c.op] };
}

const argsKey = (args: ProfileArg[]) => JSON.stringify(args);

/** Renders the union of POLICIES into a profile. `extra` are more unconditional allows. */
export function renderProfile(policies: Policy[], extra: string[] = []): SeccompProfile {
  const rules = new Map<string, Rule[]>();
  for (const p of policies)
    for (const r of p.rules) rules.set(r.syscall, [...(rules.get(r.syscall) ?? []), r]);
  for (const name of extra)
    rules.set(name, [
      ...(rules.get(name) ?? []),
      { syscall: name, action: { kind: 'allow' }, conditions: [], source: 'extra' },
    ]);

  const always: string[] = [];
  const conditional: ProfileEntry[] = [];
  const errnos = new Map<number, string[]>();
  for (const [syscall, list] of [...rules].sort(([a], [b]) => a.localeCompare(b))) {
    const allows = list.filter((r) => r.action.kind === 'allow');
    // A condition on the run's own pid cannot be stated here: the pod profile, the coarser
    // outer layer, allows the syscall whole, and the launcher's filter narrows it per run.
    if (
      allows.some((r) => r.conditions.length === 0 || r.conditions.some((c) => c.value === '$pid'))
    ) {
      always.push(syscall);
      continue;
    }
    if (allows.length > 0) {
      const seen = new Set<string>();
      for (const r of allows) {
        const args = r.conditions.map((c) => toArg(c, r.source));
        if (seen.has(argsKey(args))) continue;
        seen.add(argsKey(args));
        conditional.push({ names: [syscall], action: 'SCMP_ACT_ALLOW', args });
      }
      continue;
    }
    const codes = new Set(
      list.flatMap((r) => (r.action.kind === 'errno' ? [ERRNOS[r.action.errno]!] : [])),
    );
    if (codes.size > 1) throw new PolicyError(`${syscall}: the policies give it different errnos`);
    const [code] = codes;
    if (code !== undefined) errnos.set(code, [...(errnos.get(code) ?? []), syscall]);
    // Only `kill` rules: left out, the default action refuses it.
  }
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: ERRNOS.EPERM!,
    architectures: ARCHITECTURES,
    syscalls: [
      { names: always, action: 'SCMP_ACT_ALLOW' },
      ...conditional,
      ...[...errnos].map(([errnoRet, names]): ProfileEntry => ({
        names,
        action: 'SCMP_ACT_ERRNO',
        errnoRet,
      })),
    ],
  };
}

/** The profile as committed: two-space JSON and a final newline. */
export function formatProfile(profile: SeccompProfile): string {
  return `${JSON.stringify(profile, null, 2)}\n`;
}

/** Whether a profile entry with ARGS matches whenever a rule with CONDITIONS does. */
function entryCovers(args: ProfileArg[] | undefined, conditions: Condition[]): boolean {
  return (args ?? []).every((a) =>
    conditions.some((c) => c.value !== '$pid' && argsKey([toArg(c, '')]) === argsKey([a])),
  );
}

/**
 * The rules of POLICY that PROFILE would refuse or answer differently, as "file:line syscall"
 * lines (empty when the profile is a superset). An `allow` needs an ALLOW entry that matches
 * whenever the rule does; an `errno` needs an ALLOW or the same errno. `kill` rules need nothing.
 */
export function uncoveredRules(policy: Policy, profile: SeccompProfile): string[] {
  const missing: string[] = [];
  for (const r of policy.rules) {
    if (r.action.kind === 'kill') continue;
    const entries = profile.syscalls.filter((e) => e.names.includes(r.syscall));
    const allowed = entries.some(
      (e) => e.action === 'SCMP_ACT_ALLOW' && entryCovers(e.args, r.conditions),
    );
    const errno = r.action.kind === 'errno' ? ERRNOS[r.action.errno] : undefined;
    const sameErrno = entries.some(
      (e) => e.action === 'SCMP_ACT_ERRNO' && e.errnoRet === errno && (e.args ?? []).length === 0,
    );
    if (!allowed && !(errno !== undefined && sameErrno))
      missing.push(`${r.source} ${r.action.kind} ${r.syscall}`);
  }
  return missing;
}

/** Every syscall name the profile allows, in any entry. */
export function allowedNames(profile: SeccompProfile): Set<string> {
  return new Set(
    profile.syscalls.filter((e) => e.action === 'SCMP_ACT_ALLOW').flatMap((e) => e.names),
  );
}
