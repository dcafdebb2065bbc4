// With network on and an egress proxy configured, a program's only way out is the proxy: it
// cannot open a TCP connection around it, to a host's service (a stand-in for a cloud metadata
// endpoint, a database, a sidecar) or to the runner's own loopback port, whatever a
// NetworkPolicy does or does not enforce (Landlock's TCP port rules, Linux 6.7+). Ports an
// operator lists in SANDBOX_DIRECT_TCP_PORTS are reachable directly. Both runner modes: Python
// starts through the launcher as root and from the zygote without root.
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODES, startTestRunner, type TestRunner } from '../support/runner.js';

let proxy: http.Server;
let service: net.Server;
let proxyUrl: string;
let servicePort: number;
const sockets = new Set<net.Socket>();

const port = (server: net.Server | http.Server) => (server.address() as AddressInfo).port;

beforeAll(async () => {
  proxy = http.createServer((req, res) => res.end(`via proxy: ${req.method} ${req.url}`));
  // A program may hang up first: its reset is no error here.
  service = net.createServer((socket) => {
    sockets.add(socket.on('error', () => {}).on('close', () => sockets.delete(socket)));
    socket.end('reached\n');
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
  proxyUrl = `http://127.0.0.1:${port(proxy)}`;
  servicePort = port(service);
});
afterAll(async () => {
  proxy.closeAllConnections();
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => proxy.close(resolve));
  await new Promise((resolve) => service.close(resolve));
});

// Each prints "reached" or "refused CODE".
const python = (p: number) =>
  `import socket\ntry:\n    s = socket.create_connection(('127.0.0.1', ${p}), timeout=5)\n    s.sendall(b'GET /metrics HTTP/1.0\\r\\n\\r\\n')\n    s.recv(100)\n    print('reached')\nexcept OSError as e:\n    print('refused', e.errno)`;
const node = (p: number) =>
  `require('net').connect(${p}, '127.0.0.1', function () { console.log('reached'); this.destroy() }).on('error', (e) => console.log('refused', e.code))`;

// Landlock's port rules govern TCP; other stream protocols of IPv4 (MPTCP, SCTP) would go past
// them, so with network a program gets TCP and UDP sockets only (seccomp: EPERM).
const mptcp = (p: number) =>
  `import socket\ntry:\n    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)\n    s.settimeout(5)\n    s.connect(('127.0.0.1', ${p}))\n    s.recv(100)\n    print('reached')\nexcept OSError as e:\n    print('refused', e.errno)`;

describe.each(MODES)('runner started %s, with an egress proxy', (mode) => {
  let t: TestRunner;
  let runnerPort: number;
  beforeAll(async () => {
    t = await startTestRunner({ HTTP_PROXY: proxyUrl, HTTPS_PROXY: proxyUrl }, { mode });
    runnerPort = Number(new URL(t.url).port);
  });
  afterAll(() => t?.close());

  it.each([
    ['python3', 'a service on the host', python, 13],
    ['nodejs', 'a service on the host', node, 'EACCES'],
  ] as const)(
    '%s cannot connect around the proxy to %s',
    async (language, _what, code, refusal) => {
      const data = await t.run(language, code(servicePort));
      expect(data.stdout).toBe(`refused ${refusal}\n`);
    },
  );

  it('python3 cannot go around connect() with TCP Fast Open (sendto with MSG_FASTOPEN)', async () => {
    const data = await t.run(
      'python3',
      `import socket\ntry:\n    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n    s.sendto(b'GET /metrics HTTP/1.0\\r\\n\\r\\n', socket.MSG_FASTOPEN, ('127.0.0.1', ${servicePort}))\n    print('reached' if s.recv(100) else 'closed')\nexcept OSError as e:\n    print('refused', e.errno)`,
    );
    expect(data.stdout).toBe('refused 1\n');
  });

  it('python3 cannot turn a TCP socket into another protocol (TCP_ULP, e.g. "smc")', async () => {
    const data = await t.run(
      'python3',
      `import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\nfor ulp in (b'smc', b'tls'):\n    try:\n        s.setsockopt(socket.IPPROTO_TCP, 31, ulp)\n        print('set')\n    except OSError as e:\n        print('refused', e.errno)\ns.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\nprint('nodelay')`,
    );
    expect(data.stdout).toBe('refused 1\nrefused 1\nnodelay\n');
  });

  it('python3 cannot go around the port rules with another stream protocol (MPTCP)', async () => {
    const data = await t.run('python3', mptcp(servicePort));
    expect(data.stdout).toBe('refused 1\n');
  });

  it.each([
    ['python3', python, 13],
    ['nodejs', node, 'EACCES'],
  ] as const)(
    "%s cannot reach the runner's own loopback port (/metrics)",
    async (language, code, refusal) => {
      const data = await t.run(language, code(runnerPort));
      expect(data.stdout).toBe(`refused ${refusal}\n`);
    },
  );

  it.each([
    ['python3', `import requests\nprint(requests.get('http://egress.invalid/py').text)`, 'py'],
    ['nodejs', `fetch('http://egress.invalid/js').then((r) => r.text()).then(console.log)`, 'js'],
  ] as const)('%s still goes out through the proxy', async (language, code, name) => {
    const data = await t.run(language, code);
    expect(data).toMatchObject({
      stdout: `via proxy: GET http://egress.invalid/${name}\n`,
      error: '',
    });
  });
});

describe('SANDBOX_DIRECT_TCP_PORTS', () => {
  let t: TestRunner;
  beforeAll(async () => {
    t = await startTestRunner({
      HTTP_PROXY: proxyUrl,
      SANDBOX_DIRECT_TCP_PORTS: String(servicePort),
    });
  });
  afterAll(() => t?.close());

  it.each([
    ['python3', python],
    ['nodejs', node],
  ] as const)('%s reaches a listed port directly, and only that one', async (language, code) => {
    expect((await t.run(language, code(servicePort))).stdout).toBe('reached\n');
    const other = await t.run(language, code(Number(new URL(t.url).port)));
    expect(other.stdout).toMatch(/^refused (13|EACCES)\n$/);
  });
});
