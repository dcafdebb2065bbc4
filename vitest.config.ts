import { defineConfig } from 'vitest/config';

// `npx vitest run` runs every project; `--project runner`, `--project k8s` or
// `--project container` runs one.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests start real runners, processes and a control plane; 2 cores gain nothing from more.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'runner',
          include: [
            'test/unit/**/*.test.ts',
            'test/integration/**/*.test.ts',
            'test/security/**/*.test.ts',
          ],
        },
      },
      {
        extends: true,
        test: {
          // Against a real kube-apiserver and controller manager (bash test/k8s/setup.sh).
          name: 'k8s',
          include: ['test/k8s/**/*.test.ts', 'test/e2e/**/*.test.ts'],
          globalSetup: ['test/k8s/global-setup.ts'],
          testTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          // Against Docker Engine: the runner image run as a restricted pod runs it, and the
          // docker-compose stack with its egress proxy (bash test/container/setup.sh).
          name: 'container',
          include: ['test/container/**/*.test.ts'],
          globalSetup: ['test/container/global-setup.ts'],
          // No container registry can be reached: testcontainers' reaper image cannot be pulled.
          env: { TESTCONTAINERS_RYUK_DISABLED: 'true' },
          testTimeout: 120_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
