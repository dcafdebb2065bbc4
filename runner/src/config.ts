// The runner's configuration: environment variables over an optional YAML file with
// DifySandbox's keys. Every setting is declared once in SETTINGS; parsing, validation, the
// defaults and the README's configuration table all come from that list.
import {
  accessSync,
  closeSync,
  constants,
  openSync,
  readFileSync,
  readSync,
  statSync,
} from 'node:fs';
import os from 'node:os';
import { parse as parseYaml } from 'yaml';

export type Language = 'python3' | 'nodejs';
export const LANGUAGES: readonly Language[] = ['python3', 'nodejs'];

export interface RunnerConfig {
  host: string;
  port: number;
  metricsPort: number;
  apiKey: string;
  /** True when API_KEY was not set and the loopback-only default key is in use. */
  apiKeyDefaulted: boolean;
  /** Keys of config.yaml this runner does not know (logged at start: likely typos). */
  unknownKeys: string[];
  workerTimeoutSeconds: number;
  maxWorkers: number;
  maxRequests: number;
  enableNetwork: boolean;
  httpProxy: string;
  httpsProxy: string;
  /** SOCKS5_PROXY: when set, httpProxy and httpsProxy are this (DifySandbox's precedence). */
  socks5Proxy: string;
  noProxy: string;
  directTcpPorts: string[];
  /** With network, the only TCP ports a program may connect to; undefined: any (no proxy set,
   * or SANDBOX_DIRECT_TCP_PORTS=any). Derived from the proxies and SANDBOX_DIRECT_TCP_PORTS. */
  connectPorts: number[] | undefined;
  enablePreload: boolean;
  allowedSyscalls: string[];
  pythonPackages: string[];
  nodejsPackages: string[];
  pipIndexUrl: string;
  npmRegistry: string;
  pythonPath: string;
  nodejsPath: string;
  memoryMiB: number;
  cpuSeconds: number;
  maxOutputBytes: number;
  maxFileBytes: number;
  maxDiskBytes: number;
  maxFiles: number;
  maxOpenFiles: number;
  maxThreads: number;
  maxBodyBytes: number;
  workDir: string;
  uidBase: number;
  landlock: 'required' | 'optional';
  warmPython3: number;
  warmNodejs: number;
  pythonZygote: boolean;
  logLevel: string;
}

/** A configuration error: start-up stops with this one line. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Kind = 'int' | 'bool' | 'string' | 'list' | 'packages' | 'enum';

export interface Setting {
  key: keyof RunnerConfig;
  env: string;
  /** Dotted path in config.yaml (DifySandbox's keys where it has one). */
  yaml: string;
  kind: Kind;
  /** The value when neither the environment nor config.yaml sets it (or how to find it). */
  default: string | ((env: NodeJS.ProcessEnv) => string);
  /** The default as the README's table shows it, when it depends on the machine. */
  shownDefault?: string;
  min?: number;
  max?: number;
  choices?: string[];
  doc: string;
}

