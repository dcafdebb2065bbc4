// The README's table of SandboxPool spec fields, rendered from the schema (npm run docs).
import type { JSONSchemaProps } from './schema.js';
import { sandboxPoolSpecSchema } from './v1alpha1.js';

function typeOf(s: JSONSchemaProps): string {
  if (s['x-kubernetes-int-or-string']) return 'quantity';
  if (s.enum) return s.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  if (s.type === 'array') return `[]${s.items ? typeOf(s.items) : ''}`;
  if (s.type === 'object' && s.additionalProperties)
    return `map[string]${typeOf(s.additionalProperties)}`;
  if (s.type === 'object' && s.properties && s.items === undefined) return 'object';
  return s.type ?? 'any';
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function rows(s: JSONSchemaProps, prefix: string, required: boolean): string[] {
  const def =
    s.default === undefined ? (required ? 'required' : '—') : `\`${JSON.stringify(s.default)}\``;
  const row = `| \`${prefix}\` | ${typeOf(s)} | ${cell(def)} | ${cell(s.description ?? '')} |`;
  // Objects with their own fields get one row per field; lists of objects and pass-through
  // Kubernetes types are described in one row.
  if (s.type !== 'object' || !s.properties) return [row];
  const children = Object.entries(s.properties).flatMap(([k, p]) =>
    rows(p, `${prefix}.${k}`, s.required?.includes(k) ?? false),
  );
  return [row, ...children];
}

export function renderSpecTable(): string {
  const body = Object.entries(sandboxPoolSpecSchema.json.properties ?? {}).flatMap(([k, p]) =>
    rows(p, `spec.${k}`, sandboxPoolSpecSchema.json.required?.includes(k) ?? false),
  );
  return ['| field | type | default | meaning |', '|---|---|---|---|', ...body].join('\n');
}
