// The CRD and the operator's types come from one declaration (operator/api/v1alpha1.ts): the
// committed crds/ file must be its rendering, and every field must be documented.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CHART_CRD_FILE, CRD_FILE, renderCRD, sandboxPoolCRD } from '../../operator/api/crd.js';
import { renderSpecTable } from '../../operator/api/docs.js';
import { walk, type JSONSchemaProps } from '../../operator/api/schema.js';
import { REPO_ROOT } from '../../operator/paths.js';
import { poolWith } from '../support/pools.js';

type Version = { schema: { openAPIV3Schema: JSONSchemaProps } };
const schema = () =>
  (sandboxPoolCRD().spec as { versions: Version[] }).versions[0]!.schema.openAPIV3Schema;

describe('the SandboxPool CRD', () => {
  it('is committed exactly as rendered from operator/api (npm run crds)', () => {
    const committed = readFileSync(path.join(REPO_ROOT, CRD_FILE), 'utf8');
    expect(committed, `${CRD_FILE} is stale: run npm run crds`).toBe(renderCRD());
    expect(parse(committed)).toEqual(sandboxPoolCRD());
    const inChart = readFileSync(path.join(REPO_ROOT, CHART_CRD_FILE), 'utf8');
    expect(inChart, `${CHART_CRD_FILE} is stale: run npm run crds`).toBe(renderCRD());
  });

  it('describes every field (kubectl explain shows each)', () => {
    const undocumented = [...walk(schema())]
      // The API server allows only `type` on metadata (it is ObjectMeta).
      .filter(([p, node]) => p !== '.metadata' && !node.description?.trim())
      .map(([p]) => p);
    expect(undocumented).toEqual([]);
    expect([...walk(schema())].length).toBeGreaterThan(80);
  });

  it('bounds every list and string a CEL rule reads (the API server estimates rule costs)', () => {
    for (const [p, node] of walk(schema())) {
      if (node.type === 'array') expect(node.maxItems, `${p}: maxItems`).toBeGreaterThan(0);
      if (node['x-kubernetes-validations'] && node.type === 'string')
        expect(node.maxLength, `${p}: maxLength`).toBeGreaterThan(0);
    }
  });

  it('defaults an empty spec to a working pool', () => {
    const { spec } = poolWith({});
    expect(spec).toEqual({
      replicas: 2,
      imagePullPolicy: 'IfNotPresent',
      execution: {
        timeoutSeconds: 15,
        memoryMiB: 256,
        maxOutputBytes: 4194304,
        maxWorkers: 4,
        maxQueue: 50,
        warmPool: { python3: 4, nodejs: 2 },
        enablePreload: true,
      },
      network: { enabled: true, allowedCIDRs: [], allowedClients: [{ podSelector: {} }] },
      dependencies: { python: [], nodejs: [] },
      seccomp: { podProfile: 'RuntimeDefault', extraSyscalls: [] },
      resources: { requests: { cpu: '500m', memory: '512Mi' }, limits: { memory: '1536Mi' } },
      workDir: { medium: 'Disk', sizeLimit: '1Gi' },
      logLevel: 'info',
      podTemplate: {},
    });
  });

  it('keeps what the user set and defaults only the rest', () => {
    const { spec } = poolWith({ execution: { maxWorkers: 8, warmPool: { nodejs: 0 } } });
    expect(spec.execution.maxWorkers).toBe(8);
    expect(spec.execution.timeoutSeconds).toBe(15);
    expect(spec.execution.warmPool).toEqual({ python3: 4, nodejs: 0 });
  });

  it('has a status subresource, a scale subresource and the printer columns', () => {
    const v = (sandboxPoolCRD().spec as { versions: Record<string, unknown>[] }).versions[0]!;
    expect(v.subresources).toEqual({
      status: {},
      scale: {
        specReplicasPath: '.spec.replicas',
        statusReplicasPath: '.status.replicas',
        labelSelectorPath: '.status.selector',
      },
    });
    expect((v.additionalPrinterColumns as { name: string }[]).map((c) => c.name)).toEqual([
      'Ready',
      'Replicas',
      'Endpoint',
      'Age',
    ]);
  });
});

describe('README', () => {
  it('lists the SandboxPool fields as the schema declares them (npm run docs)', () => {
    const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const between =
      /<!-- sandboxpool-spec:start -->\n([\s\S]*?)\n<!-- sandboxpool-spec:end -->/.exec(readme);
    expect(between, 'README.md lacks the sandboxpool-spec markers').not.toBeNull();
    expect(between![1], 'run `npm run docs` to refresh the README').toBe(renderSpecTable());
  });
});
