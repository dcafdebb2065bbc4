// SandboxPools for tests: a pool object as the API server would return it (defaults applied).
import { applyDefaults } from '../../operator/api/schema.js';
import {
  API_VERSION,
  KIND,
  sandboxPoolSpecSchema,
  type SandboxPool,
  type SandboxPoolSpec,
} from '../../operator/api/v1alpha1.js';

/** Any part of a spec: what a user writes (the rest comes from the schema's defaults). */
export type SpecInput = { [K in keyof SandboxPoolSpec]?: unknown };

export function poolWith(spec: SpecInput = {}, name = 'dify', namespace = 'dify'): SandboxPool {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name, namespace, uid: '00000000-0000-0000-0000-000000000001', generation: 1 },
    spec: applyDefaults(sandboxPoolSpecSchema, spec),
  };
}
