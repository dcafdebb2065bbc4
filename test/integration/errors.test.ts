// The error semantics of api.md: what a failing program, a bad request and an overloaded
// runner look like to Dify.
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gaugeReaches, startTestRunner, TEST_KEY, type TestRunner } from '../support/runner.js';
import { waitFor } from '../support/wait.js';

let t: TestRunner;
beforeAll(async () => {
  t = await startTestRunner({
    WORKER_TIMEOUT: '2',
    // Above the timeout: threads spinning on two CPUs would otherwise reach it first.
    SANDBOX_CPU_SECONDS: '30',
    SANDBOX_MAX_BODY_BYTES: '65536',
    SANDBOX_MAX_OUTPUT_BYTES: '100000',
  });
});
afterAll(async () => {
  await t.close();
});

describe('program failures', () => {
  it('an exception gives exit_code 1 and the traceback in error', async () => {
    const data = await t.run('python3', 'def f():\n    raise ValueError("boom")\nf()');
    expect(data.exit_code).toBe(1);
    expect(data.error).toMatch(
      /^process exited with code 1\nTraceback \(most recent call last\):\n/,
    );
    expect(data.error).toContain('ValueError: boom');
    expect(data.error).toContain('raise ValueError("boom")');
    expect(data.error).not.toContain('python3.py'); // no frames of the bootstrap
    expect(data.stderr).toContain('ValueError: boom');
  });

  it('KeyboardInterrupt and other BaseExceptions fail the same way, without our frames', async () => {
    for (const code of [
      'raise KeyboardInterrupt',
      'import asyncio\nasync def main():\n    raise asyncio.CancelledError()\nasyncio.run(main())',
    ]) {
      const data = await t.run('python3', code);
      expect(data.exit_code, code).toBe(1);
      expect(data.error, code).toMatch(/^process exited with code 1\nTraceback/);
      expect(data.error, code).not.toMatch(/python3\.py|zygote\.py|signal/);
    }
  });

  it('a Node.js program out of memory is told so, however it crashes', async () => {
    // Beyond V8's heap limit it aborts with its own message; with the data limit reached first
    // (young generation, GC) it dies by SIGSEGV, which was reported as a stack overflow.
    // A runner of its own: this file's 2 s timeout could come first on a busy machine.
    const own = await startTestRunner({ WORKER_TIMEOUT: '30', SANDBOX_MEMORY_MIB: '128' });
    try {
      for (const n of ['3e6', '1e7']) {
        const data = await own.run(
          'nodejs',
          `const a = []; for (let i = 0; i < ${n}; i++) a.push({ i }); console.log(a.length)`,
        );
        expect(data.exit_code, n).toBe(-1);
        expect(data.error, n).toMatch(/^error: (memory limit exceeded|.*out of memory)/);
      }
    } finally {
      await own.close();
    }
  }, 90_000);

  it('a Node.js exception gives exit_code 1 and the stack in error', async () => {
    const data = await t.run('nodejs', 'throw new TypeError("bad thing")');
    expect(data.exit_code).toBe(1);
    expect(data.error).toMatch(/^process exited with code 1\n/);
    expect(data.error).toContain('TypeError: bad thing');
  });

  it('a warning on stderr with exit 0 leaves error empty', async () => {
    for (const [language, code] of [
      ['python3', 'import warnings\nwarnings.warn("careful")\nprint("done")'],
      [
        'nodejs',
        'console.warn("careful"); process.emitWarning("careful too"); console.log("done")',
      ],
      // Words the runner reads as running out of memory when a program fails: not when it ends well.
      [
        'python3',
        'import sys\nsys.stderr.write("careful: std::bad_alloc seen earlier\\n")\nprint("done")',
      ],
      [
        'nodejs',
        'console.error("careful: JavaScript heap out of memory, once"); console.log("done")',
      ],
    ] as const) {
      const data = await t.run(language, code);
      expect(data.stdout).toBe('done\n');
      expect(data.stderr).toContain('careful');
      expect(data.error).toBe('');
      expect(data.exit_code).toBe(0);
    }
  });

  it('sys.exit and process.exit codes come through', async () => {
    expect((await t.run('python3', 'import sys; sys.exit(3)')).exit_code).toBe(3);
    expect((await t.run('nodejs', 'process.exit(4)')).exit_code).toBe(4);
    const zero = await t.run('python3', 'import sys; print("x"); sys.exit(0)');
    expect(zero).toEqual({ stdout: 'x\n', stderr: '', error: '', exit_code: 0 });
  });

  // A Node.js run reports its exit status and kills itself after the last 'exit' listener
  // (nodejs.cjs): the status and the output of those listeners still come through.
  it.each([
    ['process.exitCode = 5; console.log("x")', 'x\n', 5],
    ['setTimeout(() => { console.log("later"); process.exitCode = 6 }, 20)', 'later\n', 6],
    ['process.on("exit", (c) => { console.log("bye", c); process.exitCode = 7 })', 'bye 0\n', 7],
    ['process.on("exit", () => console.log("bye")); process.exit(258)', 'bye\n', 2],
    ['console.log("ok")', 'ok\n', 0],
  ] as const)('nodejs exit status: %s', async (code, stdout, status) => {
    const data = await t.run('nodejs', code);
    expect(data.stdout).toBe(stdout);
    expect(data.exit_code).toBe(status);
    expect(data.error).toBe(status === 0 ? '' : `process exited with code ${status}\n`);
  });

  // The report channel is the program's to break: then the status comes from the kernel.
  it.each([
    ['require("fs").closeSync(3); process.exitCode = 3', '', 3],
    [
      'const fs = require("fs"); fs.closeSync(3); console.log(fs.openSync("f", "w")); process.exitCode = 4',
      '3\n',
      4,
    ],
    // More refused calls than the runner keeps report lines of: the last line still counts.
    [
      'for (let i = 0; i < 1500; i++) try { require("os").setPriority(0, 5) } catch {}; console.log("done")',
      'done\n',
      0,
    ],
  ] as const)('nodejs exit status without the usual report: %s', async (code, stdout, status) => {
    const data = await t.run('nodejs', code);
    expect(data.stdout).toBe(stdout);
    expect(data.exit_code).toBe(status);
    expect(data.error).toBe(status === 0 ? '' : `process exited with code ${status}\n`);
  });

  it('a timeout kills the run with every thread, and says so', async () => {
    for (const [language, code] of [
      [
        'python3',
        'import os, threading\ndef spin():\n    while True: pass\nprint(os.getpid(), flush=True)\nfor _ in range(4): threading.Thread(target=spin, daemon=True).start()\nwhile True: pass',
      ],
      ['nodejs', 'console.log(process.pid); setInterval(() => {}, 1000); while (true) {}'],
    ] as const) {
      const started = Date.now();
      const data = await t.run(language, code);
      expect(Date.now() - started).toBeLessThan(6000);
      expect(data.error).toBe('error: timeout\n');
      expect(data.exit_code).toBe(-1);
      const pid = Number(data.stdout.trim());
      expect(pid).toBeGreaterThan(1);
      expect(existsSync(`/proc/${pid}`)).toBe(false);
    }
  });

  // Node.js tearing down after an uncaught "EAGAIN" from new Worker() sometimes crashes with
  // SIGSEGV (seen in CI on the worker-thread bomb): the limit is still why the run failed.
  it('a limit the bootstrap reported stays the reason when the teardown then crashes', async () => {
    const data = await t.run(
      'nodejs',
      "process.on('exit', () => process.kill(process.pid, 'SIGSEGV')); throw Object.assign(new Error('EAGAIN'), { code: 'EAGAIN' })",
    );
    expect(data.error).toMatch(/^error: thread limit exceeded \(\d+\)\n/);
    expect(data.exit_code).not.toBe(0);
    // Not an error the program's own handler took: the run went on, and ended for another reason.
    const handled = await t.run(
      'nodejs',
      "process.on('uncaughtException', () => {}); setTimeout(() => { throw Object.assign(new Error('EMFILE'), { code: 'EMFILE' }) }); setTimeout(() => process.kill(process.pid, 'SIGSEGV'), 50)",
    );
    expect(handled.error).toMatch(/^error: process killed by signal SIGSEGV/);
  });

  it('output over the cap ends the run with a clear error', async () => {
    const data = await t.run('python3', 'import sys\nwhile True: sys.stdout.write("x" * 65536)');
    expect(data.error).toBe('error: output limit exceeded\n');
    expect(data.exit_code).toBe(-1);
    expect(data.stdout.length).toBe(100000);
  });
});

