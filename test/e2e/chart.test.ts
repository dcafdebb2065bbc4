// The Helm chart, manifests/install.yaml and the operator image, on a private control plane
// (these tests install cluster-wide objects and run operators, which must not meet the shared
// one's): helm lint, values.schema.json, validation by the pinned API server, helm install /
// upgrade / uninstall, kubectl apply of install.yaml, and the operator image running under the
// chart's ServiceAccount and RBAC.
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { V1Deployment, V1Pod, V1ReplicaSet } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../../operator/paths.js';
import { BASE_IMAGE, docker, ensureBaseImage, localCaCerts } from '../container/docker.js';
import {
  kubeconfigForServiceAccount,
  startControlPlane,
  toolEnv,
  type ControlPlane,
} from '../k8s/controlplane.js';
import { documentedMetrics, undocumentedDifferences } from '../support/metrics-docs.js';
import { Api, INSTALL_FILE, createNamespace, kubectl, waitFor } from '../support/operator.js';
import { freePort } from '../support/ports.js';

const execFileAsync = promisify(execFile);
const CHART = path.join(REPO_ROOT, 'charts', 'sandboxpool');
const SBP = 'sandboxpool.dev/v1alpha1';
/** What a cluster with the Prometheus Operator serves (helm template cannot ask a cluster). */
const WITH_MONITORING = [
  '--api-versions',
  'monitoring.coreos.com/v1/ServiceMonitor',
  '--api-versions',
  'monitoring.coreos.com/v1/PrometheusRule',
];
const OPERATOR_IMAGE = 'sandboxpool/operator:test';

let cp: ControlPlane;
let api: Api;

beforeAll(async () => {
  cp = await startControlPlane();
  api = new Api(cp.kubeconfigPath);
  // The Prometheus Operator's own CRDs (test/k8s/setup.sh takes them from its Go module).
  await kubectl(cp, ['apply', '--server-side', '-f', path.join(cp.binDir, 'monitoring-crds')]);
  await kubectl(cp, [
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/servicemonitors.monitoring.coreos.com',
    'crd/prometheusrules.monitoring.coreos.com',
  ]);
}, 180_000);

afterAll(async () => {
  await cp?.stop();
});

/** helm against the private control plane; throws with its stderr. */
async function helm(args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(
      path.join(cp.binDir, 'helm'),
      ['--kubeconfig', cp.kubeconfigPath, ...args],
      { env: toolEnv(cp), timeout: 120_000, maxBuffer: 32 * 1024 * 1024 },
    );
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string };
    throw new Error(`helm ${args.join(' ')}: ${(e.stderr || e.stdout || String(err)).trim()}`, {
      cause: err,
    });
  }
}

const namespace = (prefix: string) => createNamespace(cp, prefix);

const kinds = (manifest: string) =>
  parseAllDocuments(manifest)
    .map((d) => d.toJS() as { kind?: string } | null)
    .filter((d): d is { kind: string } => typeof d?.kind === 'string')
    .map((d) => d.kind)
    .sort();

const deployment = (ns: string, name: string) =>
  api.get<V1Deployment>('apps/v1', 'Deployment', ns, name);

/** The pods the ReplicaSets of a Deployment created: PodSecurity admitted them (no kubelet runs them). */
function podsCreated(ns: string, selector: string, count: number): Promise<V1Pod[]> {
  return waitFor(
    `${count} pods (${selector}) in ${ns}`,
    async () => {
      const pods = await api.list<V1Pod>('v1', 'Pod', ns, selector);
      return pods.length >= count ? pods : undefined;
    },
    60_000,
    500,
  );
}

