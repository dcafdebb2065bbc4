// The operator's configuration, from the environment only; one clear error per bad variable.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import path from 'node:path';
import { COMMITTED_PROFILE } from '../native/tools/seccomp-profile.js';
import { PACKAGE_VERSION, REPO_ROOT } from './paths.js';

export interface OperatorConfig {
  /** The operator's own namespace: its Lease and the seccomp installer live there. */
  namespace: string;
  /** This process in the Lease (the pod's name in the cluster). */
  identity: string;
  /** The default spec.image. */
  runnerImage: string;
  /** Watch only this namespace (empty: all). */
  watchNamespace: string;
  leaseName: string;
  leaseDurationSeconds: number;
  renewDeadlineSeconds: number;
  retryPeriodSeconds: number;
  /** Every pool is reconciled at least this often, whatever the events. */
  resyncSeconds: number;
  /** How long an autoscaler may say it cannot scale before the pool is Degraded for it. */
  autoscalerGraceSeconds: number;
  /** Reconciles running at once. */
  workers: number;
  /** '': every address, IPv6 and IPv4. */
  listenHost: string;
  listenPort: number;
  /** The pod seccomp profile (JSON) for podProfile Localhost. */
  seccompProfilePath: string;
  seccompInstallerImage: string;
  /** Secrets (in the operator's namespace) for pulling the installer's image. */
  imagePullSecrets: string[];
  logLevel: string;
}

export class OperatorConfigError extends Error {
  override name = 'OperatorConfigError';
}

/** The runner image of the same version (SANDBOXPOOL_RUNNER_IMAGE, when set, names another). */
export const DEFAULT_RUNNER_IMAGE = `sandboxpool/runner:${PACKAGE_VERSION}`;
/** The pod profile rendered from native/policies (npm run profile -- --update). */
export const DEFAULT_SECCOMP_PROFILE = path.join(REPO_ROOT, COMMITTED_PROFILE);

function int(env: NodeJS.ProcessEnv, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw))
    throw new OperatorConfigError(`${name}: expected a whole number, got '${raw}'`);
  const n = Number(raw);
  if (n < min || n > max)
    throw new OperatorConfigError(`${name}: ${n} is out of range (${min}..${max})`);
  return n;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function loadOperatorConfig(env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  const namespace = env.POD_NAMESPACE || 'sandboxpool-system';
  if (!DNS_LABEL.test(namespace))
    throw new OperatorConfigError(`POD_NAMESPACE: '${namespace}' is not a namespace name`);
  const watchNamespace = env.SANDBOXPOOL_WATCH_NAMESPACE ?? '';
  if (watchNamespace !== '' && !DNS_LABEL.test(watchNamespace))
    throw new OperatorConfigError(
      `SANDBOXPOOL_WATCH_NAMESPACE: '${watchNamespace}' is not a namespace name`,
    );
  // No host (':8080'): every address, IPv6 and IPv4 (an IPv6-only cluster probes the pod's IPv6).
  const listen = env.SANDBOXPOOL_OPERATOR_LISTEN || ':8080';
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m)
    throw new OperatorConfigError(
      `SANDBOXPOOL_OPERATOR_LISTEN: expected host:port, got '${listen}'`,
    );
  const listenPort = Number(m[2]);
  if (listenPort > 65535)
    throw new OperatorConfigError(
      `SANDBOXPOOL_OPERATOR_LISTEN: port ${listenPort} is out of range`,
    );
  const leaseDurationSeconds = int(env, 'SANDBOXPOOL_LEASE_DURATION_SECONDS', 12, 2, 300);
  const renewDeadlineSeconds = int(env, 'SANDBOXPOOL_RENEW_DEADLINE_SECONDS', 8, 1, 300);
  const retryPeriodSeconds = int(env, 'SANDBOXPOOL_RETRY_PERIOD_SECONDS', 2, 1, 60);
  if (!(retryPeriodSeconds < renewDeadlineSeconds && renewDeadlineSeconds < leaseDurationSeconds))
    throw new OperatorConfigError(
      'SANDBOXPOOL_RETRY_PERIOD_SECONDS < SANDBOXPOOL_RENEW_DEADLINE_SECONDS < SANDBOXPOOL_LEASE_DURATION_SECONDS must hold',
    );
  const runnerImage = env.SANDBOXPOOL_RUNNER_IMAGE || DEFAULT_RUNNER_IMAGE;
  const imagePullSecrets = (env.SANDBOXPOOL_IMAGE_PULL_SECRETS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const name of imagePullSecrets)
    if (name.length > 253 || !DNS_SUBDOMAIN.test(name))
      throw new OperatorConfigError(
        `SANDBOXPOOL_IMAGE_PULL_SECRETS: '${name}' is not a Secret name`,
      );
  const logLevel = env.LOG_LEVEL || 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel))
    throw new OperatorConfigError(`LOG_LEVEL: '${logLevel}' is not a log level`);
  return {
    namespace,
    identity: env.POD_NAME || `${hostname()}_${process.pid}_${randomBytes(3).toString('hex')}`,
    runnerImage,
    watchNamespace,
    leaseName: env.SANDBOXPOOL_LEASE_NAME || 'sandboxpool-operator',
    leaseDurationSeconds,
    renewDeadlineSeconds,
    retryPeriodSeconds,
    resyncSeconds: int(env, 'SANDBOXPOOL_RESYNC_SECONDS', 300, 5, 86400),
    autoscalerGraceSeconds: int(env, 'SANDBOXPOOL_AUTOSCALER_GRACE_SECONDS', 180, 0, 86400),
    workers: int(env, 'SANDBOXPOOL_WORKERS', 2, 1, 32),
    listenHost: (m[1] ?? '').replace(/^\[(.*)\]$/, '$1'), // [::1]:8080 names ::1
    listenPort,
    seccompProfilePath: env.SANDBOXPOOL_SECCOMP_PROFILE || DEFAULT_SECCOMP_PROFILE,
    seccompInstallerImage: env.SANDBOXPOOL_SECCOMP_INSTALLER_IMAGE || runnerImage,
    imagePullSecrets,
    logLevel,
  };
}
