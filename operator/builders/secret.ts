// The generated API key Secret, only when spec.apiKeySecretRef is absent. Created once and never
// overwritten (the reconciler creates it, never applies it), so the key stays stable.
import { randomBytes } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { SandboxPool } from '../api/v1alpha1.js';
import { childMeta, childNames } from './common.js';

export const GENERATED_KEY = 'api-key';

/** 32 random bytes, as 64 hex characters (safe in a header and in any shell). */
export function generateApiKey(): string {
  return randomBytes(32).toString('hex');
}

/** Pure given the key: the caller passes generateApiKey() (tests pass a fixed one). */
export function buildApiKeySecret(pool: SandboxPool, apiKey: string): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: childMeta(pool, childNames(pool).apiKeySecret),
    type: 'Opaque',
    immutable: true,
    stringData: { [GENERATED_KEY]: apiKey },
  };
}
