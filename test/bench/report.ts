// The stdout tables: one row per target and cell, and in comparison mode the ratios A vs B.
import { ERROR_KINDS } from './client.js';
import type { CellResult } from './cell.js';

export interface Ratio {
  workload: string;
  concurrency: number;
  a: string;
  b: string;
  aOkPerS: number;
  bOkPerS: number;
  /** A's throughput over B's: > 1 means A serves more per second. null when B served none. */
  throughputAOverB: number | null;
  aP50: number | null;
  bP50: number | null;
  /** B's p50 over A's: > 1 means A answers faster. null when either has no success. */
  p50BOverA: number | null;
}

export function ratio(a: CellResult, b: CellResult): Ratio {
  const aP50 = a.latencyMs?.p50 ?? null;
  const bP50 = b.latencyMs?.p50 ?? null;
  return {
    workload: a.workload,
    concurrency: a.concurrency,
    a: a.target,
    b: b.target,
    aOkPerS: a.okPerS,
    bOkPerS: b.okPerS,
    throughputAOverB: b.okPerS > 0 ? a.okPerS / b.okPerS : null,
    aP50,
    bP50,
    p50BOverA: aP50 !== null && bP50 !== null && aP50 > 0 ? bP50 / aP50 : null,
  };
}

function table(head: string[], rows: string[][]): string {
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 3 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join('  ');
  return [line(head), line(width.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

const f1 = (x: number | null | undefined) => (x === null || x === undefined ? '—' : x.toFixed(1));
const fx = (x: number | null) => (x === null ? '—' : `${x.toFixed(2)}×`);

function errorText(c: CellResult): string {
  const parts = ERROR_KINDS.filter((k) => c.errors[k] > 0).map((k) => `${k}:${c.errors[k]}`);
  return parts.length === 0 ? '0' : parts.join(' ');
}

export function cellTable(cells: readonly CellResult[]): string {
  return table(
    [
      'workload',
      'target',
      'c',
      'sent',
      'ok',
      'errors',
      'p50 ms',
      'p90 ms',
      'p99 ms',
      'ok/s',
      'peak RSS MiB (tree/server/procs)',
    ],
    cells.map((c) => [
      c.workload,
      c.target,
      String(c.concurrency),
      `${c.sent}${c.stoppedByTime ? ' (time)' : ''}`,
      String(c.ok),
      errorText(c),
      f1(c.latencyMs?.p50),
      f1(c.latencyMs?.p90),
      f1(c.latencyMs?.p99),
      c.okPerS.toFixed(1),
      c.peakRssMiB === null
        ? '—'
        : `${c.peakRssMiB.total.toFixed(0)}/${c.peakRssMiB.server.toFixed(0)}/${c.peakRssMiB.processes}`,
    ]),
  );
}

export function ratioTable(ratios: readonly Ratio[]): string {
  const r0 = ratios[0];
  if (r0 === undefined) return '';
  const { a, b } = r0;
  return table(
    [
      'workload',
      'c',
      '',
      `${a} ok/s`,
      `${b} ok/s`,
      `thr ${a}/${b}`,
      `${a} p50`,
      `${b} p50`,
      `p50 ${b}/${a}`,
    ],
    ratios.map((r) => [
      r.workload,
      String(r.concurrency),
      '',
      r.aOkPerS.toFixed(1),
      r.bOkPerS.toFixed(1),
      fx(r.throughputAOverB),
      f1(r.aP50),
      f1(r.bP50),
      fx(r.p50BOverA),
    ]),
  );
}

export function errorSamples(cells: readonly CellResult[]): string {
  const lines: string[] = [];
  for (const c of cells)
    for (const k of ERROR_KINDS) {
      const s = c.errorSamples[k];
      if (s !== undefined) lines.push(`${c.workload} ${c.target} c=${c.concurrency} ${k}: ${s}`);
    }
  return lines.join('\n');
}
