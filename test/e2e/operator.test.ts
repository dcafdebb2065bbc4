// The operator end to end, against the real control plane: it runs as a process under the
// ServiceAccount and RBAC it ships (those of manifests/install.yaml), and every SandboxPool here
// lives in a namespace where PodSecurity enforces "restricted".
import path from 'node:path';
import type {
  V1ConfigMap,
  V1DaemonSet,
  V1Deployment,
  V1NetworkPolicy,
  V1Pod,
  V1PodDisruptionBudget,
  V1Secret,
  V1Service,
  V1ServiceAccount,
  V2HorizontalPodAutoscaler,
} from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { SandboxPool } from '../../operator/api/v1alpha1.js';
import { DEFAULT_RUNNER_IMAGE } from '../../operator/config.js';
import { controlPlane } from '../k8s/cluster.js';
import type { ControlPlaneInfo } from '../k8s/controlplane.js';
import {
  Api,
  OPERATOR_NAMESPACE,
  applyDeploymentWebhook,
  applyPool as applyPoolIn,
  createNamespace,
  installOperator,
  kubectl,
  rbacManifest,
  startOperator,
  waitFor,
  type OperatorProcess,
} from '../support/operator.js';

const SBP = 'sandboxpool.dev/v1alpha1';

let cp: ControlPlaneInfo;
let api: Api;
let operator: OperatorProcess;
const namespaces: string[] = [];
/** Pools (namespace/name) whose API calls a test makes fail on purpose. */
const provokedFailures = new Set<string>();

beforeAll(async () => {
  cp = controlPlane();
  api = new Api(cp.kubeconfigPath);
  const kubeconfig = await installOperator(cp);
  // The default profile: manifests/seccomp/sandboxpool-runner.json, rendered from the policies.
  operator = await startOperator(kubeconfig, 'operator-e2e', {
    // Only events make it reconcile here (the idle check in the metrics test counts on it).
    SANDBOXPOOL_RESYNC_SECONDS: '3600',
    // An autoscaler that cannot scale shows within seconds, not the default 3 minutes.
    SANDBOXPOOL_AUTOSCALER_GRACE_SECONDS: '5',
  });
  await operator.waitForLine('leadership', (l) => l.msg === 'became the leader');
}, 120_000);

afterEach(async (context) => {
  if (context.task.result?.state === 'fail')
    console.log(`[${operator.name}] last log lines:\n${operator.tail(60)}`);
});

afterAll(async () => {
  await operator?.stop();
  for (const ns of namespaces) await kubectl(cp, ['delete', 'namespace', ns, '--wait=false']);
  // What installOperator added (the CRD stays: other tests may use it at the same time).
  await kubectl(
    cp,
    ['delete', '-f', '-', '--ignore-not-found', '--wait=false'],
    cp.kubeconfigPath,
    rbacManifest(),
  );
  await kubectl(cp, ['delete', 'namespace', OPERATOR_NAMESPACE, '--wait=false']);
});

/** A fresh namespace where PodSecurity enforces "restricted", removed after the file. */
async function namespace(prefix: string): Promise<string> {
  const name = await createNamespace(cp, prefix);
  namespaces.push(name);
  return name;
}

const applyPool = (ns: string, name: string, spec: object = {}) => applyPoolIn(cp, ns, name, spec);

/** kubectl patch of one object, as a user would edit it. */
const patch = (ns: string, resource: string, name: string, type: 'merge' | 'json', body: string) =>
  kubectl(cp, ['patch', resource, name, '-n', ns, `--type=${type}`, '-p', body]);

const getPool = (ns: string, name = 'dify') => api.get<SandboxPool>(SBP, 'SandboxPool', ns, name);
const condition = (p: SandboxPool | undefined, type: string) =>
  p?.status?.conditions?.find((c) => c.type === type);

/** Waits until the operator has acted on the pool's current generation. */
function observed(ns: string, name = 'dify', timeoutMs = 30_000): Promise<SandboxPool> {
  return waitFor(
    `SandboxPool ${ns}/${name} observed`,
    async () => {
      const p = await getPool(ns, name);
      return p?.status?.observedGeneration === p?.metadata.generation &&
        (p?.status?.conditions?.length ?? 0) === 3
        ? p
        : undefined;
    },
    timeoutMs,
  );
}

