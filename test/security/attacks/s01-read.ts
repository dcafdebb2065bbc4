// S1: read files outside the allowlist: runner code, config, the API key, the runner's
// environment, service-account tokens, /etc/shadow, host paths, other executions' files.
import type { Attack, Context } from './types.js';
import { jsTry, pyTry } from './types.js';

/** A pod's service-account token (the suite plants one where this machine lacks it). */
export const SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';
const q = JSON.stringify;

const pyRead = (path: (c: Context) => string) => (c: Context) =>
  pyTry(`print(open(${q(path(c))}, "rb").read())`);
const jsRead = (path: (c: Context) => string) => (c: Context) =>
  jsTry(`console.log(require('fs').readFileSync(${q(path(c))}, 'latin1'))`);

export const attacks: Attack[] = [
  // Python
  {
    name: 'reads /etc/shadow',
    language: 'python3',
    code: pyRead(() => '/etc/shadow'),
    expect: { kind: 'blocked' },
  },
  {
    name: "reads the runner's environment in /proc",
    language: 'python3',
    code: pyRead((c) => `/proc/${c.runnerPid}/environ`),
    expect: { kind: 'blocked' },
  },
  {
    name: 'reads a host file any user may read',
    language: 'python3',
    code: pyRead((c) => c.canaryFile),
    expect: { kind: 'blocked' },
  },
  {
    name: "reads the runner's code and package.json",
    language: 'python3',
    code: (c) =>
      pyTry(
        `print(open(${q(`${c.repoRoot}/dist/runner/src/config.js`)}).read())\nprint(open(${q(`${c.repoRoot}/package.json`)}).read())`,
      ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'reads a service-account token and /conf/config.yaml',
    language: 'python3',
    code: () => pyTry(`open(${q(SA_TOKEN)}).read()\nopen("/conf/config.yaml").read()`),
    expect: { kind: 'blocked' },
  },
  {
    name: "lists other executions' directories",
    language: 'python3',
    code: (c) => pyTry(`import os\nprint(os.listdir(${q(`${c.workDir}/runs`)}))`),
    expect: { kind: 'blocked' },
  },
  {
    name: 'CVE-2024-28185: reads a host file through a symlink in its directory',
    language: 'python3',
    code: (c) =>
      pyTry(`import os\nos.symlink(${q(c.canaryFile)}, "link")\nprint(open("link").read())`),
    expect: { kind: 'blocked' },
  },
  {
    name: 'reads a host file through a hard link',
    language: 'python3',
    code: (c) =>
      pyTry(`import os\nos.link(${q(c.canaryFile)}, "hard")\nprint(open("hard").read())`),
    expect: { kind: 'blocked' },
  },
  {
    name: 'walks out through /proc/self/cwd and /proc/self/root',
    language: 'python3',
    code: (c) =>
      pyTry(
        `print(open("/proc/self/cwd/../../../../../../..${c.canaryFile}").read())\nprint(open("/proc/self/root${c.canaryFile}").read())`,
      ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'finds no secret in its own environment',
    language: 'python3',
    code: 'import os\nprint(sorted(os.environ))\nprint("BLOCKED")',
    expect: { kind: 'blocked' },
  },
  {
    name: "climbs from /proc/self to the runner's /proc entry",
    language: 'python3',
    code: (c) => pyTry(`print(open("/proc/self/../${c.runnerPid}/environ", "rb").read())`),
    expect: { kind: 'blocked' },
  },
  // Node.js
  {
    name: "climbs from /proc/self to its parent's /proc entry",
    language: 'nodejs',
    code: jsTry(
      "console.log(require('fs').readFileSync('/proc/self/../' + process.ppid + '/environ', 'latin1'))",
    ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'reads /etc/shadow',
    language: 'nodejs',
    code: jsRead(() => '/etc/shadow'),
    expect: { kind: 'blocked' },
  },
  {
    name: "reads the runner's environment in /proc",
    language: 'nodejs',
    code: jsRead((c) => `/proc/${c.runnerPid}/environ`),
    expect: { kind: 'blocked' },
  },
  {
    name: 'reads a host file any user may read',
    language: 'nodejs',
    code: jsRead((c) => c.canaryFile),
    expect: { kind: 'blocked' },
  },
  {
    name: "requires the runner's own modules",
    language: 'nodejs',
    code: (c) => jsTry(`console.log(require(${q(`${c.repoRoot}/package.json`)}))`),
    expect: { kind: 'blocked' },
  },
  {
    name: 'reads a service-account token',
    language: 'nodejs',
    code: jsRead(() => SA_TOKEN),
    expect: { kind: 'blocked' },
  },
  {
    name: "lists other executions' directories",
    language: 'nodejs',
    code: (c) => jsTry(`console.log(require('fs').readdirSync(${q(`${c.workDir}/runs`)}))`),
    expect: { kind: 'blocked' },
  },
  {
    name: 'CVE-2024-28185: reads a host file through a symlink in its directory',
    language: 'nodejs',
    code: (c) =>
      jsTry(
        `const fs = require('fs'); fs.symlinkSync(${q(c.canaryFile)}, 'link'); console.log(fs.readFileSync('link', 'utf8'))`,
      ),
    expect: { kind: 'blocked' },
  },
  {
    name: 'walks out through /proc/self/root',
    language: 'nodejs',
    code: jsRead((c) => `/proc/self/root${c.canaryFile}`),
    expect: { kind: 'blocked' },
  },
  {
    name: 'finds no secret in process.env',
    language: 'nodejs',
    code: "console.log(JSON.stringify(process.env)); console.log('BLOCKED')",
    expect: { kind: 'blocked' },
  },
];