describe('request errors', () => {
  it('unsupported language: HTTP 400, code -400', async () => {
    const { status, body } = await t.post({ language: 'ruby', code: 'puts 1' });
    expect(status).toBe(400);
    expect(body).toEqual({ code: -400, message: 'unsupported language', data: null });
  });

  it('missing fields and wrong types: HTTP 400, code -400 with a message (as DifySandbox)', async () => {
    for (const bad of [
      { language: 'python3' },
      { code: 'print(1)' },
      { language: 'python3', code: 5 },
      { language: 'python3', code: 'x', enable_network: 'yes' },
      [1, 2],
      'text',
    ]) {
      const { status, body } = await t.post(bad);
      expect(status).toBe(400);
      expect(body.code).toBe(-400);
      expect(body.data).toBeNull();
      expect(body.message).not.toBe('');
    }
  });

  it('missing or wrong key: 401', async () => {
    for (const headers of [
      { 'X-Api-Key': '' },
      { 'X-Api-Key': 'wrong' },
      { 'X-Api-Key': TEST_KEY + 'x' },
    ]) {
      const { status, body } = await t.post({ language: 'python3', code: 'print(1)' }, headers);
      expect(status).toBe(401);
      expect(body.code).toBe(-401);
    }
    const res = await fetch(`${t.url}/v1/sandbox/run`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(401);
  });

  it('malformed JSON: HTTP 400 with an envelope, and the runner keeps serving', async () => {
    for (const raw of [
      '{bad',
      '{"language": "python3", "code": "print(1)"',
      '\u0000\u0001',
      'null',
    ]) {
      const { status, body } = await t.post(raw);
      expect(status).toBe(400);
      expect(body.code).toBe(-400);
    }
    // What body-parser refuses is answered in its words, by the kind of error.
    for (const [headers, message] of [
      [{ 'Content-Encoding': 'zstd' }, 'unsupported Content-Encoding'],
      [{ 'Content-Type': 'application/json; charset=latin1' }, 'unsupported charset'],
    ] as const) {
      const { status, body } = await t.post('{}', headers);
      expect([status, body]).toEqual([415, { code: -415, message, data: null }]);
    }
    expect((await t.run('python3', 'print(2)')).stdout).toBe('2\n');
  });

  it('a body over the limit: 413', async () => {
    const { status, body } = await t.post({
      language: 'python3',
      code: `# ${'x'.repeat(70000)}\nprint(1)`,
    });
    expect(status).toBe(413);
    expect(body.code).toBe(-413);
    // Declared too large: refused before the body is sent, not after reading it all.
    const answer = await new Promise<string>((resolve, reject) => {
      const url = new URL(t.url);
      const socket = connect(Number(url.port), url.hostname);
      let text = '';
      socket.on('data', (c: Buffer) => {
        text += c.toString();
        if (text.includes('"code":-413')) {
          resolve(text);
          socket.destroy();
        }
      });
      socket.on('error', reject);
      socket.write(
        `POST /v1/sandbox/run HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${TEST_KEY}\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{"code": "`,
      );
      setTimeout(() => {
        socket.destroy();
        reject(new Error(`no answer within 3 s, got: ${text}`));
      }, 3000).unref();
    });
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).toContain('"code":-413');
  });
});