const child = {
  serviceAccount: (ns: string) =>
    api.get<V1ServiceAccount>('v1', 'ServiceAccount', ns, 'dify-sandboxpool'),
  secret: (ns: string) => api.get<V1Secret>('v1', 'Secret', ns, 'dify-sandboxpool-api-key'),
  /** The ConfigMap the Deployment's pods mount (one per configuration, named by its hash). */
  configMap: async (ns: string) => {
    const d = await api.get<V1Deployment>('apps/v1', 'Deployment', ns, 'dify-sandboxpool');
    const name = d?.spec?.template.spec?.volumes?.find((v) => v.name === 'config')?.configMap?.name;
    return name === undefined ? undefined : api.get<V1ConfigMap>('v1', 'ConfigMap', ns, name);
  },
  service: (ns: string) => api.get<V1Service>('v1', 'Service', ns, 'dify-sandboxpool'),
  deployment: (ns: string) =>
    api.get<V1Deployment>('apps/v1', 'Deployment', ns, 'dify-sandboxpool'),
  networkPolicy: (ns: string) =>
    api.get<V1NetworkPolicy>('networking.k8s.io/v1', 'NetworkPolicy', ns, 'dify-sandboxpool'),
  pdb: (ns: string) =>
    api.get<V1PodDisruptionBudget>('policy/v1', 'PodDisruptionBudget', ns, 'dify-sandboxpool'),
  hpa: (ns: string) =>
    api.get<V2HorizontalPodAutoscaler>(
      'autoscaling/v2',
      'HorizontalPodAutoscaler',
      ns,
      'dify-sandboxpool',
    ),
};

/** Every configuration's ConfigMap of the pool, by name. */
const configMaps = async (ns: string) =>
  (await api.list<V1ConfigMap>('v1', 'ConfigMap', ns, 'sandboxpool.dev/pool=dify'))
    .filter((cm) => cm.metadata?.name?.startsWith('dify-sandboxpool-config-'))
    .map((cm) => cm.metadata!.name!)
    .sort();

const pods = (ns: string) => api.list<V1Pod>('v1', 'Pod', ns, 'app.kubernetes.io/instance=dify');

