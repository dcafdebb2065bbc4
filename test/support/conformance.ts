// Dify conformance: the exact bodies Dify sends (its three runner scripts), byte-exact stdout.
// One suite, run against a runner started in-process (test/integration/conformance.test.ts) and
// against the runner image under the pod-level restrictions (test/container/).
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_NODEJS_MAIN,
  DEFAULT_PYTHON_MAIN,
  JINJA2_PRELOAD,
  extractResult,
  jinja2Runner,
  nodejsRunner,
  pythonRunner,
} from './dify.js';
import type { Envelope, RunData } from './runner.js';

/** A runner as Dify sees it: a URL, a key, and the run route. */
export interface DifyClient {
  url: string;
  apiKey: string;
  post(body: unknown): Promise<{ status: number; body: Envelope }>;
  run(
    language: 'python3' | 'nodejs',
    code: string,
    extra?: Record<string, unknown>,
  ): Promise<RunData>;
}

/** Defines the conformance tests; CLIENT is called once the suite's runner is up. */
export function conformanceSuite(client: () => DifyClient): void {
  const c = {
    get url() {
      return client().url;
    },
    get apiKey() {
      return client().apiKey;
    },
    post: (body: unknown) => client().post(body),
    run: (language: 'python3' | 'nodejs', code: string, extra?: Record<string, unknown>) =>
      client().run(language, code, extra),
  };

  const TRICKY = `<p class="x">'{{ a }}' & "{{ b }}"</p>\n"""triple""" '''single'''\n日本語のテキスト 🎉👍`;
  const TRICKY_INPUTS = { a: 'こんにちは "quoted" \'single\'', b: 'line1\nline2 <b>bold</b> 😀' };
  const TRICKY_RENDERED = `<p class="x">'こんにちは "quoted" 'single'' & "line1\nline2 <b>bold</b> 😀"</p>\n"""triple""" '''single'''\n日本語のテキスト 🎉👍`;

  describe('python3', () => {
    it('prints Hello World', async () => {
      const data = await c.run('python3', 'print("Hello World")');
      expect(data).toEqual({ stdout: 'Hello World\n', stderr: '', error: '', exit_code: 0 });
    });

    it("runs Dify's python3 runner around the default main", async () => {
      const data = await c.run(
        'python3',
        pythonRunner(DEFAULT_PYTHON_MAIN, { arg1: 'Hello', arg2: 'World' }),
      );
      expect(data.stdout).toBe('<<RESULT>>{\n    "result": "HelloWorld"\n}<<RESULT>>\n');
      expect(data.error).toBe('');
    });

    it('round-trips non-ASCII text in code, inputs and output', async () => {
      const code = `def main(arg1: str, arg2: str) -> dict:\n    # コメント 🐍\n    return {"result": arg1 + "・" + arg2 + " ✓"}`;
      const data = await c.run(
        'python3',
        pythonRunner(code, { arg1: '日本語', arg2: '絵文字 🎉' }),
      );
      expect(JSON.parse(extractResult(data.stdout))).toEqual({ result: '日本語・絵文字 🎉 ✓' });
      const direct = await c.run('python3', 'print("こんにちは 🌍", end="")');
      expect(direct.stdout).toBe('こんにちは 🌍');
    });

    it('keeps prints before the result and stdout byte-exact', async () => {
      const code = `def main(arg1: str, arg2: str) -> dict:\n    print("debug: <<not a result>>")\n    return {"result": arg1 + arg2}`;
      const data = await c.run('python3', pythonRunner(code, { arg1: 'a', arg2: 'b' }));
      expect(data.stdout).toBe(
        'debug: <<not a result>>\n<<RESULT>>{\n    "result": "ab"\n}<<RESULT>>\n',
      );
    });

    it('replaces invalid UTF-8 in stdout instead of dropping it, one U+FFFD a byte', async () => {
      // As DifySandbox (Go) answers: a truncated sequence (\xe4\xb8) is two bytes replaced.
      const data = await c.run(
        'python3',
        'import sys; sys.stdout.buffer.write(b"a\\xffb\\xe4\\xb8c\\n")',
      );
      expect(data.stdout).toBe('a\uFFFDb\uFFFD\uFFFDc\n');
    });
  });

  describe('python3 libraries and preload', () => {
    it('imports jinja2, requests and httpx', async () => {
      const data = await c.run(
        'python3',
        'import jinja2, requests, httpx\nprint(jinja2.__name__, requests.__name__, httpx.__name__)',
      );
      expect(data).toEqual({
        stdout: 'jinja2 requests httpx\n',
        stderr: '',
        error: '',
        exit_code: 0,
      });
    });

    it('runs preload first, in the same namespace, inside the sandbox', async () => {
      const preload =
        'import os\nPRELOADED = os.getuid()\ntry:\n    open("/etc/shadow").read()\n    SHADOW = "read"\nexcept (PermissionError, FileNotFoundError):\n    SHADOW = "denied"';
      const data = await c.run('python3', 'print(PRELOADED != 0, SHADOW)', { preload });
      expect(data.stdout).toBe('True denied\n');
    });

    it('has __file__ in its run directory, as a script has', async () => {
      const data = await c.run(
        'python3',
        'import os\nprint(os.path.basename(__file__), os.path.dirname(__file__) == os.getcwd())',
      );
      expect(data.stdout).toBe('code.py True\n');
    });

    it('has argv as that script has (nothing of the bootstrap or the zygote)', async () => {
      const data = await c.run('python3', 'import sys\nprint(sys.argv == [__file__])');
      expect(data.stdout).toBe('True\n');
    });

    it("can use os, sys and traceback without importing them, as in DifySandbox's prescript", async () => {
      const data = await c.run(
        'python3',
        'def main():\n    return sys.version_info[0], os.sep, traceback.__name__\nprint(main())',
      );
      expect(data).toMatchObject({ stdout: "(3, '/', 'traceback')\n", error: '' });
    });

    it('a failing preload fails the run with its traceback', async () => {
      const data = await c.run('python3', 'print("not reached")', {
        preload: 'raise RuntimeError("preload broke")',
      });
      expect(data.exit_code).toBe(1);
      expect(data.stdout).toBe('');
      expect(data.error).toContain('RuntimeError: preload broke');
    });
  });

  describe('nodejs', () => {
    it('console.log', async () => {
      const data = await c.run('nodejs', 'console.log("Hello World")');
      expect(data).toEqual({ stdout: 'Hello World\n', stderr: '', error: '', exit_code: 0 });
    });

    it('runs sloppy-mode code that assigns an undeclared global', async () => {
      const data = await c.run(
        'nodejs',
        "obj = {'Hello': 'World'}\nconsole.log(JSON.stringify(obj))",
      );
      expect(data.stdout).toBe('{"Hello":"World"}\n');
    });

    it("runs Dify's JavaScript runner around the default main", async () => {
      const data = await c.run(
        'nodejs',
        nodejsRunner(DEFAULT_NODEJS_MAIN, { arg1: 'Hello', arg2: 'World' }),
      );
      expect(data.stdout).toBe('<<RESULT>>{"result":"HelloWorld"}<<RESULT>>\n');
    });

    it("can use fs without requiring it, as in DifySandbox's prescript, and declare its own", async () => {
      const data = await c.run(
        'nodejs',
        "console.log(typeof fs.readFileSync, fs === require('fs'))",
      );
      expect(data).toMatchObject({ stdout: 'function true\n', error: '' });
      const own = await c.run('nodejs', "const fs = 'mine'; var x = 1; console.log(fs, x)");
      expect(own).toMatchObject({ stdout: 'mine 1\n', error: '' });
    });

    it('round-trips non-ASCII text', async () => {
      const code = `function main({arg1, arg2}) {\n  // コメント 🟨\n  return {result: arg1 + '・' + arg2}\n}`;
      const data = await c.run(
        'nodejs',
        nodejsRunner(code, { arg1: '日本語', arg2: '🎉 "q" \'s\'' }),
      );
      expect(JSON.parse(extractResult(data.stdout))).toEqual({ result: '日本語・🎉 "q" \'s\'' });
    });
  });

  describe('jinja2', () => {
    it("renders Dify's Jinja2 runner with its preload", async () => {
      const data = await c.run(
        'python3',
        jinja2Runner('Hello {{template}}', { template: 'World' }),
        {
          preload: JINJA2_PRELOAD,
        },
      );
      expect(data.stdout).toBe('<<RESULT>>Hello World<<RESULT>>\n');
      expect(data.error).toBe('');
    });

    it('works with jinja2.sandbox.SandboxedEnvironment', async () => {
      const data = await c.run(
        'python3',
        jinja2Runner('Hello {{template}}', { template: 'World' }, true),
        {
          preload: JINJA2_PRELOAD,
        },
      );
      expect(data.stdout).toBe('<<RESULT>>Hello World<<RESULT>>\n');
    });

    it('round-trips quotes, newlines, HTML, triple quotes and non-ASCII text', async () => {
      for (const sandboxed of [false, true]) {
        const data = await c.run('python3', jinja2Runner(TRICKY, TRICKY_INPUTS, sandboxed), {
          preload: JINJA2_PRELOAD,
        });
        expect(extractResult(data.stdout)).toBe(TRICKY_RENDERED);
      }
    });

    it('renders a template with a loop', async () => {
      const template = '{% for item in items %}{{ loop.index }}. {{ item }}\n{% endfor %}';
      const data = await c.run('python3', jinja2Runner(template, { items: ['a', 'b', 'ç'] }), {
        preload: JINJA2_PRELOAD,
      });
      expect(extractResult(data.stdout)).toBe('1. a\n2. b\n3. ç\n');
    });
  });

  describe('other routes', () => {
    it('GET /health answers the JSON string "ok"', async () => {
      const res = await fetch(`${c.url}/health`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('"ok"');
    });

    it('lists python3 dependencies with versions', async () => {
      const res = await fetch(`${c.url}/v1/sandbox/dependencies?language=python3`, {
        headers: { 'X-Api-Key': c.apiKey },
      });
      const body = (await res.json()) as {
        code: number;
        data: { dependencies: { name: string; version: string }[] };
      };
      expect(body.code).toBe(0);
      const jinja = body.data.dependencies.find((d) => d.name === 'jinja2');
      expect(jinja?.version).toMatch(/^\d+\.\d+/);
    });

    it('ignores unknown fields such as the old dependencies list', async () => {
      const { body } = await c.post({
        language: 'python3',
        code: 'print(1)',
        preload: '',
        enable_network: true,
        dependencies: [{ name: 'jinja2', version: '' }],
      });
      expect(body).toEqual({
        code: 0,
        message: 'success',
        data: { stdout: '1\n', stderr: '', error: '', exit_code: 0 },
      });
    });
  });
}
