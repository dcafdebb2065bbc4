// Whether a process of a run can still run code, read from /proc by the tests.
import { readdirSync, readFileSync } from 'node:fs';

const PF_EXITING = 0x4;
const SIGKILL_BIT = 1n << 8n;

/**
 * How process PID stands: gone; dying (exiting, a zombie, or SIGKILL pending: it runs no more
 * code of its own while the kernel takes it apart); or alive.
 */
export function processState(pid: number | string): 'gone' | 'dying' | 'alive' {
  let stat: string;
  let status: string;
  try {
    // The pending signals first: a killed process takes SIGKILL off them and only then marks
    // itself exiting (PF_EXITING, in stat); in this order only a read inside that short gap
    // misses it (the other order would miss it whenever the gap falls between the two reads).
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 'gone';
  }
  // After "(comm) ": state, ppid, pgrp, session, tty_nr, tpgid, flags.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const pending = [...status.matchAll(/^(SigPnd|ShdPnd):\s*([0-9a-f]+)$/gm)].reduce(
    (bits, m) => bits | BigInt(`0x${m[2]}`),
    0n,
  );
  const dying =
    fields[0] === 'Z' ||
    fields[0] === 'X' ||
    (Number(fields[6]) & PF_EXITING) !== 0 ||
    (pending & SIGKILL_BIT) !== 0n;
  return dying ? 'dying' : 'alive';
}

/** The state letter of /proc/PID/stat (R, S, T for stopped, t for traced, Z, ...), or 'gone'. */
export function stateOf(pid: number | string): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return 'gone';
  }
}

/** Waits until process PID is gone; false when it is still there after TIMEOUT_MS. */
export async function waitGone(pid: number | string, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (processState(pid) !== 'gone') {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

/** Every process of the host with its parent's id (from /proc/N/stat). */
export function parentIds(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...; comm may contain spaces and parentheses
      parents.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  return parents;
}

/** The process ids whose parent is PID. */
export function childrenOf(pid: number): number[] {
  return [...parentIds()].filter(([, parent]) => parent === pid).map(([child]) => child);
}

/** The command line of process PID ('' once it is gone). */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}
