// Runs inside the sandbox: the launcher applied every layer before this interpreter started.
// Routes outbound HTTP through the proxy the runner handed over (if any), reports "ready", reads
// one request ({"code", "preload"}) from stdin, runs the preload and then the code the way
// `node file.js` would (a CommonJS module in sloppy mode), and reports on descriptor 3 why it
// failed, if it did.
//
// The runner also builds a V8 startup snapshot of this file at start (node --build-snapshot,
// with the flags the runs get): an interpreter started from it begins with the modules below
// loaded and warmed up, and runs main() (about 10 ms less CPU per start than running the file).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');
const { createRequire } = Module;

// The runner's package directories (its one argument, at AT: taken off process.argv so programs
// see the argv of `node code.js`): require() looks there after the run's own directories.
// Module._initPaths reads them from NODE_PATH, which programs then need not see.
function usePackages(at) {
  process.env.NODE_PATH = process.argv.splice(at, 1)[0] ?? '';
  Module._initPaths();
  delete process.env.NODE_PATH;
}

const REPORT_FD = 3;

// True when the line went out whole.
function report(word) {
  const line = word + '\n';
  try {
    return fs.writeSync(REPORT_FD, line) === Buffer.byteLength(line);
  } catch {
    return false; // the report is a courtesy
  }
}

// Which limit an error code means, in the words of the runner's reports.
const LIMIT_CODES = {
  EPERM: 'eperm',
  EFBIG: 'fsize',
  ENOSPC: 'disk',
  EDQUOT: 'disk',
  EMFILE: 'nofile',
};

// The report word for why ERR ended the program (fetch and others wrap causes in `cause`).
function explain(err) {
  for (let i = 0; err && i < 10; i++, err = err.cause) {
    if (typeof err !== 'object') return undefined;
    if (Object.hasOwn(LIMIT_CODES, err.code)) return LIMIT_CODES[err.code];
    // libuv's SystemError (os.setPriority, ...) carries the errno in `info`
    if (err.info && Object.hasOwn(LIMIT_CODES, err.info.code)) return LIMIT_CODES[err.info.code];
    // RLIMIT_DATA refused an ArrayBuffer's memory (V8's own heap limit is reported by V8)
    if (err instanceof RangeError && /allocation failed/i.test(err.message)) return 'memory';
    // a thread could not be created (RLIMIT_NPROC): new Worker() fails with EAGAIN
    if (err.code === 'EAGAIN' || err.message === 'EAGAIN') return 'threads';
  }
  return undefined;
}

// Set once an error went uncaught: Node.js prints it only after the 'exit' event.
let uncaught = false;
function watchUncaught() {
  process.on('uncaughtExceptionMonitor', (err) => {
    // A program's own 'uncaughtException' handler takes the error: the run goes on, and the
    // error is no reason for how it ends.
    if (process.listenerCount('uncaughtException') > 0) return;
    uncaught = true;
    const why = explain(err);
    if (why !== undefined) report(why);
  });
}

