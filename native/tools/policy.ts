// The policy files of native/policies/, read the way native/policy.c reads them (the format is
// native/policies/README.md), for what is rendered from them outside the launcher: the pod-level
// seccomp profile. Anything the C parser would refuse is refused here too.
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The errnos an `errno` statement may name (policy.c's table), with their Linux numbers. */
export const ERRNOS: Readonly<Record<string, number>> = {
  EPERM: 1,
  EACCES: 13,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSYS: 38,
  EAFNOSUPPORT: 97,
};

export type Operator = '==' | '!=' | '<' | '<=' | '>' | '>=' | '&';

/** `aN OP VALUE`, or `aN & MASK == VALUE` (then `mask` is set). `$pid` is the run's own pid. */
export interface Condition {
  arg: number;
  op: Operator;
  mask?: bigint;
  value: bigint | '$pid';
}

export type Action = { kind: 'allow' } | { kind: 'kill' } | { kind: 'errno'; errno: string };

export interface Rule {
  syscall: string;
  action: Action;
  /** All must hold (empty: the rule always applies). */
  conditions: Condition[];
  /** file:line, for messages. */
  source: string;
}

export interface Policy {
  name: string;
  rules: Rule[];
  read: string[];
  exec: string[];
}

export class PolicyError extends Error {
  override name = 'PolicyError';
}

const MAX_DEPTH = 4;
const NAME = /^[a-z0-9_-]+$/;
const OPERATORS: readonly Operator[] = ['==', '!=', '<', '<=', '>', '>='];

/** strtoull(word, 0) as policy.c uses it: decimal, 0x hex or 0 octal; or `$pid`. */
function parseNumber(word: string | undefined): bigint | '$pid' | undefined {
  if (word === '$pid') return '$pid';
  if (word === undefined) return undefined;
  if (/^0[xX][0-9a-fA-F]+$/.test(word)) return BigInt(word);
  if (/^0[0-7]*$/.test(word)) return BigInt(word.length > 1 ? `0o${word.slice(1)}` : '0');
  if (/^[1-9][0-9]*$/.test(word)) return BigInt(word);
  return undefined;
}

function parseCondition(words: string[], at: number): { cond: Condition; next: number } {
  const arg = /^a([0-5])$/.exec(words[at] ?? '');
  if (arg === null) throw new Error('bad condition');
  const op = words[at + 1];
  if (op === '&') {
    const mask = parseNumber(words[at + 2]);
    const value = parseNumber(words[at + 4]);
    // `$pid` only as the value of == and != (policy.c: a zygote patches it only there).
    if (
      words[at + 3] !== '==' ||
      mask === undefined ||
      value === undefined ||
      mask === '$pid' ||
      value === '$pid'
    )
      throw new Error('bad condition');
    return { cond: { arg: Number(arg[1]), op: '&', mask, value }, next: at + 5 };
  }
  const value = parseNumber(words[at + 2]);
  if (
    !OPERATORS.includes(op as Operator) ||
    value === undefined ||
    (value === '$pid' && op !== '==' && op !== '!=')
  )
    throw new Error('bad condition');
  return { cond: { arg: Number(arg[1]), op: op as Operator, value }, next: at + 3 };
}

/**
 * Reads policy NAME from DIR, following `include` lines. KNOWN, when given, is the set of
 * syscall names of the machine (native/build/syscalls.json): an unknown name is an error, as in
 * the launcher.
 */
export function loadPolicy(dir: string, name: string, known?: ReadonlySet<string>): Policy {
  const policy: Policy = { name, rules: [], read: [], exec: [] };
  loadFile(dir, name, 0, policy, known);
  return policy;
}

function loadFile(
  dir: string,
  name: string,
  depth: number,
  policy: Policy,
  known: ReadonlySet<string> | undefined,
): void {
  if (depth > MAX_DEPTH) throw new PolicyError(`${name}: includes nest too deep`);
  if (!NAME.test(name)) throw new PolicyError(`invalid policy name '${name}'`);
  const file = path.join(dir, `${name}.policy`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PolicyError(`open ${file}: ${(err as Error).message}`);
  }
  text.split('\n').forEach((raw, i) => {
    const where = `${file}:${i + 1}`;
    const words = raw
      .replace(/#.*/, '')
      .split(/[ \t\r]+/)
      .filter(Boolean);
    const [verb] = words;
    if (verb === undefined) return;
    if (verb === 'include') {
      for (const inc of words.slice(1)) loadFile(dir, inc, depth + 1, policy, known);
    } else if (verb === 'read' || verb === 'exec') {
      for (const p of words.slice(1)) {
        if (!p.startsWith('/')) throw new PolicyError(`${where}: not an absolute path: ${p}`);
        policy[verb].push(p);
      }
    } else if (verb === 'allow' || verb === 'kill' || verb === 'errno') {
      let action: Action = { kind: verb === 'kill' ? 'kill' : 'allow' };
      let first = 1;
      if (verb === 'errno') {
        const errno = words[1] ?? '';
        if (!(errno in ERRNOS)) throw new PolicyError(`${where}: unknown errno '${errno}'`);
        action = { kind: 'errno', errno };
        first = 2;
      }
      const ifAt = words.lastIndexOf('if');
      const names = ifAt < 0 ? words.slice(first) : words.slice(first, first + 1);
      if (ifAt >= 0 && ifAt !== first + 1)
        throw new PolicyError(`${where}: a conditional rule names exactly one syscall`);
      const conditions: Condition[] = [];
      for (let at = ifAt + 1; ifAt >= 0 && at < words.length;) {
        try {
          if (conditions.length === 6) throw new Error('too many conditions');
          const { cond, next } = parseCondition(words, at);
          conditions.push(cond);
          at = words[next] === '&&' ? next + 1 : next;
        } catch {
          throw new PolicyError(`${where}: bad condition`);
        }
      }
      for (const syscall of names) {
        if (known !== undefined && !known.has(syscall))
          throw new PolicyError(`${where}: unknown syscall '${syscall}'`);
        policy.rules.push({ syscall, action, conditions, source: where });
      }
    } else {
      throw new PolicyError(`${where}: unknown statement '${verb}'`);
    }
  });
}

/** The syscall names libseccomp knows on this machine, from native/build/syscalls.json. */
export function knownSyscalls(syscallsJson: string): Set<string> {
  const table = JSON.parse(readFileSync(syscallsJson, 'utf8')) as Record<string, string>;
  return new Set(Object.values(table));
}
