// Resident memory of a server and all its descendants, sampled from /proc (Linux only).
// The kernel here has no /proc/<pid>/task/<tid>/children, so each sample walks /proc/*/stat.
// During a cell the walk runs in a process of its own (rss-sampler.ts) with synchronous reads
// and without Pss: an asynchronous walk with Pss on the timing thread cost ~40 ms of CPU per
// sample here (a third of a core at 100 ms), taken from the very server being measured, and
// delayed the responses it was timing. Pss (smaps_rollup walks every page table) is read once,
// at idle.
import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { parentIds } from '../support/processes.js';

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

/** The pid listening on a TCP port of this host (IPv4 or IPv6), or null. */
export function pidListeningOn(port: number): number | null {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = readText(file);
    if (text === null) continue;
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
      if (f.length < 10 || f[3] !== '0A') continue;
      if (f[1]?.split(':')[1] === hexPort && f[9] !== undefined) inodes.add(f[9]);
    }
  }
  if (inodes.size === 0) return null;
  for (const pid of parentIds().keys()) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link = '';
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        // closed meanwhile
      }
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

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return null; // the process ended between listing and reading
  }
}

/**
 * One sample of the process tree rooted at pid, or null if pid is gone. Synchronous: a walk
 * takes a few milliseconds, so call it where blocking does not matter (at idle, or in the
 * sampler's process). Pss only when asked (totalPssKiB is null otherwise).
 */
export function sampleTree(pid: number, withPss: boolean): RssSample | null {
  const parent = parentIds();
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
  let totalPssKiB: number | null = withPss ? 0 : null;
  let processes = 0;
  for (const p of tree) {
    const status = readText(`/proc/${p}/status`);
    if (status === null) continue;
    const kib = vmRssKiB(status);
    if (p === pid) serverKiB = kib;
    totalKiB += kib;
    processes++;
    if (totalPssKiB === null) continue;
    const pss = /^Pss:\s+(\d+)\s+kB/m.exec(readText(`/proc/${p}/smaps_rollup`) ?? '');
    totalPssKiB = pss?.[1] === undefined ? null : totalPssKiB + Number(pss[1]);
  }
  return { serverKiB, totalKiB, totalPssKiB, processes };
}

/** The peaks a sampler saw (rss-sampler.ts sends them when told to stop). */
export interface RssPeaks {
  serverKiB: number;
  totalKiB: number;
  processes: number;
  samples: number;
}

/** Samples a process tree every intervalMs, in a process of its own, until stopped; keeps the peaks. */
export class RssSampler {
  private sampler: ChildProcess | null = null;
  peakServerKiB = 0;
  peakTotalKiB = 0;
  peakProcesses = 0;
  samples = 0;

  constructor(
    private readonly pid: number,
    private readonly intervalMs: number,
  ) {}

  /** Resolves once the sampler has taken its first sample (its start-up is not in a cell). */
  async start(): Promise<void> {
    // fork() passes on tsx's loader (process.execArgv), which a worker thread would not get.
    const sampler = fork(
      new URL('./rss-sampler.ts', import.meta.url),
      [String(this.pid), String(this.intervalMs)],
      { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] },
    );
    this.sampler = sampler;
    await new Promise<void>((resolve, reject) => {
      sampler.once('message', () => resolve());
      sampler.once('error', reject);
      sampler.once('exit', (code) => reject(new Error(`the RSS sampler exited with ${code}`)));
    });
  }

  async stop(): Promise<void> {
    const sampler = this.sampler;
    if (sampler === null) return;
    this.sampler = null;
    const peaks = await new Promise<RssPeaks>((resolve, reject) => {
      sampler.once('message', (m) => resolve(m as RssPeaks));
      sampler.once('exit', (code) => reject(new Error(`the RSS sampler exited with ${code}`)));
      sampler.send('stop');
    }).finally(() => sampler.kill());
    this.peakServerKiB = peaks.serverKiB;
    this.peakTotalKiB = peaks.totalKiB;
    this.peakProcesses = peaks.processes;
    this.samples = peaks.samples;
  }
}
