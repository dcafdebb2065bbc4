// The metrics the README documents (its generated tables), and a check of a /metrics exposition
// against them: every documented metric present with the documented type.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../runner/src/paths.js';

export interface DocumentedMetric {
  name: string;
  type: string;
  labels: string[];
}

/** The rows of the README table between <!-- SECTION:start --> and <!-- SECTION:end -->. */
export function documentedMetrics(
  section: 'runner-metrics' | 'operator-metrics',
): DocumentedMetric[] {
  const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const m = new RegExp(`<!-- ${section}:start -->([\\s\\S]*?)<!-- ${section}:end -->`).exec(readme);
  if (!m?.[1]) throw new Error(`README.md has no ${section} section`);
  const rows: DocumentedMetric[] = [];
  for (const line of m[1].split('\n')) {
    const cells = /^\| `([a-z_:]+)` \| (\w+) \| ([^|]*) \|/.exec(line);
    if (!cells) continue;
    const labels = [...(cells[3] ?? '').matchAll(/`([a-z_]+)`/g)].map((l) => l[1]!);
    rows.push({ name: cells[1]!, type: cells[2]!, labels });
  }
  if (rows.length === 0) throw new Error(`README.md's ${section} table has no rows`);
  return rows;
}

/** Documented metrics missing from EXPOSITION or exposed with another type (empty: all fine). */
export function undocumentedDifferences(
  exposition: string,
  documented: DocumentedMetric[],
): string[] {
  const types = new Map<string, string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1]!, m[2]!);
  const problems: string[] = [];
  for (const d of documented) {
    const type = types.get(d.name);
    if (type === undefined) problems.push(`${d.name}: not exposed`);
    else if (type !== d.type)
      problems.push(`${d.name}: exposed as ${type}, documented as ${d.type}`);
  }
  return problems;
}
