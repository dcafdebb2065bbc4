// Resident memory of a server and all its descendants, sampled from /proc (Linux only).
// The kernel here has no /proc/<pid>/task/<tid>/children, so each sample walks /proc/*/stat;
// reads are asynchronous so that sampling does not stall the event loop that times requests.
import { readdir, readFile, readlink } from 'node:fs/promises';

export interface RssSample {
  /** VmRSS of the server process, KiB. */
  serverKiB: number;
  /** VmRSS summed over the server and its descendants, KiB (shared pages counted per process). */
  totalKiB: number;
  /**
   * Pss summed over the tree, KiB: each shared page divided among the processes that map it
   * (a zygote's children share most of its pages), so the sum is what the tree holds. Null
   * where smaps_rollup cannot be read (another user's processes without root).
   */
  totalPssKiB: number | null;
  processes: number;
}

async function numericDirs(): Promise<number[]> {
  const names = await readdir('/proc');
  return names.filter((n) => /^\d+$/.test(n)).map(Number);
}

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return null; // the process ended between listing and reading
  }
}

/** The pid listening on a TCP port of this host (IPv4 or IPv6), or null. */
export async function pidListeningOn(port: number): Promise<number | null> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readText(file);
    if (text === null) continue;
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
      if (f.length < 10 || f[3] !== '0A') continue;
      if (f[1]?.split(':')[1] === hexPort && f[9] !== undefined) inodes.add(f[9]);
    }
  }
  if (inodes.size === 0) return null;
  for (const pid of await numericDirs()) {
    let fds: string[];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (m?.[1] !== undefined && inodes.has(m[1])) return pid;
    }
  }
  return null;
}

function vmRssKiB(status: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return m?.[1] === undefined ? 0 : Number(m[1]);
}

/** One sample of the process tree rooted at pid, or null if pid is gone. */
export async function sampleTree(pid: number): Promise<RssSample | null> {
  const parent = new Map<number, number>();
  for (const p of await numericDirs()) {
    const stat = await readText(`/proc/${p}/stat`);
    if (stat === null) continue;
    // pid (comm) state ppid ...; comm may contain spaces and parentheses
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    parent.set(p, Number(rest[1]));
  }
  if (!parent.has(pid)) return null;
  const tree = new Set<number>([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [p, pp] of parent)
      if (!tree.has(p) && tree.has(pp)) {
        tree.add(p);
        grew = true;
      }
  }
  let serverKiB = 0;
  let totalKiB = 0;
  let totalPssKiB: number | null = 0;
  let processes = 0;
  for (const p of tree) {
    const status = await readText(`/proc/${p}/status`);
    if (status === null) continue;
    const kib = vmRssKiB(status);
    if (p === pid) serverKiB = kib;
    totalKiB += kib;
    processes++;
    const pss = /^Pss:\s+(\d+)\s+kB/m.exec((await readText(`/proc/${p}/smaps_rollup`)) ?? '');
    totalPssKiB =
      pss?.[1] === undefined || totalPssKiB === null ? null : totalPssKiB + Number(pss[1]);
  }
  return { serverKiB, totalKiB, totalPssKiB, processes };
}

/** Samples a process tree every intervalMs until stopped; keeps the peaks. */
export class RssSampler {
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  peakServerKiB = 0;
  peakTotalKiB = 0;
  peakProcesses = 0;
  samples = 0;

  constructor(
    private readonly pid: number,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    const tick = () => {
      if (this.busy) return; // a slow walk is not stacked on another
      this.busy = true;
      void sampleTree(this.pid)
        .then((s) => {
          if (s === null) return;
          this.samples++;
          this.peakServerKiB = Math.max(this.peakServerKiB, s.serverKiB);
          this.peakTotalKiB = Math.max(this.peakTotalKiB, s.totalKiB);
          this.peakProcesses = Math.max(this.peakProcesses, s.processes);
        })
        .finally(() => {
          this.busy = false;
        });
    };
    tick();
    this.timer = setInterval(tick, this.intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    // let an in-flight walk finish so its sample counts; bounded by 50 waits of 10 ms
    for (let i = 0; i < 50 && this.busy; i++) await new Promise((r) => setTimeout(r, 10));
  }
}