export const SETTINGS: readonly Setting[] = [
  {
    key: 'port',
    env: 'SANDBOX_PORT',
    yaml: 'app.port',
    kind: 'int',
    default: '8194',
    min: 0,
    max: 65535,
    doc: 'HTTP listen port (0: any free port)',
  },
  {
    key: 'metricsPort',
    env: 'SANDBOX_METRICS_PORT',
    yaml: 'app.metrics_port',
    kind: 'int',
    default: '0',
    min: 0,
    max: 65535,
    doc: 'a second listener serving only `/metrics` and `/healthz`, so a NetworkPolicy can open metrics alone to Prometheus (0: none; `/metrics` is always served on the main port too)',
  },
  {
    key: 'host',
    env: 'SANDBOX_HOST',
    yaml: 'app.host',
    kind: 'string',
    default: '0.0.0.0',
    doc: "listen address; `127.0.0.1` for local use; `''` (in config.yaml) every address, IPv6 and IPv4",
  },
  {
    key: 'apiKey',
    env: 'API_KEY',
    yaml: 'app.key',
    kind: 'string',
    default: '',
    doc: 'the `X-Api-Key` callers must send; required unless the host is loopback (then `dify-sandbox`, with a warning)',
  },
  {
    key: 'workerTimeoutSeconds',
    env: 'WORKER_TIMEOUT',
    yaml: 'worker_timeout',
    kind: 'int',
    default: '15',
    min: 1,
    max: 3600,
    doc: 'wall-clock seconds per run; the whole run is killed after it',
  },
  {
    key: 'maxWorkers',
    env: 'MAX_WORKERS',
    yaml: 'max_workers',
    kind: 'int',
    default: String(Math.min(os.availableParallelism(), 256)),
    shownDefault: 'CPUs',
    min: 1,
    max: 256,
    doc: 'runs executing at once (default: number of CPUs, at most MAX_REQUESTS)',
  },
  {
    key: 'maxRequests',
    env: 'MAX_REQUESTS',
    yaml: 'max_requests',
    kind: 'int',
    default: '50',
    min: 1,
    max: 100000,
    doc: 'runs executing or queued; beyond it HTTP 503',
  },
  {
    key: 'enableNetwork',
    env: 'ENABLE_NETWORK',
    yaml: 'enable_network',
    kind: 'bool',
    default: 'true',
    doc: "whether a request's `enable_network` may give the program network; when false, programs run without network whatever they ask",
  },
  {
    key: 'httpProxy',
    env: 'HTTP_PROXY',
    yaml: 'proxy.http',
    kind: 'string',
    default: '',
    doc: 'proxy handed to programs for http:// (with network)',
  },
  {
    key: 'httpsProxy',
    env: 'HTTPS_PROXY',
    yaml: 'proxy.https',
    kind: 'string',
    default: '',
    doc: 'proxy handed to programs for https:// (with network)',
  },
  {
    key: 'socks5Proxy',
    env: 'SOCKS5_PROXY',
    yaml: 'proxy.socks5',
    kind: 'string',
    default: '',
    doc: "a SOCKS proxy (socks5://host:port) handed to programs as both `HTTP_PROXY` and `HTTPS_PROXY`, in their place when set (as DifySandbox does); Node.js's `fetch` cannot use one (its `http`/`https` can)",
  },
  {
    key: 'noProxy',
    env: 'NO_PROXY',
    yaml: 'proxy.no_proxy',
    kind: 'string',
    default: '',
    doc: 'hosts programs reach without the proxy',
  },
  {
    key: 'directTcpPorts',
    env: 'SANDBOX_DIRECT_TCP_PORTS',
    yaml: 'proxy.direct_tcp_ports',
    kind: 'list',
    default: '',
    doc: "with network and a proxy set, programs open TCP connections only to the proxies' ports, 53 (DNS) and these (comma-separated; Landlock, Linux ≥ 6.7); `any`: to every port (for `NO_PROXY` hosts on other ports)",
  },
  {
    key: 'enablePreload',
    env: 'ENABLE_PRELOAD',
    yaml: 'enable_preload',
    kind: 'bool',
    default: 'true',
    doc: 'whether `preload` is run (inside the sandbox, before the code)',
  },
  {
    key: 'allowedSyscalls',
    env: 'ALLOWED_SYSCALLS',
    yaml: 'allowed_syscalls',
    kind: 'list',
    default: '',
    doc: 'extra syscalls (names or numbers, comma-separated) added to every language policy',
  },
  {
    key: 'pythonPackages',
    env: 'SANDBOX_PYTHON_PACKAGES',
    yaml: 'dependencies.python',
    kind: 'packages',
    default: '',
    doc: 'extra Python packages (pip requirement specs, whitespace-separated; a list in YAML) installed from wheels before the runner is ready, readable but not writable by sandboxed code',
  },
  {
    key: 'nodejsPackages',
    env: 'SANDBOX_NODEJS_PACKAGES',
    yaml: 'dependencies.nodejs',
    kind: 'packages',
    default: '',
    doc: 'extra npm packages (`name@version`, whitespace-separated; a list in YAML) installed (without install scripts) before the runner is ready',
  },
  {
    key: 'pipIndexUrl',
    env: 'PIP_MIRROR_URL',
    yaml: 'python_pip_mirror_url',
    kind: 'string',
    default: '',
    doc: 'the package index pip installs from (default: PyPI)',
  },
  {
    key: 'npmRegistry',
    env: 'NPM_REGISTRY',
    yaml: 'npm_registry',
    kind: 'string',
    default: '',
    doc: 'the registry npm installs from (default: the npm registry)',
  },
  {
    key: 'pythonPath',
    env: 'PYTHON_PATH',
    yaml: 'python_path',
    kind: 'string',
    default: (env) =>
      isProgram(SYSTEM_PYTHON) ? SYSTEM_PYTHON : (onPath('python3', env.PATH) ?? SYSTEM_PYTHON),
    shownDefault: '`/usr/bin/python3`, else `python3` on `PATH`',
    doc: 'the Python 3 interpreter',
  },
  {
    key: 'nodejsPath',
    env: 'NODEJS_PATH',
    yaml: 'nodejs_path',
    kind: 'string',
    default: () => process.execPath,
    shownDefault: 'the `node` running the runner',
    doc: 'the Node.js interpreter',
  },
  {
    key: 'memoryMiB',
    env: 'SANDBOX_MEMORY_MIB',
    yaml: 'limits.memory_mib',
    kind: 'int',
    default: '256',
    min: 32,
    max: 65536,
    doc: 'memory per run (MiB, data segment and heap)',
  },
  {
    key: 'cpuSeconds',
    env: 'SANDBOX_CPU_SECONDS',
    yaml: 'limits.cpu_seconds',
    kind: 'int',
    default: '15',
    shownDefault: '`WORKER_TIMEOUT`',
    min: 1,
    max: 3600,
    doc: 'CPU time per run (seconds); by default the wall-clock timeout, so that a program computing for the whole timeout is not stopped earlier (as in DifySandbox)',
  },
  {
    key: 'maxOutputBytes',
    env: 'SANDBOX_MAX_OUTPUT_BYTES',
    yaml: 'limits.output_bytes',
    kind: 'int',
    default: '4194304',
    min: 1024,
    max: 1073741824,
    doc: 'stdout and stderr bytes per run, each',
  },
  {
    key: 'maxFileBytes',
    env: 'SANDBOX_MAX_FILE_BYTES',
    yaml: 'limits.file_bytes',
    kind: 'int',
    default: '16777216',
    min: 0,
    max: 1099511627776,
    doc: 'largest file a run may write (bytes)',
  },
  {
    key: 'maxDiskBytes',
    env: 'SANDBOX_MAX_DISK_BYTES',
    yaml: 'limits.disk_bytes',
    kind: 'int',
    default: '67108864',
    min: 1048576,
    max: 1099511627776,
    doc: "bytes a run may store in its directory, all files together (as root: the size of the run's tmpfs, which counts towards the pod's memory; otherwise checked by the runner while the run goes on)",
  },
  {
    key: 'maxFiles',
    env: 'SANDBOX_MAX_FILES',
    yaml: 'limits.files',
    kind: 'int',
    default: '4096',
    min: 16,
    max: 1000000,
    doc: 'files and directories a run may create in its directory (enforced like `SANDBOX_MAX_DISK_BYTES`)',
  },
  {
    key: 'maxOpenFiles',
    env: 'SANDBOX_MAX_OPEN_FILES',
    yaml: 'limits.open_files',
    kind: 'int',
    default: '256',
    min: 16,
    // Room above it for the descriptors of the run's /proc entries and its interpreter (the
    // launcher's limit: SANDBOX_EXEC_FD - POLICY_MAX_PATHS).
    max: 935,
    doc: 'open file descriptors per run',
  },
  {
    key: 'maxThreads',
    env: 'SANDBOX_MAX_THREADS',
    yaml: 'limits.threads',
    kind: 'int',
    default: '64',
    min: 8,
    max: 4096,
    doc: "threads per run (as root by `RLIMIT_NPROC` on the run's own uid; otherwise checked by the runner while the run goes on)",
  },
  {
    key: 'maxBodyBytes',
    env: 'SANDBOX_MAX_BODY_BYTES',
    yaml: 'limits.body_bytes',
    kind: 'int',
    default: '10485760',
    min: 1024,
    max: 1073741824,
    doc: 'largest request body; beyond it HTTP 413',
  },
  {
    key: 'workDir',
    env: 'SANDBOX_WORK_DIR',
    yaml: 'work_dir',
    kind: 'string',
    default: '/tmp/sandboxpool',
    doc: 'where run directories and the runtime files live; must be writable',
  },
  {
    key: 'uidBase',
    env: 'SANDBOX_UID_BASE',
    yaml: 'uid_base',
    kind: 'int',
    default: '60000',
    min: 1000,
    max: 4000000000,
    doc: 'as root, run slot N executes as uid/gid `SANDBOX_UID_BASE + N`',
  },
  {
    key: 'landlock',
    env: 'SANDBOX_LANDLOCK',
    yaml: 'landlock',
    kind: 'enum',
    default: 'required',
    choices: ['required', 'optional'],
    doc: 'whether a kernel without Landlock keeps the runner not ready, every run refused (`required`), or is only reported (`optional`)',
  },
  {
    key: 'warmPython3',
    env: 'SANDBOX_WARM_PYTHON3',
    yaml: 'warm_pool.python3',
    kind: 'int',
    default: '4',
    min: 0,
    max: 256,
    doc: 'python3 interpreters kept started, confined and waiting for a run (0: start one per run)',
  },
  {
    key: 'warmNodejs',
    env: 'SANDBOX_WARM_NODEJS',
    yaml: 'warm_pool.nodejs',
    kind: 'int',
    default: '2',
    min: 0,
    max: 256,
    doc: 'Node.js interpreters kept started, confined and waiting for a run (0: start one per run)',
  },
  {
    key: 'pythonZygote',
    env: 'SANDBOX_PYTHON_ZYGOTE',
    yaml: 'python_zygote',
    kind: 'bool',
    default: 'true',
    doc: 'fork python3 interpreters from a zygote that has pre-imported json, base64 and jinja2 (every layer is applied in the child); false: start each through the launcher',
  },
  {
    key: 'logLevel',
    env: 'LOG_LEVEL',
    yaml: 'log_level',
    kind: 'enum',
    default: 'info',
    choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'],
    doc: 'log level',
  },
];

