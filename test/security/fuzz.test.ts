// S12, fuzzed: thousands of random and malformed requests (bodies, headers, sizes, methods,
// paths, and raw bytes that are not HTTP at all), in concurrent batches. The runner never
// crashes, never answers 5xx other than 503 backpressure, and every answer is either a valid
// envelope or a 4xx. The runner runs as its own (unprivileged) process, so a crash would show.
import fc from 'fast-check';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRunner, TEST_KEY, type TestRunner } from '../support/runner.js';

const BODY_LIMIT = 4096;
const TIME_LIMIT_MS = 45_000;
let t: TestRunner;

beforeAll(async () => {
  t = await startTestRunner(
    {
      SANDBOX_MAX_BODY_BYTES: String(BODY_LIMIT),
      MAX_WORKERS: '2',
      MAX_REQUESTS: '3', // small, so that batches meet backpressure (503)
      WORKER_TIMEOUT: '2',
      SANDBOX_CPU_SECONDS: '1',
    },
    { mode: 'unprivileged' },
  );
});
afterAll(async () => {
  await t?.close();
});

interface Req {
  method: string;
  path: string;
  key: string | undefined;
  contentType: string;
  body: string;
}

interface Answer {
  status: number;
  text: string;
}

/** The contract for any answer: a valid envelope, or a 4xx; 5xx only as 503 backpressure. */
function checkAnswer(a: Answer, what: string): void {
  const context = `${what} -> ${a.status} ${a.text.slice(0, 300)}`;
  expect(a.status >= 500 && a.status !== 503, context).toBe(false);
  if (a.status >= 400 && a.status < 500 && a.status !== 401 && a.status !== 400) return;
  let body: unknown;
  try {
    body = JSON.parse(a.text);
  } catch {
    throw new Error(`not JSON: ${context}`);
  }
  if (typeof body === 'string') return; // GET /health answers "ok"
  expect(typeof body === 'object' && body !== null, context).toBe(true);
  const env = body as Record<string, unknown>;
  if (!('code' in env)) return; // /readyz, /healthz answer their own objects
  expect(typeof env.code, context).toBe('number');
  expect(typeof env.message, context).toBe('string');
  if (a.status === 503) expect(env.code, context).toBe(-503);
  if (env.code === 0 && env.data !== null && typeof env.data === 'object' && 'stdout' in env.data) {
    const d = env.data as Record<string, unknown>;
    expect(typeof d.stdout, context).toBe('string');
    expect(typeof d.stderr, context).toBe('string');
    expect(typeof d.error, context).toBe('string');
    expect(typeof d.exit_code, context).toBe('number');
  }
}

const anyValue = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
);

// Bodies: mostly shaped like a run request with something wrong, some random JSON, some not JSON.
const body = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record(
        {
          language: fc.oneof(
            { weight: 1, arbitrary: fc.constantFrom('python3', 'nodejs') },
            { weight: 3, arbitrary: anyValue },
          ),
          code: fc.oneof(
            {
              weight: 1,
              arbitrary: fc.constantFrom('print(1)', 'console.log(1)', '', 'x' as string),
            },
            { weight: 3, arbitrary: anyValue },
          ),
          preload: anyValue,
          enable_network: anyValue,
          dependencies: anyValue,
        },
        { requiredKeys: [] },
      )
      .map((o) => JSON.stringify(o)),
  },
  { weight: 2, arbitrary: fc.json() },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 300 }) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.json(), fc.nat()).map(([j, n]) => j.slice(0, n % (j.length + 1))), // truncated JSON
  },
  {
    weight: 1,
    arbitrary: fc
      .nat({ max: 3 * BODY_LIMIT })
      .map((n) => `{"language":"python3","code":"${'#'.repeat(n)}"}`),
  },
  { weight: 1, arbitrary: fc.nat({ max: 5000 }).map((n) => '['.repeat(n) + ']'.repeat(n % 7)) },
);

const request = fc.record({
  method: fc.constantFrom('POST', 'POST', 'POST', 'GET', 'PUT', 'DELETE', 'PATCH'),
  path: fc.oneof(
    { weight: 6, arbitrary: fc.constant('/v1/sandbox/run') },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom('python3', 'nodejs', 'ruby', '', '%00', '../x')
        .map((l) => `/v1/sandbox/dependencies?language=${l}`),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        '/',
        '/health',
        '/readyz',
        '/v1/sandbox/',
        '/v1/sandbox/run/x',
        '/%2e%2e/x',
      ),
    },
    { weight: 1, arbitrary: fc.webPath().map((p) => `/v1/sandbox${p}`) },
  ),
  key: fc.oneof(
    { weight: 5, arbitrary: fc.constant<string | undefined>(TEST_KEY) },
    { weight: 1, arbitrary: fc.constant<string | undefined>(undefined) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 40 }) },
  ),
  contentType: fc.constantFrom(
    'application/json',
    'application/json; charset=utf-8',
    'text/plain',
    'application/x-www-form-urlencoded',
    'application/json; charset=latin1',
    '',
  ),
  body,
});

