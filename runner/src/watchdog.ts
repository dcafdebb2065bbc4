// Samples a running execution from the outside: its CPU time and threads (/proc/PID/stat) and,
// when asked, what it stores in its directory. Without root the kernel cannot bound the last two
// per run (runs share the runner's uid, so RLIMIT_NPROC would count the runner's own threads, and
// there is no tmpfs of the run's own): the watchdog ends a run that crosses them, within one
// sampling period. In both modes it bounds the run's page tables, which no rlimit does, and
// samples its CPU time, so that a run the kernel killed at the hard CPU limit can be explained
// as such.
import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

const PERIOD_MS = 25;
const DISK_EVERY = 4; // ticks: the directory (and the page tables) every 100 ms
const CLOCK_TICKS = 100; // USER_HZ, the unit of utime and stime in /proc/PID/stat

export interface WatchdogLimits {
  threads?: number;
  diskBytes?: number;
  files?: number;
  /** The most one file can hold (RLIMIT_FSIZE), for files measured otherwise not at all. */
  fileBytes?: number;
  /**
   * Page tables (VmPTE): memory of the pod's that no rlimit bounds. Each small mapping placed
   * far from the others costs a page table or two (8 KiB), up to vm.max_map_count of them.
   */
  pageTableBytes?: number;
}

export type Breach = 'thread_limit' | 'disk_limit' | 'memory_limit';

export class Watchdog {
  /** CPU seconds (user + system) at the last sample. */
  cpuSeconds = 0;
  /** Threads at the last sample. */
  threads = 0;
  private timer?: NodeJS.Timeout;
  /** A sample of /proc/PID/stat under way (a tick does not start another). */
  private sampling = false;
  /** The slow part under way: page tables, and the walk of the directory. */
  private measuring = false;
  private ticks = 0;
  private stopped = false;
  /** The directory as /proc names it (its parents' symlinks resolved), once known. */
  private realWorkdir?: string;

  constructor(
    private readonly pid: number,
    private readonly workdir: string,
    private readonly limits: WatchdogLimits,
    private readonly onBreach: (why: Breach) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), PERIOD_MS);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /**
   * The threads every tick, the rest every DISK_EVERY ticks, each on its own: a run can make
   * the walk of its directory take a third of a second (thousands of files), and must not have
   * the thread count go unseen for that long.
   */
  private tick(): void {
    if (this.ticks++ % DISK_EVERY === 0 && !this.measuring) void this.measure();
    if (!this.sampling) void this.sampleThreads();
  }

  private async sampleThreads(): Promise<void> {
    this.sampling = true;
    try {
      await this.sample();
      const { threads } = this.limits;
      if (threads !== undefined && this.threads > threads) this.breach('thread_limit');
    } catch {
      // the process is gone: the run is ending anyway
    } finally {
      this.sampling = false;
    }
  }

  private async measure(): Promise<void> {
    this.measuring = true;
    try {
      const { diskBytes, files, fileBytes = 0, pageTableBytes } = this.limits;
      if (pageTableBytes !== undefined && (await pageTables(this.pid)) > pageTableBytes)
        return this.breach('memory_limit');
      if (diskBytes !== undefined && files !== undefined) {
        const usage = await measureTree(this.workdir, files + 1);
        this.realWorkdir ??= await fs.realpath(this.workdir);
        const held = await measureHeld(this.pid, this.realWorkdir, fileBytes);
        if (usage.entries > files || usage.bytes + held > diskBytes)
          return this.breach('disk_limit');
      }
    } catch {
      // the process or its directory is gone: the run is ending anyway
    } finally {
      this.measuring = false;
    }
  }

  /** Once: a sample or walk still under way when the run ended says nothing any more. */
  private breach(why: Breach): void {
    if (this.stopped) return;
    this.stop();
    this.onBreach(why);
  }

  private async sample(): Promise<void> {
    const fields = await procStat(this.pid);
    if (this.stopped) return; // the run's last values stay (the pid may be someone else's now)
    // utime, stime and num_threads are fields 14, 15 and 20 of proc(5): 12, 13, 18 here.
    this.cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    this.threads = Number(fields[17]);
  }
}

/**
 * The fields of /proc/PID/stat after "(comm)" (which may itself hold spaces and parentheses):
 * field N of proc(5) is at N - 3 (state at 0, ppid at 1, ...).
 */
export async function procStat(pid: number): Promise<string[]> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'latin1');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The bytes of page tables process PID has (VmPTE of /proc/PID/status). */
async function pageTables(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'latin1');
  const m = /^VmPTE:\s+(\d+) kB$/m.exec(status);
  return m === null ? 0 : Number(m[1]) * 1024;
}

