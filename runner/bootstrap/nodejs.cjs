// Runs inside the sandbox: the launcher applied every layer before this interpreter started.
// Routes outbound HTTP through the proxy the runner handed over (if any), reports "ready", reads
// one request ({"code", "preload"}) from stdin, runs the preload and then the code the way
// `node file.js` would (a CommonJS module in sloppy mode), and reports on descriptor 3 why it
// failed, if it did.
'use strict';
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const vm = require('node:vm');
const { createRequire } = require('node:module');

const REPORT_FD = 3;

function report(word) {
  try {
    fs.writeSync(REPORT_FD, word + '\n');
  } catch {
    // the report is a courtesy
  }
}

// Whether an EPERM from the kernel is behind the error (fetch and others wrap it in `cause`).
function causedByEperm(err) {
  for (let i = 0; err && i < 10; i++, err = err.cause) if (err.code === 'EPERM') return true;
  return false;
}

process.on('uncaughtExceptionMonitor', (err) => {
  if (causedByEperm(err)) report('eperm');
});

function run(source, name) {
  const filename = path.join(process.cwd(), name);
  const mod = { exports: {}, filename, id: '.', loaded: false };
  const fn = vm.compileFunction(
    source,
    ['exports', 'require', 'module', '__filename', '__dirname'],
    {
      filename,
    },
  );
  fn.call(mod.exports, mod.exports, createRequire(filename), mod, filename, process.cwd());
}

// Node.js 20 ignores HTTP_PROXY and HTTPS_PROXY. With them set (network through the egress
// proxy), fetch and http/https go through the proxy (both honour NO_PROXY). The agents come from
// proxy-agents.cjs (runner/bundles/), loaded on a program's first request only: a program that
// makes none does not pay for them.
function installProxy() {
  const env = process.env;
  if (!(env.HTTP_PROXY || env.HTTPS_PROXY || env.http_proxy || env.https_proxy)) return;
  let agents;
  const load = () => (agents ??= require('./proxy-agents.cjs'));
  // fetch: the global dispatcher every copy of undici shares, Node's built-in one included.
  let dispatcher;
  const lazyDispatcher = {
    dispatch(options, handler) {
      dispatcher ??= load().fetchDispatcher();
      return dispatcher.dispatch(options, handler);
    },
  };
  Object.defineProperty(globalThis, Symbol.for('undici.globalDispatcher.1'), {
    value: lazyDispatcher,
    writable: true,
    configurable: false,
  });
  // http.request and https.request without an agent of their own use the global agents.
  for (const mod of [http, https]) {
    let agent;
    mod.globalAgent = new (class extends mod.Agent {
      addRequest(req, options) {
        agent ??= load().httpAgent();
        return agent.addRequest(req, options);
      }
    })();
  }
}

installProxy();

// Pay for lazily initialised parts now, before "ready", not in the run: the stdio streams
// and the compiler of the function wrapper.
void process.stdout;
void process.stderr;
vm.compileFunction('return 0', ['exports', 'require', 'module', '__filename', '__dirname']);

report('ready');
const request = JSON.parse(fs.readFileSync(0, 'utf8'));
if (request.preload) run(request.preload, 'preload.js');
run(request.code, 'code.js');
