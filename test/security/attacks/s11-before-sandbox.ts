// S11: run before the sandbox: code that executes during parsing or hoisting, preload tricks,
// interpreter start-up hooks (PYTHONSTARTUP, NODE_OPTIONS, sitecustomize, .pth files). Every
// user byte must run only after every layer is applied.
import type { Attack, Context } from './types.js';
import { jsTry } from './types.js';

const q = JSON.stringify;

/** Python: fails (prints ESCAPED) unless seccomp and no_new_privs are already on. */
const PY_CONFINED = `_s = open("/proc/self/status").read()
print("BLOCKED confined" if "Seccomp:\\t2" in _s and "NoNewPrivs:\\t1" in _s else "ESCAPED unconfined")
`;
const JS_CONFINED = `(function () { const s = require('fs').readFileSync('/proc/self/status', 'utf8'); console.log(/Seccomp:\\t2/.test(s) && /NoNewPrivs:\\t1/.test(s) ? 'BLOCKED confined' : 'ESCAPED unconfined') })();`;

const HOOK_ENV = {
  env: { PYTHONSTARTUP: '/tmp/x.py', NODE_OPTIONS: '--require /tmp/x.js', LD_PRELOAD: '/tmp/x.so' },
  PYTHONSTARTUP: '/tmp/x.py',
  NODE_OPTIONS: '--require /tmp/x.js',
};

export const attacks: Attack[] = [
  // Python
  {
    name: 'dify-sandbox #27: the preload reads a host file',
    language: 'python3',
    preload: (c: Context) =>
      `LEAK = None\ntry:\n    LEAK = open(${q(c.canaryFile)}).read()\nexcept OSError:\n    pass\n`,
    code: 'print("ESCAPED", LEAK) if LEAK else print("BLOCKED")',
    expect: { kind: 'blocked' },
  },
  {
    name: 'dify-sandbox #27: the preload is confined like the code',
    language: 'python3',
    preload: PY_CONFINED,
    code: 'pass',
    expect: { kind: 'blocked' },
  },
  {
    name: 'dify-sandbox #27: the preload forks',
    language: 'python3',
    preload: 'import os\nos.fork()',
    code: 'print("ESCAPED")',
    expect: { kind: 'denied', syscall: /^(clone|fork)$/ },
  },
  {
    name: 'the first statement of the code is already confined',
    language: 'python3',
    code: PY_CONFINED,
    expect: { kind: 'blocked' },
  },
  {
    name: 'start-up hooks in the request are ignored',
    language: 'python3',
    extra: HOOK_ENV,
    code: 'import os, sys\nbad = [k for k in os.environ if k.startswith("PYTHON") or k == "NODE_OPTIONS"]\nprint("ESCAPED", bad) if bad or sys.flags.isolated != 1 else print("BLOCKED")',
    expect: { kind: 'blocked' },
  },
  {
    name: 'a json.py, sitecustomize.py and .pth in its directory are not imported',
    language: 'python3',
    code: 'import importlib, sys\nfor name in ("json.py", "sitecustomize.py", "usercustomize.py"):\n    open(name, "w").write("print(\'ESCAPED planted\')")\nopen("evil.pth", "w").write("import os; print(\'ESCAPED pth\')")\ndel sys.modules["json"]\nimport json\nimport site\nprint("BLOCKED" if json.__file__.startswith("/usr") and "" not in sys.path else "ESCAPED " + json.__file__)',
    expect: { kind: 'blocked' },
  },
  // Node.js
  {
    name: 'CVE-2025-3466: a hoisted function runs only after the filter',
    language: 'nodejs',
    code: `check();\nfunction check() { ${JS_CONFINED} }`,
    expect: { kind: 'blocked' },
  },
  {
    name: "CVE-2025-3466: hoisted declarations shadow the bootstrap's names",
    language: 'nodejs',
    code: (c: Context) =>
      `function require(m) { return module.constructor.prototype.require.call(module, m) }\nfunction report() {}\nvar JSON = { parse: () => ({}) };\n${jsTry(`console.log(require('fs').readFileSync(${q(c.canaryFile)}, 'utf8'))`)}`,
    expect: { kind: 'blocked' },
  },
  {
    name: 'the preload reads a host file',
    language: 'nodejs',
    preload: (c: Context) =>
      `globalThis.LEAK = (() => { try { return require('fs').readFileSync(${q(c.canaryFile)}, 'utf8') } catch { return null } })()`,
    code: "console.log(globalThis.LEAK ? 'ESCAPED ' + LEAK : 'BLOCKED')",
    expect: { kind: 'blocked' },
  },
  {
    name: 'the preload is confined like the code',
    language: 'nodejs',
    preload: JS_CONFINED,
    code: '// nothing else',
    expect: { kind: 'blocked' },
  },
  {
    name: 'NODE_OPTIONS and friends in the request are ignored',
    language: 'nodejs',
    extra: HOOK_ENV,
    code: "const bad = Object.keys(process.env).filter((k) => k.startsWith('NODE') || k === 'PYTHONSTARTUP'); console.log(bad.length || process.execArgv.some((a) => a.startsWith('--require') || a.startsWith('--import')) ? 'ESCAPED ' + bad + process.execArgv : 'BLOCKED')",
    expect: { kind: 'blocked' },
  },
  {
    name: 'a planted node_modules/fs does not replace the built-in',
    language: 'nodejs',
    code: "const fs = require('fs'); fs.mkdirSync('node_modules/fs', { recursive: true }); fs.writeFileSync('node_modules/fs/index.js', \"console.log('ESCAPED planted')\"); console.log(require('fs') === fs && require('node:fs') === fs ? 'BLOCKED' : 'ESCAPED')",
    expect: { kind: 'blocked' },
  },
  {
    name: 'Error.prepareStackTrace hook runs confined when the bootstrap formats an error',
    language: 'nodejs',
    code: (c: Context) =>
      `Error.prepareStackTrace = () => { try { console.log('ESCAPED', require('fs').readFileSync(${q(c.canaryFile)}, 'utf8')) } catch { console.log('BLOCKED') } return '' }; throw new Error('x')`,
    expect: { kind: 'fails', error: /process exited with code 1/ },
  },
];
