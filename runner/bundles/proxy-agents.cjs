// The proxy support of sandboxed Node.js programs: undici's EnvHttpProxyAgent (for fetch) and
// proxy-agent's ProxyAgent (for http/https), both reading HTTP_PROXY, HTTPS_PROXY and NO_PROXY.
// `npm run build` bundles this file with its packages into dist/bundles/proxy-agents.cjs, which
// runner/bootstrap/nodejs.cjs loads on the first request: as root from the runner's copy beside
// the bootstrap (readable whatever the permissions of the runner's node_modules), otherwise
// from dist/bundles.
'use strict';
/* eslint-disable @typescript-eslint/no-require-imports -- each package is required on first use
   only: esbuild keeps a CommonJS module unevaluated until its require() runs. */

/** A dispatcher for fetch. http:// requests go to the proxy as they are, not tunnelled: proxies
 * such as Dify's squid allow CONNECT only to port 443. */
exports.fetchDispatcher = () => {
  const { EnvHttpProxyAgent } = require('undici');
  return new EnvHttpProxyAgent({ proxyTunnel: false });
};

/** An agent for http.request and https.request. */
exports.httpAgent = () => {
  const { ProxyAgent } = require('proxy-agent');
  return new ProxyAgent();
};
