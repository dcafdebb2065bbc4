// The generated parts of README.md, each between <!-- NAME:start --> and <!-- NAME:end -->:
// facts stated once in code (settings, metrics) and rendered into the docs.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Registry } from 'prom-client';
import { parse } from 'yaml';
import { OPERATOR_METRICS_PREFIX, OperatorMetrics } from '../../operator/metrics.js';
import { renderConfigTable } from './config.js';
import { REPO_ROOT } from './paths.js';
import { RunnerMetrics } from './metrics.js';

/**
 * A registry's own metrics as a table: name, type, labels, meaning (from the registry itself),
 * without prom-client's default process_* and nodejs_* metrics.
 */
export function renderMetricsTable(registry: Registry, defaultsPrefix = ''): string {
  const rows: string[] = [];
  for (const metric of registry.getMetricsAsArray()) {
    const { name, help, type } = metric;
    // prom-client keeps the declared label names on the metric, without a type for them.
    const { labelNames = [] } = metric as unknown as { labelNames?: string[] };
    const unprefixed = name.slice(defaultsPrefix.length);
    if (/^(process|nodejs)_/.test(unprefixed)) continue;
    const labels = labelNames.map((l) => `\`${l}\``).join(', ') || '—';
    rows.push(`| \`${name}\` | ${type} | ${labels} | ${help} |`);
  }
  return ['| metric | type | labels | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

interface ValueSchema {
  type?: string;
  description?: string;
  enum?: string[];
  properties?: Record<string, ValueSchema>;
}

/** The Helm chart's values: path, type, default (values.yaml), meaning (values.schema.json). */
export function renderChartValuesTable(): string {
  const chart = path.join(REPO_ROOT, 'charts', 'sandboxpool');
  const schema = JSON.parse(
    readFileSync(path.join(chart, 'values.schema.json'), 'utf8'),
  ) as ValueSchema;
  const values = parse(readFileSync(path.join(chart, 'values.yaml'), 'utf8')) as unknown;
  const rows: string[] = [];
  const walk = (node: ValueSchema, value: unknown, at: string) => {
    if (node.properties !== undefined) {
      for (const [k, child] of Object.entries(node.properties))
        walk(child, (value as Record<string, unknown> | undefined)?.[k], at ? `${at}.${k}` : k);
      return;
    }
    const type = node.enum ? node.enum.map((e) => `\`${e}\``).join(' \\| ') : (node.type ?? '');
    const def = value === undefined ? '—' : `\`${JSON.stringify(value)}\``;
    rows.push(`| \`${at}\` | ${type} | ${def} | ${node.description ?? ''} |`);
  };
  walk(schema, values, '');
  return ['| value | type | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

export async function renderSections(): Promise<Record<string, string>> {
  return {
    'config-table': renderConfigTable(),
    'chart-values': renderChartValuesTable(),
    'runner-metrics': renderMetricsTable(new RunnerMetrics().registry),
    'operator-metrics': renderMetricsTable(new OperatorMetrics().registry, OPERATOR_METRICS_PREFIX),
  };
}

/** README text with every generated section replaced by its current rendering. */
export async function renderReadme(readme: string): Promise<string> {
  let out = readme;
  for (const [name, body] of Object.entries(await renderSections())) {
    const pattern = new RegExp(`<!-- ${name}:start -->[\\s\\S]*?<!-- ${name}:end -->`);
    if (!pattern.test(out))
      throw new Error(`README.md lacks the <!-- ${name}:start/end --> markers`);
    out = out.replace(pattern, `<!-- ${name}:start -->\n${body}\n<!-- ${name}:end -->`);
  }
  return out;
}