const UNMEASURABLE = { bytes: Infinity, entries: Infinity };

const removedMeanwhile = (err: unknown) => {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
};

/**
 * Bytes allocated to, and the number of entries beneath, DIR; stops counting past MAX_ENTRIES.
 * Symlinks are not followed. What cannot be measured counts as over the limit: a directory the
 * run made unreadable (fchmod: it has the runner's uid; changing its mode back would follow
 * whatever the run put in its place), or a tree nested deeper than a path can name (PATH_MAX,
 * ENAMETOOLONG), beneath which the run could otherwise keep any number of bytes unseen.
 */
export async function measureTree(
  dir: string,
  maxEntries: number,
): Promise<{ bytes: number; entries: number }> {
  let bytes = 0;
  let entries = 0;
  const pending = [dir];
  while (pending.length > 0 && entries <= maxEntries) {
    const current = pending.pop()!;
    let names: string[];
    try {
      names = await fs.readdir(current);
    } catch (err) {
      if (removedMeanwhile(err)) continue;
      return UNMEASURABLE;
    }
    for (const name of names) {
      entries++;
      const file = path.join(current, name);
      let st: Stats;
      try {
        st = await fs.lstat(file);
      } catch (err) {
        if (removedMeanwhile(err)) continue;
        return UNMEASURABLE;
      }
      bytes += st.blocks * 512;
      if (st.isDirectory()) pending.push(file);
    }
  }
  return { bytes, entries };
}

/**
 * Bytes in files of DIR that process PID holds although they have no name there any more
 * (deleted while open or mapped, or made with O_TMPFILE): the walk of DIR cannot see them, yet
 * they take space until the process lets go. A file it only maps, with no descriptor to measure
 * it by (map_files needs CAP_SYS_ADMIN), counts as FILE_BYTES, the most a file can hold. Not
 * seen: descriptors in flight in a unix socket (SCM_RIGHTS), which no /proc file shows.
 */
export async function measureHeld(pid: number, dir: string, fileBytes: number): Promise<number> {
  const prefix = `${dir}/`;
  const deleted = (target: string) => target.startsWith(prefix) && target.endsWith(' (deleted)');
  // Every thread of a run shares one descriptor table and one memory map (the policy allows
  // no other clone); the first thread that still has them shows the run's (the first thread
  // may have exited, and then shows none).
  const tasks = await fs.readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  const first = async <T>(read: (task: string) => Promise<T | undefined>) => {
    for (const task of tasks) {
      const found = await read(`/proc/${pid}/task/${task}`);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  const counted = new Set<number>(); // inodes (all on DIR's filesystem)
  let bytes = 0;
  const fds = await first(async (t) => {
    const names = await fs.readdir(`${t}/fd`).catch(() => [] as string[]);
    return names.length > 0 ? names.map((n) => `${t}/fd/${n}`) : undefined;
  });
  for (const fd of fds ?? []) {
    // A file whose path is too long to name (ENAMETOOLONG) can only be in the run's directory,
    // the one tree it may write: counted too, deleted or not.
    const target = await fs
      .readlink(fd)
      .catch((err: NodeJS.ErrnoException) => (err.code === 'ENAMETOOLONG' ? undefined : ''));
    if (target !== undefined && !deleted(target)) continue;
    const st = await fs.stat(fd).catch(() => undefined);
    if (st === undefined || !st.isFile() || counted.has(st.ino)) continue;
    counted.add(st.ino);
    bytes += st.blocks * 512;
  }
  const maps = await first(
    async (t) => (await fs.readFile(`${t}/maps`, 'utf8').catch(() => '')) || undefined,
  );
  // Only the lines naming DIR are parsed: a run can make its map tens of thousands of lines.
  for (let at = maps?.indexOf(prefix) ?? -1; maps !== undefined && at >= 0;) {
    const start = maps.lastIndexOf('\n', at) + 1;
    const end = maps.indexOf('\n', at);
    const line = maps.slice(start, end < 0 ? undefined : end);
    // address perms offset dev inode path
    const m = /^\S+ \S+ \S+ \S+ (\d+) +(.*)$/.exec(line);
    if (m !== null && deleted(m[2]!) && !counted.has(Number(m[1]))) {
      counted.add(Number(m[1]));
      bytes += fileBytes;
    }
    at = end < 0 ? -1 : maps.indexOf(prefix, end);
  }
  return bytes;
}