describe('the chart', () => {
  it('passes helm lint --strict, with its defaults and with every optional part on', async () => {
    for (const extra of [
      [],
      ['--set', 'sandboxPool.enabled=true', '--set', 'watchNamespace=dify'],
    ]) {
      const out = await helm(['lint', '--strict', CHART, ...extra]);
      expect(out).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
      expect(out).not.toMatch(/\[(WARNING|ERROR)\]/);
    }
  });

  it('describes every value in values.schema.json, and refuses unknown or wrong ones', async () => {
    type Node = { description?: string; properties?: Record<string, Node> };
    const schema = JSON.parse(
      await readFile(path.join(CHART, 'values.schema.json'), 'utf8'),
    ) as Node;
    const values = parse(await readFile(path.join(CHART, 'values.yaml'), 'utf8')) as object;
    const missing: string[] = [];
    const walk = (value: unknown, node: Node | undefined, at: string) => {
      if (node === undefined || !node.description?.trim()) missing.push(at);
      // Free-form maps (labels, resources, affinity) have no properties to walk.
      if (node?.properties === undefined || value === null || typeof value !== 'object') return;
      for (const [k, v] of Object.entries(value)) walk(v, node.properties[k], `${at}.${k}`);
    };
    for (const [k, v] of Object.entries(values)) walk(v, schema.properties?.[k], k);
    expect(missing).toEqual([]);

    const refusals: [string[], RegExp][] = [
      [['--set', 'replicas=3'], /additional properties 'replicas' not allowed/],
      [['--set', 'logLevel=loud'], /logLevel/],
      [['--set', 'replicaCount=0'], /replicaCount/],
      [['--set-string', 'workers=two'], /workers/],
      [['--set', 'sandboxPool.name=Not_A_Name'], /sandboxPool\/name/],
      [['--set', 'metrics.serviceMonitor.interval=often'], /interval/],
      [
        ['--set', 'leaderElection.retryPeriodSeconds=9'],
        /retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds/,
      ],
      // The alerts without the labels the ServiceMonitors add: NoLeader would fire for ever.
      [
        [...WITH_MONITORING, '--set', 'metrics.serviceMonitor.enabled=false'],
        /metrics\.prometheusRule\.enabled needs metrics\.serviceMonitor\.enabled/,
      ],
    ];
    for (const [args, message] of refusals)
      await expect(helm(['template', 'x', CHART, ...args]), args.join(' ')).rejects.toThrow(
        message,
      );
  });

  it('has the package version as its version and appVersion', async () => {
    const chart = parse(await readFile(path.join(CHART, 'Chart.yaml'), 'utf8')) as {
      version: string;
      appVersion: string;
    };
    const pkg = JSON.parse(await readFile(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
      version: string;
    };
    expect(chart.version).toBe(pkg.version);
    expect(chart.appVersion).toBe(pkg.version);
  });

  it('renders only what the pinned API server accepts (server-side dry run, strict fields)', async () => {
    const ns = await namespace('sbp-validate');
    await kubectl(cp, ['apply', '--server-side', '-f', path.join(CHART, 'crds')]);
    await kubectl(cp, [
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/sandboxpools.sandboxpool.dev',
    ]);
    const everything = await helm([
      'template',
      'sbp',
      CHART,
      '--namespace',
      ns,
      ...WITH_MONITORING,
      '--set',
      'sandboxPool.enabled=true',
      '--set',
      'sandboxPool.spec.replicas=3',
      // Credentials for a private registry: the operator's (and its installer's), the runners'.
      '--set',
      'imagePullSecrets[0].name=regcred',
      '--set',
      'sandboxPool.spec.podTemplate.imagePullSecrets[0].name=regcred',
      // NodeLocal DNSCache instead of kube-dns.
      '--set',
      'sandboxPool.spec.network.dns.to[0].ipBlock.cidr=169.254.20.10/32',
      // A proxy whose Service maps its port to another on its pods.
      '--set',
      'sandboxPool.spec.network.egressProxy.url=http://10.0.0.1:3128',
      '--set',
      'sandboxPool.spec.network.egressProxy.targetPort=8080',
    ]);
    expect(everything).toMatch(/name: SANDBOXPOOL_IMAGE_PULL_SECRETS\n\s+value: "regcred"/);
    expect(kinds(everything)).toEqual([
      'ClusterRole',
      'ClusterRole',
      'ClusterRoleBinding',
      'ClusterRoleBinding',
      'ConfigMap',
      'Deployment',
      'PodDisruptionBudget',
      'PrometheusRule',
      'Role',
      'RoleBinding',
      'SandboxPool',
      'Service',
      'ServiceAccount',
      'ServiceMonitor',
      'ServiceMonitor',
    ]);
    const namespaced = await helm([
      'template',
      'sbp',
      CHART,
      '--namespace',
      ns,
      '--set',
      `watchNamespace=${ns}`,
    ]);
    expect(kinds(namespaced)).toEqual(
      expect.arrayContaining(['Role', 'Role', 'RoleBinding', 'RoleBinding']),
    );
    // Cluster-wide, only reading nodes (the seccomp installer does not wait for those down).
    expect(kinds(namespaced).filter((k) => k.startsWith('Cluster'))).toEqual([
      'ClusterRole',
      'ClusterRoleBinding',
    ]);
    expect(namespaced).toMatch(
      /kind: ClusterRole\nmetadata:\n {2}name: sbp-sandboxpool-operator-nodes\n/,
    );
    for (const manifest of [everything, namespaced]) {
      const out = await kubectl(
        cp,
        ['apply', '--dry-run=server', '--validate=strict', '-n', ns, '-f', '-'],
        cp.kubeconfigPath,
        manifest,
      );
      expect(out).toMatch(/deployment\.apps\/sbp-sandboxpool-operator (created|configured)/);
    }
    // The example SandboxPools too (the CRD's schema and CEL rules).
    const examples = await kubectl(cp, [
      'apply',
      '--dry-run=server',
      '--validate=strict',
      '-n',
      ns,
      '-f',
      path.join(REPO_ROOT, 'manifests', 'examples'),
    ]);
    expect(examples.trim().split('\n')).toHaveLength(4);
  });

  it('installs, upgrades (a changed value rolls the operator, another does not) and uninstalls', async () => {
    const ns = await namespace('sbp-helm');
    const installed = await helm([
      'install',
      'sbp',
      CHART,
      '--namespace',
      ns,
      '--set',
      'sandboxPool.enabled=true',
    ]);
    // NOTES.txt: how to wire Dify to the pool, and what Prometheus got.
    expect(installed).toContain(`http://dify-sandboxpool.${ns}.svc:8194`);
    expect(installed).toContain('CODE_EXECUTION_API_KEY');
    expect(installed).toContain('secretKeyRef: {name: dify-sandboxpool-api-key, key: api-key}');
    expect(installed).toMatch(
      /ServiceMonitors sbp-sandboxpool-operator and sbp-sandboxpool-runners/,
    );

    const upgrade = (value: string) =>
      helm(['upgrade', 'sbp', CHART, '--namespace', ns, '--reuse-values', '--set', value]);
    const name = 'sbp-sandboxpool-operator';
    const deploy = await waitFor(`Deployment ${name}`, () => deployment(ns, name));
    expect(deploy.spec?.replicas).toBe(2);
    // PodSecurity "restricted" admits the operator's pods (the namespace enforces it).
    const selector = 'app.kubernetes.io/name=sandboxpool-operator,app.kubernetes.io/instance=sbp';
    await podsCreated(ns, selector, 2);
    for (const [apiVersion, kind, objName, objNs] of [
      ['v1', 'ServiceAccount', name, ns],
      ['rbac.authorization.k8s.io/v1', 'ClusterRole', name, ''],
      ['rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', name, ''],
      ['rbac.authorization.k8s.io/v1', 'ClusterRole', `${name}-nodes`, ''],
      ['rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', `${name}-nodes`, ''],
      ['rbac.authorization.k8s.io/v1', 'Role', `${name}-leader`, ns],
      ['v1', 'Service', name, ns],
      ['policy/v1', 'PodDisruptionBudget', name, ns],
      ['monitoring.coreos.com/v1', 'ServiceMonitor', name, ns],
      ['monitoring.coreos.com/v1', 'ServiceMonitor', 'sbp-sandboxpool-runners', ns],
      ['monitoring.coreos.com/v1', 'PrometheusRule', 'sbp-sandboxpool', ns],
      ['v1', 'ConfigMap', 'sbp-sandboxpool-dashboard', ns],
      [SBP, 'SandboxPool', 'dify', ns],
    ] as const)
      expect(await api.get(apiVersion, kind, objNs, objName), `${kind} ${objName}`).toBeDefined();
    const dashboard = await api.get<{ data: Record<string, string> }>(
      'v1',
      'ConfigMap',
      ns,
      'sbp-sandboxpool-dashboard',
    );
    expect(JSON.parse(dashboard!.data['sandboxpool.json']!)).toMatchObject({ uid: 'sandboxpool' });

    // A value the pods see: a new ReplicaSet (revision 2) with it, whose pods are created.
    await upgrade('logLevel=debug');
    const rolled = await waitFor(
      'the operator Deployment at revision 2',
      async () => {
        const d = await deployment(ns, name);
        return d?.metadata?.annotations?.['deployment.kubernetes.io/revision'] === '2'
          ? d
          : undefined;
      },
      60_000,
    );
    const env = rolled.spec?.template.spec?.containers[0]?.env ?? [];
    expect(env).toContainEqual({ name: 'LOG_LEVEL', value: 'debug' });
    const sets = await api.list<V1ReplicaSet>('apps/v1', 'ReplicaSet', ns, selector);
    expect(sets).toHaveLength(2);
    const newest = sets.find(
      (rs) => rs.metadata?.annotations?.['deployment.kubernetes.io/revision'] === '2',
    );
    const hash = newest?.metadata?.labels?.['pod-template-hash'];
    expect(hash).toBeDefined();
    await podsCreated(ns, `${selector},pod-template-hash=${hash}`, 1);

    // A value only the alerts see: the PrometheusRule changes, the operator does not roll.
    await upgrade('metrics.prometheusRule.p99LatencySeconds=30');
    const rule = await api.get<{ spec: unknown }>(
      'monitoring.coreos.com/v1',
      'PrometheusRule',
      ns,
      'sbp-sandboxpool',
    );
    expect(JSON.stringify(rule?.spec)).toContain('> 30');
    expect(
      (await deployment(ns, name))?.metadata?.annotations?.['deployment.kubernetes.io/revision'],
    ).toBe('2');

    await helm(['uninstall', 'sbp', '--namespace', ns, '--wait', '--timeout', '60s']);
    expect(await deployment(ns, name)).toBeUndefined();
    expect(await api.get('rbac.authorization.k8s.io/v1', 'ClusterRole', '', name)).toBeUndefined();
    expect(await api.get(SBP, 'SandboxPool', ns, 'dify')).toBeUndefined();
    // Helm never deletes a CRD (that would delete every SandboxPool in the cluster).
    expect(
      await api.get(
        'apiextensions.k8s.io/v1',
        'CustomResourceDefinition',
        '',
        'sandboxpools.sandboxpool.dev',
      ),
    ).toBeDefined();
  });
});

describe('manifests/install.yaml', () => {
  it('is the chart rendered with its defaults (npm run manifests)', async () => {
    const { stdout, stderr } = await execFileAsync(
      'bash',
      [path.join(REPO_ROOT, 'manifests', 'render.sh'), '--check'],
      { env: { ...toolEnv(cp), HELM: path.join(cp.binDir, 'helm') } },
    ).catch((err: { stdout?: string; stderr?: string }) => {
      throw new Error(`manifests/render.sh --check: ${err.stderr ?? ''}${err.stdout ?? ''}`);
    });
    expect(`${stdout}${stderr}`).toBe('');
  });

  it('installs the operator with kubectl apply -f', async () => {
    const out = await kubectl(cp, ['apply', '-f', INSTALL_FILE]);
    expect(out).toMatch(/namespace\/sandboxpool-system created/);
    expect(out).toMatch(
      /customresourcedefinition\.apiextensions\.k8s\.io\/sandboxpools\.sandboxpool\.dev (created|configured|unchanged)/,
    );
    expect(out).toMatch(/clusterrole\.rbac\.authorization\.k8s\.io\/sandboxpool-operator created/);
    expect(out).toMatch(/deployment\.apps\/sandboxpool-operator created/);
    const deploy = await waitFor('Deployment sandboxpool-operator', () =>
      deployment('sandboxpool-system', 'sandboxpool-operator'),
    );
    expect(deploy.spec?.replicas).toBe(2);
    expect(deploy.spec?.template.spec?.containers[0]?.image).toBe(
      `sandboxpool/operator:${JSON.parse(await readFile(path.join(REPO_ROOT, 'package.json'), 'utf8')).version as string}`,
    );
    await podsCreated(
      'sandboxpool-system',
      'app.kubernetes.io/name=sandboxpool-operator,app.kubernetes.io/instance=sandboxpool',
      2,
    );
    // What it declares is what the cluster has: kubectl diff finds nothing (exit 0).
    await kubectl(cp, ['diff', '-f', INSTALL_FILE]);
  });
});

describe('the operator image', () => {
  const containers: string[] = [];
  let scratch: string;

  beforeAll(async () => {
    await ensureBaseImage();
    await docker(
      [
        'build',
        '--quiet',
        '-f',
        path.join(REPO_ROOT, 'Dockerfile.operator'),
        '--build-arg',
        `BASE_IMAGE=${BASE_IMAGE}`,
        '--build-arg',
        `EXTRA_CA_CERTS=${localCaCerts()}`,
        '-t',
        OPERATOR_IMAGE,
        REPO_ROOT,
      ],
      900_000,
    );
    scratch = await mkdtemp(path.join(tmpdir(), 'sbp-operator-image-'));
  }, 1_000_000);

  afterAll(async () => {
    if (containers.length > 0) await docker(['rm', '-f', ...containers]).catch(() => undefined);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('runs two replicas under the chart’s ServiceAccount: one leads, reconciles, and both serve the documented metrics', async () => {
    const ns = await namespace('sbp-image');
    const release = 'img';
    const name = `${release}-sandboxpool-operator`;
    // Scoped to its namespace (a Role, not a ClusterRole), with the chart's SandboxPool.
    await helm([
      'install',
      release,
      CHART,
      '--namespace',
      ns,
      '--set',
      `watchNamespace=${ns}`,
      '--set',
      'sandboxPool.enabled=true',
    ]);
    const deploy = await waitFor(`Deployment ${name}`, () => deployment(ns, name));
    // The container's environment as the chart sets it (the downward API filled in by hand).
    const env = (deploy.spec?.template.spec?.containers[0]?.env ?? []).flatMap((e) =>
      e.value === undefined ? [] : [`${e.name}=${e.value}`],
    );
    expect(env).toContain(`SANDBOXPOOL_WATCH_NAMESPACE=${ns}`);
    expect(env).toContain(`SANDBOXPOOL_LEASE_NAME=${name}`);
    // The ServiceAccount's token, readable by the image's user (65532).
    const kubeconfig = path.join(scratch, 'kubeconfig');
    await copyFile(await kubeconfigForServiceAccount(cp, ns, name), kubeconfig);
    await chmod(kubeconfig, 0o644);

    const replicas: { name: string; port: number }[] = [];
    for (const replica of ['a', 'b']) {
      const port = await freePort();
      const container = `sbp-operator-${replica}-${process.pid}`;
      await docker([
        'run',
        '-d',
        '--name',
        container,
        // Host network: the private API server listens on loopback.
        '--network',
        'host',
        '--read-only',
        '--cap-drop',
        'ALL',
        '--security-opt',
        'no-new-privileges',
        '-v',
        `${kubeconfig}:/var/run/sandboxpool/kubeconfig:ro`,
        '-e',
        'KUBECONFIG=/var/run/sandboxpool/kubeconfig',
        '-e',
        `POD_NAME=${container}`,
        '-e',
        `POD_NAMESPACE=${ns}`,
        ...env.flatMap((e) => ['-e', e]),
        // Last: a free loopback port instead of the chart's :8080.
        '-e',
        `SANDBOXPOOL_OPERATOR_LISTEN=127.0.0.1:${port}`,
        OPERATOR_IMAGE,
      ]);
      containers.push(container);
      replicas.push({ name: container, port });
    }
    const logs = async () =>
      (
        await Promise.all(
          replicas.map(
            async (r) => `[${r.name}]\n${await docker(['logs', '--tail', '20', r.name])}`,
          ),
        )
      ).join('\n');

    try {
      const holder = () =>
        api
          .get<{ spec?: { holderIdentity?: string } }>('coordination.k8s.io/v1', 'Lease', ns, name)
          .then((l) => l?.spec?.holderIdentity || undefined);
      const leader = await waitFor('a leader', holder, 60_000);
      expect(replicas.map((r) => r.name)).toContain(leader);
      // The leader made the pool's children and reported on it.
      await waitFor('the pool Deployment', () => deployment(ns, 'dify-sandboxpool'), 60_000);
      await waitFor('the pool status', async () => {
        const pool = await api.get<{ status?: { observedGeneration?: number } }>(
          SBP,
          'SandboxPool',
          ns,
          'dify',
        );
        return pool?.status?.observedGeneration;
      });

      const documented = documentedMetrics('operator-metrics');
      expect(documented.length).toBeGreaterThanOrEqual(8);
      for (const r of replicas) {
        const base = `http://127.0.0.1:${r.port}`;
        await waitFor(`${r.name} ready`, async () =>
          (await fetch(`${base}/readyz`)).ok ? true : undefined,
        );
        const text = await (await fetch(`${base}/metrics`)).text();
        expect(undocumentedDifferences(text, documented), r.name).toEqual([]);
        expect(text).toMatch(
          new RegExp(`^sandboxpool_operator_leader ${r.name === leader ? 1 : 0}$`, 'm'),
        );
        // Every replica reports the pool (from its watch cache), leader or not.
        expect(text).toMatch(
          new RegExp(
            `^sandboxpool_operator_pool_ready\\{pool_namespace="${ns}",pool="dify"\\} 0$`,
            'm',
          ),
        );
        if (r.name === leader)
          expect(text).toMatch(/^sandboxpool_operator_reconciles_total\{result="success"\} [1-9]/m);
      }

      // SIGTERM (docker stop): the leader releases its Lease and the other takes over at once.
      const started = Date.now();
      await docker(['stop', '--time', '20', leader]);
      const next = await waitFor(
        'the other replica leading',
        async () => {
          const h = await holder();
          return h !== undefined && h !== leader ? h : undefined;
        },
        30_000,
        200,
      );
      expect(replicas.map((r) => r.name)).toContain(next);
      expect(Date.now() - started).toBeLessThan(15_000);
      const state = JSON.parse(await docker(['inspect', '-f', '{{json .State}}', leader])) as {
        ExitCode: number;
      };
      expect(state.ExitCode).toBe(0);
    } catch (err) {
      console.log(await logs());
      throw err;
    }
  });
});
