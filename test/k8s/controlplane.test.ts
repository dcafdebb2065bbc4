// Smoke test of the control plane that global-setup.ts starts: the behaviour the operator and
// chart tests rely on really happens (controllers, PodSecurity, RBAC, server-side apply, helm).
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1Pod,
} from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { controlPlane, run } from './cluster.js';
import { kubeconfigForServiceAccount } from './controlplane.js';

const chartDir = fileURLToPath(new URL('./fixtures/tiny-chart', import.meta.url));

function clients(kubeconfigPath: string) {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return {
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    rbac: kc.makeApiClient(RbacAuthorizationV1Api),
  };
}

/** Polls `get` until `done` holds for its value; bounded, and says what it last saw. */
async function waitFor<T>(
  what: string,
  get: () => Promise<T>,
  done: (v: T) => boolean,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await get();
      if (done(value)) return value;
      last = value;
    } catch (err) {
      last = err instanceof Error ? err.message : err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}; last saw: ${JSON.stringify(last)}`,
  );
}

/** The HTTP status and Status message of a refused call (client-node's ApiException). */
async function refusal(call: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await call;
  } catch (err) {
    if (!(err instanceof ApiException)) throw err;
    const body: unknown = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
    const message = (body as { message?: unknown } | null)?.message;
    return {
      code: err.code,
      message: typeof message === 'string' ? message : JSON.stringify(body),
    };
  }
  throw new Error('the call was expected to be refused, but it succeeded');
}

const restrictedPodSpec: V1Pod['spec'] = {
  securityContext: {
    runAsNonRoot: true,
    runAsUser: 10001,
    seccompProfile: { type: 'RuntimeDefault' },
  },
  containers: [
    {
      name: 'main',
      image: 'sandboxpool.invalid/never-pulled:1', // no kubelet: never pulled
      securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
    },
  ],
};

describe('control plane', () => {
  const admin = () => clients(controlPlane().kubeconfigPath);
  const namespaces: string[] = [];
  afterAll(async () => {
    for (const name of namespaces)
      await admin()
        .core.deleteNamespace({ name })
        .catch(() => undefined);
  });

  /** A fresh namespace, once the controller manager has given it its default ServiceAccount. */
  async function namespace(prefix: string, labels: Record<string, string> = {}): Promise<string> {
    const name = `${prefix}-${randomBytes(3).toString('hex')}`;
    const { core } = admin();
    await core.createNamespace({ body: { metadata: { name, labels } } });
    namespaces.push(name);
    await waitFor(
      `ServiceAccount ${name}/default`,
      () => core.readNamespacedServiceAccount({ namespace: name, name: 'default' }),
      () => true,
    );
    return name;
  }

  it('runs Deployments: the controller manager creates the ReplicaSet and Pods, which stay Pending', async () => {
    const ns = await namespace('deploy');
    const { apps, core } = admin();
    const labels = { app: 'smoke' };
    await apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: 'smoke' },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: { metadata: { labels }, spec: restrictedPodSpec },
        },
      },
    });

    const replicaSets = await waitFor(
      "the Deployment's ReplicaSet",
      () => apps.listNamespacedReplicaSet({ namespace: ns }),
      (list) => list.items.length === 1,
    );
    expect(replicaSets.items[0]?.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'Deployment',
      name: 'smoke',
    });

    const pods = await waitFor(
      'two Pods',
      () => core.listNamespacedPod({ namespace: ns, labelSelector: 'app=smoke' }),
      (list) => list.items.length === 2,
    );
    for (const pod of pods.items) {
      expect(pod.metadata?.ownerReferences?.[0]?.kind).toBe('ReplicaSet');
      expect(pod.status?.phase).toBe('Pending');
      expect(pod.spec?.nodeName).toBeUndefined();
    }
  });

  it('judges Pods with PodSecurity admission in a restricted namespace', async () => {
    const ns = await namespace('psa', { 'pod-security.kubernetes.io/enforce': 'restricted' });
    const { core } = admin();

    const violating = await refusal(
      core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { name: 'root' },
          spec: { containers: [{ name: 'main', image: 'sandboxpool.invalid/never-pulled:1' }] },
        },
      }),
    );
    expect(violating.code).toBe(403);
    expect(violating.message).toContain('violates PodSecurity "restricted:latest"');

    const admitted = await core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name: 'compliant' }, spec: restrictedPodSpec },
    });
    expect(admitted.metadata?.uid).toBeTruthy();
  });

  it('serves kubectl apply --server-side and records the field manager', async () => {
    const ns = await namespace('ssa');
    const manifest = (value: string) =>
      toYaml({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'applied', namespace: ns },
        data: { key: value },
      });
    const file = join(controlPlane().workDir, `${ns}.yaml`); // removed with the control plane

    await writeFile(file, manifest('one'));
    await run('kubectl', [
      'apply',
      '--server-side',
      '--field-manager',
      'sandboxpool-test',
      '-f',
      file,
    ]);
    await writeFile(file, manifest('two'));
    const { stdout } = await run('kubectl', [
      'apply',
      '--server-side',
      '--field-manager',
      'sandboxpool-test',
      '-f',
      file,
    ]);
    expect(stdout).toContain('configmap/applied serverside-applied');

    const cm = await admin().core.readNamespacedConfigMap({ namespace: ns, name: 'applied' });
    expect(cm.data).toEqual({ key: 'two' });
    expect(cm.metadata?.managedFields).toContainEqual(
      expect.objectContaining({ manager: 'sandboxpool-test', operation: 'Apply' }),
    );
  });

  it('installs a Helm chart (with a kubeVersion constraint) and reports the server version', async () => {
    const ns = await namespace('helm');
    await run('helm', ['install', 'tiny', chartDir, '--namespace', ns]);
    const { stdout } = await run('helm', ['status', 'tiny', '--namespace', ns, '--output', 'json']);
    expect((JSON.parse(stdout) as { info: { status: string } }).info.status).toBe('deployed');

    const cm = await admin().core.readNamespacedConfigMap({ namespace: ns, name: 'tiny-greeting' });
    expect(cm.data).toEqual({ greeting: 'hello', kubeVersion: 'v1.34.4' });

    await run('helm', ['uninstall', 'tiny', '--namespace', ns]);
    const gone = await refusal(
      admin().core.readNamespacedConfigMap({ namespace: ns, name: 'tiny-greeting' }),
    );
    expect(gone.code).toBe(404);
  });

  it('gives a ServiceAccount what its Role grants and denies it the rest (403)', async () => {
    const ns = await namespace('rbac');
    const other = await namespace('rbac-other');
    const { core, rbac } = admin();
    await core.createNamespacedServiceAccount({
      namespace: ns,
      body: { metadata: { name: 'reader' } },
    });
    await rbac.createNamespacedRole({
      namespace: ns,
      body: {
        metadata: { name: 'configmap-reader' },
        rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'reader' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'configmap-reader' },
        subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: ns }],
      },
    });

    const kubeconfig = await kubeconfigForServiceAccount(controlPlane(), ns, 'reader');
    const { stdout } = await run(
      'kubectl',
      ['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'],
      kubeconfig,
    );
    expect(stdout).toBe(`system:serviceaccount:${ns}:reader`);

    const reader = clients(kubeconfig).core;
    // Granted (the authorizer's caches may take a moment to see the new binding).
    const list = await waitFor(
      'the reader to list ConfigMaps',
      () => reader.listNamespacedConfigMap({ namespace: ns }),
      () => true,
    );
    expect(list.items.map((c) => c.metadata?.name)).toContain('kube-root-ca.crt');

    // Not granted: another resource, another verb, another namespace.
    for (const call of [
      () => reader.listNamespacedSecret({ namespace: ns }),
      () =>
        reader.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'nope' } } }),
      () => reader.listNamespacedConfigMap({ namespace: other }),
    ]) {
      const denied = await refusal(call());
      expect(denied.code).toBe(403);
      expect(denied.message).toContain(`system:serviceaccount:${ns}:reader`);
    }
  });
});
