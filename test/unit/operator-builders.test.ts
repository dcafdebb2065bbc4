// The pure builders: SandboxPool spec in, Kubernetes object out.
import type {
  V1Deployment,
  V1DeploymentCondition,
  V1Pod,
  V2HorizontalPodAutoscaler,
} from '@kubernetes/client-node';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMITTED_PROFILE } from '../../native/tools/seccomp-profile.js';
import { loadOperatorConfig } from '../../operator/config.js';
import { REPO_ROOT } from '../../operator/paths.js';
import { CONFIG_HASH_ANNOTATION, type BuildContext } from '../../operator/builders/common.js';
import { buildConfigMap, renderRunnerConfig } from '../../operator/builders/configmap.js';
import {
  buildDeployment,
  memoryShortfall,
  quantityValue,
} from '../../operator/builders/deployment.js';
import { buildHorizontalPodAutoscaler } from '../../operator/builders/hpa.js';
import { buildNetworkPolicy } from '../../operator/builders/networkpolicy.js';
import { buildPodDisruptionBudget } from '../../operator/builders/pdb.js';
import {
  buildInstallerDaemonSet,
  installerRolledOut,
  isNodeReady,
  parseSeccompProfile,
  PROFILES_HASH_ANNOTATION,
  profilesHash,
  renderPodProfile,
  slimInstallerPod,
  slimNode,
} from '../../operator/builders/seccomp.js';
import { buildApiKeySecret, generateApiKey } from '../../operator/builders/secret.js';
import { buildService } from '../../operator/builders/service.js';
import { buildServiceAccount } from '../../operator/builders/serviceaccount.js';
import {
  autoscalerRecheckMs,
  buildStatus,
  degradedRecheckMs,
} from '../../operator/builders/status.js';
import type { SandboxPool } from '../../operator/api/v1alpha1.js';
import { poolWith } from '../support/pools.js';

const ctx: BuildContext = {
  image: 'sandboxpool/runner:test',
  apiKey: { name: 'dify-sandboxpool-api-key', key: 'api-key' },
  apiKeyVersion: 'uid/1',
  seccomp: { type: 'RuntimeDefault' },
};

