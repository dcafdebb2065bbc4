// Tests that need the real control plane (test/k8s/global-setup.ts starts it once per run).
// Run: npx vitest run -c test/k8s/vitest.k8s.config.ts
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/k8s/**/*.test.ts', 'test/e2e/**/*.test.ts'],
    globalSetup: ['test/k8s/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
  },
});
