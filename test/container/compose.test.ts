// The docker-compose stack for real (manifests/docker-compose/, with the test-only additions of
// compose.override.yaml): the runner on an internal network, squid as its only way out, and a
// destination `target` that only squid can reach. Programs in both languages reach it through
// the proxy with every common client, cannot reach it directly, are refused private and
// metadata addresses by the proxy, and without network cannot open a socket at all.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  COMPOSE_DIR,
  RunnerClient,
  SETUP_HINT,
  containerIp,
  images,
  run,
  waitHealthy,
  type ContainerImages,
} from './docker.js';
import { NATIVE_BUILD } from '../../runner/src/paths.js';

const PROJECT = `sbp-compose-${process.pid}`;
const API_KEY = `compose-key-${process.pid}`;
const OVERRIDE = path.join(import.meta.dirname, 'compose.override.yaml');
const SERVER = path.join(import.meta.dirname, 'fixtures', 'target-server.mjs');

let fixtures: string;
let env: NodeJS.ProcessEnv;
let client: RunnerClient;
/** The test server's certificate (self-signed, for the name "target"). */
let ca: string;
let targetIp: string;
let sandboxIp: string;

function compose(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<string> {
  return run(
    'docker-compose',
    ['-p', PROJECT, '-f', 'docker-compose.yaml', '-f', OVERRIDE, ...args],
    // The seccomp profile's path in the compose file is relative to its directory.
    { cwd: COMPOSE_DIR, env: { ...env, ...extraEnv }, timeoutMs: 180_000 },
  );
}

/** The Landlock ABI of this kernel (the containers' too), as the launcher finds it. */
async function landlockAbi(): Promise<number> {
  const launcher = path.join(NATIVE_BUILD, 'sandbox-launcher');
  const { stdout } = await promisify(execFile)(launcher, ['--probe']);
  return Number(/landlock_abi=(\d+)/.exec(stdout)?.[1] ?? 0);
}

async function containerOf(service: string): Promise<string> {
  const id = (await compose(['ps', '-q', service])).trim();
  if (id === '') throw new Error(`compose service ${service} has no container`);
  return id;
}

/** (Re)starts the stack and waits for the runner and the proxy to be healthy. */
async function up(extraEnv: NodeJS.ProcessEnv = {}): Promise<void> {
  await compose(['up', '-d', '--no-build'], extraEnv);
  const sandbox = await containerOf('sandbox');
  await Promise.all([waitHealthy(sandbox), waitHealthy(await containerOf('ssrf_proxy'))]);
  sandboxIp = await containerIp(sandbox, `${PROJECT}_ssrf_proxy_network`);
  client = new RunnerClient(`http://${sandboxIp}:8194`, API_KEY);
}

beforeAll(async () => {
  const built: ContainerImages = images();
  fixtures = mkdtempSync(path.join(os.tmpdir(), 'sbp-compose-'));
  copyFileSync(SERVER, path.join(fixtures, 'target-server.mjs'));
  await promisify(execFile)(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-days', '1', '-subj', '/CN=target', '-addext', 'subjectAltName=DNS:target',
      '-keyout', path.join(fixtures, 'key.pem'), '-out', path.join(fixtures, 'cert.pem'),
    ], // prettier-ignore
    { timeout: 30_000 },
  ).catch((err: Error) => {
    throw new Error(`openssl could not make the test certificate (${SETUP_HINT}): ${err.message}`);
  });
  ca = readFileSync(path.join(fixtures, 'cert.pem'), 'utf8');
  env = {
    ...process.env,
    SANDBOX_IMAGE: built.runner,
    SSRF_PROXY_IMAGE: built.squid,
    SANDBOX_API_KEY: API_KEY,
    // The test destination has a private address: the proxy must be told to allow it.
    SQUID_ALLOW_DESTINATIONS: 'target',
    TARGET_FIXTURES: fixtures,
  };
  await up();
  targetIp = await containerIp(await containerOf('target'), `${PROJECT}_target_network`);
});

afterAll(async () => {
  if (env !== undefined)
    await compose(['down', '--volumes', '--remove-orphans', '--timeout', '0']).catch((err: Error) =>
      console.error(`[compose] down failed: ${err.message}`),
    );
  if (fixtures !== undefined) rmSync(fixtures, { recursive: true, force: true });
});

