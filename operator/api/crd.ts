// The SandboxPool CustomResourceDefinition, rendered from the schema in v1alpha1.ts.
import { stringify } from 'yaml';
import type { JSONSchemaProps } from './schema.js';
import {
  GROUP,
  KIND,
  PLURAL,
  VERSION,
  rootValidations,
  sandboxPoolSpecSchema,
  sandboxPoolStatusSchema,
} from './v1alpha1.js';

export const CRD_NAME = `${PLURAL}.${GROUP}`;
/** Where the rendered CRD is committed, relative to the repository root. */
export const CRD_FILE = `crds/${GROUP}_${PLURAL}.yaml`;
/** The same file in the Helm chart, which installs it before its templates (Helm's crds/). */
export const CHART_CRD_FILE = `charts/sandboxpool/crds/${GROUP}_${PLURAL}.yaml`;

export function sandboxPoolCRD(): Record<string, unknown> {
  const openAPIV3Schema: JSONSchemaProps = {
    type: 'object',
    description:
      'A pool of runner pods that execute untrusted Python 3 and Node.js code for Dify (a DifySandbox-compatible endpoint), hardened and observable. The operator creates a ServiceAccount, the API key Secret, a ConfigMap, a Deployment, a Service, a NetworkPolicy, and when useful a PodDisruptionBudget and a HorizontalPodAutoscaler, all owned by the pool.',
    properties: {
      apiVersion: {
        type: 'string',
        description: 'The versioned schema of this object: sandboxpool.dev/v1alpha1.',
      },
      kind: { type: 'string', description: 'SandboxPool.' },
      // The API server allows nothing else here (its schema is ObjectMeta's).
      metadata: { type: 'object' },
      spec: sandboxPoolSpecSchema.json,
      status: sandboxPoolStatusSchema.json,
    },
    'x-kubernetes-validations': rootValidations,
  };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: CRD_NAME,
      labels: {
        'app.kubernetes.io/name': 'sandboxpool',
        'app.kubernetes.io/part-of': 'sandboxpool',
      },
    },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: {
        kind: KIND,
        listKind: `${KIND}List`,
        plural: PLURAL,
        singular: 'sandboxpool',
        shortNames: ['sbp'],
        categories: ['all', 'sandboxpool'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema },
          subresources: {
            status: {},
            scale: {
              specReplicasPath: '.spec.replicas',
              statusReplicasPath: '.status.replicas',
              labelSelectorPath: '.status.selector',
            },
          },
          additionalPrinterColumns: [
            {
              name: 'Ready',
              type: 'string',
              description: 'The Ready condition.',
              jsonPath: '.status.conditions[?(@.type=="Ready")].status',
            },
            {
              name: 'Replicas',
              type: 'integer',
              description: 'Runner pods that exist.',
              jsonPath: '.status.replicas',
            },
            {
              name: 'Endpoint',
              type: 'string',
              description: "Dify's CODE_EXECUTION_ENDPOINT.",
              jsonPath: '.status.endpoint',
            },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
        },
      ],
    },
  };
}

export function renderCRD(): string {
  return (
    '# Generated from operator/api/v1alpha1.ts by `npm run crds`; do not edit by hand.\n' +
    stringify(sandboxPoolCRD(), { lineWidth: 0 })
  );
}
