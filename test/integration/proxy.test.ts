// With network and HTTP_PROXY/HTTPS_PROXY configured, every common HTTP client of both
// languages goes through the proxy. The targets are under .invalid, a name that never
// resolves: a request can only succeed by way of the proxy. The proxy here is a small real one
// on loopback that records what it was asked; test/container/ repeats this against squid.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRunner, type TestRunner } from '../support/runner.js';

const seen: string[] = [];
let proxy: http.Server;
let t: TestRunner;

beforeAll(async () => {
  proxy = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.end(`via proxy: ${req.method} ${req.url}`);
  });
  // HTTPS goes through CONNECT; refusing it is enough to see the client asked the proxy.
  proxy.on('connect', (req: http.IncomingMessage, socket: import('node:net').Socket) => {
    seen.push(`CONNECT ${req.url}`);
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  t = await startTestRunner({ HTTP_PROXY: url, HTTPS_PROXY: url });
});
afterAll(async () => {
  await t.close();
  await new Promise((resolve) => proxy.close(resolve));
});

const TARGET = 'only-via-proxy.invalid';

describe('http:// through the proxy', () => {
  it.each([
    ['nodejs', 'fetch', `fetch('http://${TARGET}/fetch').then((r) => r.text()).then(console.log)`],
    [
      'nodejs',
      'http.get',
      `require('http').get('http://${TARGET}/http', (r) => r.on('data', (d) => console.log(String(d))))`,
    ],
    [
      'python3',
      'requests',
      `import requests\nprint(requests.get('http://${TARGET}/requests').text)`,
    ],
    ['python3', 'httpx', `import httpx\nprint(httpx.get('http://${TARGET}/httpx').text)`],
  ] as const)('%s %s', async (language, name, code) => {
    const data = await t.run(language, code);
    expect(data).toEqual({
      stdout: `via proxy: GET http://${TARGET}/${name.replace('.get', '')}\n`,
      stderr: '',
      error: '',
      exit_code: 0,
    });
  });
});

describe('https:// asks the proxy for a tunnel', () => {
  it.each([
    [
      'nodejs',
      'fetch',
      `fetch('https://${TARGET}/').catch((e) => console.log('refused:', e.cause?.message))`,
      /^refused: /,
    ],
    [
      'nodejs',
      'https.get',
      `require('https').get('https://${TARGET}/', (r) => console.log('status', r.statusCode)).on('error', (e) => console.log('refused:', e.message))`,
      /^(status 403|refused: )/,
    ],
    [
      'python3',
      'requests',
      `import requests\ntry:\n    requests.get('https://${TARGET}/')\nexcept requests.exceptions.ProxyError as e:\n    print('refused:', type(e).__name__)`,
      /^refused: ProxyError/,
    ],
    [
      'python3',
      'httpx',
      `import httpx\ntry:\n    httpx.get('https://${TARGET}/')\nexcept httpx.ProxyError as e:\n    print('refused:', type(e).__name__)`,
      /^refused: ProxyError/,
    ],
  ] as const)('%s %s', async (language, _name, code, expected) => {
    const before = seen.filter((s) => s === `CONNECT ${TARGET}:443`).length;
    const data = await t.run(language, code);
    expect(data.stdout).toMatch(expected);
    expect(seen.filter((s) => s === `CONNECT ${TARGET}:443`).length).toBe(before + 1);
  });
});

describe('without network', () => {
  it('a run without network gets no proxy, and no socket', async () => {
    const data = await t.run(
      'nodejs',
      `console.log(JSON.stringify(Object.keys(process.env).filter((k) => /proxy/i.test(k))))\nfetch('http://127.0.0.1:8123/').catch((e) => console.log(e.cause?.code))`,
      { enable_network: false },
    );
    expect(data.stdout).toBe('[]\nEPERM\n');
  });

  it.each([
    ['python3', `import requests\nrequests.get('http://${TARGET}/')`],
    ['nodejs', `fetch('http://${TARGET}/').catch((e) => { throw e.cause ?? e })`],
  ] as const)('%s: a failed name lookup says network is disabled', async (language, code) => {
    const data = await t.run(language, code, { enable_network: false });
    expect(data.exit_code).toBe(1);
    expect(data.error).toMatch(/^error: operation not permitted: socket \(network is disabled\)\n/);
  });
});