const py = (s: string) => JSON.stringify(s);

describe('with network: through the proxy only', () => {
  it.each([
    ['python3', 'requests', `import requests\nprint(requests.get('http://target/requests').text)`],
    ['python3', 'httpx', `import httpx\nprint(httpx.get('http://target/httpx').text)`],
    ['nodejs', 'fetch', `fetch('http://target/fetch').then((r) => r.text()).then(console.log)`],
    [
      'nodejs',
      'http',
      `require('http').get('http://target/http', (r) => r.on('data', (d) => console.log(String(d))))`,
    ],
  ] as const)('%s %s reaches the target over http', async (language, name, code) => {
    const data = await client.run(language, code);
    expect(data).toEqual({
      stdout: `target http GET /${name}\n`,
      stderr: '',
      error: '',
      exit_code: 0,
    });
  });

  it.each([
    [
      'python3',
      'requests',
      () =>
        `import requests\nopen('ca.pem', 'w').write(${py(ca)})\nprint(requests.get('https://target/requests', verify='ca.pem').text)`,
    ],
    [
      'python3',
      'httpx',
      () =>
        `import httpx, ssl\nprint(httpx.get('https://target/httpx', verify=ssl.create_default_context(cadata=${py(ca)})).text)`,
    ],
    [
      'nodejs',
      'https',
      () =>
        `require('https').get('https://target/https', { ca: ${JSON.stringify(ca)} }, (r) => r.on('data', (d) => console.log(String(d))))`,
    ],
  ] as const)('%s %s reaches the target over https (a tunnel)', async (language, name, code) => {
    const data = await client.run(language, code());
    expect(data.stdout).toBe(`target https GET /${name}\n`);
    expect(data.error).toBe('');
  });

  it('nodejs fetch over https reaches the target (and checks its certificate)', async () => {
    const data = await client.run(
      'nodejs',
      `fetch('https://target/fetch').then(() => console.log('trusted'), (e) => console.log(e.cause?.code))`,
    );
    // The tunnel reached the target: what stopped the request is its self-signed certificate.
    expect(data.stdout).toBe('DEPTH_ZERO_SELF_SIGNED_CERT\n');
  });

  // By address: a name lookup of an unknown name would leave through Docker's DNS forwarder.
  it('a direct connection to the target, bypassing the proxy, fails', async () => {
    const pyConnect = (port: number) =>
      client.run(
        'python3',
        `import socket\ntry:\n    socket.create_connection((${py(targetIp)}, ${port}), timeout=3)\n    print('connected')\nexcept OSError as e:\n    print(type(e).__name__, e.errno)`,
      );
    const jsConnect = (port: number) =>
      client.run(
        'nodejs',
        `const s = require('net').connect(${port}, ${JSON.stringify(targetIp)}); s.setTimeout(3000, () => { console.log('timeout'); s.destroy() }); s.on('connect', () => { console.log('connected'); s.destroy() }); s.on('error', (e) => console.log(e.code))`,
      );
    // Two layers. In the sandbox, Landlock (ABI 4, Linux 6.7+) lets TCP reach only the proxy's port and
    // DNS: port 80 is refused before a packet leaves (EACCES) ...
    const landlockPorts = (await landlockAbi()) >= 4;
    expect((await pyConnect(80)).stdout).toMatch(
      landlockPorts ? /^PermissionError 13\n$/ : /^(OSError 101|TimeoutError|OSError 113)/,
    );
    expect((await jsConnect(80)).stdout).toMatch(
      landlockPorts ? /^EACCES\n$/ : /^(ENETUNREACH|EHOSTUNREACH|timeout)\n$/,
    );
    // ... and on the proxy's port, which Landlock lets through, the internal network has no
    // route to the target.
    expect((await pyConnect(3128)).stdout).toMatch(/^(OSError 101|TimeoutError|OSError 113)/); // ENETUNREACH, EHOSTUNREACH
    expect((await jsConnect(3128)).stdout).toMatch(/^(ENETUNREACH|EHOSTUNREACH|timeout)\n$/);
  });

  it.each([
    ['cloud metadata', 'http://169.254.169.254/latest/meta-data/'],
    ['metadata by name', 'http://metadata.google.internal/computeMetadata/v1/'],
    ['a private address', 'http://10.0.0.1/'],
    ['the runner itself', 'SANDBOX'],
    ['loopback', 'http://127.0.0.1:8194/'],
    ['an IPv6 address', 'http://[::1]/'],
  ])('the proxy refuses %s', async (_name, target) => {
    const url = target === 'SANDBOX' ? `http://${sandboxIp}:8194/health` : target;
    const pyData = await client.run(
      'python3',
      `import requests\nr = requests.get(${py(url)}, timeout=10)\nprint(r.status_code, r.headers.get('X-Squid-Error'))`,
    );
    expect(pyData.stdout).toBe('403 ERR_ACCESS_DENIED 0\n');
    const jsData = await client.run(
      'nodejs',
      `fetch(${JSON.stringify(url)}).then((r) => console.log(r.status))`,
    );
    expect(jsData.stdout).toBe('403\n');
  });

  it('the proxy refuses its cache manager', async () => {
    // What squid's cache manager would show: the URLs other runs are fetching, the names they
    // looked up. Asked for by a host name the proxy allows (any public one would do).
    const data = await client.run(
      'python3',
      `import os, socket, urllib.parse\nproxy = urllib.parse.urlsplit(os.environ['HTTP_PROXY'])\ns = socket.create_connection((proxy.hostname, proxy.port), timeout=10)\ns.sendall(b'GET cache_object://target/info HTTP/1.0\\r\\n\\r\\n')\nprint(s.recv(100).split(b'\\r\\n')[0].decode())`,
    );
    expect(data.stdout).toBe('HTTP/1.1 403 Forbidden\n');
  });

  it('the proxy refuses a tunnel to a private address', async () => {
    const data = await client.run(
      'python3',
      `import httpx\ntry:\n    httpx.get('https://10.0.0.1/', timeout=10)\nexcept httpx.ProxyError as e:\n    print('refused:', e)`,
    );
    expect(data.stdout).toMatch(/^refused: .*403/);
  });
});

