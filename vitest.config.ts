import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests start real runners and real processes; 2 cores do not profit from many workers.
    maxWorkers: 2,
  },
});