describe('children share', () => {
  it('names, labels and a controller owner reference to the pool', () => {
    const pool = poolWith();
    for (const obj of [
      buildServiceAccount(pool),
      buildConfigMap(pool),
      buildService(pool),
      buildDeployment(pool, ctx),
      buildNetworkPolicy(pool),
    ]) {
      expect(obj.metadata?.namespace).toBe('dify');
      expect(obj.metadata?.name).toMatch(/^dify-sandboxpool/);
      expect(obj.metadata?.labels).toMatchObject({
        'app.kubernetes.io/managed-by': 'sandboxpool-operator',
        'app.kubernetes.io/instance': 'dify',
        'sandboxpool.dev/pool': 'dify',
      });
      expect(obj.metadata?.ownerReferences).toEqual([
        {
          apiVersion: 'sandboxpool.dev/v1alpha1',
          kind: 'SandboxPool',
          name: 'dify',
          uid: pool.metadata.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
    }
  });
});

describe('ServiceAccount and Secret', () => {
  it('mount no token', () => {
    expect(buildServiceAccount(poolWith()).automountServiceAccountToken).toBe(false);
  });

  it('generate a 32-byte random key, into an immutable Secret', () => {
    const a = generateApiKey();
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(generateApiKey()).not.toBe(a);
    const secret = buildApiKeySecret(poolWith(), a);
    expect(secret.immutable).toBe(true);
    expect(secret.stringData).toEqual({ 'api-key': a });
  });
});

describe('Deployment', () => {
  const deployment = (spec = {}, c: Partial<BuildContext> = {}) =>
    buildDeployment(poolWith(spec), { ...ctx, ...c });
  const podSpec = (spec = {}, c: Partial<BuildContext> = {}) =>
    deployment(spec, c).spec!.template.spec!;

  it('runs restricted pods: non-root, no capabilities, read-only root, seccomp, no token', () => {
    const pod = podSpec();
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 10001,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.serviceAccountName).toBe('dify-sandboxpool');
    const c = pod.containers[0]!;
    expect(c.securityContext).toEqual({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    // The work directory lives on a writable emptyDir (the root filesystem is read-only).
    expect(c.volumeMounts).toContainEqual({ name: 'scratch', mountPath: '/tmp' });
    expect(pod.volumes).toContainEqual({ name: 'scratch', emptyDir: { sizeLimit: '1Gi' } });
    expect(podSpec({ workDir: { medium: 'Memory', sizeLimit: '256Mi' } }).volumes).toContainEqual({
      name: 'scratch',
      emptyDir: { medium: 'Memory', sizeLimit: '256Mi' },
    });
  });

  it('uses the Localhost profile it is given', () => {
    const pod = podSpec(
      {},
      { seccomp: { type: 'Localhost', localhostProfile: 'sandboxpool/x.json' } },
    );
    expect(pod.securityContext?.seccompProfile).toEqual({
      type: 'Localhost',
      localhostProfile: 'sandboxpool/x.json',
    });
  });

  it('probes /healthz and /readyz, sets resources, spreads, and never lowers capacity on rollout', () => {
    const d = deployment();
    const c = d.spec!.template.spec!.containers[0]!;
    expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(c.startupProbe?.httpGet?.path).toBe('/healthz');
    expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(c.resources).toEqual({
      requests: { cpu: '500m', memory: '512Mi' },
      limits: { memory: '1536Mi' },
    });
    expect(c.image).toBe('sandboxpool/runner:test');
    expect(c.env).toContainEqual({
      name: 'API_KEY',
      valueFrom: { secretKeyRef: { name: 'dify-sandboxpool-api-key', key: 'api-key' } },
    });
    expect(d.spec!.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' },
    });
    expect(d.spec!.template.spec!.topologySpreadConstraints!.map((t) => t.topologyKey)).toEqual([
      'kubernetes.io/hostname',
      'topology.kubernetes.io/zone',
    ]);
    expect(d.spec!.replicas).toBe(2);
  });

  it('rolls the pods when the runner configuration changes, not otherwise', () => {
    const hash = (spec: object) =>
      deployment(spec).spec!.template.metadata!.annotations![CONFIG_HASH_ANNOTATION];
    expect(hash({})).toMatch(/^[0-9a-f]{16}$/);
    expect(hash({ execution: { timeoutSeconds: 30 } })).not.toBe(hash({}));
    expect(hash({ network: { enabled: false } })).not.toBe(hash({}));
    expect(hash({ replicas: 5 })).toBe(hash({}));
  });

  it('leaves replicas to the autoscaler when autoscaling is set', () => {
    expect(deployment({ autoscaling: { maxReplicas: 5 } }).spec!.replicas).toBeUndefined();
  });

  it('passes the pod template settings through', () => {
    const pod = podSpec({
      podTemplate: {
        nodeSelector: { pool: 'sandbox' },
        tolerations: [{ key: 'sandbox', operator: 'Exists', effect: 'NoSchedule' }],
        priorityClassName: 'high',
        runtimeClassName: 'gvisor',
        imagePullSecrets: [{ name: 'regcred' }],
        labels: { team: 'ai' },
      },
    });
    expect(pod).toMatchObject({
      nodeSelector: { pool: 'sandbox' },
      tolerations: [{ key: 'sandbox', operator: 'Exists', effect: 'NoSchedule' }],
      priorityClassName: 'high',
      runtimeClassName: 'gvisor',
      imagePullSecrets: [{ name: 'regcred' }],
    });
    expect(podSpec({}).imagePullSecrets).toBeUndefined();
  });
});

describe('memory', () => {
  it('reads resource quantities as the API server writes them', () => {
    expect(
      ['1536Mi', '1.5Gi', '2G', '500m', '1e3', '.5Ki', 128].map((q) => quantityValue(q)),
    ).toEqual([1536 * 2 ** 20, 1.5 * 2 ** 30, 2e9, 0.5, 1000, 512, 128]);
    expect(quantityValue('lots')).toBeNaN();
  });

  it('warns when the runs may take more than the pod may hold', () => {
    expect(memoryShortfall(poolWith())).toBeUndefined(); // 4 × 256 MiB + 256 MiB < 1536 Mi
    expect(memoryShortfall(poolWith({ execution: { maxWorkers: 16 } }))).toBe(
      'resources.limits.memory (1536Mi) is below what the runs may take: execution.maxWorkers × execution.memoryMiB (16 × 256 MiB) + about 256 MiB for the runner = 4352 MiB; at the limit the whole container is killed, every run in it',
    );
    // A work directory in memory counts too.
    expect(memoryShortfall(poolWith({ workDir: { medium: 'Memory' } }))).toMatch(
      /workDir.sizeLimit \(medium Memory\) = 2304 MiB/,
    );
    expect(
      memoryShortfall(poolWith({ resources: { requests: { memory: '512Mi' } } })),
    ).toBeUndefined(); // no limit: nothing to overrun
  });
});

describe('Service', () => {
  it('is a ClusterIP with the http and metrics ports', () => {
    const s = buildService(poolWith());
    expect(s.spec?.type).toBe('ClusterIP');
    expect(s.spec?.ports).toEqual([
      { name: 'http', port: 8194, targetPort: 'http', protocol: 'TCP' },
      { name: 'metrics', port: 9464, targetPort: 'metrics', protocol: 'TCP' },
    ]);
  });
});

describe('NetworkPolicy', () => {
  it('admits allowedClients on the API port and anyone on the metrics port', () => {
    const np = buildNetworkPolicy(poolWith());
    expect(np.spec?.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(np.spec?.ingress).toEqual([
      { from: [{ podSelector: {} }], ports: [{ protocol: 'TCP', port: 8194 }] },
      { ports: [{ protocol: 'TCP', port: 9464 }] },
    ]);
  });

  it('admits nobody at all when both client lists are empty', () => {
    const np = buildNetworkPolicy(
      poolWith({ network: { allowedClients: [], metricsClients: [] } }),
    );
    expect(np.spec?.policyTypes).toContain('Ingress');
    expect(np.spec?.ingress).toBeUndefined();
  });

  it('admits nobody on the API port for an empty allowedClients, and metricsClients when set', () => {
    const np = buildNetworkPolicy(
      poolWith({
        network: {
          allowedClients: [],
          metricsClients: [{ namespaceSelector: { matchLabels: { name: 'monitoring' } } }],
        },
      }),
    );
    expect(np.spec?.ingress).toEqual([
      {
        from: [{ namespaceSelector: { matchLabels: { name: 'monitoring' } } }],
        ports: [{ protocol: 'TCP', port: 9464 }],
      },
    ]);
  });

  it('lets out DNS, the proxy and allowedCIDRs', () => {
    const np = buildNetworkPolicy(
      poolWith({
        network: {
          egressProxy: { url: 'http://10.1.2.3:3128' },
          allowedCIDRs: ['192.168.0.0/16'],
        },
      }),
    );
    expect(np.spec?.egress).toEqual([
      {
        to: [
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
            podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
          },
        ],
        ports: [
          { protocol: 'UDP', port: 53 },
          { protocol: 'TCP', port: 53 },
        ],
      },
      { to: [{ ipBlock: { cidr: '10.1.2.3/32' } }], ports: [{ protocol: 'TCP', port: 3128 }] },
      { to: [{ ipBlock: { cidr: '192.168.0.0/16' } }] },
    ]);
    const named = buildNetworkPolicy(
      poolWith({
        network: {
          egressProxy: {
            url: 'http://ssrf-proxy.dify.svc:3128',
            to: [{ podSelector: { matchLabels: { app: 'ssrf-proxy' } } }],
          },
        },
      }),
    );
    expect(named.spec?.egress?.[1]).toEqual({
      to: [{ podSelector: { matchLabels: { app: 'ssrf-proxy' } } }],
      ports: [{ protocol: 'TCP', port: 3128 }],
    });
    // The proxy pods' own port, when its Service maps the URL's port to another.
    expect(
      buildNetworkPolicy(
        poolWith({
          network: { egressProxy: { url: 'http://10.1.2.3:3128', targetPort: 8080 } },
        }),
      ).spec?.egress?.[1]?.ports,
    ).toEqual([{ protocol: 'TCP', port: 8080 }]);
    // The scheme's port, when the URL names it (URL.port is '' then: not port 0).
    for (const [url, port] of [
      ['http://10.1.2.3:80', 80],
      ['https://10.1.2.3:443', 443],
    ] as const)
      expect(
        buildNetworkPolicy(poolWith({ network: { egressProxy: { url } } })).spec?.egress?.[1],
      ).toEqual({ to: [{ ipBlock: { cidr: '10.1.2.3/32' } }], ports: [{ protocol: 'TCP', port }] });
  });

  it('lets out DNS to the servers network.dns names (NodeLocal DNSCache, OpenShift DNS)', () => {
    const nodeLocal = buildNetworkPolicy(
      poolWith({ network: { dns: { to: [{ ipBlock: { cidr: '169.254.20.10/32' } }] } } }),
    );
    expect(nodeLocal.spec?.egress?.[0]).toEqual({
      to: [{ ipBlock: { cidr: '169.254.20.10/32' } }],
      ports: [
        { protocol: 'UDP', port: 53 },
        { protocol: 'TCP', port: 53 },
      ],
    });
    const openshift = {
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'openshift-dns' } },
      podSelector: { matchLabels: { 'dns.operator.openshift.io/daemonset-dns': 'default' } },
    };
    const np = buildNetworkPolicy(poolWith({ network: { dns: { to: [openshift], port: 5353 } } }));
    expect(np.spec?.egress?.[0]).toEqual({
      to: [openshift],
      ports: [
        { protocol: 'UDP', port: 5353 },
        { protocol: 'TCP', port: 5353 },
      ],
    });
  });

  it('lets out nothing at all when the network is disabled', () => {
    const np = buildNetworkPolicy(poolWith({ network: { enabled: false } }));
    expect(np.spec?.policyTypes).toContain('Egress');
    expect(np.spec?.egress).toBeUndefined();
  });
});

describe('PodDisruptionBudget and HorizontalPodAutoscaler', () => {
  it('a PDB only from two pods on, one eviction at a time, unhealthy pods always evictable', () => {
    expect(buildPodDisruptionBudget(poolWith({ replicas: 1 }))).toBeUndefined();
    expect(buildPodDisruptionBudget(poolWith({ replicas: 2 }))?.spec).toEqual({
      maxUnavailable: 1,
      selector: {
        matchLabels: {
          'app.kubernetes.io/name': 'sandboxpool-runner',
          'app.kubernetes.io/instance': 'dify',
        },
      },
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    });
    // With autoscaling, the autoscaler's minimum counts.
    expect(
      buildPodDisruptionBudget(
        poolWith({ replicas: 5, autoscaling: { minReplicas: 1, maxReplicas: 3 } }),
      ),
    ).toBeUndefined();
  });

  it('an HPA only with autoscaling, aiming at the busy-worker share', () => {
    expect(buildHorizontalPodAutoscaler(poolWith())).toBeUndefined();
    const hpa = buildHorizontalPodAutoscaler(
      poolWith({
        execution: { maxWorkers: 4 },
        autoscaling: { minReplicas: 2, maxReplicas: 10, targetBusyWorkersPercent: 70 },
      }),
    );
    expect(hpa?.spec).toEqual({
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'dify-sandboxpool' },
      minReplicas: 2,
      maxReplicas: 10,
      metrics: [
        {
          type: 'Pods',
          pods: {
            metric: { name: 'sandbox_executions_in_flight' },
            target: { type: 'AverageValue', averageValue: '2800m' },
          },
        },
      ],
    });
  });
});

