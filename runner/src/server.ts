// Starting a runner: the sandbox runtime, a self-test of every layer, then the HTTP server.
import { execFile } from 'node:child_process';
import type { Server } from 'node:http';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { LOCAL_DEFAULT_KEY, type RunnerConfig } from './config.js';
import { installPackages } from './dependencies.js';
import { Engine } from './engine.js';
import { createApp, createMetricsApp, type Readiness } from './http.js';
import { RunnerMetrics } from './metrics.js';
import { Sandboxes } from './pool.js';
import { LAUNCHER, Runtime } from './runtime.js';

/** How often a runner that became not ready re-runs its self-test. */
const RECHECK_MS = 2000;
/** A start that failed (a package index down, say) is tried again after 5 s, then 10 s, ... 5 min. */
const START_RETRY_FIRST_MS = 5000;
const START_RETRY_MAX_MS = 300_000;

/** Code that must print "ok": it runs through every layer and checks that a socket is refused. */
const SELF_TESTS = {
  python3: [
    'import socket',
    'try:',
    '    socket.socket()',
    '    print("socket allowed")',
    'except PermissionError:',
    '    print("ok")',
  ].join('\n'),
  nodejs: [
    "const net = require('net');",
    "const s = net.connect(9, '127.0.0.1');",
    "s.on('error', (e) => console.log(e.code === 'EPERM' ? 'ok' : 'socket allowed: ' + e.code));",
    "s.on('connect', () => { console.log('socket allowed'); s.destroy(); });",
  ].join('\n'),
} as const;

/** Proves that a run really gets the sandbox (at start, and after a sandbox error): fails closed otherwise. */
async function selfTest(engine: Engine, logger: Logger): Promise<string | undefined> {
  for (const language of ['python3', 'nodejs'] as const) {
    const result = await engine.runSelfTest(
      { language, code: SELF_TESTS[language], preload: '', network: false },
      logger.child({ reqId: 'self-test' }),
    );
    if (result.stdout !== 'ok\n')
      return `self-test of ${language} failed: ${(result.error || result.stdout).trim().split('\n')[0]}`;
  }
  return undefined;
}

async function landlockAbi(): Promise<number> {
  const { stdout } = await promisify(execFile)(LAUNCHER, ['--probe']);
  return Number(/landlock_abi=(\d+)/.exec(stdout)?.[1] ?? 0);
}

export interface StartedRunner {
  server: Server;
  config: RunnerConfig;
  close(): Promise<void>;
}

