// The operator's API client under faults the real API server does not produce on demand: a
// connection cut while an error answer is still arriving. A small HTTP server plays the API
// server's part; the client must reject the call: not wait for ever (its informer would stop
// seeing changes), not end the process.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kube } from '../../operator/controller/kube.js';

let server: http.Server;
let kube: Kube;

beforeAll(async () => {
  server = http.createServer((_req, res) => {
    // An error answer whose body never arrives whole.
    res.writeHead(500, { 'Content-Type': 'application/json', 'Content-Length': '1000' });
    res.write('{"message": "the answer is cut');
    setTimeout(() => res.socket?.destroy(), 20);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    // (client-node takes plain HTTP only with skipTLSVerify)
    clusters: [
      {
        name: 'c',
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  kube = new Kube(kc);
});
afterAll(() => new Promise((resolve) => server.close(resolve)));

describe('the API client', () => {
  it(
    'rejects a watch whose error answer is cut off (it waited for ever)',
    { timeout: 5000 },
    async () => {
      const watching = kube.watch(
        { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default' },
        { resourceVersion: '1', timeoutSeconds: 5 },
        () => undefined,
        new AbortController().signal,
        10_000,
      );
      await expect(watching).rejects.toThrow(/watch \/api\/v1\/namespaces\/default\/configmaps/);
      await new Promise((r) => setTimeout(r, 100)); // an 'error' nobody listens to would come now
    },
  );

  it('rejects a call whose error answer is cut off', { timeout: 5000 }, async () => {
    await expect(kube.request('GET', '/api/v1/namespaces/default/configmaps/x')).rejects.toThrow(
      /GET \/api\/v1\/namespaces\/default\/configmaps\/x: reading the answer/,
    );
  });
});
