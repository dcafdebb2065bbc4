// For the operator's end-to-end tests: install the CRD and the shipped RBAC into a control plane,
// run the operator as a process (as `npm run operator` does) under its ServiceAccount, read its
// JSON logs, and poll the API server.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { KubeConfig, KubernetesObjectApi, type KubernetesObject } from '@kubernetes/client-node';
import { CRD_FILE, CRD_NAME } from '../../operator/api/crd.js';
import { REPO_ROOT } from '../../operator/paths.js';
import {
  kubeconfigForServiceAccount,
  toolEnv,
  type ControlPlaneInfo,
} from '../k8s/controlplane.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parseAllDocuments, stringify } from 'yaml';

const execFileAsync = promisify(execFile);

export const OPERATOR_NAMESPACE = 'sandboxpool-system';
/** The install manifest rendered from the Helm chart (npm run manifests). */
export const INSTALL_FILE = path.join(REPO_ROOT, 'manifests', 'install.yaml');
const RBAC_KINDS = ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'];

/** The operator's ServiceAccount and RBAC as shipped: those documents of install.yaml. */
export function rbacManifest(): string {
  return parseAllDocuments(readFileSync(INSTALL_FILE, 'utf8'))
    .filter((d) => RBAC_KINDS.includes(String(d.get('kind'))))
    .map((d) => d.toString())
    .join('---\n');
}

/** kubectl against `cp` (admin unless another kubeconfig is given); throws with its stderr. */
export async function kubectl(
  cp: ControlPlaneInfo,
  args: string[],
  kubeconfig = cp.kubeconfigPath,
  input?: string,
): Promise<string> {
  const bin = path.join(cp.binDir, 'kubectl');
  try {
    const child = execFileAsync(bin, ['--kubeconfig', kubeconfig, ...args], {
      env: toolEnv(cp),
      timeout: 60_000,
    });
    if (input !== undefined) {
      child.child.stdin?.end(input);
    }
    return (await child).stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string };
    throw new Error(`kubectl ${args.join(' ')}: ${(e.stderr || e.stdout || String(err)).trim()}`, {
      cause: err,
    });
  }
}

/** A fresh namespace (a random suffix on PREFIX) where PodSecurity enforces "restricted". */
export async function createNamespace(cp: ControlPlaneInfo, prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await kubectl(cp, ['create', 'namespace', name]);
  await kubectl(cp, [
    'label',
    'namespace',
    name,
    'pod-security.kubernetes.io/enforce=restricted',
    'pod-security.kubernetes.io/enforce-version=latest',
  ]);
  return name;
}

/** kubectl apply of a SandboxPool in NS, as a user would. */
export function applyPool(
  cp: ControlPlaneInfo,
  ns: string,
  name: string,
  spec: object = {},
): Promise<string> {
  const doc = stringify({
    apiVersion: 'sandboxpool.dev/v1alpha1',
    kind: 'SandboxPool',
    metadata: { name, namespace: ns },
    spec,
  });
  return kubectl(cp, ['apply', '-f', '-'], cp.kubeconfigPath, doc);
}

/**
 * kubectl apply of a ValidatingWebhookConfiguration NAME that sends every write of a Deployment
 * in namespace NS to URL: a webhook that is down or never answers makes those writes fail or
 * wait (a real admission step of the API server, not a mock of it).
 */
export function applyDeploymentWebhook(
  cp: ControlPlaneInfo,
  name: string,
  ns: string,
  url: string,
  failurePolicy: 'Fail' | 'Ignore',
  timeoutSeconds: number,
): Promise<string> {
  const doc = stringify({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name },
    webhooks: [
      {
        name: `${name}.sandboxpool.test`,
        clientConfig: { url },
        rules: [
          {
            apiGroups: ['apps'],
            apiVersions: ['v1'],
            operations: ['CREATE', 'UPDATE'],
            resources: ['deployments'],
          },
        ],
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
        failurePolicy,
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        timeoutSeconds,
      },
    ],
  });
  return kubectl(cp, ['apply', '-f', '-'], cp.kubeconfigPath, doc);
}

export { waitFor } from './wait.js';

/** Reads objects as plain JSON through client-node (independent of the operator's client). */
export class Api {
  private readonly objects: KubernetesObjectApi;
  constructor(kubeconfigPath: string) {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    this.objects = KubernetesObjectApi.makeApiClient(kc);
  }