// Node.js tears its heap and threads down after the 'exit' event: ten milliseconds and more of
// CPU that the run's answer would wait for and nobody needs, since the process ends anyway.
// Once every 'exit' listener has run (the program's too, which may still print or set
// process.exitCode), the exit status is reported and the process kills itself; the runner takes
// the status from the report. After an uncaught error Node.js still has the error to print:
// then it ends the usual way. (A program can write the same report itself, but only to lie
// about its own result; it is killed all the same.)
function endOnExit() {
  const emit = process.emit;
  // The report channel as the runner handed it over: a program may close descriptor 3, and a
  // file it opens next may get the number.
  const channel = fs.fstatSync(REPORT_FD);
  const channelIntact = () => {
    try {
      const now = fs.fstatSync(REPORT_FD);
      return now.dev === channel.dev && now.ino === channel.ino;
    } catch {
      return false;
    }
  };
  Object.defineProperty(process, 'emit', {
    value: function (event, ...args) {
      const result = Reflect.apply(emit, this, [event, ...args]);
      const code = process.exitCode ?? 0;
      // Only once the runner has the status: else the end goes the usual way, and the runner
      // takes the status from the kernel.
      if (
        event === 'exit' &&
        !uncaught &&
        Number.isInteger(code) &&
        channelIntact() &&
        report(`exit ${code & 0xff}`)
      ) {
        // Every connection closed now: the runner answers once it has the report and the end of
        // every stream, without waiting for the kernel to take the process apart.
        for (const fd of [0, 1, 2, REPORT_FD]) {
          try {
            fs.closeSync(fd);
          } catch {
            // already closed by the program
          }
        }
        process.kill(process.pid, 'SIGKILL');
      }
      return result;
    },
    writable: true,
    configurable: true,
    enumerable: false,
  });
}

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
  // Only here: loading http and https costs about 20 ms of CPU (the runner's heap limit flag
  // makes V8 refuse Node's built-in code cache, so they are compiled from source), which every
  // run would pay before "ready" whether or not it makes a request.
  const http = require('node:http');
  const https = require('node:https');
  let agents;
  // Beside this file (the runner's copy, as root), or where `npm run build` put it.
  // (createRequire: started from a snapshot, this file's own require knows built-ins only.)
  const load = () =>
    (agents ??= createRequire(__filename)(
      fs.existsSync(path.join(__dirname, 'proxy-agents.cjs'))
        ? './proxy-agents.cjs'
        : path.join(__dirname, '../../dist/bundles/proxy-agents.cjs'),
    ));
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

// Pay now, before "ready", for what nearly every run uses, so that the run does not: the
// compiler of the function wrapper, and console.log's path to a socket or pipe (the net module
// and the stream and formatting code, which V8 compiles on first use: its code cache is refused
// under the heap limit flag). Not process.stdout or process.stderr themselves: creating one
// makes its descriptor non-blocking, and fs.writeSync(1 or 2) of a program would then fail with
// EAGAIN. (Logging through a console.Console of our own does that to descriptor 2.)
function warmUp() {
  vm.compileFunction('return 0', ['exports', 'require', 'module', '__filename', '__dirname']);
  const util = require('node:util');
  new (require('node:net').Socket)().destroy();
  util.format('%s %d %j', 'warm', 1, {});
  util.inspect({ a: [1, 'b'] });
  const { Writable } = require('node:stream');
  const sink = new Writable({ write: (chunk, encoding, done) => done() });
  sink.write('warm');
  sink.end();
}

// Everything that depends on this run (its arguments, its environment, the process's own
// listeners) happens here, never in the snapshot.
function main(packagesAt) {
  usePackages(packagesAt);
  // What `node code.js` shows the program (not this file, which a snapshot has no path of).
  process.argv.splice(1, Infinity, path.join(process.cwd(), 'code.js'));
  watchUncaught();
  endOnExit();
  installProxy();
  report('ready');
  const request = JSON.parse(fs.readFileSync(0, 'utf8'));
  // "run" before anything of the request runs: a process that ends without having said so ran
  // none of it, and the runner may give the request to another. Not a courtesy: unsaid, stop.
  if (!report('run')) process.exit(125);
  // DifySandbox runs the code inside its prescript, whose fs the code could use without
  // requiring it: a global (not a parameter of the code's function), so that code declaring
  // its own fs keeps working too.
  Object.defineProperty(globalThis, 'fs', {
    value: fs,
    writable: true,
    configurable: true,
    enumerable: false,
  });
  if (request.preload) run(request.preload, 'preload.js');
  run(request.code, 'code.js');
}

warmUp();
const snapshot = require('node:v8').startupSnapshot;
// From a snapshot the packages are the first argument (there is no script); else the second.
if (snapshot.isBuildingSnapshot()) snapshot.setDeserializeMainFunction(() => main(1));
else main(2);