export async function startRunner(config: RunnerConfig, logger: Logger): Promise<StartedRunner> {
  const metrics = new RunnerMetrics();
  const runtime = new Runtime(config);
  await runtime.prepare();
  const readiness: Readiness = { ready: false, reason: 'self-test has not run yet' };
  const sandboxes = new Sandboxes(runtime, metrics, logger);
  const engine = new Engine(runtime, sandboxes, metrics);
  const app = createApp({ config, engine, metrics, logger, readiness });

  const abi = await landlockAbi();
  metrics.landlockAbi.set(abi);
  logger.info(
    { landlockAbi: abi, asRoot: runtime.asRoot, workDir: config.workDir },
    abi > 0 ? `Landlock ABI ${abi} available` : 'Landlock is not available in this kernel',
  );
  if (config.enableNetwork && config.connectPorts !== undefined)
    if (abi >= 4) {
      logger.info(
        { connectPorts: config.connectPorts },
        `runs with network open TCP connections only to ports ${config.connectPorts.join(', ')} (the proxies', DNS and SANDBOX_DIRECT_TCP_PORTS)`,
      );
      if (config.noProxy !== '')
        logger.warn(
          { noProxy: config.noProxy },
          'NO_PROXY is set: runs reach those hosts directly only on the ports above (list more in SANDBOX_DIRECT_TCP_PORTS, or set it to any)',
        );
    } else
      logger.warn(
        { landlockAbi: abi },
        'runs with network can open TCP connections to any port, past the proxy: limiting them needs Landlock ABI 4 (Linux 6.7); the NetworkPolicy (or an internal network) is the only egress control here',
      );
  if (config.unknownKeys.length > 0)
    logger.warn(
      { keys: config.unknownKeys },
      `config.yaml has keys this runner does not know (ignored): ${config.unknownKeys.join(', ')}`,
    );
  for (const warning of runtime.warnings) logger.warn(warning);
  if (config.apiKeyDefaulted)
    logger.warn(
      'API_KEY is not set: using the default key "dify-sandbox" (allowed on loopback only)',
    );
  else if (config.apiKey === LOCAL_DEFAULT_KEY)
    logger.warn(
      'API_KEY is "dify-sandbox", the well-known default of DifySandbox and Dify\'s compose file: whoever reaches this port can run code; set a key of your own (SANDBOX_API_KEY in Dify\'s .env)',
    );

  // Ready only once the extra packages are installed, the warm pools filled and the self-test
  // passed. A start that fails is tried again with backoff (a package index or mirror that was
  // down a moment must not leave the pod not ready until someone deletes it).
  let poolsStarted = false;
  const startUp = async (): Promise<string | undefined> => {
    const installFailure = await installPackages(config).then(
      () => undefined,
      (err: Error) => err.message,
    );
    if (installFailure !== undefined) return installFailure;
    if (readiness.shuttingDown) return 'shutting down';
    if (!poolsStarted) {
      poolsStarted = true;
      await sandboxes.start();
    }
    if (readiness.shuttingDown) return 'shutting down';
    return (await runtime.missingCapabilities()) ?? (await selfTest(engine, logger));
  };
  const markReady = () => {
    readiness.ready = true;
    readiness.reason = 'ok';
    metrics.ready.set(1);
  };
  const failure = await startUp();
  if (failure === undefined) markReady();
  else {
    readiness.reason = failure;
    metrics.ready.set(0);
  }
  let startRetry: NodeJS.Timeout | undefined;
  const retryStart = (attempt: number) => {
    const delay = Math.min(START_RETRY_MAX_MS, START_RETRY_FIRST_MS * 2 ** (attempt - 1));
    logger.error(
      { reason: readiness.reason, attempt, retryMs: delay },
      `not ready: ${readiness.reason}; runs are refused until a start succeeds (trying again in ${Math.round(delay / 1000)} s)`,
    );
    startRetry = setTimeout(async () => {
      startRetry = undefined;
      const again = await startUp().catch((err: Error) => err.message);
      if (readiness.shuttingDown) return;
      if (again !== undefined) {
        readiness.reason = again;
        retryStart(attempt + 1);
        return;
      }
      markReady();
      logger.info({ attempt: attempt + 1 }, 'config init success: ready after a failed start');
    }, delay);
    startRetry.unref();
  };

  // Fail closed later too: when a run's sandbox cannot be set up (a policy file gone or broken,
  // the kernel refusing a layer), the runner is not ready until a self-test passes again.
  let recheck: NodeJS.Timeout | undefined;
  const scheduleRecheck = () => {
    recheck = setTimeout(async () => {
      const again = await selfTest(engine, logger).catch((err: Error) => err.message);
      if (again === undefined) {
        markReady();
        logger.info('sandbox self-test passed again: ready');
      } else {
        readiness.reason = again;
        scheduleRecheck();
      }
    }, RECHECK_MS);
    recheck.unref();
  };
  engine.onSandboxError = (reason) => {
    if (!readiness.ready) return;
    readiness.ready = false;
    readiness.reason = reason.split('\n')[0] ?? reason;
    metrics.ready.set(0);
    logger.error({ reason }, 'a sandbox could not be set up: not ready until a self-test passes');
    scheduleRecheck();
  };

  const server = await new Promise<Server>((resolve, reject) => {
    // '' (every address): Node.js's default, the IPv6 wildcard that takes IPv4 too, or IPv4
    // alone on a kernel without IPv6.
    const s = app.listen(config.port, config.host, () => resolve(s));
    s.once('error', reject);
  });
  // Dify's clients keep connections alive; do not drop them before they do.
  server.keepAliveTimeout = 65_000;
  // Metrics alone on their own port: in Kubernetes a NetworkPolicy can then let Prometheus
  // scrape without letting it reach the API.
  const metricsServer =
    config.metricsPort > 0
      ? await new Promise<Server>((resolve, reject) => {
          const s = createMetricsApp(metrics).listen(config.metricsPort, config.host, () =>
            resolve(s),
          );
          s.once('error', reject);
        })
      : undefined;
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  // 'config init success' only when ready: Dify's integration tests and scripts wait for that
  // text before they send runs (api.md). Not ready, it still listens: /readyz and every answer
  // say why.
  const listening = {
    host: config.host,
    port,
    ...(metricsServer ? { metricsPort: config.metricsPort } : {}),
  };
  if (readiness.ready)
    logger.info(listening, `config init success: listening on ${config.host || '*'}:${port}`);
  else {
    logger.error(
      listening,
      `listening on ${config.host || '*'}:${port}, but not ready: ${readiness.reason}`,
    );
    retryStart(1);
  }
  const closed = (s: Server) => new Promise<void>((resolve) => s.close(() => resolve()));
  return {
    server,
    config,
    // As Go's http.Server.Shutdown: no new connections, idle ones closed, the requests under
    // way answered (a rolling update or an eviction must not cut the runs Dify waits for; the
    // operator's grace period covers this), each connection closed after its answer; whatever
    // is still open WORKER_TIMEOUT + 10 s later is cut.
    close: async () => {
      clearTimeout(recheck);
      clearTimeout(startRetry);
      engine.onSandboxError = undefined;
      readiness.shuttingDown = true;
      metrics.ready.set(0);
      if (metricsServer !== undefined) {
        void closed(metricsServer);
        metricsServer.closeAllConnections();
      }
      const drained = closed(server);
      // A connection whose answer went out before the shutdown began stays open for the next
      // request: close each as soon as it is idle.
      server.closeIdleConnections();
      const sweep = setInterval(() => server.closeIdleConnections(), 100);
      if (engine.underWay > 0)
        logger.info(
          { underWay: engine.underWay },
          `shutting down: answering the ${engine.underWay} request(s) under way first`,
        );
      let deadline: NodeJS.Timeout | undefined;
      await Promise.race([
        drained,
        new Promise<void>((resolve) => {
          deadline = setTimeout(resolve, config.workerTimeoutSeconds * 1000 + 10_000);
        }),
      ]);
      clearTimeout(deadline);
      clearInterval(sweep);
      server.closeAllConnections();
      await drained;
      await sandboxes.stop();
    },
  };
}
