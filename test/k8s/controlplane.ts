// A real Kubernetes control plane for tests: etcd (Debian's etcd-server), kube-apiserver and
// kube-controller-manager (built by test/k8s/setup.sh from the release pinned in test/k8s/go.mod),
// all on free loopback ports, with a generated admin kubeconfig. There is no kubelet and no
// scheduler: Pods are admitted (PodSecurity, RBAC, quotas judge them for real) and stay Pending.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  createWriteStream,
  existsSync,
  readFileSync,
  rmSync,
  accessSync,
  constants as fsConstants,
} from 'node:fs';
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import http from 'node:http';
import { homedir, tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { freePort } from '../support/ports.js';

const execFileAsync = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

/** What a test needs to reach the control plane; plain data, so vitest can `provide` it. */
export interface ControlPlaneInfo {
  /** https://127.0.0.1:<port> */
  readonly server: string;
  /** An admin kubeconfig (a token in group system:masters). */
  readonly kubeconfigPath: string;
  /** PEM bundle that verifies the API server's serving certificate. */
  readonly caPath: string;
  /** Where kubectl, helm and the servers were taken from. */
  readonly binDir: string;
  /** The control plane's scratch directory (removed by stop()). */
  readonly workDir: string;
}

export interface ControlPlane extends ControlPlaneInfo {
  /** Process ids of etcd, kube-apiserver and kube-controller-manager (current, after restarts). */
  readonly pids: Readonly<Record<ComponentName, number>>;
  kubeconfigForServiceAccount(namespace: string, name: string): Promise<string>;
  /**
   * Stops one component (SIGTERM) and starts it again with the same flags, data and ports;
   * resolves once it is ready again. For tests of clients that must survive an outage.
   */
  restart(component: ComponentName): Promise<void>;
  /** Stops every process it started and removes its scratch directory. Idempotent. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Directory holding kube-apiserver, kube-controller-manager, kubectl and helm. */
  binDir?: string;
  /** Bound on each wait for readiness, in ms. */
  readyTimeoutMs?: number;
}

export type ComponentName = 'etcd' | 'kube-apiserver' | 'kube-controller-manager';

const SETUP_HINT = 'run `bash test/k8s/setup.sh` (as root; the first build takes ~10 minutes)';

/** The k8s.io/kubernetes release pinned in test/k8s/go.mod: the one fact both sides read. */
export function pinnedKubernetesVersion(): string {
  const goMod = readFileSync(join(here, 'go.mod'), 'utf8');
  const match = /^\s*(?:require\s+)?k8s\.io\/kubernetes (v\d+\.\d+\.\d+)\s*$/m.exec(goMod);
  if (!match?.[1]) throw new Error(`test/k8s/go.mod: no requirement "k8s.io/kubernetes vX.Y.Z"`);
  return match[1];
}

/** Where setup.sh puts the binaries: ~/.cache/sandboxpool/k8s-<version>/. */
export function defaultBinDir(): string {
  return join(homedir(), '.cache', 'sandboxpool', `k8s-${pinnedKubernetesVersion()}`);
}

function executable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findOnPath(command: string): string | undefined {
  const dirs = (process.env['PATH'] ?? '').split(delimiter).concat(['/usr/bin', '/usr/local/bin']);
  return dirs.map((d) => join(d, command)).find(executable);
}

/** Paths of the binaries the control plane and the tests use; fails saying how to get them. */
export function locateBinaries(
  binDir: string = defaultBinDir(),
): Record<ComponentName | 'kubectl' | 'helm', string> {
  const inCache = (name: string) => join(binDir, name);
  const found = {
    etcd: findOnPath('etcd') ?? 'etcd (Debian package etcd-server)',
    'kube-apiserver': inCache('kube-apiserver'),
    'kube-controller-manager': inCache('kube-controller-manager'),
    kubectl: inCache('kubectl'),
    helm: inCache('helm'),
  };
  const missing = Object.values(found).filter((p) => !executable(p));
  if (missing.length > 0) {
    throw new Error(`control plane binaries missing: ${missing.join(', ')}; ${SETUP_HINT}`);
  }
  return found;
}

/** A loopback port nothing listens on right now. */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const setpriv = findOnPath('setpriv');

/** A started process whose last stderr/stdout lines are kept for error messages. */
class Component {
  readonly child: ChildProcess;
  private readonly tail: string[] = [];
  private exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<void>;

  constructor(
    readonly name: ComponentName,
    bin: string,
    args: string[],
    logPath: string,
  ) {
    // Appends: a restarted component keeps its earlier output in the same log.
    const log = createWriteStream(logPath, { flags: 'a' });
    // setpriv (util-linux, essential on Debian) makes the kernel kill the component when the
    // process that started it dies, even by SIGKILL, where no exit handler runs.
    const [command, commandArgs] = setpriv
      ? [setpriv, ['--pdeathsig', 'KILL', '--', bin, ...args]]
      : [bin, args];
    this.child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      });
      this.child.once('error', (err) => {
        this.exit = { code: null, signal: null };
        this.remember(`spawn error: ${err.message}`);
        resolve();
      });
    });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      stream?.on('data', (chunk: Buffer) => {
        log.write(chunk);
        for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) this.remember(line);
      });
    }
    this.exited.then(() => log.end()).catch(() => undefined);
  }

  private remember(line: string): void {
    this.tail.push(line.length > 400 ? `${line.slice(0, 400)}…` : line);
    if (this.tail.length > 25) this.tail.shift();
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** An error that says which binary, what happened, and what it last printed. */
  error(what: string): Error {
    const status = this.exit ? ` (exited: code ${this.exit.code}, signal ${this.exit.signal})` : '';
    return new Error(
      `${this.name}: ${what}${status}; last output lines:\n  ${this.tail.join('\n  ')}`,
    );
  }

  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

interface Probe {
  url: string;
  ca?: Buffer;
  token?: string;
  /** Loopback only: the controller manager's self-signed serving cert is not worth a CA. */
  insecure?: boolean;
}

async function probe({
  url,
  ca,
  token,
  insecure,
}: Probe): Promise<{ status: number; body: string }> {
  const target = new URL(url);
  const get = target.protocol === 'https:' ? https.get : http.get;
  return new Promise((resolve, reject) => {
    const req = get(
      target,
      {
        ca,
        rejectUnauthorized: !insecure,
        headers: token ? { Authorization: `Bearer ${token}` } : {},
        timeout: 5_000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout on ${url}`)));
    req.on('error', reject);
  });
}

/** Polls until `ready` holds; fails early when the component exits, with its output. */
async function waitUntil(
  component: Component,
  what: string,
  timeoutMs: number,
  ready: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!component.running) throw component.error(`exited before ${what}`);
    try {
      if (await ready()) return;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(200);
  }
  throw component.error(
    `not ${what} after ${timeoutMs} ms${last ? ` (last probe error: ${last})` : ''}`,
  );
}

function kubeconfig(server: string, caPem: Buffer, user: string, token: string): string {
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'sandboxpool-test',
        cluster: { server, 'certificate-authority-data': caPem.toString('base64') },
      },
    ],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: user, context: { cluster: 'sandboxpool-test', user } }],
    'current-context': user,
  });
}

/**
 * The environment for kubectl and helm against this control plane: their caches and helm's
 * config live in its scratch directory, not in the user's home.
 */
export function toolEnv(info: ControlPlaneInfo): NodeJS.ProcessEnv {
  const scratch = join(info.workDir, 'tools');
  return {
    ...process.env,
    KUBECACHEDIR: join(scratch, 'kube-cache'),
    HELM_CACHE_HOME: join(scratch, 'helm-cache'),
    HELM_CONFIG_HOME: join(scratch, 'helm-config'),
    HELM_DATA_HOME: join(scratch, 'helm-data'),
  };
}

/**
 * Writes a kubeconfig that authenticates as ServiceAccount `namespace/name` with a short-lived
 * token minted through the TokenRequest API (`kubectl create token`). Usable from any process
 * that has the ControlPlaneInfo, e.g. a vitest worker.
 */
export async function kubeconfigForServiceAccount(
  info: ControlPlaneInfo,
  namespace: string,
  name: string,
): Promise<string> {
  const kubectl = join(info.binDir, 'kubectl');
  let token: string;
  try {
    const args = ['create', 'token', name, '--namespace', namespace, '--duration', '1h'];
    const { stdout } = await execFileAsync(
      kubectl,
      ['--kubeconfig', info.kubeconfigPath, ...args],
      {
        timeout: 30_000,
        env: toolEnv(info),
      },
    );
    token = stdout.trim();
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    const detail = stderr.trim() || String(err);
    throw new Error(`kubectl create token ${namespace}/${name} failed: ${detail}`, { cause: err });
  }
  const dir = join(info.workDir, 'serviceaccounts');
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${namespace}.${name}.${randomBytes(4).toString('hex')}.kubeconfig`);
  const user = `system:serviceaccount:${namespace}:${name}`;
  const ca = await readFile(info.caPath);
  await writeFile(path, kubeconfig(info.server, ca, user, token), { mode: 0o600 });
  return path;
}

// Best effort for crashes and signals: whatever is still running when this process goes away is
// killed, and scratch directories removed, synchronously.
const live = new Set<{ components: Component[]; workDir: string }>();
function killAllSync(): void {
  for (const entry of live) {
    for (const c of entry.components) if (c.running) c.child.kill('SIGKILL');
    rmSync(entry.workDir, { recursive: true, force: true });
  }
  live.clear();
}
let handlersInstalled = false;
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killAllSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      killAllSync();
      process.removeListener(signal, onSignal);
      // Re-raise if nobody else handles it, so the process still ends as the signal asks.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

const WORKDIR_PREFIX = 'sandboxpool-k8s-';

/**
 * Removes scratch directories left by control planes whose process was killed before it could
 * clean up (their components died with it: see setpriv above). Others' live ones are kept.
 */
async function sweepAbandonedWorkDirs(): Promise<void> {
  for (const name of await readdir(tmpdir())) {
    if (!name.startsWith(WORKDIR_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    const owner = Number(await readFile(join(dir, 'owner.pid'), 'utf8').catch(() => 'NaN'));
    if (!Number.isInteger(owner) || owner <= 0) continue; // not one of ours, or still being set up
    try {
      process.kill(owner, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH')
        await rm(dir, { recursive: true, force: true });
    }
  }
}

/** Starts etcd, kube-apiserver and kube-controller-manager; resolves once all are ready. */
export async function startControlPlane(options: StartOptions = {}): Promise<ControlPlane> {
  const binDir = options.binDir ?? defaultBinDir();
  const bins = locateBinaries(binDir);
  const timeoutMs = options.readyTimeoutMs ?? 60_000;

  await sweepAbandonedWorkDirs();
  const workDir = await mkdtemp(join(tmpdir(), WORKDIR_PREFIX));
  await writeFile(join(workDir, 'owner.pid'), String(process.pid));
  const components: Component[] = [];
  const entry = { components, workDir };
  live.add(entry);
  installExitHandlers();

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      // Reverse order: controllers first, storage last.
      for (const c of [...components].reverse()) await c.stop();
      await rm(workDir, { recursive: true, force: true });
      live.delete(entry);
    })());

  // Each component is started by a function kept for restart(): same flags, same readiness check.
  const relaunch = new Map<ComponentName, () => Promise<void>>();
  const launch = async (
    name: ComponentName,
    args: string[],
    ready: (c: Component) => Promise<void>,
  ): Promise<Component> => {
    const start = async () => {
      const c = new Component(name, bins[name], args, join(workDir, `${name}.log`));
      const at = components.findIndex((x) => x.name === name);
      if (at >= 0) components[at] = c;
      else components.push(c);
      await ready(c);
      return c;
    };
    relaunch.set(name, async () => void (await start()));
    return start();
  };

  try {
    const [etcdClient, etcdPeer, apiPort, kcmPort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    const pki = join(workDir, 'pki');
    await mkdir(pki, { mode: 0o700 });

    // Service-account tokens are signed with this key and verified with its public half.
    const sa = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    });
    const saKey = join(pki, 'sa.key');
    const saPub = join(pki, 'sa.pub');
    await writeFile(saKey, sa.privateKey, { mode: 0o600 });
    await writeFile(saPub, sa.publicKey);

    // Static tokens: the tests' admin, and the controller manager's own identity (its bootstrap
    // RBAC grants what it needs, as in a real cluster).
    const adminToken = randomBytes(24).toString('hex');
    const kcmToken = randomBytes(24).toString('hex');
    const tokenFile = join(pki, 'tokens.csv');
    await writeFile(
      tokenFile,
      `${adminToken},admin,admin,"system:masters"\n${kcmToken},system:kube-controller-manager,kcm\n`,
      { mode: 0o600 },
    );

    // 1. etcd: its own data dir, client and peer on loopback.
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;
    await launch(
      'etcd',
      [
        '--name=test',
        `--data-dir=${join(workDir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=test=${peerUrl}`,
        '--logger=zap',
        '--log-outputs=stderr',
      ],
      (etcd) =>
        waitUntil(etcd, 'healthy', timeoutMs, async () => {
          const { status, body } = await probe({ url: `${etcdUrl}/health` });
          return status === 200 && body.includes('"health":"true"');
        }),
    );

    // 2. kube-apiserver: self-signed serving cert in --cert-dir, RBAC, PodSecurity admission.
    const certDir = join(workDir, 'apiserver-certs');
    const server = `https://127.0.0.1:${apiPort}`;
    const caPath = join(certDir, 'apiserver.crt');
    await launch(
      'kube-apiserver',
      [
        `--etcd-servers=${etcdUrl}`,
        `--secure-port=${apiPort}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--cert-dir=${certDir}`,
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${saPub}`,
        `--service-account-signing-key-file=${saKey}`,
        '--authorization-mode=RBAC',
        `--token-auth-file=${tokenFile}`,
        // Only configuration: nothing routes to this range, there is no kube-proxy.
        '--service-cluster-ip-range=10.96.0.0/16',
        '--enable-admission-plugins=PodSecurity',
      ],
      // The certificate is written before the server listens; read it again on each probe so
      // a half-written file is never the one kept.
      (apiserver) =>
        waitUntil(apiserver, 'ready (/readyz)', timeoutMs, async () => {
          if (!existsSync(caPath)) return false;
          const { status } = await probe({
            url: `${server}/readyz`,
            ca: await readFile(caPath),
            token: adminToken,
          });
          return status === 200;
        }),
    );
    const caPem = await readFile(caPath);

    const kubeconfigPath = join(workDir, 'admin.kubeconfig');
    await writeFile(kubeconfigPath, kubeconfig(server, caPem, 'admin', adminToken), {
      mode: 0o600,
    });
    const kcmKubeconfig = join(pki, 'kube-controller-manager.kubeconfig');
    const kcmUser = 'system:kube-controller-manager';
    await writeFile(kcmKubeconfig, kubeconfig(server, caPem, kcmUser, kcmToken), { mode: 0o600 });

    // 3. kube-controller-manager: Deployments get ReplicaSets and Pods, namespaces get their
    // default ServiceAccount and kube-root-ca.crt, each controller under its own account.
    const kcm = await launch(
      'kube-controller-manager',
      [
        `--kubeconfig=${kcmKubeconfig}`,
        `--authentication-kubeconfig=${kcmKubeconfig}`,
        `--authorization-kubeconfig=${kcmKubeconfig}`,
        `--service-account-private-key-file=${saKey}`,
        `--root-ca-file=${caPath}`,
        '--use-service-account-credentials',
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${kcmPort}`,
        `--cert-dir=${join(workDir, 'kcm-certs')}`,
      ],
      (c) =>
        waitUntil(c, 'healthy (/healthz)', timeoutMs, async () => {
          const { status } = await probe({
            url: `https://127.0.0.1:${kcmPort}/healthz`,
            insecure: true,
          });
          return status === 200;
        }),
    );
    // Controllers are really working once the default namespace has its ServiceAccount.
    await waitUntil(kcm, 'creating ServiceAccount default/default', timeoutMs, async () => {
      const { status } = await probe({
        url: `${server}/api/v1/namespaces/default/serviceaccounts/default`,
        ca: caPem,
        token: adminToken,
      });
      return status === 200;
    });

    const info: ControlPlaneInfo = { server, kubeconfigPath, caPath, binDir, workDir };
    const pid = (c: Component) => c.child.pid ?? -1;
    const current = (name: ComponentName) => components.find((c) => c.name === name);
    return {
      ...info,
      get pids() {
        return {
          etcd: pid(current('etcd')!),
          'kube-apiserver': pid(current('kube-apiserver')!),
          'kube-controller-manager': pid(current('kube-controller-manager')!),
        };
      },
      kubeconfigForServiceAccount: (namespace, name) =>
        kubeconfigForServiceAccount(info, namespace, name),
      restart: async (name) => {
        if (stopped) throw new Error(`restart(${name}): the control plane is stopped`);
        await current(name)?.stop();
        await relaunch.get(name)!();
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
