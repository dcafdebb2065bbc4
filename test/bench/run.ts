// The benchmark harness of design/performance.md. Not a test: run it by hand (`npm run bench`).
//
//   npm run bench -- --target http://127.0.0.1:8194 --key KEY             # one target
//   npm run bench -- --target ... --key ... --b-target http://127.0.0.1:8195 --b-key dify-sandbox
//
// See test/bench/README.md for every option and for how to build and start DifySandbox.
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { emptyRuns, finish, runCell, type CellOptions, type CellResult } from './cell.js';
import type { Target } from './client.js';
import { cellTable, errorSamples, ratio, ratioTable, type Ratio } from './report.js';
import { pidListeningOn, sampleTree } from './rss.js';
import { WORKLOADS, findWorkloads } from './workloads.js';

const HELP = `usage: npm run bench -- [options]

target A (the one measured; env in brackets):
  --target URL          [BENCH_TARGET]    default http://127.0.0.1:8194
  --key KEY             [BENCH_API_KEY, then API_KEY]  default dify-sandbox
  --name NAME           [BENCH_NAME]      label, default "A" ("ours" when B is given)
  --pid PID             [BENCH_PID]       server pid for RSS; default: found by the URL's port
comparison target B (alternated with A, cell by cell):
  --b-target URL        [BENCH_B_TARGET]
  --b-key KEY           [BENCH_B_API_KEY] default dify-sandbox
  --b-name NAME         [BENCH_B_NAME]    default "dify"
  --b-pid PID           [BENCH_B_PID]
load:
  --workloads LIST      default ${WORKLOADS.map((w) => w.name).join(',')}
  --concurrency LIST    default 1,8
  --requests N          per cell and round, default 200
  --rounds N            runs of each cell per target (A/B order alternates), default 1
  --warmup N            uncounted requests before each run, default 4
  --max-seconds S       per run of a cell: no request starts after S, default 60
  --max-total-seconds S the whole benchmark: no cell starts after S, default 3600
  --timeout-ms MS       per request (Dify's read timeout is 60 s), default 60000
  --settle-ms MS        pause between runs, default 1000
  --pause-ms MS         each client waits MS before each request (an idle server with full
                        pools, as most Dify traffic finds it; ok/s then counts the pauses), default 0
  --rss-interval-ms MS  /proc sampling period, default 100 (0: no RSS)
  --out DIR             JSON results, default test/bench/results
`;

function int(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`--${name} must be an integer in [${min}, ${max}], got ${v}`);
  return n;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function targetOf(url: string, apiKey: string, name: string): Target {
  const u = new URL(url);
  if (u.protocol !== 'http:') throw new Error(`${url}: only http:// targets are supported`);
  if (!LOOPBACK.has(u.hostname) && !u.hostname.startsWith('127.'))
    throw new Error(`${url}: the benchmark only sends loopback traffic`);
  return { name, url: u, apiKey };
}