describe('backpressure', () => {
  it('answers 503 {"code":-503} beyond MAX_REQUESTS and serves again afterwards', async () => {
    const small = await startTestRunner({ MAX_WORKERS: '1', MAX_REQUESTS: '2' });
    try {
      const slow = { language: 'python3', code: 'import time; time.sleep(1.5); print("slow")' };
      const first = small.post(slow);
      const second = small.post(slow);
      // Both admitted: one runs, one waits for the worker.
      const queued = async () =>
        /^sandbox_queue_depth 1$/m.test(await (await fetch(`${small.url}/metrics`)).text());
      const deadline = Date.now() + 1000;
      while (!(await queued()) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      const third = await fetch(`${small.url}/v1/sandbox/run`, {
        method: 'POST',
        headers: { 'X-Api-Key': TEST_KEY, 'Content-Type': 'application/json' },
        body: JSON.stringify({ language: 'python3', code: 'print(3)' }),
      });
      expect(third.status).toBe(503);
      expect(third.headers.get('retry-after')).toBe('1');
      expect(await third.json()).toEqual({ code: -503, message: 'Too many requests', data: null });
      expect((await first).body.data?.stdout).toBe('slow\n');
      expect((await second).body.data?.stdout).toBe('slow\n');
      expect((await small.run('python3', 'print(4)')).stdout).toBe('4\n');
    } finally {
      await small.close();
    }
  });

  it('a client that goes away frees its place: queued, never started; running, stopped', async () => {
    const small = await startTestRunner({ MAX_WORKERS: '1', MAX_REQUESTS: '2' });
    const giveUp = (code: string, ms: number) =>
      fetch(`${small.url}/v1/sandbox/run`, {
        method: 'POST',
        headers: { 'X-Api-Key': TEST_KEY, 'Content-Type': 'application/json' },
        body: JSON.stringify({ language: 'python3', code }),
        signal: AbortSignal.timeout(ms),
      }).then(
        () => 'answered',
        () => 'gave up',
      );
    try {
      const started = Date.now();
      const running = giveUp('import time; time.sleep(30)', 3000);
      await gaugeReaches(small.url, 'sandbox_executions_in_flight', 1);
      const queued = giveUp('print("queued")', 500);
      expect(await queued).toBe('gave up');
      // The runner notices once the connection's end reaches it.
      await gaugeReaches(small.url, 'sandbox_queue_depth', 0);
      // Its place is free (one running + this one = MAX_REQUESTS), and the worker is the
      // next client's once the first one has given up too, not after its 30 s.
      const next = await small.post({ language: 'python3', code: 'print(3)' });
      expect(next.status).toBe(200);
      expect(next.body.data?.stdout).toBe('3\n');
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await running).toBe('gave up');
      const metrics = await (await fetch(`${small.url}/metrics`)).text();
      expect(metrics).toMatch(
        /^sandbox_executions_total\{language="python3",outcome="abandoned"\} 2$/m,
      );
    } finally {
      await small.close();
    }
  });

  it('a client that goes away abandons its pipelined requests too', async () => {
    const small = await startTestRunner({ MAX_WORKERS: '1', MAX_REQUESTS: '4' });
    try {
      const url = new URL(small.url);
      const socket = connect(Number(url.port), url.hostname);
      socket.on('error', () => undefined);
      const body = JSON.stringify({ language: 'python3', code: 'import time\ntime.sleep(5)' });
      const request = `POST /v1/sandbox/run HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${TEST_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
      socket.write(request + request); // the second waits behind the first on this connection
      await gaugeReaches(small.url, 'sandbox_executions_in_flight', 1);
      await gaugeReaches(small.url, 'sandbox_queue_depth', 1);
      socket.destroy();
      const started = Date.now();
      // Both are abandoned at once: the second is not run for its 5 s after the first ended.
      await waitFor(
        'both abandoned',
        async () =>
          /^sandbox_executions_total\{language="python3",outcome="abandoned"\} 2$/m.test(
            await (await fetch(`${small.url}/metrics`)).text(),
          ) || undefined,
        5000,
        50,
      );
      expect(Date.now() - started).toBeLessThan(4000);
      const metrics = await (await fetch(`${small.url}/metrics`)).text();
      expect(metrics).not.toMatch(/outcome="success"/);
    } finally {
      await small.close();
    }
  });
});

describe('logs', () => {
  it('a refused request gets a line with its reqId and status', async () => {
    const p = await startTestRunner({}, { mode: 'unprivileged' });
    try {
      const res = await fetch(`${p.url}/v1/sandbox/run`, {
        method: 'POST',
        headers: { 'X-Api-Key': 'wrong', 'X-Request-Id': 'refused-1' },
        body: '{}',
      });
      expect(res.status).toBe(401);
      // A body DifySandbox refuses: HTTP 400, code -400, and a line saying why.
      const bad = await fetch(`${p.url}/v1/sandbox/run`, {
        method: 'POST',
        headers: { 'X-Api-Key': TEST_KEY, 'X-Request-Id': 'refused-2' },
        body: '{"language": "python3"}',
      });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { code: number }).code).toBe(-400);
      const line = (id: string) =>
        p.logs!()
          .split('\n')
          .find((l) => l.includes(`"reqId":"${id}"`));
      await waitFor(
        'the log lines',
        async () => (line('refused-1') && line('refused-2')) || undefined,
        5000,
        50,
      );
      expect(JSON.parse(line('refused-1') ?? '{}')).toMatchObject({
        reqId: 'refused-1',
        status: 401,
        path: '/v1/sandbox/run',
        msg: 'answered 401',
      });
      expect(JSON.parse(line('refused-2') ?? '{}')).toMatchObject({
        reqId: 'refused-2',
        code: -400,
        path: '/v1/sandbox/run',
        msg: 'refused: code is required and must be a string',
      });
    } finally {
      await p.close();
    }
  });
});