describe('runner configuration', () => {
  it('renders DifySandbox-style config.yaml from execution, network, dependencies and seccomp', () => {
    const pool = poolWith({
      execution: { timeoutSeconds: 30, maxWorkers: 2, maxQueue: 10 },
      network: { egressProxy: { url: 'http://10.0.0.9:3128', noProxy: 'internal' } },
      dependencies: { python: ['numpy==2.1.3'], pipIndexUrl: 'http://pypi.internal/simple' },
      seccomp: { extraSyscalls: ['mbind'] },
    });
    const text = renderRunnerConfig(pool);
    expect(text).toContain('worker_timeout: 30');
    expect(text).toContain('max_workers: 2');
    expect(text).toContain('max_requests: 12');
    expect(text).toMatch(/allowed_syscalls:\n {2}- mbind/);
    expect(text).toMatch(/dependencies:\n {2}python:\n {4}- numpy==2.1.3/);
    expect(text).toContain('python_pip_mirror_url: http://pypi.internal/simple');
    expect(text).not.toContain('key:'); // the API key comes from the Secret, never the ConfigMap
    // The proxy is in the environment, where the package installers find it too.
    expect(text).not.toContain('proxy');
    expect(buildDeployment(pool, ctx).spec!.template.spec!.containers[0]!.env).toEqual(
      expect.arrayContaining([
        { name: 'HTTP_PROXY', value: 'http://10.0.0.9:3128' },
        { name: 'HTTPS_PROXY', value: 'http://10.0.0.9:3128' },
        { name: 'NO_PROXY', value: 'internal' },
      ]),
    );
  });

  it('gives pods that install packages longer to start, and their rollouts longer to progress', () => {
    const threshold = (spec: object) =>
      buildDeployment(poolWith(spec), ctx).spec!.template.spec!.containers[0]!.startupProbe!
        .failureThreshold!;
    expect(threshold({}) * 2).toBe(180);
    expect(threshold({ dependencies: { python: ['numpy'], nodejs: ['lodash'] } }) * 2).toBe(1980);
    // ... and a rollout counts as stuck only after that (Kubernetes' default is 600 s).
    const deadline = (spec: object) =>
      buildDeployment(poolWith(spec), ctx).spec!.progressDeadlineSeconds!;
    expect(deadline({})).toBe(600);
    expect(deadline({ dependencies: { python: ['numpy'] } })).toBe(1200);
    expect(deadline({ dependencies: { python: ['numpy'], nodejs: ['lodash'] } })).toBe(2100);
  });
});