describe('an address the proxy is told to allow', () => {
  beforeAll(async () => {
    await up({ SQUID_ALLOW_DESTINATIONS: targetIp });
  });

  it('is reached where the URL names it', async () => {
    const data = await client.run(
      'python3',
      `import requests\nprint(requests.get('http://${targetIp}/literal', timeout=10).text)`,
    );
    expect(data.stdout).toBe('target http GET /literal\n');
  });

  // squid's dst ACL matches a name when any of its addresses does: `both` (the target and the
  // decoy) would pass for the target's address and be fetched from either.
  it('is not a way in for a name that also resolves to a forbidden address', async () => {
    const data = await client.run(
      'python3',
      `import requests\nr = requests.get('http://both/', timeout=10)\nprint(r.status_code, r.headers.get('X-Squid-Error'))`,
    );
    expect(data.stdout).toBe('403 ERR_ACCESS_DENIED 0\n');
  });
});

describe('without network', () => {
  beforeAll(async () => {
    await up({ SANDBOX_ENABLE_NETWORK: 'false' });
  });

  it.each([
    ['python3', 'requests', `import requests\nrequests.get('http://target/')`],
    ['python3', 'a UDP socket', `import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)`],
    ['python3', 'a unix socket', `import socket\nsocket.socket(socket.AF_UNIX)`],
    ['nodejs', 'fetch', `fetch('http://target/').catch((e) => { throw e.cause ?? e })`],
    ['nodejs', 'net.connect', `require('net').connect(80, ${JSON.stringify('10.0.0.1')})`],
  ] as const)('%s: %s fails with a clear error', async (language, _name, code) => {
    const data = await client.run(language, code);
    expect(data.exit_code).not.toBe(0);
    expect(data.error).toMatch(/^error: operation not permitted: socket/);
  });

  it('programs get no proxy settings', async () => {
    const data = await client.run(
      'python3',
      'import os\nprint(sorted(k for k in os.environ if "proxy" in k.lower()))',
    );
    expect(data.stdout).toBe('[]\n');
  });
});
