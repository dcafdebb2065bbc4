// The generated parts of README.md, each between <!-- NAME:start --> and <!-- NAME:end -->:
// facts stated once in code (settings, metrics) and rendered into the docs.
import { renderConfigTable } from './config.js';
import { RunnerMetrics } from './metrics.js';

/** The runner's metrics as a table: name, type, labels, meaning (from the registry itself). */
export function renderRunnerMetricsTable(): string {
  const rows: string[] = [];
  for (const metric of new RunnerMetrics().registry.getMetricsAsArray()) {
    const { name, help, type } = metric;
    // prom-client keeps the declared label names on the metric, without a type for them.
    const { labelNames = [] } = metric as unknown as { labelNames?: string[] };
    if (!name.startsWith('sandbox_')) continue; // prom-client's process_* and nodejs_* defaults
    const labels = labelNames.map((l) => `\`${l}\``).join(', ') || '—';
    rows.push(`| \`${name}\` | ${type} | ${labels} | ${help} |`);
  }
  return ['| metric | type | labels | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

export async function renderSections(): Promise<Record<string, string>> {
  return {
    'config-table': renderConfigTable(),
    'runner-metrics': renderRunnerMetricsTable(),
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