describe('seccomp profile delivery', () => {
  const base = parseSeccompProfile(
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ERRNO',
      syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }],
    }),
    'test',
  );

  it('names the profile by its content and adds the extra syscalls', () => {
    const plain = renderPodProfile(base, []);
    const extra = renderPodProfile(base, ['mbind']);
    expect(plain.localhostProfile).toMatch(/^sandboxpool\/runner-[0-9a-f]{16}\.json$/);
    expect(extra.localhostProfile).not.toBe(plain.localhostProfile);
    expect(JSON.parse(extra.content).syscalls).toContainEqual({
      names: ['mbind'],
      action: 'SCMP_ACT_ALLOW',
    });
    expect(renderPodProfile(base, []).content).toBe(plain.content);
  });

  it('accepts the committed pod profile (the default) and extends it', () => {
    const file = path.join(REPO_ROOT, COMMITTED_PROFILE);
    expect(loadOperatorConfig({}).seccompProfilePath).toBe(file);
    const committed = parseSeccompProfile(readFileSync(file, 'utf8'), file);
    const rendered = JSON.parse(renderPodProfile(committed, ['mbind']).content) as typeof committed;
    expect(rendered.defaultAction).toBe(committed.defaultAction);
    expect(rendered.syscalls?.slice(0, -1)).toEqual(committed.syscalls);
    expect(rendered.syscalls?.at(-1)).toEqual({ names: ['mbind'], action: 'SCMP_ACT_ALLOW' });
  });

  it('refuses what is not a seccomp profile, saying why', () => {
    expect(() => parseSeccompProfile('{', 'p.json')).toThrow(/p\.json: not JSON/);
    expect(() => parseSeccompProfile('{"syscalls":[]}', 'p.json')).toThrow(/defaultAction/);
  });

  it('installs with a DaemonSet that is rolled out once every node runs the current profiles', () => {
    const profiles = [renderPodProfile(base, [])];
    const ds = buildInstallerDaemonSet('sandboxpool-system', 'img', profiles);
    const c = ds.spec!.template.spec!.containers[0]!;
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(ds.spec!.template.spec!.volumes).toContainEqual({
      name: 'seccomp',
      hostPath: { path: '/var/lib/kubelet/seccomp', type: 'DirectoryOrCreate' },
    });
    const hash = profilesHash(profiles);
    const status = {
      currentNumberScheduled: 3,
      numberMisscheduled: 0,
      desiredNumberScheduled: 3,
      numberReady: 3,
      updatedNumberScheduled: 3,
      observedGeneration: 1,
    };
    const live = { ...ds, metadata: { ...ds.metadata, generation: 1 }, status };
    expect(installerRolledOut(live, hash)).toBe(true);
    expect(installerRolledOut({ ...live, status: { ...status, numberReady: 2 } }, hash)).toBe(
      false,
    );
    expect(installerRolledOut(live, 'other')).toBe(false);
    // Pulled with the operator's credentials, when it has any.
    expect(ds.spec!.template.spec!.imagePullSecrets).toBeUndefined();
    expect(
      buildInstallerDaemonSet('sandboxpool-system', 'img', profiles, ['regcred']).spec!.template
        .spec!.imagePullSecrets,
    ).toEqual([{ name: 'regcred' }]);
  });
});