  /** The object, or undefined when it does not exist. */
  async get<T = Record<string, unknown>>(
    apiVersion: string,
    kind: string,
    namespace: string,
    name: string,
  ): Promise<T | undefined> {
    try {
      const obj = await this.objects.read({ apiVersion, kind, metadata: { name, namespace } });
      // Plain JSON (client-node names a few reserved words differently, e.g. `_from`).
      return JSON.parse(JSON.stringify(obj)) as T;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  async list<T = KubernetesObject>(
    apiVersion: string,
    kind: string,
    namespace: string,
    labelSelector?: string,
  ): Promise<T[]> {
    const list = await this.objects.list(
      apiVersion,
      kind,
      namespace,
      undefined,
      undefined,
      undefined,
      undefined,
      labelSelector,
    );
    return JSON.parse(JSON.stringify(list.items)) as T[];
  }
}

/**
 * Installs the CRD, the operator's namespace and its RBAC (from manifests/install.yaml), and
 * returns a kubeconfig of the operator's ServiceAccount. Idempotent.
 */
export async function installOperator(cp: ControlPlaneInfo): Promise<string> {
  await kubectl(cp, [
    'apply',
    '--server-side',
    '--force-conflicts',
    '-f',
    path.join(REPO_ROOT, CRD_FILE),
  ]);
  await kubectl(cp, ['wait', '--for=condition=Established', '--timeout=60s', `crd/${CRD_NAME}`]);
  await kubectl(cp, ['create', 'namespace', OPERATOR_NAMESPACE]).catch((err: Error) => {
    if (!/AlreadyExists/.test(err.message)) throw err;
  });
  await kubectl(cp, ['apply', '-f', '-'], cp.kubeconfigPath, rbacManifest());
  return kubeconfigForServiceAccount(cp, OPERATOR_NAMESPACE, 'sandboxpool-operator');
}

export type LogLine = Record<string, unknown> & { msg?: string; key?: string; level?: number };

export interface OperatorProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** The port of /healthz, /readyz and /metrics. */
  readonly port: number;
  /** Every JSON log line so far. */
  lines(): LogLine[];
  /** The last n log lines and stderr, for a failure message. */
  tail(n: number): string;
  /** Resolves with the first line (from the start) that matches. */
  waitForLine(what: string, match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then waits for the exit (SIGKILL after 20 s). */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL: a crash, nothing released. */
  kill(): Promise<void>;
}

const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

/** Runs the operator out of cluster (`node --import tsx operator/main.ts`), as its SA. */
export async function startOperator(
  kubeconfigPath: string,
  name: string,
  env: Record<string, string> = {},
): Promise<OperatorProcess> {
  const argv = [process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'operator', 'main.ts')];
  // setpriv: the operator dies with the test process, even when that one is killed.
  const [command, ...args] = setpriv ? [setpriv, '--pdeathsig', 'KILL', '--', ...argv] : argv;
  const child = spawn(command!, args, {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      KUBECONFIG: kubeconfigPath,
      POD_NAMESPACE: OPERATOR_NAMESPACE,
      POD_NAME: name,
      SANDBOXPOOL_OPERATOR_LISTEN: '127.0.0.1:0',
      LOG_LEVEL: 'debug',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  let stderr = '';
  let partial = '';
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (chunk: Buffer) => {
    partial += chunk.toString('utf8');
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) {
      if (p.trim() === '') continue;
      try {
        lines.push(JSON.parse(p) as LogLine);
      } catch {
        lines.push({ msg: `(not JSON) ${p}` });
      }
    }
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      for (const l of listeners) l();
      resolve({ code, signal });
    }),
  );
  let done = false;
  void exited.then(() => (done = true));

  const waitForLine: OperatorProcess['waitForLine'] = (what, match, timeoutMs = 30_000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const found = lines.find(match);
        if (found) {
          cleanup();
          resolve(found);
        } else if (done) {
          cleanup();
          reject(
            new Error(
              `operator ${name} exited before logging ${what}; stderr: ${stderr.slice(-2000)}`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `operator ${name} did not log ${what} within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`,
          ),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });

  const serving = await waitForLine(
    'its listening port',
    (l) => typeof l.port === 'number' && /serving/.test(l.msg ?? ''),
    60_000,
  );
  return {
    name,
    child,
    port: serving.port as number,
    lines: () => lines,
    tail: (n) =>
      [
        ...lines.slice(-n).map((l) => JSON.stringify(l)),
        ...(stderr ? [`stderr: ${stderr.slice(-2000)}`] : []),
      ].join('\n'),
    waitForLine,
    exited,
    stop: async () => {
      if (!done) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
        const r = await exited;
        clearTimeout(timer);
        return r;
      }
      return exited;
    },
    kill: async () => {
      if (!done) child.kill('SIGKILL');
      await exited;
    },
  };
}
