import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // These need the control plane: test/k8s/vitest.k8s.config.ts runs them with its global setup.
    exclude: [...configDefaults.exclude, 'test/k8s/**', 'test/e2e/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests start real runners and real processes; 2 cores do not profit from many workers.
    maxWorkers: 2,
  },
});