describe('the seccomp installer with nodes down', () => {
  const profiles = [
    renderPodProfile(parseSeccompProfile('{"defaultAction":"SCMP_ACT_ERRNO"}', 'test'), []),
  ];
  const hash = profilesHash(profiles);
  const ds = {
    ...buildInstallerDaemonSet('sandboxpool-system', 'img', profiles),
    metadata: { name: 'sandboxpool-seccomp-installer', generation: 2 },
    status: {
      currentNumberScheduled: 3,
      numberMisscheduled: 0,
      desiredNumberScheduled: 3,
      numberReady: 2,
      updatedNumberScheduled: 3,
      observedGeneration: 2,
    },
  };
  // As the DaemonSet controller makes them: pinned to their node by a required node affinity
  // (the scheduler sets nodeName later).
  const pod = (
    node: string,
    o: { hash?: string; ready?: boolean; bound?: boolean; going?: boolean } = {},
  ): V1Pod =>
    slimInstallerPod({
      metadata: {
        name: `installer-${node}`,
        annotations: { [PROFILES_HASH_ANNOTATION]: o.hash ?? hash, other: 'dropped' },
        ...(o.going ? { deletionTimestamp: new Date() } : {}),
      },
      spec: {
        containers: [{ name: 'install' }],
        ...(o.bound ? { nodeName: node } : {}),
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [
                { matchFields: [{ key: 'metadata.name', operator: 'In', values: [node] }] },
              ],
            },
          },
        },
      },
      status: {
        conditions: [
          { type: 'PodScheduled', status: 'True' },
          { type: 'Ready', status: o.ready === false ? 'False' : 'True' },
        ],
      },
    });
  const readiness = (down: string[]) => (name: string) =>
    ['a', 'b', 'c'].includes(name) ? !down.includes(name) : undefined;

  it('leaves out a node that is not Ready, and only such a node', () => {
    const pods = [pod('a'), pod('b', { bound: true }), pod('c', { ready: false })];
    // c is down: a and b have the profiles, which is every node that can take pods.
    expect(installerRolledOut(ds, hash, pods, readiness(['c']))).toBe(true);
    // c is up (or unknown to the operator) and its installer not ready: not everywhere.
    expect(installerRolledOut(ds, hash, pods, readiness([]))).toBe(false);
    expect(installerRolledOut(ds, hash, pods)).toBe(false);
    // A node that can take pods with the previous profiles, or none yet, holds it back.
    const stale = [pod('a'), pod('b', { hash: 'previous' }), pod('c', { ready: false })];
    expect(installerRolledOut(ds, hash, stale, readiness(['c']))).toBe(false);
    expect(
      installerRolledOut(ds, hash, [pod('a'), pod('c', { ready: false })], readiness(['c'])),
    ).toBe(false);
    // Its old pod going away and no new one yet: that node waits too.
    const going = [pod('a'), pod('b', { going: true, hash: 'previous' }), pod('c')];
    expect(installerRolledOut(ds, hash, going, readiness(['c']))).toBe(false);
    // A node that is down counts however its pod is (old, going away): it holds one.
    const downOld = [pod('a'), pod('b'), pod('c', { going: true, hash: 'previous', ready: false })];
    expect(installerRolledOut(ds, hash, downOld, readiness(['c']))).toBe(true);
    // Not the current DaemonSet (another hash, an unobserved generation): never.
    expect(installerRolledOut(ds, 'other', pods, readiness(['c']))).toBe(false);
    const unobserved = { ...ds, status: { ...ds.status, observedGeneration: 1 } };
    expect(installerRolledOut(unobserved, hash, pods, readiness(['c']))).toBe(false);
  });

  it('keeps of nodes and pods only what it reads', () => {
    const node = slimNode({
      metadata: { name: 'a', resourceVersion: '7', labels: { big: 'x' } },
      status: {
        conditions: [
          { type: 'MemoryPressure', status: 'False' },
          { type: 'Ready', status: 'True' },
        ],
        images: [{ names: ['registry/image:tag'], sizeBytes: 1 }],
      },
    });
    expect(node).toEqual({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'a', resourceVersion: '7' },
      status: { conditions: [{ type: 'Ready', status: 'True' }] },
    });
    expect(isNodeReady(node)).toBe(true);
    expect(
      isNodeReady(
        slimNode({
          metadata: { name: 'b' },
          status: { conditions: [{ type: 'Ready', status: 'Unknown' }] },
        }),
      ),
    ).toBe(false);
    expect(isNodeReady(slimNode({ metadata: { name: 'c' } }))).toBe(false);
    const p = pod('a');
    expect(p.spec?.nodeName).toBe('a');
    expect(p.metadata?.annotations).toEqual({ [PROFILES_HASH_ANNOTATION]: hash });
  });
});