describe('a SandboxPool', () => {
  it('becomes every child with the expected spec; PodSecurity "restricted" admits its pods; status and columns are set', async () => {
    const ns = await namespace('sbp-children');
    await applyPool(ns, 'dify', {
      execution: { timeoutSeconds: 20 },
      dependencies: { python: ['numpy==2.1.3'] },
    });
    const pool = await observed(ns);

    const sa = await child.serviceAccount(ns);
    expect(sa?.automountServiceAccountToken).toBe(false);
    expect(sa?.metadata?.ownerReferences).toEqual([
      expect.objectContaining({
        kind: 'SandboxPool',
        name: 'dify',
        uid: pool.metadata.uid,
        controller: true,
      }),
    ]);

    const secret = await child.secret(ns);
    const key = Buffer.from(secret?.data?.['api-key'] ?? '', 'base64').toString();
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(secret?.immutable).toBe(true);

    const configYaml = (await child.configMap(ns))?.data?.['config.yaml'];
    expect(configYaml).toContain('worker_timeout: 20');
    expect(configYaml).toMatch(/dependencies:\n {2}python:\n {4}- numpy==2.1.3/);

    const d = await child.deployment(ns);
    expect(d?.spec?.replicas).toBe(2);
    expect(d?.spec?.strategy?.rollingUpdate?.maxUnavailable).toBe(0);
    const podSpec = d!.spec!.template.spec!;
    expect(podSpec.automountServiceAccountToken).toBe(false);
    expect(podSpec.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(podSpec.containers[0]).toMatchObject({
      image: DEFAULT_RUNNER_IMAGE,
      securityContext: {
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      },
      readinessProbe: { httpGet: { path: '/readyz' } },
      livenessProbe: { httpGet: { path: '/healthz' } },
    });

    const svc = await child.service(ns);
    expect(svc?.spec?.type).toBe('ClusterIP');
    expect(svc?.spec?.ports?.map((p) => [p.name, p.port])).toEqual([
      ['http', 8194],
      ['metrics', 9464],
    ]);
    const np = await child.networkPolicy(ns);
    expect(np?.spec?.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(np?.spec?.egress?.[0]?.ports).toEqual([
      { protocol: 'UDP', port: 53 },
      { protocol: 'TCP', port: 53 },
    ]);
    expect((await child.pdb(ns))?.spec).toMatchObject({
      maxUnavailable: 1,
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    });
    expect(await child.hpa(ns)).toBeUndefined();

    // The controller manager's ReplicaSet created the pods: PodSecurity admitted them.
    const created = await waitFor('two runner pods', async () => {
      const list = await pods(ns);
      return list.length === 2 ? list : undefined;
    });
    for (const p of created)
      expect(p.metadata?.labels?.['app.kubernetes.io/name']).toBe('sandboxpool-runner');

    expect(pool.status).toMatchObject({
      endpoint: `http://dify-sandboxpool.${ns}.svc:8194`,
      selector: 'app.kubernetes.io/name=sandboxpool-runner,app.kubernetes.io/instance=dify',
      apiKeySecretRef: { name: 'dify-sandboxpool-api-key', key: 'api-key' },
    });
    // No kubelet: the pods stay Pending, so the pool is not ready, and says why.
    expect(condition(pool, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'ReplicasUnavailable',
    });
    expect(condition(pool, 'Degraded')).toMatchObject({ status: 'False' });
    await waitFor('status.replicas 2', async () =>
      (await getPool(ns))?.status?.replicas === 2 ? true : undefined,
    );

    const table = await kubectl(cp, ['get', 'sbp', '-n', ns]);
    expect(table.split('\n')[0]).toMatch(/^NAME\s+READY\s+REPLICAS\s+ENDPOINT\s+AGE$/);
    expect(table).toMatch(
      new RegExp(`dify\\s+False\\s+2\\s+http://dify-sandboxpool\\.${ns}\\.svc:8194`),
    );
    const explain = await kubectl(cp, ['explain', 'sbp.spec.execution.timeoutSeconds']);
    expect(explain).toContain('Wall-clock seconds per run');

    const events = JSON.parse(
      await kubectl(cp, [
        'get',
        'events',
        '-n',
        ns,
        '--field-selector',
        'involvedObject.kind=SandboxPool',
        '-o',
        'json',
      ]),
    ) as { items: { reason: string; message: string }[] };
    expect(events.items.map((e) => e.message)).toContain('Created Deployment dify-sandboxpool');

    // Every reconcile line of the operator names the pool.
    const mine = operator
      .lines()
      .filter((l) => typeof l.msg === 'string' && /^reconcil/.test(l.msg));
    expect(mine.length).toBeGreaterThan(0);
    for (const l of mine) expect(l.key).toMatch(/^[a-z0-9-]+\/[a-z0-9-]+$/);
    expect(operator.lines().some((l) => l.key === `${ns}/dify` && l.msg === 'reconciled')).toBe(
      true,
    );
  });

  it('rolls its pods when spec.execution changes (the config hash on the pod template)', async () => {
    const ns = await namespace('sbp-roll');
    await applyPool(ns, 'dify', {});
    await observed(ns);
    const annotation = (d: V1Deployment | undefined) =>
      d?.spec?.template.metadata?.annotations?.['sandboxpool.dev/config-hash'];
    const before = annotation(await child.deployment(ns));
    expect(before).toMatch(/^[0-9a-f]{16}$/);
    const key = (await child.secret(ns))?.data?.['api-key'];

    await patch(ns, 'sbp', 'dify', 'merge', '{"spec":{"execution":{"timeoutSeconds":40}}}');
    const after = await waitFor('a new config hash', async () => {
      const a = annotation(await child.deployment(ns));
      return a !== before ? a : undefined;
    });
    expect(after).toMatch(/^[0-9a-f]{16}$/);
    expect((await child.configMap(ns))?.data?.['config.yaml']).toContain('worker_timeout: 40');
    // The Deployment rolls: a second ReplicaSet with the new template.
    await waitFor('a second ReplicaSet', async () => {
      const rs = await api.list('apps/v1', 'ReplicaSet', ns, 'app.kubernetes.io/instance=dify');
      return rs.length === 2 ? rs : undefined;
    });
    // The old pods (no kubelet here: they never leave) may still mount the old configuration.
    expect(await configMaps(ns)).toHaveLength(2);
    expect((await observed(ns)).status?.observedGeneration).toBe(2);
    // The generated key is never regenerated by a reconcile.
    expect((await child.secret(ns))?.data?.['api-key']).toBe(key);
  });

  it("deletes an earlier configuration's ConfigMap once no pod can mount it", async () => {
    const ns = await namespace('sbp-prune');
    await applyPool(ns, 'dify', { replicas: 0 });
    await observed(ns);
    const [first] = await configMaps(ns);
    expect(first).toMatch(/^dify-sandboxpool-config-[0-9a-f]{10}$/);
    expect((await child.configMap(ns))?.immutable).toBe(true);
    await patch(ns, 'sbp', 'dify', 'merge', '{"spec":{"execution":{"timeoutSeconds":40}}}');
    // No pods: the rollout is complete as soon as the Deployment controller saw the template.
    const left = await waitFor('only the new ConfigMap', async () => {
      const names = await configMaps(ns);
      return names.length === 1 && names[0] !== first ? names : undefined;
    });
    expect((await child.configMap(ns))?.metadata?.name).toBe(left[0]);
    expect((await child.configMap(ns))?.data?.['config.yaml']).toContain('worker_timeout: 40');
  });

  it('keeps the generation it acted on while applying a change fails, then catches up', async () => {
    const ns = await namespace('sbp-applyfail');
    provokedFailures.add(`${ns}/dify`);
    await applyPool(ns, 'dify', {});
    expect((await observed(ns)).status?.observedGeneration).toBe(1);
    // An admission webhook that is down refuses every write of a Deployment here (500).
    await applyDeploymentWebhook(cp, `down-${ns}`, ns, 'https://127.0.0.1:1/validate', 'Fail', 2);
    try {
      await patch(ns, 'sbp', 'dify', 'merge', '{"spec":{"execution":{"timeoutSeconds":40}}}');
      const failed = await waitFor('Degraded ApplyFailed for generation 2', async () => {
        const p = await getPool(ns);
        const d = condition(p, 'Degraded');
        return d?.reason === 'ApplyFailed' && d.observedGeneration === 2 ? p : undefined;
      });
      expect(condition(failed, 'Degraded')?.message).toContain('failed calling webhook');
      // Not acted on: what waits for generation 2 and Ready keeps waiting.
      expect(failed?.metadata.generation).toBe(2);
      expect(failed?.status?.observedGeneration).toBe(1);
      expect(condition(failed, 'Ready')?.observedGeneration).toBe(1);
      expect(condition(failed, 'Progressing')?.observedGeneration).toBe(1);
      // The new configuration's ConfigMap is there, but the pods still mount the old one: a pod
      // of the old template that restarts now keeps its configuration.
      expect(await configMaps(ns)).toHaveLength(2);
      expect((await child.configMap(ns))?.data?.['config.yaml']).not.toContain(
        'worker_timeout: 40',
      );
      // The grace period of a 40 s timeout: 5 s preStop + 40 + 15.
      expect(
        (await child.deployment(ns))?.spec?.template.spec?.terminationGracePeriodSeconds,
      ).not.toBe(60);
    } finally {
      await kubectl(cp, [
        'delete',
        'validatingwebhookconfiguration',
        `down-${ns}`,
        '--ignore-not-found',
      ]);
    }
    // Retried with backoff: it goes through once the webhook is gone.
    const caughtUp = await observed(ns, 'dify', 60_000);
    expect(condition(caughtUp, 'Degraded')?.reason).toBe('AsExpected');
    expect((await child.deployment(ns))?.spec?.template.spec?.terminationGracePeriodSeconds).toBe(
      60,
    );
  });

  it("leaves an object of a child's name that is not its own alone, says so, and recovers", async () => {
    const ns = await namespace('sbp-taken');
    // Someone else's Service, with the name the pool's Service would have (no labels of ours).
    await kubectl(
      cp,
      ['apply', '-f', '-'],
      cp.kubeconfigPath,
      stringify({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'dify-sandboxpool', namespace: ns },
        spec: { selector: { app: 'theirs' }, ports: [{ name: 'web', port: 80 }] },
      }),
    );
    await applyPool(ns, 'dify', {});
    const refused = await waitFor('Ready=False NameTaken', async () => {
      const r = condition(await getPool(ns), 'Ready');
      return r?.reason === 'NameTaken' ? r : undefined;
    });
    expect(refused.status).toBe('False');
    expect(refused.message).toContain(`Service ${ns}/dify-sandboxpool exists and does not belong`);
    const theirs = await child.service(ns);
    expect(theirs?.spec?.selector).toEqual({ app: 'theirs' });
    expect(theirs?.metadata?.ownerReferences).toBeUndefined();
    expect(await child.deployment(ns)).toBeUndefined();
    // Once it is gone, the pool makes its own (retried with backoff).
    await kubectl(cp, ['delete', 'service', 'dify-sandboxpool', '-n', ns]);
    await waitFor(
      "the pool's own Service",
      async () => {
        const s = await child.service(ns);
        return s?.metadata?.ownerReferences?.[0]?.name === 'dify' ? s : undefined;
      },
      60_000,
    );
    await waitFor('NameTaken resolved', async () => {
      const r = condition(await getPool(ns), 'Ready');
      return r !== undefined && r.reason !== 'NameTaken' ? r : undefined;
    });
  });

  it('brings back deleted children, restores fields it owns, and keeps fields users add', async () => {
    const ns = await namespace('sbp-repair');
    await applyPool(ns, 'dify', {});
    await observed(ns);
    const kinds: [string, string, string, string][] = [
      ['v1', 'ServiceAccount', 'serviceaccount', 'dify-sandboxpool'],
      ['v1', 'Secret', 'secret', 'dify-sandboxpool-api-key'],
      ['v1', 'ConfigMap', 'configmap', (await child.configMap(ns))!.metadata!.name!],
      ['v1', 'Service', 'service', 'dify-sandboxpool'],
      ['apps/v1', 'Deployment', 'deployment', 'dify-sandboxpool'],
      ['networking.k8s.io/v1', 'NetworkPolicy', 'networkpolicy', 'dify-sandboxpool'],
      ['policy/v1', 'PodDisruptionBudget', 'poddisruptionbudget', 'dify-sandboxpool'],
    ];
    for (const [apiVersion, kind, resource, name] of kinds) {
      const before = await api.get<{ metadata: { uid: string } }>(apiVersion, kind, ns, name);
      expect(before, `${kind} ${name}`).toBeDefined();
      await kubectl(cp, ['delete', resource, name, '-n', ns]);
      await waitFor(`${kind} ${name} to come back`, async () => {
        const now = await api.get<{ metadata: { uid: string } }>(apiVersion, kind, ns, name);
        return now && now.metadata.uid !== before!.metadata.uid ? now : undefined;
      });
    }

    // A label of the user's survives; a field the operator owns, changed by hand, is restored.
    await kubectl(cp, ['label', 'deployment', 'dify-sandboxpool', '-n', ns, 'team=ai']);
    await patch(
      ns,
      'deployment',
      'dify-sandboxpool',
      'json',
      '[{"op":"replace","path":"/spec/template/spec/containers/0/securityContext/readOnlyRootFilesystem","value":false},{"op":"replace","path":"/spec/strategy/rollingUpdate/maxUnavailable","value":1}]',
    );
    const repaired = await waitFor('the owned fields restored', async () => {
      const d = await child.deployment(ns);
      const c = d?.spec?.template.spec?.containers[0];
      return c?.securityContext?.readOnlyRootFilesystem === true &&
        d?.spec?.strategy?.rollingUpdate?.maxUnavailable === 0
        ? d
        : undefined;
    });
    expect(repaired.metadata?.labels?.team).toBe('ai');
    await patch(
      ns,
      'service',
      'dify-sandboxpool',
      'json',
      '[{"op":"replace","path":"/spec/ports/0/targetPort","value":9999}]',
    );
    await waitFor('the Service target port restored', async () =>
      (await child.service(ns))?.spec?.ports?.[0]?.targetPort === 'http' ? true : undefined,
    );
  });

  it('scales with kubectl scale sbp, with a PodDisruptionBudget only from two pods on', async () => {
    const ns = await namespace('sbp-scale');
    await applyPool(ns, 'dify', { replicas: 1 });
    await observed(ns);
    expect(await child.pdb(ns)).toBeUndefined();

    await kubectl(cp, ['scale', 'sbp', 'dify', '-n', ns, '--replicas=3']);
    await waitFor('3 replicas', async () =>
      (await child.deployment(ns))?.spec?.replicas === 3 ? true : undefined,
    );
    await waitFor('a PDB', () => child.pdb(ns));
    await waitFor('status.replicas 3', async () =>
      (await getPool(ns))?.status?.replicas === 3 ? true : undefined,
    );
    // The scale subresource reads back through status.selector and status.replicas.
    const scale = JSON.parse(
      await kubectl(cp, ['get', '--raw', `/apis/${SBP}/namespaces/${ns}/sandboxpools/dify/scale`]),
    ) as {
      spec: { replicas: number };
      status: { replicas: number; selector: string };
    };
    expect(scale.spec.replicas).toBe(3);
    expect(scale.status.selector).toBe(
      'app.kubernetes.io/name=sandboxpool-runner,app.kubernetes.io/instance=dify',
    );

    await kubectl(cp, ['scale', 'sbp', 'dify', '-n', ns, '--replicas=1']);
    await waitFor('the PDB gone', async () =>
      (await child.pdb(ns)) === undefined ? true : undefined,
    );
    expect((await child.deployment(ns))?.spec?.replicas).toBe(1);
  });

  it('leaves replicas to the HorizontalPodAutoscaler while autoscaling is set', async () => {
    const ns = await namespace('sbp-hpa');
    await applyPool(ns, 'dify', { replicas: 2 });
    await observed(ns);
    await patch(
      ns,
      'sbp',
      'dify',
      'merge',
      '{"spec":{"autoscaling":{"minReplicas":3,"maxReplicas":6}}}',
    );
    const hpa = await waitFor('the HPA', () => child.hpa(ns));
    expect(hpa.spec).toMatchObject({
      minReplicas: 3,
      maxReplicas: 6,
      scaleTargetRef: { kind: 'Deployment', name: 'dify-sandboxpool' },
    });
    // The operator no longer owns spec.replicas; the autoscaler raises it to its minimum.
    const scaled = await waitFor(
      'the HPA to scale the Deployment to 3',
      async () => {
        const d = await child.deployment(ns);
        return d?.spec?.replicas === 3 ? d : undefined;
      },
      90_000,
      1000,
    );
    const owners = (scaled.metadata?.managedFields ?? [])
      .filter((m) => JSON.stringify(m.fieldsV1 ?? {}).includes('"f:replicas"'))
      .map((m) => m.manager);
    expect(owners).not.toContain('sandboxpool-operator');

    // Nothing serves the pool's Pods metric here (no custom-metrics adapter): the autoscaler
    // cannot scale on it, and the pool says so instead of looking fine at its minimum.
    const degraded = await waitFor(
      'Degraded=True AutoscalingFailed',
      async () => {
        const c = condition(await getPool(ns), 'Degraded');
        return c?.status === 'True' && c.reason === 'AutoscalingFailed' ? c : undefined;
      },
      90_000,
      1000,
    ).catch(async (err: unknown) => {
      throw new Error(
        `${(err as Error).message}; the HPA's conditions: ${JSON.stringify((await child.hpa(ns))?.status?.conditions)}; the pool's: ${JSON.stringify((await getPool(ns))?.status?.conditions)}`,
      );
    });
    expect(degraded.message).toBe(
      'the HorizontalPodAutoscaler dify-sandboxpool cannot scale the runner pods (ScalingActive FailedGetPodsMetric for more than 5 s): no custom-metrics adapter serves sandbox_executions_in_flight for the runner pods (install one, such as prometheus-adapter, with a rule for it)',
    );

    // kubectl scale sbp changes spec.replicas, which the operator no longer applies.
    await kubectl(cp, ['scale', 'sbp', 'dify', '-n', ns, '--replicas=1']);
    await observed(ns);
    expect((await child.deployment(ns))?.spec?.replicas).toBe(3);

    // Without autoscaling the operator applies spec.replicas again and removes the HPA.
    await patch(ns, 'sbp', 'dify', 'json', '[{"op":"remove","path":"/spec/autoscaling"}]');
    await waitFor('the HPA gone', async () =>
      (await child.hpa(ns)) === undefined ? true : undefined,
    );
    await waitFor('1 replica', async () =>
      (await child.deployment(ns))?.spec?.replicas === 1 ? true : undefined,
    );
    await observed(ns);
    await waitFor('Degraded=False AsExpected', async () =>
      condition(await getPool(ns), 'Degraded')?.reason === 'AsExpected' ? true : undefined,
    );
  }, 240_000);

  it('hands a pool scaled to 0 over to the autoscaler at its minimum, not at 0', async () => {
    const ns = await namespace('sbp-hpa0');
    await applyPool(ns, 'dify', { replicas: 0 });
    await observed(ns);
    expect((await child.deployment(ns))?.spec?.replicas).toBe(0);
    await patch(
      ns,
      'sbp',
      'dify',
      'merge',
      '{"spec":{"autoscaling":{"minReplicas":2,"maxReplicas":4}}}',
    );
    // The autoscaler leaves a Deployment at 0 alone for good ("scaling disabled").
    await waitFor(
      'the Deployment at 2 replicas',
      async () => ((await child.deployment(ns))?.spec?.replicas === 2 ? true : undefined),
      30_000,
      500,
    );
    // Then it is active, and says what it lacks here (no custom-metrics adapter); waited for so
    // that this change of the pool's status happens within this test, not in the idle check.
    await waitFor(
      'Degraded=True AutoscalingFailed',
      async () =>
        condition(await getPool(ns), 'Degraded')?.reason === 'AutoscalingFailed' ? true : undefined,
      90_000,
      1000,
    );
  }, 150_000);

  it('lets nothing out of its pods when network.enabled is false', async () => {
    const ns = await namespace('sbp-nonet');
    await applyPool(ns, 'dify', { network: { enabled: false } });
    await observed(ns);
    const np = await child.networkPolicy(ns);
    expect(np?.spec?.policyTypes).toContain('Egress');
    expect(np?.spec?.egress ?? []).toEqual([]);
    expect((await child.configMap(ns))?.data?.['config.yaml']).toContain('enable_network: false');
  });

  it('is refused by the schema or its CEL rules when invalid, with a clear message', async () => {
    const ns = await namespace('sbp-invalid');
    const cases: [string, object, RegExp][] = [
      [
        'bad1',
        { network: { enabled: false, egressProxy: { url: 'http://10.0.0.1:3128' } } },
        /egressProxy and allowedCIDRs need network.enabled: true/,
      ],
      [
        'bad2',
        { autoscaling: { minReplicas: 5, maxReplicas: 2 } },
        /autoscaling.maxReplicas must be at least autoscaling.minReplicas/,
      ],
      [
        'bad3',
        { network: { egressProxy: { url: 'http://proxy.dify.svc:3128' } } },
        /egressProxy.to is required when the proxy URL names a host/,
      ],
      [
        'bad4',
        { network: { egressProxy: { url: 'ftp://proxy:21', to: [{ podSelector: {} }] } } },
        /must be an http:\/\/ or https:\/\/ URL/,
      ],
      ['bad5', { network: { allowedCIDRs: ['10.0.0.0/33'] } }, /must be a CIDR/],
      ['bad6', { replicas: -1 }, /spec.replicas.*greater than or equal to 0/],
      [
        'bad7',
        { network: { allowedClients: [{}] } },
        /a peer is either an ipBlock or pod\/namespace selectors/,
      ],
      [
        'bad8',
        { seccomp: { podProfile: 'Unconfined' } },
        /spec.seccomp.podProfile: Unsupported value: "Unconfined"/,
      ],
      [
        'a-name-that-is-much-too-long-for-its-children',
        {},
        /metadata.name must be a DNS-1035 label of at most 40 characters/,
      ],
      [
        'bad9',
        { network: { enabled: false }, dependencies: { python: ['numpy'] } },
        /dependencies are installed from the network when pods start: they need network.enabled: true/,
      ],
      [
        'bad10',
        { dependencies: { python: ['--index-url=http://evil'] } },
        /spec.dependencies.python\[0\].*should match/,
      ],
      ['bad11', { languages: ['python3'] }, /unknown field "spec.languages"/],
    ];
    for (const [name, spec, message] of cases)
      await expect(applyPool(ns, name, spec), name).rejects.toThrow(message);
    expect(await api.list(SBP, 'SandboxPool', ns)).toEqual([]);
  });

  it('reports what only the operator can detect as Ready=False with a reason, and recovers', async () => {
    const ns = await namespace('sbp-detect');
    await applyPool(ns, 'dify', { apiKeySecretRef: { name: 'my-key' } });
    const missing = await waitFor('Ready=False SecretNotFound', async () => {
      const p = await getPool(ns);
      return condition(p, 'Ready')?.reason === 'SecretNotFound' ? p : undefined;
    });
    expect(condition(missing, 'Ready')).toMatchObject({
      status: 'False',
      message: `spec.apiKeySecretRef: Secret ${ns}/my-key does not exist`,
    });
    expect(condition(missing, 'Degraded')).toMatchObject({
      status: 'True',
      reason: 'SecretNotFound',
    });
    expect(await child.deployment(ns)).toBeUndefined();

    await kubectl(cp, [
      'create',
      'secret',
      'generic',
      'my-key',
      '-n',
      ns,
      '--from-literal=api-key=0123456789abcdef',
    ]);
    const fixed = await waitFor(
      'the pool to recover',
      async () => {
        const p = await getPool(ns);
        return condition(p, 'Ready')?.reason === 'ReplicasUnavailable' ? p : undefined;
      },
      60_000,
    );
    expect(fixed.status?.apiKeySecretRef).toEqual({ name: 'my-key', key: 'api-key' });
    const d = await child.deployment(ns);
    expect(d?.spec?.template.spec?.containers[0]?.env).toContainEqual({
      name: 'API_KEY',
      valueFrom: { secretKeyRef: { name: 'my-key', key: 'api-key' } },
    });
    expect(await child.secret(ns)).toBeUndefined(); // none generated

    // A rotated key rolls the pods at once (a watch on Secrets' metadata; the resync is an hour).
    const keyVersion = async () =>
      (await child.deployment(ns))?.spec?.template.metadata?.annotations?.[
        'sandboxpool.dev/api-key-version'
      ];
    const before = await keyVersion();
    expect(before).toBeTruthy();
    await kubectl(cp, [
      'patch',
      'secret',
      'my-key',
      '-n',
      ns,
      '-p',
      JSON.stringify({ stringData: { 'api-key': 'fedcba9876543210' } }),
    ]);
    await waitFor(
      'the rotated key to reach the pod template',
      async () => ((await keyVersion()) !== before ? true : undefined),
      20_000,
    );

    // The API server refuses the Deployment (requests above limits): InvalidSpec, its message.
    await applyPool(ns, 'greedy', {
      resources: { requests: { memory: '2Gi' }, limits: { memory: '1Gi' } },
    });
    const greedy = await waitFor('Ready=False InvalidSpec', async () => {
      const p = await getPool(ns, 'greedy');
      return condition(p, 'Ready')?.reason === 'InvalidSpec' ? p : undefined;
    });
    expect(condition(greedy, 'Ready')?.message).toMatch(
      /must be less than or equal to memory limit/,
    );
    const events = await kubectl(cp, [
      'get',
      'events',
      '-n',
      ns,
      '--field-selector',
      'involvedObject.name=greedy,type=Warning',
      '-o',
      'jsonpath={.items[*].reason}',
    ]);
    expect(events).toContain('InvalidSpec');
    // The operator keeps running (no crash loop) and keeps serving other pools.
    expect(operator.child.exitCode).toBeNull();
  }, 150_000);

  it('installs the Localhost seccomp profile on every node before its pods use it', async () => {
    const ns = await namespace('sbp-seccomp');
    await applyPool(ns, 'dify', { seccomp: { podProfile: 'Localhost', extraSyscalls: ['mbind'] } });
    const d = await waitFor('pods with the Localhost profile', async () => {
      const dep = await child.deployment(ns);
      return dep?.spec?.template.spec?.securityContext?.seccompProfile?.type === 'Localhost'
        ? dep
        : undefined;
    });
    const localhost = d.spec!.template.spec!.securityContext!.seccompProfile!.localhostProfile!;
    expect(localhost).toMatch(/^sandboxpool\/runner-[0-9a-f]{16}\.json$/);

    const profiles = await api.get<V1ConfigMap>(
      'v1',
      'ConfigMap',
      OPERATOR_NAMESPACE,
      'sandboxpool-seccomp-profiles',
    );
    const content = profiles?.data?.[path.basename(localhost)];
    expect(JSON.parse(content ?? '{}').syscalls).toContainEqual({
      names: ['mbind'],
      action: 'SCMP_ACT_ALLOW',
    });
    const ds = await api.get<V1DaemonSet>(
      'apps/v1',
      'DaemonSet',
      OPERATOR_NAMESPACE,
      'sandboxpool-seccomp-installer',
    );
    expect(ds?.spec?.template.spec?.volumes).toContainEqual({
      name: 'seccomp',
      hostPath: { path: '/var/lib/kubelet/seccomp', type: 'DirectoryOrCreate' },
    });
    expect((await observed(ns)).status?.seccompProfile).toBe(`Localhost/${localhost}`);
    // PodSecurity "restricted" admits pods with a Localhost profile.
    await waitFor('a runner pod with the Localhost profile', async () =>
      (await pods(ns)).some(
        (p) => p.spec?.securityContext?.seccompProfile?.localhostProfile === localhost,
      )
        ? true
        : undefined,
    );

    // The last pool that wants a profile gone, the installer goes too.
    await kubectl(cp, ['delete', 'sbp', 'dify', '-n', ns]);
    await waitFor('the installer removed', async () =>
      (await api.get(
        'apps/v1',
        'DaemonSet',
        OPERATOR_NAMESPACE,
        'sandboxpool-seccomp-installer',
      )) === undefined &&
      (await api.get('v1', 'ConfigMap', OPERATOR_NAMESPACE, 'sandboxpool-seccomp-profiles')) ===
        undefined
        ? true
        : undefined,
    );
  });

  it('takes every child with it when deleted (garbage collection by owner references)', async () => {
    const ns = await namespace('sbp-gc');
    await applyPool(ns, 'dify', {});
    await observed(ns);
    await waitFor('the Deployment', () => child.deployment(ns));
    await kubectl(cp, ['delete', 'sbp', 'dify', '-n', ns]);
    await waitFor(
      'every child gone',
      async () => {
        const left = await Promise.all(Object.values(child).map((get) => get(ns)));
        const gone = left.every((c) => c === undefined) && (await configMaps(ns)).length === 0;
        return gone ? true : undefined;
      },
      60_000,
      1000,
    );
    await waitFor(
      'the pods gone',
      async () => ((await pods(ns)).length === 0 ? true : undefined),
      60_000,
      1000,
    );
  });
});

describe('the operator process', () => {
  it('serves /healthz, /readyz and /metrics', async () => {
    const ns = await namespace('sbp-metrics');
    await applyPool(ns, 'dify', {});
    await applyPool(ns, 'unkeyed', { apiKeySecretRef: { name: 'absent' } });
    // The design's example: empty lists and maps in podTemplate (which the API server drops).
    await applyPool(ns, 'empty-template', {
      podTemplate: {
        nodeSelector: {},
        tolerations: [],
        affinity: {},
        priorityClassName: '',
        runtimeClassName: '',
      },
    });
    await observed(ns);
    await observed(ns, 'unkeyed');
    await observed(ns, 'empty-template');
    const base = `http://127.0.0.1:${operator.port}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, leader: true });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^sandboxpool_operator_reconciles_total\{result="success"\} [1-9]/m);
    expect(metrics).toMatch(
      /^sandboxpool_operator_reconcile_duration_seconds_bucket\{le="[0-9.]+",result="success"\}/m,
    );
    expect(metrics).toMatch(/^sandboxpool_operator_reconciles_total\{result="invalid"\} [1-9]/m);
    expect(metrics).toMatch(/^sandboxpool_operator_queue_depth\{state="ready"\} \d+/m);
    expect(metrics).toMatch(/^sandboxpool_operator_managed_pools \d+/m);
    expect(metrics).toMatch(/^sandboxpool_operator_leader 1$/m);

    // Idle, it does nothing: its own writes (status, applies that change nothing) do not make
    // it reconcile again and again. (The pool without its Secret is retried with backoff, as
    // it should be: those reconciles count as "invalid".)
    // No API call of a reconcile has failed in this file (a failure is retried, and shows here),
    // but where a test made it fail on purpose.
    const failures = operator
      .lines()
      .filter((l) => l.level === 40 && typeof l.key === 'string' && !provokedFailures.has(l.key));
    expect(failures).toEqual([]);

    // A late event of the cluster's own (the controller manager updating a Deployment's status
    // under load, say) may still reconcile a pool once; a pool reconciled again and again is a
    // loop. Hence: no pool twice in 5 s.
    await new Promise((r) => setTimeout(r, 2000));
    const mark = operator.lines().length;
    await new Promise((r) => setTimeout(r, 5000));
    const reconciled = operator
      .lines()
      .slice(mark)
      .filter((l) => l.msg === 'reconciled')
      .map((l) => String(l.key));
    const twice = reconciled.filter((key, i) => reconciled.indexOf(key) !== i);
    expect(twice, `reconciled while idle: ${reconciled.join(', ')}`).toEqual([]);
  });
});