export const LOCAL_DEFAULT_KEY = 'dify-sandbox';

const SYSTEM_PYTHON = '/usr/bin/python3';

/**
 * Whether FILE is an executable ELF program. Scripts are not: a version manager's shim (pyenv)
 * runs a shell, which the sandbox never executes, to find the interpreter it stands for.
 */
function isProgram(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    if (!statSync(file).isFile()) return false;
    const fd = openSync(file, 'r');
    try {
      const magic = Buffer.alloc(4);
      return readSync(fd, magic, 0, 4, 0) === 4 && magic.toString('latin1') === '\x7fELF';
    } finally {
      closeSync(fd);
    }
  } catch {
    return false; // not there, or not executable
  }
}

/** The first NAME in the absolute directories of PATH that is a program (see isProgram). */
export function onPath(name: string, searchPath: string | undefined): string | undefined {
  return (searchPath ?? '')
    .split(':')
    .filter((dir) => dir.startsWith('/')) // a relative entry would depend on the working directory
    .map((dir) => `${dir}/${name}`)
    .find(isProgram);
}

/** DifySandbox keys that mean nothing here; accepted silently so its config.yaml works. */
const IGNORED_DIFY_KEYS = new Set([
  'app.debug',
  'log_path',
  'python_lib_path',
  'python_deps_update_interval',
]);

