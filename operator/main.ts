// The operator's entry point (`npm run operator`, or node dist/operator/main.js in its image):
// configuration, the API client, the controller, leader election, and /healthz, /readyz,
// /metrics. Runs in or out of the cluster ($KUBECONFIG, else the in-cluster ServiceAccount).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Server } from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import express from 'express';
import { pino, type Logger } from 'pino';
import { parseSeccompProfile } from './builders/seccomp.js';
import { OperatorConfigError, loadOperatorConfig, type OperatorConfig } from './config.js';
import { Controller } from './controller/controller.js';
import { Kube } from './controller/kube.js';
import { LeaderElector } from './controller/leader.js';
import type { SeccompSource } from './controller/reconciler.js';
import { OperatorMetrics } from './metrics.js';

function loadSeccomp(path: string, logger: Logger): SeccompSource {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const error = `cannot read ${path} (SANDBOXPOOL_SECCOMP_PROFILE): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
    logger.warn(
      { path },
      `no seccomp profile: pools with podProfile Localhost will be Ready=False: ${error}`,
    );
    return { error };
  }
  try {
    return { profile: parseSeccompProfile(text, path) };
  } catch (err) {
    logger.warn({ path }, `invalid seccomp profile: ${(err as Error).message}`);
    return { error: (err as Error).message };
  }
}

function serve(
  config: OperatorConfig,
  controller: Controller,
  metrics: OperatorMetrics,
  logger: Logger,
): Promise<Server> {
  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    const ready = controller.synced;
    res.status(ready ? 200 : 503).json({
      ready,
      leader: controller.isLeading,
      ...(ready ? {} : { reason: 'informers have not listed yet' }),
    });
  });
  app.get('/metrics', async (_req, res) => {
    res.set('Content-Type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  return new Promise((resolve, reject) => {
    const server = app.listen(config.listenPort, config.listenHost, () => {
      const address = server.address();
      const port =
        typeof address === 'object' && address !== null ? address.port : config.listenPort;
      logger.info(
        { host: config.listenHost, port },
        `serving /healthz, /readyz and /metrics on ${config.listenHost || '*'}:${port}`,
      );
      resolve(server);
    });
    server.once('error', reject);
  });
}

/**
 * $KUBECONFIG, else ~/.kube/config, else the pod's ServiceAccount. client-node's loadFromDefault
 * would fall back to http://localhost:8080 without a word; here no credentials is an error.
 */
function loadKubeConfig(kc: KubeConfig): void {
  const home = process.env.HOME;
  if (process.env.KUBECONFIG || (home && existsSync(path.join(home, '.kube', 'config'))))
    return kc.loadFromDefault();
  if (!process.env.KUBERNETES_SERVICE_HOST)
    throw new Error('none found, and not in a cluster (no KUBERNETES_SERVICE_HOST)');
  kc.loadFromCluster();
}

async function main(): Promise<void> {
  let config: OperatorConfig;
  try {
    config = loadOperatorConfig();
  } catch (err) {
    if (err instanceof OperatorConfigError) {
      process.stderr.write(`invalid configuration: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = pino({
    level: config.logLevel,
    base: { service: 'sandboxpool-operator', identity: config.identity },
  });
  // A bug, not an outage: say so in the log's format, and exit for a restart.
  for (const event of ['uncaughtException', 'unhandledRejection'] as const)
    process.on(event, (err: unknown) => {
      logger.fatal({ err }, `${event}: ${(err as Error)?.message ?? String(err)}`);
      process.exit(1);
    });
  const kc = new KubeConfig();
  let kube: Kube;
  try {
    loadKubeConfig(kc);
    kube = new Kube(kc); // reads the current cluster's server URL
  } catch (err) {
    process.stderr.write(
      `cannot load a kubeconfig ($KUBECONFIG, ~/.kube/config or in-cluster): ${(err as Error).message}\n`,
    );
    process.exit(2);
  }
  const metrics = new OperatorMetrics();
  const controller = new Controller({
    kube,
    config,
    logger,
    metrics,
    seccomp: loadSeccomp(config.seccompProfilePath, logger),
  });
  const elector = new LeaderElector(
    kube,
    {
      namespace: config.namespace,
      name: config.leaseName,
      identity: config.identity,
      leaseDurationSeconds: config.leaseDurationSeconds,
      renewDeadlineSeconds: config.renewDeadlineSeconds,
      retryPeriodSeconds: config.retryPeriodSeconds,
    },
    logger,
    {
      onStartedLeading: () => controller.setLeading(true),
      onStoppedLeading: () => controller.setLeading(false),
    },
  );
  const server = await serve(config, controller, metrics, logger);
  logger.info(
    {
      server: kc.getCurrentCluster()?.server,
      namespace: config.namespace,
      watchNamespace: config.watchNamespace || '(all)',
      runnerImage: config.runnerImage,
      lease: config.leaseName,
    },
    'sandboxpool-operator starting',
  );
  controller.start();
  elector.start();

  let stopping = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const)
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      setTimeout(() => process.exit(1), 15_000).unref();
      void (async () => {
        // The reconciles in flight end first (no new one starts); only then is the lease given
        // up, so that the next leader never acts beside this one.
        await controller.stop();
        await elector.stop(); // releases the lease: another replica takes over at once
        server.close();
        server.closeAllConnections();
        kube.close();
        process.exit(0);
      })();
    });
}

await main();
