// The chart's alerts and dashboard query metrics by name: every name must be one the runner or
// the operator exports, and the "killed by limits" alert must cover every limit outcome.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { OperatorMetrics } from '../../operator/metrics.js';
import { OUTCOMES } from '../../runner/src/execution.js';
import { RunnerMetrics } from '../../runner/src/metrics.js';
import { REPO_ROOT } from '../../runner/src/paths.js';

const CHART = path.join(REPO_ROOT, 'charts', 'sandboxpool');
const rules = readFileSync(path.join(CHART, 'templates', 'prometheusrule.yaml'), 'utf8');
const dashboard = JSON.parse(
  readFileSync(path.join(CHART, 'dashboards', 'sandboxpool.json'), 'utf8'),
) as { panels: { targets?: { expr: string }[] }[]; templating: { list: { query: unknown }[] } };

/** Metric names (histograms by their base name) PromQL mentions, label matchers left out. */
function metricNames(promql: string): string[] {
  const text = promql.replace(/\{[^}]*\}/g, '');
  const names = text.match(/\b(?:sandbox|sandboxpool_operator|process)_[a-z_]+\b/g) ?? [];
  return [...new Set(names.map((n) => n.replace(/_(bucket|sum|count)$/, '')))];
}

const exported = new Set(
  [new RunnerMetrics().registry, new OperatorMetrics().registry].flatMap((r) =>
    r.getMetricsAsArray().map((m) => m.name),
  ),
);

describe('the chart’s monitoring', () => {
  it('alerts only on metrics the runner and the operator export', () => {
    // Each rule's expr: one line, or a block scalar (`expr: |` and the lines indented below it).
    const exprs = [...rules.matchAll(/^(\s*)expr: (?:\|\n((?:\1 +.*\n)+)|(.*))/gm)].map(
      (m) => m[2] ?? m[3] ?? '',
    );
    expect(exprs).toHaveLength(6);
    const names = metricNames(exprs.join('\n'));
    expect(names.length).toBeGreaterThanOrEqual(5);
    expect(names.filter((n) => !exported.has(n))).toEqual([]);
  });

  it('graphs only metrics the runner and the operator export', () => {
    const exprs = [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...dashboard.templating.list.map((v) => JSON.stringify(v.query ?? '')),
    ].join('\n');
    const names = metricNames(exprs);
    expect(names.length).toBeGreaterThanOrEqual(12);
    expect(names.filter((n) => !exported.has(n))).toEqual([]);
  });

  it('counts every limit outcome, and only outcomes, as killed by limits', () => {
    const limits = /\$limits := "([^"]+)"/.exec(rules)?.[1]?.split('|') ?? [];
    const expected = OUTCOMES.filter((o) => /_limit$|^timeout$|^killed$/.test(o));
    expect([...limits].sort()).toEqual([...expected].sort());
  });
});
