// The image's HEALTHCHECK: GET /readyz on the port and address the runner's configuration names
// (the environment over /conf/config.yaml, as the runner reads them). Exit 0 when ready.
import { loadConfig } from './config.js';

const WILDCARDS = new Set(['', '0.0.0.0', '::']);

try {
  const { host, port } = loadConfig();
  const address = WILDCARDS.has(host) ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const res = await fetch(`http://${address}:${port}/readyz`, {
    signal: AbortSignal.timeout(4000),
  });
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  process.stderr.write(`health check: ${(err as Error).message}\n`);
  process.exit(1);
}
