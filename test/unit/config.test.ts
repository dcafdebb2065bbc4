// Configuration: compat names, YAML under env, one clear error per bad key, docs in sync.
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, onPath, renderConfigTable } from '../../runner/src/config.js';
import { renderReadme } from '../../runner/src/readme.js';

const yamlFile = (text: string) => {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'sbp-config-')), 'config.yaml');
  writeFileSync(file, text);
  return file;
};

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({ env: { API_KEY: 'k' }, configPath: null });
    expect(c).toMatchObject({
      port: 8194,
      host: '0.0.0.0',
      workerTimeoutSeconds: 15,
      maxRequests: 50,
      enableNetwork: true,
      enablePreload: true,
      memoryMiB: 256,
      maxOutputBytes: 4194304,
    });
    expect(c.maxWorkers).toBe(os.availableParallelism());
  });

  it("reads DifySandbox's config.yaml keys, and env overrides them", () => {
    const file = yamlFile(
      'app:\n  port: 9000\n  key: from-yaml\nmax_workers: 3\nmax_requests: 7\nworker_timeout: 5\nenable_network: false\nproxy:\n  http: http://proxy:3128\nallowed_syscalls: [mbind, 237]\n',
    );
    const c = loadConfig({ env: { MAX_WORKERS: '2' }, configPath: file });
    expect(c).toMatchObject({
      port: 9000,
      apiKey: 'from-yaml',
      maxWorkers: 2,
      maxRequests: 7,
      workerTimeoutSeconds: 5,
      enableNetwork: false,
      httpProxy: 'http://proxy:3128',
      allowedSyscalls: ['mbind', '237'],
    });
  });

  it('takes the wall-clock timeout as the CPU limit unless one is set', () => {
    // DifySandbox has no CPU limit: a program computing for 12 s of a 15 s timeout works there.
    expect(loadConfig({ env: { API_KEY: 'k' }, configPath: null }).cpuSeconds).toBe(15);
    const yaml = yamlFile('worker_timeout: 40\n');
    expect(loadConfig({ env: { API_KEY: 'k' }, configPath: yaml }).cpuSeconds).toBe(40);
    const set = { API_KEY: 'k', WORKER_TIMEOUT: '40', SANDBOX_CPU_SECONDS: '5' };
    expect(loadConfig({ env: set, configPath: null }).cpuSeconds).toBe(5);
  });

  it('takes the CPU count as MAX_WORKERS only up to MAX_REQUESTS; a set MAX_WORKERS above it fails', () => {
    // This machine has 2 CPUs or more: the default would be above a MAX_REQUESTS of 1.
    expect(os.availableParallelism()).toBeGreaterThan(1);
    const c = loadConfig({ env: { API_KEY: 'k', MAX_REQUESTS: '1' }, configPath: null });
    expect(c.maxWorkers).toBe(1);
    expect(() =>
      loadConfig({ env: { API_KEY: 'k', MAX_REQUESTS: '1', MAX_WORKERS: '2' }, configPath: null }),
    ).toThrow(/^MAX_REQUESTS: 1 is below MAX_WORKERS \(2\)$/);
  });

  it('takes /usr/bin/python3 and the node running it by default, never a shim, unless set', () => {
    // A version manager's shim first on PATH (pyenv's is a shell script): not an interpreter.
    const shims = mkdtempSync(path.join(os.tmpdir(), 'sbp-path-'));
    writeFileSync(path.join(shims, 'python3'), '#!/bin/sh\nexec python3 "$@"\n', { mode: 0o755 });
    const load = (env: NodeJS.ProcessEnv) =>
      loadConfig({ env: { API_KEY: 'k', ...env }, configPath: null });
    const c = load({ PATH: `${shims}:/usr/bin` });
    expect(c.pythonPath).toBe('/usr/bin/python3');
    expect(c.nodejsPath).toBe(process.execPath);
    const set = load({ PATH: shims, PYTHON_PATH: '/opt/py/bin/python3', NODEJS_PATH: '/opt/node' });
    expect([set.pythonPath, set.nodejsPath]).toEqual(['/opt/py/bin/python3', '/opt/node']);
  });

  it('finds a program on PATH past relative entries, scripts and files that are not executable', () => {
    const script = mkdtempSync(path.join(os.tmpdir(), 'sbp-path-'));
    writeFileSync(path.join(script, 'python3'), '#!/bin/sh\n', { mode: 0o755 });
    const notExecutable = mkdtempSync(path.join(os.tmpdir(), 'sbp-path-'));
    copyFileSync('/bin/true', path.join(notExecutable, 'python3'));
    chmodSync(path.join(notExecutable, 'python3'), 0o644);
    const program = mkdtempSync(path.join(os.tmpdir(), 'sbp-path-'));
    copyFileSync('/bin/true', path.join(program, 'python3'));
    chmodSync(path.join(program, 'python3'), 0o755);
    expect(onPath('python3', `relative:${script}:${notExecutable}:${program}`)).toBe(
      path.join(program, 'python3'),
    );
    expect(onPath('python3', `${script}:${notExecutable}`)).toBeUndefined();
  });

  it("reads DifySandbox's stock config.yaml without a warning, Go's t and f included", () => {
    const file = yamlFile(
      "app:\n  port: 8194\n  debug: True\n  key: dify-sandbox\nmax_workers: 4\nmax_requests: 50\nworker_timeout: 5\npython_path: /usr/bin/python3\nnodejs_path: /usr/bin/node\nenable_network: t\nenable_preload: F\nlog_path: \"./logs\"\nallowed_syscalls:\nproxy:\n  socks5: ''\n  http: ''\n  https: ''\n",
    );
    const c = loadConfig({ env: {}, configPath: file });
    expect(c.unknownKeys).toEqual([]);
    expect(c).toMatchObject({ enableNetwork: true, enablePreload: false, maxWorkers: 4 });
  });

  it.each([
    [{ SANDBOX_PORT: 'eighty' }, /^SANDBOX_PORT: expected a whole number/],
    [{ SANDBOX_PORT: '70000' }, /^SANDBOX_PORT: 70000 is out of range/],
    [{ ENABLE_NETWORK: 'maybe' }, /^ENABLE_NETWORK: expected true or false/],
    [{ MAX_WORKERS: '8', MAX_REQUESTS: '4' }, /^MAX_REQUESTS: 4 is below MAX_WORKERS/],
    [{ HTTP_PROXY: 'not a url' }, /^HTTP_PROXY: not a URL/],
    [{ SANDBOX_LANDLOCK: 'sometimes' }, /^SANDBOX_LANDLOCK: expected one of required, optional/],
    [{ ALLOWED_SYSCALLS: 'read;rm -rf' }, /^ALLOWED_SYSCALLS: /],
  ])('rejects %o with a message naming the key', (env, message) => {
    expect(() => loadConfig({ env: { API_KEY: 'k', ...env }, configPath: null })).toThrow(
      ConfigError,
    );
    expect(() => loadConfig({ env: { API_KEY: 'k', ...env }, configPath: null })).toThrow(message);
  });

  it('names the YAML key when the file is wrong', () => {
    const file = yamlFile('max_workers: lots\n');
    expect(() => loadConfig({ env: { API_KEY: 'k' }, configPath: file })).toThrow(
      /config\.yaml: max_workers: expected a whole number/,
    );
    expect(() => loadConfig({ env: {}, configPath: yamlFile(': : :\n  - [') })).toThrow(
      /^config file /,
    );
  });

  it('refuses a text setting holding a control character (the URL parser would drop a tab)', () => {
    expect(() =>
      loadConfig({ env: { API_KEY: 'k', HTTP_PROXY: 'http://proxy\t:3128' }, configPath: null }),
    ).toThrow(/^HTTP_PROXY: holds a control character/);
    const file = yamlFile('work_dir: "/tmp/a\\nb"\n');
    expect(() => loadConfig({ env: { API_KEY: 'k' }, configPath: file })).toThrow(
      /config\.yaml: work_dir: holds a control character/,
    );
  });

  it("limits programs' TCP connections to the proxies' ports and DNS when a proxy is set", () => {
    const ports = (env: Record<string, string>) =>
      loadConfig({ env: { API_KEY: 'k', ...env }, configPath: null }).connectPorts;
    expect(ports({})).toBeUndefined(); // no proxy: network is direct network
    expect(ports({ HTTP_PROXY: 'http://squid:3128' })).toEqual([53, 3128]);
    // the scheme's port when the URL names none; extra ports from the setting
    expect(
      ports({
        HTTP_PROXY: 'http://proxy',
        HTTPS_PROXY: 'socks5://proxy',
        SANDBOX_DIRECT_TCP_PORTS: '5432, 8080',
      }),
    ).toEqual([53, 80, 1080, 5432, 8080]);
    expect(
      ports({ HTTP_PROXY: 'http://squid:3128', SANDBOX_DIRECT_TCP_PORTS: 'any' }),
    ).toBeUndefined();
    expect(() =>
      ports({ HTTP_PROXY: 'http://squid:3128', SANDBOX_DIRECT_TCP_PORTS: 'any,80' }),
    ).toThrow(/^SANDBOX_DIRECT_TCP_PORTS: 'any' goes alone/);
    expect(() => ports({ SANDBOX_DIRECT_TCP_PORTS: '70000' })).toThrow(
      /^SANDBOX_DIRECT_TCP_PORTS: '70000' is not a TCP port/,
    );
    for (const url of ['ftp://proxy', 'pac+http://pac.example/proxy.pac'])
      expect(() => ports({ HTTP_PROXY: url })).toThrow(
        new RegExp(`^HTTP_PROXY: '${url.replace(/[.+]/g, '\\$&')}' is not a proxy URL`),
      );
    expect(() => ports({ HTTPS_PROXY: 'http://proxy:0' })).toThrow(/^HTTPS_PROXY: .* names port 0/);
    expect(() =>
      ports({
        HTTP_PROXY: 'http://proxy:3128',
        SANDBOX_DIRECT_TCP_PORTS: Array.from({ length: 15 }, (_, i) => 1000 + i).join(','),
      }),
    ).toThrow(/^SANDBOX_DIRECT_TCP_PORTS: at most 16 ports/);
  });

  it('requires API_KEY unless bound to loopback, where it defaults with a flag', () => {
    expect(() => loadConfig({ env: {}, configPath: null })).toThrow(
      /^API_KEY: required when listening on 0\.0\.0\.0/,
    );
    const local = loadConfig({ env: { SANDBOX_HOST: '127.0.0.1' }, configPath: null });
    expect(local.apiKey).toBe('dify-sandbox');
    expect(local.apiKeyDefaulted).toBe(true);
  });

  it('reports unknown keys (likely typos) but accepts DifySandbox keys it ignores', () => {
    const file = yamlFile(
      'app:\n  port: 9000\n  debug: true\nmax_worker: 3\nlimits:\n  memory_mb: 5\npython_lib_path: [/usr/lib]\n',
    );
    expect(loadConfig({ env: { API_KEY: 'k' }, configPath: file }).unknownKeys).toEqual([
      'max_worker',
      'limits.memory_mb',
    ]);
  });

  it("takes DifySandbox's SOCKS5 proxy in place of the others, and a proxy without a scheme as HTTP", () => {
    const load = (env: Record<string, string>, file: string | null = null) =>
      loadConfig({ env: { API_KEY: 'k', ...env }, configPath: file });
    expect(load({ SOCKS5_PROXY: 'socks5://p:1081', HTTP_PROXY: 'http://x:1' })).toMatchObject({
      httpProxy: 'socks5://p:1081',
      httpsProxy: 'socks5://p:1081',
      connectPorts: [53, 1081],
    });
    expect(load({}, yamlFile('proxy:\n  socks5: p:1080\n  http: http://x:1\n'))).toMatchObject({
      httpProxy: 'socks5://p:1080',
      httpsProxy: 'socks5://p:1080',
    });
    expect(load({ HTTP_PROXY: 'ssrf_proxy:3128' })).toMatchObject({
      httpProxy: 'http://ssrf_proxy:3128',
      connectPorts: [53, 3128],
    });
  });

  it('keeps passwords out of its messages, refuses mappings for values, and takes empty as unset', () => {
    const load = (env: Record<string, string>, file: string | null = null) =>
      loadConfig({ env: { API_KEY: 'k', ...env }, configPath: file });
    expect(() => load({ HTTP_PROXY: 'http://user:s3cret@proxy:99999' })).toThrow(
      "HTTP_PROXY: not a URL: 'http://***@proxy:99999'",
    );
    for (const url of ['http://u:p@ss@proxy:0', 'http://u:p/ss@proxy:99999'])
      expect(() => load({ HTTPS_PROXY: url })).toThrow(
        /^HTTPS_PROXY: .*'http:\/\/\*\*\*@proxy:\d+'/,
      );
    expect(() => loadConfig({ env: {}, configPath: yamlFile('app:\n  key:\n    a: 1\n') })).toThrow(
      /config\.yaml: app\.key: expected a value, got a mapping$/,
    );
    expect(() => loadConfig({ env: { API_KEY: 'k', SANDBOX_CONFIG: '' } })).not.toThrow(
      /config file : /,
    );
    expect(load({}, yamlFile('proxy:\napp:\n')).unknownKeys).toEqual([]);
  });

  it('an explicitly named config file must exist', () => {
    expect(() =>
      loadConfig({ env: { API_KEY: 'k' }, configPath: '/nonexistent/config.yaml' }),
    ).toThrow(/ENOENT/);
  });
});

describe('README', () => {
  it('shows the configuration table and the metrics as the code declares them', async () => {
    const readme = readFileSync(path.join(import.meta.dirname, '../../README.md'), 'utf8');
    expect(readme, 'run `npm run docs` to refresh the README').toBe(await renderReadme(readme));
    expect(readme).toContain(renderConfigTable().split('\n')[2]);
    expect(readme).toContain('| `sandbox_executions_total` | counter | `language`, `outcome` |');
  });
});
