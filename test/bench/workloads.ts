// The workloads of design/performance.md: each is one request body plus the exact stdout a
// correct sandbox prints for it, so every response of a benchmark is verified, not just timed.
import {
  DEFAULT_NODEJS_MAIN,
  DEFAULT_PYTHON_MAIN,
  JINJA2_PRELOAD,
  jinja2Runner,
  nodejsRunner,
  pythonRunner,
} from '../support/dify.js';

export type Language = 'python3' | 'nodejs';

export interface Workload {
  name: string;
  language: Language;
  code: string;
  preload: string;
  /** stdout byte for byte (as the UTF-8 string of the JSON response). */
  expectedStdout: string;
  what: string;
}

/** The body Dify POSTs to /v1/sandbox/run (it always sends enable_network: true). */
export function requestBody(w: Workload): string {
  return JSON.stringify({
    language: w.language,
    code: w.code,
    preload: w.preload,
    enable_network: true,
  });
}

const difyInputs = { arg1: 'sandbox', arg2: 'pool' };

// --- jinja2: a 20-line template with a loop, filters, a namespace and a conditional ---------

const JINJA2_TEMPLATE = `{#- Order summary, as a Dify template-transform node renders it -#}
Order #{{ order.id }} for {{ customer.name | title }} <{{ customer.email | lower }}>
Placed {{ order.date }}, status {{ order.status | upper }}
{{ '-' * 40 }}
{% for item in items -%}
{{ loop.index }}. {{ item.name }}: {{ item.qty }} x {{ item.cents }}c = {{ item.qty * item.cents }}c
{%- if item.tags %} [{{ item.tags | join(', ') }}]{% endif %}
{%- if loop.last %} (last){% endif %}
{% endfor -%}
{{ '-' * 40 }}
Items: {{ items | length }}, units: {{ items | sum(attribute='qty') }}
{%- set total = namespace(c=0) %}
{%- for item in items %}{% set total.c = total.c + item.qty * item.cents %}{% endfor %}
Total: {{ total.c // 100 }}.{{ '%02d' | format(total.c % 100) }}
{% if customer.vip -%}
Thank you for being a VIP, {{ customer.name.split(' ')[0] | title }}!
{%- else -%}
Thank you for your order.
{%- endif %}
Notes: {{ order.notes | default('none') }}
`;

interface OrderItem {
  name: string;
  qty: number;
  cents: number;
  tags: string[];
}

const orderItems: OrderItem[] = Array.from({ length: 10 }, (_, k) => {
  const i = k + 1;
  return {
    name: `item-${i}`,
    qty: (i % 3) + 1,
    cents: 150 * i + 99,
    tags: i % 4 === 0 ? ['a', 'b'] : [],
  };
});

const jinja2Inputs = {
  order: { id: 4711, date: '2026-11-27', status: 'shipped' },
  customer: { name: 'ada lovelace', email: 'Ada@Example.COM', vip: true },
  items: orderItems,
};

/** What Jinja2 renders for JINJA2_TEMPLATE and jinja2Inputs (checked against Jinja2 3.1). */
function jinja2Expected(): string {
  const rule = '-'.repeat(40);
  const lines = [
    'Order #4711 for Ada Lovelace <ada@example.com>',
    'Placed 2026-11-27, status SHIPPED',
    rule,
    ...orderItems.map((it, k) => {
      const tags = it.tags.length > 0 ? ` [${it.tags.join(', ')}]` : '';
      const last = k === orderItems.length - 1 ? ' (last)' : '';
      return `${k + 1}. ${it.name}: ${it.qty} x ${it.cents}c = ${it.qty * it.cents}c${tags}${last}`;
    }),
    rule,
    `Items: ${orderItems.length}, units: ${orderItems.reduce((s, it) => s + it.qty, 0)}`,
  ];
  const total = orderItems.reduce((s, it) => s + it.qty * it.cents, 0);
  lines.push(`Total: ${Math.floor(total / 100)}.${String(total % 100).padStart(2, '0')}`);
  lines.push('Thank you for being a VIP, Ada!', 'Notes: none');
  // Jinja2 drops the template's single trailing newline; the runner's print() adds one.
  return `<<RESULT>>${lines.join('\n')}<<RESULT>>\n`;
}

// --- py-cpu: about 50 ms of pure-Python work on an idle core of this machine ----------------

const CPU_ITERATIONS = 600_000;
const CPU_MODULUS = 1_000_003;

function cpuExpected(): string {
  let s = 0;
  for (let i = 0; i < CPU_ITERATIONS; i++) s = (s + i * i) % CPU_MODULUS;
  return `${s}\n`;
}

// --- py-big-out: 16384 numbered lines of 64 bytes = 1 MiB ----------------------------------

const BIG_LINES = 16_384;

function bigOutExpected(): string {
  const parts: string[] = [];
  for (let i = 0; i < BIG_LINES; i++)
    parts.push(`${String(i).padStart(8, '0')}${'x'.repeat(55)}\n`);
  return parts.join('');
}

export const WORKLOADS: readonly Workload[] = [
  {
    name: 'py-hello',
    language: 'python3',
    code: 'print("hello")\n',
    preload: '',
    expectedStdout: 'hello\n',
    what: 'print("hello")',
  },
  {
    name: 'py-dify',
    language: 'python3',
    code: pythonRunner(DEFAULT_PYTHON_MAIN, difyInputs),
    preload: '',
    expectedStdout: `<<RESULT>>${JSON.stringify({ result: 'sandboxpool' }, null, 4)}<<RESULT>>\n`,
    what: "Dify's python3 runner around the default main",
  },
  {
    name: 'js-hello',
    language: 'nodejs',
    code: 'console.log("hello")\n',
    preload: '',
    expectedStdout: 'hello\n',
    what: 'console.log("hello")',
  },
  {
    name: 'js-dify',
    language: 'nodejs',
    code: nodejsRunner(DEFAULT_NODEJS_MAIN, difyInputs),
    preload: '',
    expectedStdout: `<<RESULT>>${JSON.stringify({ result: 'sandboxpool' })}<<RESULT>>\n`,
    what: "Dify's JavaScript runner around the default main",
  },
  {
    name: 'jinja2',
    language: 'python3',
    code: jinja2Runner(JINJA2_TEMPLATE, jinja2Inputs, true),
    preload: JINJA2_PRELOAD,
    expectedStdout: jinja2Expected(),
    what: "Dify's Jinja2 runner (SandboxedEnvironment) + preload, 20-line template with a loop",
  },
  {
    name: 'py-cpu',
    language: 'python3',
    code: `def work(n):
    s = 0
    for i in range(n):
        s = (s + i * i) % ${CPU_MODULUS}
    return s

print(work(${CPU_ITERATIONS}))
`,
    preload: '',
    expectedStdout: cpuExpected(),
    what: `~50 ms of pure-Python arithmetic (${CPU_ITERATIONS} loop iterations)`,
  },
  {
    name: 'py-big-out',
    language: 'python3',
    code: `for i in range(${BIG_LINES}):
    print(f"{i:08d}" + "x" * 55)
`,
    preload: '',
    expectedStdout: bigOutExpected(),
    what: `prints 1 MiB (${BIG_LINES} lines of 64 bytes)`,
  },
];

export function findWorkloads(names: readonly string[]): Workload[] {
  return names.map((n) => {
    const w = WORKLOADS.find((x) => x.name === n);
    if (w === undefined)
      throw new Error(`unknown workload ${n} (known: ${WORKLOADS.map((x) => x.name).join(', ')})`);
    return w;
  });
}