function leafKeys(node: unknown, prefix = ''): string[] {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) return [prefix];
  return Object.entries(node as Record<string, unknown>).flatMap(([k, v]) =>
    leafKeys(v, prefix === '' ? k : `${prefix}.${k}`),
  );
}

function yamlLookup(doc: unknown, dotted: string): unknown {
  let node: unknown = doc;
  for (const part of dotted.split('.')) {
    if (node === null || typeof node !== 'object' || !(part in node)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function parseValue(s: Setting, raw: unknown, source: string): unknown {
  const where = source;
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw))
    throw new ConfigError(`${where}: expected a value, got a mapping`);
  const text = Array.isArray(raw) ? raw.map(String).join(',') : String(raw).trim();
  switch (s.kind) {
    case 'int': {
      if (!/^-?\d+$/.test(text))
        throw new ConfigError(`${where}: expected a whole number, got '${text}'`);
      const n = Number(text);
      if ((s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max))
        throw new ConfigError(`${where}: ${n} is out of range (${s.min}..${s.max})`);
      return n;
    }
    case 'bool': {
      const t = text.toLowerCase();
      // Go's strconv.ParseBool (DifySandbox) also takes t and f.
      if (['true', 't', '1', 'yes', 'on'].includes(t)) return true;
      if (['false', 'f', '0', 'no', 'off'].includes(t)) return false;
      throw new ConfigError(`${where}: expected true or false, got '${text}'`);
    }
    case 'enum':
      if (!s.choices?.includes(text))
        throw new ConfigError(`${where}: expected one of ${s.choices?.join(', ')}, got '${text}'`);
      return text;
    case 'list':
      return text
        .split(/[,\s]+/)
        .map((x) => x.trim())
        .filter((x) => x !== '');
    case 'packages': {
      // Requirement specs may hold commas (pandas>=2,<3): a YAML list, or whitespace in env.
      const items = Array.isArray(raw) ? raw.map((x) => String(x).trim()) : text.split(/\s+/);
      const specs = items.filter((x) => x !== '');
      for (const spec of specs)
        if (spec.startsWith('-') || /[\s;|&$`]/.test(spec))
          throw new ConfigError(`${where}: '${spec}' is not a package requirement`);
      return specs;
    }
    case 'string':
      // Paths, proxies and keys are one line each; the zygote's commands are tab-separated lines.
      // eslint-disable-next-line no-control-regex
      if (/[\x00-\x1f\x7f]/.test(text))
        throw new ConfigError(`${where}: holds a control character (a tab, a newline, ...)`);
      return text;
  }
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Path of the YAML file; when absent, /conf/config.yaml is read if it exists; null: none. */
  configPath?: string | null;
}

/** Reads, validates and returns the configuration; throws ConfigError naming the bad key. */
export function loadConfig(options: LoadOptions = {}): RunnerConfig {
  const env = options.env ?? process.env;
  // Empty means unset, as for every other variable.
  const fromEnv = env.SANDBOX_CONFIG || undefined;
  const path = options.configPath ?? fromEnv ?? '/conf/config.yaml';
  let doc: unknown = {};
  try {
    if (options.configPath !== null) doc = parseYaml(readFileSync(path, 'utf8')) ?? {};
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const explicit = options.configPath !== undefined || fromEnv !== undefined;
    if (code !== 'ENOENT' || explicit)
      throw new ConfigError(`config file ${path}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw new ConfigError(`config file ${path}: expected a mapping at the top level`);

  const values: Record<string, unknown> = {};
  const defaulted = new Set<string>();
  for (const s of SETTINGS) {
    const fromEnv = env[s.env];
    const fromYaml = yamlLookup(doc, s.yaml);
    if (fromEnv !== undefined && fromEnv !== '') values[s.key] = parseValue(s, fromEnv, s.env);
    else if (fromYaml !== undefined && fromYaml !== null)
      values[s.key] = parseValue(s, fromYaml, `${path}: ${s.yaml}`);
    else {
      const fallback = typeof s.default === 'string' ? s.default : s.default(env);
      values[s.key] = parseValue(s, fallback, `default of ${s.env}`);
      defaulted.add(s.key);
    }
  }
  const config = values as unknown as RunnerConfig;
  const known = new Set(SETTINGS.map((s) => s.yaml));
  const sections = new Set([...known].flatMap((k) => k.split('.').slice(0, -1)));
  config.unknownKeys = leafKeys(doc).filter(
    // An empty section ("proxy:" with nothing under it) is no unknown key.
    (k) => k !== '' && !known.has(k) && !IGNORED_DIFY_KEYS.has(k) && !sections.has(k),
  );

  const loopback = ['127.0.0.1', '::1', 'localhost'].includes(config.host);
  config.apiKeyDefaulted = false;
  if (config.apiKey === '') {
    if (!loopback)
      throw new ConfigError(
        `API_KEY: required when listening on ${config.host || 'every address'} (set API_KEY, or SANDBOX_HOST=127.0.0.1 for local use)`,
      );
    config.apiKey = LOCAL_DEFAULT_KEY;
    config.apiKeyDefaulted = true;
  }
  if (defaulted.has('cpuSeconds')) config.cpuSeconds = config.workerTimeoutSeconds;
  // The CPU count is only a default: on a host with more CPUs than MAX_REQUESTS (50 unless set)
  // it must not stop start-up; a MAX_WORKERS someone set above it is a mistake to name.
  if (defaulted.has('maxWorkers'))
    config.maxWorkers = Math.min(config.maxWorkers, config.maxRequests);
  if (config.maxRequests < config.maxWorkers)
    throw new ConfigError(
      `MAX_REQUESTS: ${config.maxRequests} is below MAX_WORKERS (${config.maxWorkers})`,
    );
  if (!config.workDir.startsWith('/'))
    throw new ConfigError(`SANDBOX_WORK_DIR: must be an absolute path, got '${config.workDir}'`);
  // A proxy without a scheme (ssrf_proxy:3128) is an HTTP proxy, as Python's requests takes it.
  for (const key of ['httpProxy', 'httpsProxy', 'socks5Proxy'] as const)
    if (config[key] !== '' && !config[key].includes('://'))
      config[key] = `${key === 'socks5Proxy' ? 'socks5' : 'http'}://${config[key]}`;
  if (config.socks5Proxy !== '') config.httpProxy = config.httpsProxy = config.socks5Proxy;
  for (const [key, url] of [
    ['SOCKS5_PROXY', config.socks5Proxy],
    ['HTTP_PROXY', config.httpProxy],
    ['HTTPS_PROXY', config.httpsProxy],
    ['PIP_MIRROR_URL', config.pipIndexUrl],
    ['NPM_REGISTRY', config.npmRegistry],
  ] as const) {
    if (url === '') continue;
    try {
      new URL(url);
    } catch {
      throw new ConfigError(`${key}: not a URL: '${withoutPassword(url)}'`);
    }
  }
  config.connectPorts = connectPorts(config);
  for (const name of config.allowedSyscalls)
    if (!/^[a-z0-9_]+$/.test(name))
      throw new ConfigError(`ALLOWED_SYSCALLS: '${name}' is not a syscall name or number`);
  return config;
}

/** URL with its user information hidden: error lines end up in logs. */
function withoutPassword(url: string): string {
  // Up to the last '@': a password may hold '@' or '/' (unencoded, as people write them).
  return url.replace(/\/\/.*@/, '//***@');
}

/** A proxy URL's port, the scheme's default when the URL names none. */
const DEFAULT_PROXY_PORTS: Record<string, number> = {
  'http:': 80,
  'https:': 443,
  'socks:': 1080,
  'socks4:': 1080,
  'socks5:': 1080,
  'socks5h:': 1080,
};

/** See RunnerConfig.connectPorts. */
function connectPorts(config: RunnerConfig): number[] | undefined {
  const listed = config.directTcpPorts;
  if (listed.includes('any')) {
    if (listed.length > 1)
      throw new ConfigError(
        `SANDBOX_DIRECT_TCP_PORTS: 'any' goes alone, got '${listed.join(',')}'`,
      );
    return undefined;
  }
  const ports = new Set<number>([53]);
  for (const item of listed) {
    const port = /^\d+$/.test(item) ? Number(item) : NaN;
    if (!(port >= 1 && port <= 65535))
      throw new ConfigError(
        `SANDBOX_DIRECT_TCP_PORTS: '${item}' is not a TCP port (1..65535) or 'any'`,
      );
    ports.add(port);
  }
  const proxies = (
    [
      ['HTTP_PROXY', config.httpProxy],
      ['HTTPS_PROXY', config.httpsProxy],
    ] as const
  ).filter(([, url]) => url !== '');
  // Without a proxy, network means direct network.
  if (proxies.length === 0) return undefined;
  for (const [key, url] of proxies) {
    const parsed = new URL(url);
    const schemePort = DEFAULT_PROXY_PORTS[parsed.protocol];
    // A PAC file's server is not the proxy, nor is an FTP server.
    if (schemePort === undefined)
      throw new ConfigError(
        `${key}: '${withoutPassword(url)}' is not a proxy URL (http://host:port, https://..., socks5://...)`,
      );
    const port = parsed.port !== '' ? Number(parsed.port) : schemePort;
    if (port < 1) throw new ConfigError(`${key}: '${withoutPassword(url)}' names port 0`);
    ports.add(port);
  }
  if (ports.size > 16)
    throw new ConfigError(`SANDBOX_DIRECT_TCP_PORTS: at most 16 ports with the proxies' and 53`);
  return [...ports].sort((a, b) => a - b);
}

/** The README's configuration table, rendered from SETTINGS. */
export function renderConfigTable(): string {
  const rows = SETTINGS.map((s) => {
    if (s.shownDefault === undefined && typeof s.default !== 'string')
      throw new Error(`${s.env}: a default found at start needs shownDefault`);
    const def = s.shownDefault ?? (s.default === '' ? '—' : `\`${String(s.default)}\``);
    return `| \`${s.env}\` | \`${s.yaml}\` | ${def} | ${s.doc} |`;
  });
  return ['| env | config.yaml | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}
