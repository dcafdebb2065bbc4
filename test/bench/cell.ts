// One benchmark cell: one target, one workload, one concurrency, bounded in requests and time.
import http from 'node:http';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { ERROR_KINDS, runOnce, type ErrorKind, type Target } from './client.js';
import { RssSampler } from './rss.js';
import { summarize, type LatencySummary } from './stats.js';
import { requestBody, type Workload } from './workloads.js';

export interface CellOptions {
  requests: number;
  maxSeconds: number;
  warmup: number;
  timeoutMs: number;
  rssIntervalMs: number;
  /** Each client waits this long before each request (0: back to back). */
  pauseMs: number;
}

/** The raw record of one or more runs of a cell (rounds are merged into one). */
export interface CellRuns {
  sent: number;
  okMs: number[];
  errors: Record<ErrorKind, number>;
  errorSamples: Partial<Record<ErrorKind, string>>;
  elapsedS: number;
  stoppedByTime: boolean;
  peakServerKiB: number | null;
  peakTotalKiB: number | null;
  peakProcesses: number | null;
  load1: number[];
}

export interface CellResult {
  target: string;
  workload: string;
  concurrency: number;
  rounds: number;
  sent: number;
  ok: number;
  errors: Record<ErrorKind, number>;
  errorSamples: Partial<Record<ErrorKind, string>>;
  elapsedS: number;
  stoppedByTime: boolean;
  /** successful responses per second of wall time */
  okPerS: number;
  /** latency of successful responses, ms */
  latencyMs: LatencySummary | null;
  peakRssMiB: { server: number; total: number; processes: number } | null;
  /** 1-minute load average of the host before each round (the machine is shared) */
  load1: number[];
}

export function emptyRuns(): CellRuns {
  return {
    sent: 0,
    okMs: [],
    errors: Object.fromEntries(ERROR_KINDS.map((k) => [k, 0])) as Record<ErrorKind, number>,
    errorSamples: {},
    elapsedS: 0,
    stoppedByTime: false,
    peakServerKiB: null,
    peakTotalKiB: null,
    peakProcesses: null,
    load1: [],
  };
}

const maxOrNull = (a: number | null, b: number | null) =>
  a === null ? b : b === null ? a : Math.max(a, b);

/** Runs the cell once more and adds what it saw to `into`. */
export async function runCell(
  into: CellRuns,
  target: Target,
  pid: number | null,
  w: Workload,
  concurrency: number,
  o: CellOptions,
): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const body = requestBody(w);
  try {
    // warm-up: opens the keep-alive connections and lets the target settle; not counted
    await pool(concurrency, o.warmup, Date.now() + o.maxSeconds * 1000, async () => {
      await runOnce(agent, target, body, w.expectedStdout, o.timeoutMs);
    });
    into.load1.push(Math.round(os.loadavg()[0]! * 100) / 100);
    const sampler = pid === null ? null : new RssSampler(pid, o.rssIntervalMs);
    await sampler?.start();
    const t0 = performance.now();
    const deadline = Date.now() + o.maxSeconds * 1000;
    const sent = await pool(
      concurrency,
      o.requests,
      deadline,
      async () => {
        const r = await runOnce(agent, target, body, w.expectedStdout, o.timeoutMs);
        if (r.ok) into.okMs.push(r.ms);
        else {
          into.errors[r.kind]++;
          into.errorSamples[r.kind] ??= r.detail;
        }
      },
      o.pauseMs,
    );
    into.elapsedS += (performance.now() - t0) / 1000;
    into.sent += sent;
    if (sent < o.requests) into.stoppedByTime = true;
    if (sampler !== null) {
      await sampler.stop();
      if (sampler.samples > 0) {
        into.peakServerKiB = maxOrNull(into.peakServerKiB, sampler.peakServerKiB);
        into.peakTotalKiB = maxOrNull(into.peakTotalKiB, sampler.peakTotalKiB);
        into.peakProcesses = maxOrNull(into.peakProcesses, sampler.peakProcesses);
      }
    }
  } finally {
    agent.destroy();
  }
}

/**
 * Runs `fn` up to `count` times with `concurrency` in flight; starts nothing after `deadline`
 * (epoch ms). Returns how many were started. Each call is itself bounded by the request timeout.
 */
async function pool(
  concurrency: number,
  count: number,
  deadline: number,
  fn: () => Promise<void>,
  pauseMs = 0,
): Promise<number> {
  let started = 0;
  const worker = async () => {
    while (started < count && Date.now() < deadline) {
      started++;
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      await fn();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return started;
}

const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;

export function finish(
  runs: CellRuns,
  target: string,
  w: Workload,
  concurrency: number,
  rounds: number,
): CellResult {
  return {
    target,
    workload: w.name,
    concurrency,
    rounds,
    sent: runs.sent,
    ok: runs.okMs.length,
    errors: runs.errors,
    errorSamples: runs.errorSamples,
    elapsedS: runs.elapsedS,
    stoppedByTime: runs.stoppedByTime,
    okPerS: runs.elapsedS > 0 ? runs.okMs.length / runs.elapsedS : 0,
    latencyMs: summarize(runs.okMs),
    peakRssMiB:
      runs.peakTotalKiB === null
        ? null
        : {
            server: mib(runs.peakServerKiB ?? 0),
            total: mib(runs.peakTotalKiB),
            processes: runs.peakProcesses ?? 0,
          },
    load1: runs.load1,
  };
}