function pidOf(t: Target, given: string | undefined): number | null {
  if (given !== undefined && given !== '') return int('pid', given, 0, 1, 2 ** 22);
  const port = t.url.port === '' ? 80 : Number(t.url.port);
  return pidListeningOn(port);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      target: { type: 'string' },
      key: { type: 'string' },
      name: { type: 'string' },
      pid: { type: 'string' },
      'b-target': { type: 'string' },
      'b-key': { type: 'string' },
      'b-name': { type: 'string' },
      'b-pid': { type: 'string' },
      workloads: { type: 'string' },
      concurrency: { type: 'string' },
      requests: { type: 'string' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      'max-seconds': { type: 'string' },
      'max-total-seconds': { type: 'string' },
      'timeout-ms': { type: 'string' },
      'settle-ms': { type: 'string' },
      'pause-ms': { type: 'string' },
      'rss-interval-ms': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (v.help === true) {
    process.stdout.write(HELP);
    return;
  }
  const env = process.env;
  const bUrl = v['b-target'] ?? env.BENCH_B_TARGET;
  const a = targetOf(
    v.target ?? env.BENCH_TARGET ?? 'http://127.0.0.1:8194',
    v.key ?? env.BENCH_API_KEY ?? env.API_KEY ?? 'dify-sandbox',
    v.name ?? env.BENCH_NAME ?? (bUrl === undefined ? 'A' : 'ours'),
  );
  const b =
    bUrl === undefined
      ? null
      : targetOf(
          bUrl,
          v['b-key'] ?? env.BENCH_B_API_KEY ?? 'dify-sandbox',
          v['b-name'] ?? env.BENCH_B_NAME ?? 'dify',
        );
  if (b !== null && b.name === a.name) throw new Error('--name and --b-name must differ');
  const workloads = findWorkloads(
    (v.workloads ?? WORKLOADS.map((w) => w.name).join(',')).split(',').filter((s) => s !== ''),
  );
  const concurrencies = (v.concurrency ?? '1,8')
    .split(',')
    .filter((s) => s !== '')
    .map((s) => int('concurrency', s, 1, 1, 256));
  const rounds = int('rounds', v.rounds, 1, 1, 20);
  const rssIntervalMs = int('rss-interval-ms', v['rss-interval-ms'], 100, 0, 10_000);
  const opts: CellOptions = {
    requests: int('requests', v.requests, 200, 1, 100_000),
    maxSeconds: int('max-seconds', v['max-seconds'], 60, 1, 3600),
    warmup: int('warmup', v.warmup, 4, 0, 1000),
    timeoutMs: int('timeout-ms', v['timeout-ms'], 60_000, 100, 600_000),
    rssIntervalMs,
    pauseMs: int('pause-ms', v['pause-ms'], 0, 0, 60_000),
  };
  const settleMs = int('settle-ms', v['settle-ms'], 1000, 0, 60_000);
  const totalDeadline =
    Date.now() + int('max-total-seconds', v['max-total-seconds'], 3600, 1, 86_400) * 1000;
  const outDir = v.out ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

  const targets = b === null ? [a] : [a, b];
  const pids = new Map<string, number | null>();
  const idle: Record<
    string,
    {
      pid: number | null;
      idleRssMiB: number | null;
      idlePssMiB: number | null;
      processes: number | null;
    }
  > = {};
  for (const [t, given] of [
    [a, v.pid ?? env.BENCH_PID],
    [b, v['b-pid'] ?? env.BENCH_B_PID],
  ] as const) {
    if (t === null) continue;
    const pid = rssIntervalMs === 0 ? null : pidOf(t, given);
    pids.set(t.name, pid);
    const s = pid === null ? null : sampleTree(pid, true);
    idle[t.name] = {
      pid,
      idleRssMiB: s === null ? null : Math.round((s.totalKiB / 1024) * 10) / 10,
      idlePssMiB: s?.totalPssKiB == null ? null : Math.round((s.totalPssKiB / 1024) * 10) / 10,
      processes: s?.processes ?? null,
    };
    process.stderr.write(
      `${t.name}: ${t.url.href} pid ${pid ?? '? (no RSS)'}, idle RSS ${idle[t.name]?.idleRssMiB ?? '?'} MiB, PSS ${idle[t.name]?.idlePssMiB ?? '?'} MiB\n`,
    );
  }

  const startedAt = new Date();
  const cells: CellResult[] = [];
  const ratios: Ratio[] = [];
  const skipped: string[] = [];
  let k = 0;
  for (const w of workloads)
    for (const c of concurrencies) {
      if (Date.now() >= totalDeadline) {
        skipped.push(`${w.name} c=${c}`);
        continue;
      }
      const runs = new Map(targets.map((t) => [t.name, emptyRuns()]));
      for (let r = 0; r < rounds; r++) {
        const order = (k + r) % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          process.stderr.write(`${w.name} c=${c} ${t.name} round ${r + 1}/${rounds} … `);
          const into = runs.get(t.name)!;
          await runCell(into, t, pids.get(t.name) ?? null, w, c, opts);
          process.stderr.write(`${into.okMs.length}/${into.sent} ok\n`);
          await sleep(settleMs);
        }
      }
      k++;
      const results = targets.map((t) => finish(runs.get(t.name)!, t.name, w, c, rounds));
      cells.push(...results);
      if (results.length === 2) ratios.push(ratio(results[0]!, results[1]!));
    }

  const out = [
    '',
    `host: ${os.cpus().length} CPUs, load ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}; ` + `${opts.requests} requests × ${rounds} round(s) per cell`,
    ...targets.map(
      (t) =>
        `${t.name}: ${t.url.href} idle RSS ${idle[t.name]?.idleRssMiB ?? '?'} MiB (summed over the tree), PSS ${idle[t.name]?.idlePssMiB ?? '?'} MiB`,
    ),
    '',
    cellTable(cells),
  ];
  if (ratios.length > 0)
    out.push('', `ratios (> 1× means ${a.name} is better):`, ratioTable(ratios));
  const samples = errorSamples(cells);
  if (samples !== '') out.push('', 'first error of each kind:', samples);
  if (skipped.length > 0) out.push('', `skipped (--max-total-seconds): ${skipped.join(', ')}`);
  process.stdout.write(`${out.join('\n')}\n`);

  await mkdir(outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const file = path.join(outDir, `${stamp}-${targets.map((t) => t.name).join('-vs-')}.json`);
  const json = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    host: { cpus: os.cpus().length, node: process.version, kernel: os.release() },
    options: { ...opts, rounds, settleMs, concurrencies, workloads: workloads.map((w) => w.name) },
    targets: targets.map((t) => ({ name: t.name, url: t.url.href, ...idle[t.name] })),
    workloads: workloads.map((w) => ({ name: w.name, language: w.language, what: w.what })),
    cells,
    ratios,
    skipped,
  };
  await writeFile(file, `${JSON.stringify(json, null, 2)}\n`);
  process.stderr.write(`results: ${file}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