async function send(r: Req): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (r.key !== undefined) headers['X-Api-Key'] = r.key.replace(/[^\x20-\x7e]/g, '');
  if (r.contentType !== '') headers['Content-Type'] = r.contentType;
  const res = await fetch(`${t.url}${r.path}`, {
    method: r.method,
    headers,
    ...(r.method === 'GET' ? {} : { body: r.body }),
  });
  return { status: res.status, text: await res.text() };
}

const BURST: Req[] = Array.from({ length: 5 }, () => ({
  method: 'POST',
  path: '/v1/sandbox/run',
  key: TEST_KEY,
  contentType: 'application/json',
  body: JSON.stringify({ language: 'python3', code: 'import time\ntime.sleep(0.2)' }),
}));

/** Raw bytes to the HTTP port: the runner answers 4xx or closes; it never dies. */
function sendRaw(bytes: Uint8Array): Promise<Answer> {
  return new Promise((resolve) => {
    const s = net.connect(Number(new URL(t.url).port), '127.0.0.1');
    let answer = '';
    s.setTimeout(5000, () => s.destroy());
    s.on('data', (d) => (answer += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(answer);
      resolve({ status: m === null ? 0 : Number(m[1]), text: answer.split('\r\n\r\n')[1] ?? '' });
    });
    s.on('connect', () => s.end(Buffer.from(bytes)));
  });
}

/**
 * The stdout of a normal run, once the fuzz's own runs have drained: requests the fuzz gave up
 * on may still hold the few MAX_REQUESTS slots, and a 503 until they end is backpressure.
 */
async function runOnceDrained(language: 'python3' | 'nodejs', code: string): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { status, body } = await t.post({ language, code, enable_network: true });
    if (status !== 503 || Date.now() > deadline) {
      expect(status, JSON.stringify(body)).toBe(200);
      expect(body.code, JSON.stringify(body)).toBe(0);
      return body.data?.stdout ?? '';
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('the HTTP surface, fuzzed', () => {
  it('answers batches of random requests with envelopes, 4xx or 503, and keeps serving', async () => {
    let requests = 0;
    const statuses = new Map<number, number>();
    await fc.assert(
      // Now and then a burst of real runs on top, beyond MAX_REQUESTS: backpressure.
      fc.asyncProperty(
        fc.array(request, { minLength: 1, maxLength: 8 }),
        fc.nat(29),
        async (random, n) => {
          const batch = n === 0 ? [...BURST, ...random] : random;
          const answers = await Promise.all(batch.map((r) => send(r)));
          requests += batch.length;
          for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
          answers.forEach((a, i) => checkAnswer(a, JSON.stringify(batch[i]).slice(0, 300)));
          expect(t.alive()).toBe(true);
        },
      ),
      {
        numRuns: 1000,
        interruptAfterTimeLimit: TIME_LIMIT_MS,
        seed: Number(process.env.FUZZ_SEED ?? Date.now() % 1e9),
      },
    );
    // It reached every kind of answer: runs, bad requests, bad keys, big bodies, backpressure.
    expect(requests).toBeGreaterThan(1000);
    for (const status of [200, 400, 401, 404, 413, 503])
      expect(statuses.get(status) ?? 0, JSON.stringify([...statuses])).toBeGreaterThan(0);
    expect(t.alive()).toBe(true);
    expect(await runOnceDrained('python3', 'print("after the fuzz")')).toBe('after the fuzz\n');
  }, 120_000);

  it('survives raw bytes that are barely HTTP, or not at all', async () => {
    const prefix = fc.constantFrom(
      '',
      'POST /v1/sandbox/run HTTP/1.1\r\n',
      `POST /v1/sandbox/run HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${TEST_KEY}\r\n`,
      'GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
    );
    await fc.assert(
      fc.asyncProperty(prefix, fc.uint8Array({ maxLength: 2000 }), async (p, rest) => {
        const bytes = Buffer.concat([Buffer.from(p, 'latin1'), Buffer.from(rest)]);
        const a = await sendRaw(bytes);
        if (a.status !== 0) expect(a.status >= 500 && a.status !== 503, `${a.status}`).toBe(false);
        expect(t.alive()).toBe(true);
      }),
      { numRuns: 500, interruptAfterTimeLimit: 20_000 },
    );
    expect(await runOnceDrained('nodejs', 'console.log("after the bytes")')).toBe(
      'after the bytes\n',
    );
  }, 60_000);
});
