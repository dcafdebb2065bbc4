// Dify conformance (test/support/conformance.ts) against a runner started in this process.
import { afterAll, beforeAll } from 'vitest';
import { conformanceSuite } from '../support/conformance.js';
import { startTestRunner, type TestRunner } from '../support/runner.js';

let t: TestRunner;
beforeAll(async () => {
  t = await startTestRunner();
});
afterAll(async () => {
  await t.close();
});

conformanceSuite(() => ({
  url: t.url,
  apiKey: t.config.apiKey,
  post: (body) => t.post(body),
  run: (language, code, extra) => t.run(language, code, extra),
}));