describe('status', () => {
  const now = new Date('2026-01-01T00:00:00Z');
  const later = new Date('2026-01-01T00:05:00Z');
  const deploymentWith = (
    status: object,
    conditions: V1DeploymentCondition[] = [],
    replicas = 2,
  ): V1Deployment => ({
    metadata: { generation: 1 },
    spec: { replicas, selector: {}, template: {} },
    status: { observedGeneration: 1, ...status, conditions },
  });

  it('is Ready when the Deployment is available, with the endpoint and the selector', () => {
    const s = buildStatus(
      poolWith(),
      {
        deployment: deploymentWith(
          { replicas: 2, readyReplicas: 2, updatedReplicas: 2, availableReplicas: 2 },
          [{ type: 'Available', status: 'True' }],
        ),
      },
      now,
    );
    expect(s).toMatchObject({
      observedGeneration: 1,
      replicas: 2,
      readyReplicas: 2,
      endpoint: 'http://dify-sandboxpool.dify.svc:8194',
      selector: 'app.kubernetes.io/name=sandboxpool-runner,app.kubernetes.io/instance=dify',
    });
    expect(s.conditions?.map((c) => [c.type, c.status, c.reason])).toEqual([
      ['Ready', 'True', 'MinimumReplicasAvailable'],
      ['Progressing', 'False', 'RolloutComplete'],
      ['Degraded', 'False', 'AsExpected'],
    ]);
  });

  it('stays Ready while some pods of a serving pool are not (a scale-up, a failing pod)', () => {
    // maxUnavailable 0: the Deployment is not Available until every replica is.
    const scalingUp = deploymentWith(
      { replicas: 3, readyReplicas: 2, updatedReplicas: 3, availableReplicas: 2 },
      [{ type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable' }],
      3,
    );
    const s = buildStatus(poolWith(), { deployment: scalingUp }, now);
    expect(s.conditions?.map((c) => [c.type, c.status, c.reason, c.message])).toEqual([
      ['Ready', 'True', 'MinimumReplicasAvailable', '2 of 3 runner pods ready'],
      ['Progressing', 'True', 'RollingOut', '3 of 3 runner pods updated, 2 of 3 runner pods ready'],
      ['Degraded', 'False', 'AsExpected', expect.any(String)],
    ]);
    const none = deploymentWith(
      { replicas: 3, readyReplicas: 0, updatedReplicas: 3, availableReplicas: 0 },
      [{ type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable' }],
      3,
    );
    expect(
      buildStatus(poolWith(), { deployment: none }, now).conditions?.find(
        (c) => c.type === 'Ready',
      ),
    ).toMatchObject({ status: 'False', reason: 'ReplicasUnavailable' });
  });

  it('after a complete rollout, reports pods missing longer than a start as Degraded', () => {
    // One pod of three failing since 00:00 (now is 00:05 in these tests) after the rollout.
    const failing = (since: string) =>
      deploymentWith(
        { replicas: 3, readyReplicas: 2, updatedReplicas: 3, availableReplicas: 2 },
        [
          { type: 'Available', status: 'False', lastTransitionTime: since as unknown as Date },
          { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' },
        ],
        3,
      );
    const recent = buildStatus(poolWith(), { deployment: failing('2026-01-01T00:04:00Z') }, later);
    expect(recent.conditions?.map((c) => [c.type, c.status, c.reason])).toEqual([
      ['Ready', 'True', 'MinimumReplicasAvailable'],
      ['Progressing', 'False', 'RolloutComplete'],
      ['Degraded', 'False', 'AsExpected'],
    ]);
    // Looked at again when the time is up (no event may come), and not after.
    expect(degradedRecheckMs(poolWith(), failing('2026-01-01T00:04:00Z'), later)).toBe(181_000);
    expect(degradedRecheckMs(poolWith(), failing('2025-12-31T23:00:00Z'), later)).toBeUndefined();
    const long = buildStatus(poolWith(), { deployment: failing('2025-12-31T23:00:00Z') }, later);
    expect(long.conditions?.find((c) => c.type === 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'ReplicasUnavailable',
      message: '2 of 3 runner pods ready, for longer than a pod may take to start (240 s)',
    });
  });

  it('reports an autoscaler that cannot scale, past its grace time, as Degraded with what to install', () => {
    const serving = deploymentWith(
      { replicas: 2, readyReplicas: 2, updatedReplicas: 2, availableReplicas: 2 },
      [{ type: 'Available', status: 'True' }],
    );
    const autoscaled = poolWith({ autoscaling: { minReplicas: 2, maxReplicas: 4 } });
    // Conditions [type, status, reason, message], False (or True) since 00:04 (now: 00:05).
    const hpa = (...conditions: Array<[string, string, string, string]>) => ({
      hpa: {
        metadata: { name: 'dify-sandboxpool' },
        spec: { maxReplicas: 4, scaleTargetRef: { kind: 'Deployment', name: 'x' } },
        status: {
          desiredReplicas: 2,
          conditions: conditions.map(([type, status, reason, message]) => ({
            type,
            status,
            reason,
            message,
            lastTransitionTime: '2026-01-01T00:04:00Z' as unknown as Date,
          })),
        },
      } satisfies V2HorizontalPodAutoscaler,
      graceSeconds: 30,
    });
    const degraded = (
      pool: SandboxPool,
      autoscaler: ReturnType<typeof hpa>,
      deployment = serving,
    ) =>
      buildStatus(pool, { deployment, autoscaler }, later).conditions?.find(
        (c) => c.type === 'Degraded',
      );
    const noAdapter = hpa(
      ['AbleToScale', 'True', 'SucceededGetScale', 'the HPA controller was able to get the target'],
      [
        'ScalingActive',
        'False',
        'FailedGetPodsMetric',
        'the HPA was unable to compute the replica count: unable to get metric sandbox_executions_in_flight: unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered',
      ],
    );
    expect(degraded(autoscaled, noAdapter)).toMatchObject({
      status: 'True',
      reason: 'AutoscalingFailed',
      message:
        'the HorizontalPodAutoscaler dify-sandboxpool cannot scale the runner pods (ScalingActive FailedGetPodsMetric for more than 30 s): no custom-metrics adapter serves sandbox_executions_in_flight for the runner pods (install one, such as prometheus-adapter, with a rule for it)',
    });
    // Its own message (error details that change between syncs) is not copied: the status
    // stays the same while the failure does.
    const updateFailed = (detail: string) =>
      degraded(autoscaled, hpa(['AbleToScale', 'False', 'FailedUpdateScale', detail]))?.message;
    expect(updateFailed('read tcp 10.0.0.1:54321->10.0.0.2:443: reset')).toBe(
      'the HorizontalPodAutoscaler dify-sandboxpool cannot scale the runner pods (AbleToScale FailedUpdateScale for more than 30 s): kubectl describe hpa dify-sandboxpool -n dify says why',
    );
    expect(updateFailed('read tcp 10.0.0.1:54999->10.0.0.2:443: reset')).toBe(
      updateFailed('read tcp 10.0.0.1:54321->10.0.0.2:443: reset'),
    );
    // Within the grace time: not yet, and the pool is looked at again when it is up.
    const young = { ...noAdapter, graceSeconds: 120 };
    expect(degraded(autoscaled, young)).toMatchObject({ status: 'False', reason: 'AsExpected' });
    expect(autoscalerRecheckMs(young, later)).toBe(61_000);
    expect(autoscalerRecheckMs(noAdapter, later)).toBeUndefined();
    // Scaling works; or is only disabled for a Deployment at 0 (handed over at the minimum); or
    // the metrics are missing because the pods are not ready (shown by Ready and Progressing).
    for (const fine of [
      hpa(
        ['AbleToScale', 'True', 'ReadyForNewScale', 'recommended size matches current size'],
        ['ScalingActive', 'True', 'ValidMetricFound', 'the HPA was able to compute the count'],
      ),
      hpa(['ScalingActive', 'False', 'ScalingDisabled', 'scaling is disabled']),
      hpa([
        'ScalingActive',
        'False',
        'FailedGetPodsMetric',
        'the HPA was unable to compute the replica count: did not receive metrics for targeted pods (pods might be unready)',
      ]),
      hpa(),
    ]) {
      expect(degraded(autoscaled, fine)).toMatchObject({ status: 'False', reason: 'AsExpected' });
      expect(autoscalerRecheckMs(fine, later)).toBeUndefined();
    }
    // An HPA left over from a pool that no longer autoscales says nothing about it.
    expect(degraded(poolWith(), noAdapter)).toMatchObject({
      status: 'False',
      reason: 'AsExpected',
    });
    // The pods themselves failing comes first.
    const refused = deploymentWith({ replicas: 0 }, [
      { type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate', message: 'forbidden' },
    ]);
    expect(degraded(autoscaled, noAdapter, refused)).toMatchObject({ reason: 'ReplicaFailure' });
  });

  it('reports a problem as Ready=False and Degraded=True with its reason', () => {
    const s = buildStatus(
      poolWith(),
      { problem: { reason: 'SecretNotFound', message: 'no Secret x' } },
      now,
    );
    expect(s.conditions?.map((c) => [c.type, c.status, c.reason, c.message])).toEqual([
      ['Ready', 'False', 'SecretNotFound', 'no Secret x'],
      ['Progressing', 'False', 'SecretNotFound', 'no Secret x'],
      ['Degraded', 'True', 'SecretNotFound', 'no Secret x'],
    ]);
  });

  it('says why pods are missing (e.g. PodSecurity refused them)', () => {
    const s = buildStatus(
      poolWith(),
      {
        deployment: deploymentWith({ replicas: 0 }, [
          {
            type: 'ReplicaFailure',
            status: 'True',
            message: 'pods "x" is forbidden: violates PodSecurity',
          },
        ]),
      },
      now,
    );
    expect(s.conditions?.find((c) => c.type === 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'ReplicaFailure',
      message: 'pods "x" is forbidden: violates PodSecurity',
    });
  });

  it('after a failed apply, keeps the generation and decisions it last acted on', () => {
    const available = deploymentWith(
      { replicas: 2, readyReplicas: 2, updatedReplicas: 2, availableReplicas: 2 },
      [{ type: 'Available', status: 'True' }],
    );
    const pool = poolWith();
    const applied = buildStatus(
      pool,
      {
        deployment: available,
        apiKey: { name: 'k', key: 'api-key' },
        seccomp: { type: 'RuntimeDefault' },
      },
      now,
    );
    // The user changes the spec (generation 2); applying it fails.
    const changed = { ...pool, metadata: { ...pool.metadata, generation: 2 }, status: applied };
    const s = buildStatus(
      changed,
      {
        deployment: available,
        apiKey: { name: 'other', key: 'api-key' },
        seccomp: { type: 'Localhost', localhostProfile: 'sandboxpool/x.json' },
        failure: { reason: 'ApplyFailed', message: 'the server is unavailable' },
      },
      later,
    );
    expect(s.observedGeneration).toBe(1);
    expect(s.apiKeySecretRef).toEqual({ name: 'k', key: 'api-key' });
    expect(s.seccompProfile).toBe('RuntimeDefault');
    expect(s.conditions?.map((c) => [c.type, c.status, c.reason, c.observedGeneration])).toEqual([
      ['Ready', 'True', 'MinimumReplicasAvailable', 1],
      ['Progressing', 'False', 'RolloutComplete', 1],
      ['Degraded', 'True', 'ApplyFailed', 2],
    ]);
    // Once applied, the status catches up.
    const caughtUp = buildStatus(changed, { deployment: available }, later);
    expect(caughtUp.observedGeneration).toBe(2);
    expect(caughtUp.conditions?.every((c) => c.observedGeneration === 2)).toBe(true);
  });

  it('keeps lastTransitionTime while a condition keeps its status', () => {
    const pool = poolWith();
    const first = buildStatus(pool, { deployment: deploymentWith({ replicas: 2 }) }, now);
    const second = buildStatus(
      { ...pool, status: first },
      { deployment: deploymentWith({ replicas: 2, updatedReplicas: 1 }) },
      later,
    );
    expect(second.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime).toBe(
      '2026-01-01T00:00:00Z',
    );
    const third = buildStatus(
      { ...pool, status: second },
      {
        deployment: deploymentWith(
          { replicas: 2, readyReplicas: 2, updatedReplicas: 2, availableReplicas: 2 },
          [{ type: 'Available', status: 'True' }],
        ),
      },
      later,
    );
    expect(third.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'True',
      lastTransitionTime: '2026-01-01T00:05:00Z',
    });
  });
});
