// The operator under failures, on a private control plane (these tests kill and restart its
// components, which must not disturb the shared one): leader election between two processes,
// a hand-over when the leader dies, and recovery from API server and etcd restarts without a
// restart of the operator itself.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import {
  KubeConfig,
  type V1ConfigMap,
  type V1DaemonSet,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { COMMITTED_PROFILE } from '../../native/tools/seccomp-profile.js';
import type { SandboxPool } from '../../operator/api/v1alpha1.js';
import { installerPodNode, PROFILES_HASH_ANNOTATION } from '../../operator/builders/seccomp.js';
import { REPO_ROOT } from '../../operator/paths.js';
import { Informer } from '../../operator/controller/informer.js';
import { Kube, type KubeObject } from '../../operator/controller/kube.js';
import { startControlPlane, type ControlPlane } from '../k8s/controlplane.js';
import {
  Api,
  OPERATOR_NAMESPACE,
  applyDeploymentWebhook,
  applyPool as applyPoolIn,
  createNamespace,
  installOperator,
  kubectl,
  startOperator,
  waitFor,
  type OperatorProcess,
} from '../support/operator.js';

const SBP = 'sandboxpool.dev/v1alpha1';
// These operators have no seccomp profile: a Localhost pool is something only they can refuse.
const NO_PROFILE = { SANDBOXPOOL_SECCOMP_PROFILE: '/nonexistent/sandboxpool-runner.json' };

const PROFILE = path.join(REPO_ROOT, COMMITTED_PROFILE);

let cp: ControlPlane;
let api: Api;
let kubeconfig: string;
const running: OperatorProcess[] = [];

beforeAll(async () => {
  cp = await startControlPlane();
  api = new Api(cp.kubeconfigPath);
  kubeconfig = await installOperator(cp);
}, 120_000);

afterEach(async (context) => {
  if (context.task.result?.state === 'fail')
    for (const o of running) console.log(`[${o.name}] last log lines:\n${o.tail(60)}`);
  await Promise.all(running.splice(0).map((o) => o.stop()));
});

afterAll(async () => {
  await cp?.stop();
});

async function operator(
  name: string,
  env: Record<string, string> = NO_PROFILE,
): Promise<OperatorProcess> {
  const o = await startOperator(kubeconfig, name, env);
  running.push(o);
  return o;
}

const namespace = (prefix: string) => createNamespace(cp, prefix);

const applyPool = (ns: string, name: string, spec: object = {}) => applyPoolIn(cp, ns, name, spec);

const deployment = (ns: string, pool: string) =>
  api.get<V1Deployment>('apps/v1', 'Deployment', ns, `${pool}-sandboxpool`);

function reconciled(ns: string, pool: string, timeoutMs = 30_000): Promise<V1Deployment> {
  return waitFor(`the Deployment of ${ns}/${pool}`, () => deployment(ns, pool), timeoutMs, 500);
}

/** Waits until the seccomp installer DaemonSet has a pod scheduled on N nodes. */
const installerScheduledOn = (n: number) =>
  waitFor(`the installer scheduled on ${n} node(s)`, async () => {
    const ds = await api.get<{ status?: { desiredNumberScheduled?: number } }>(
      'apps/v1',
      'DaemonSet',
      OPERATOR_NAMESPACE,
      'sandboxpool-seccomp-installer',
    );
    return ds?.status?.desiredNumberScheduled === n ? ds : undefined;
  });

/**
 * A node as its kubelet would keep it (there is none here): Ready or not, with a heartbeat every
 * 5 s, so that the node lifecycle controller does not mark it Unknown. Returns what removes it.
 */
async function node(name: string, ready: boolean): Promise<() => Promise<void>> {
  await kubectl(
    cp,
    ['apply', '-f', '-'],
    cp.kubeconfigPath,
    stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name } }),
  );
  const beat = () => {
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const condition = {
      type: 'Ready',
      status: ready ? 'True' : 'False',
      reason: ready ? 'KubeletReady' : 'KubeletNotReady',
      lastHeartbeatTime: now,
      lastTransitionTime: now,
    };
    return kubectl(cp, [
      'patch', 'node', name, '--subresource=status', '--type=merge',
      '-p', JSON.stringify({ status: { conditions: [condition] } }),
    ]); // prettier-ignore
  };
  await beat();
  const timer = setInterval(() => void beat().catch(() => undefined), 5000);
  return async () => {
    clearInterval(timer);
    await kubectl(cp, ['delete', 'node', name, '--ignore-not-found']);
  };
}

/** The profiles hash of the installer DaemonSet's template. */
const installerHash = async () =>
  (
    await api.get<V1DaemonSet>(
      'apps/v1',
      'DaemonSet',
      OPERATOR_NAMESPACE,
      'sandboxpool-seccomp-installer',
    )
  )?.spec?.template.metadata?.annotations?.[PROFILES_HASH_ANNOTATION];

/** The kubelet's part, played by the test: the installer pod for NODE of the DaemonSet's
 * current template reports ready (its probe found the profiles on the node). */
async function installerReadyOn(nodeName: string, notHash?: string): Promise<void> {
  const pod = await waitFor(`the current installer pod for ${nodeName}`, async () => {
    const hash = await installerHash();
    if (hash === undefined || hash === notHash) return undefined;
    const pods = await api.list<V1Pod & { metadata: { name: string } }>(
      'v1',
      'Pod',
      OPERATOR_NAMESPACE,
      'app.kubernetes.io/name=sandboxpool-seccomp-installer',
    );
    return pods.find(
      (p) =>
        installerPodNode(p) === nodeName &&
        p.metadata.annotations?.[PROFILES_HASH_ANNOTATION] === hash &&
        !p.metadata.deletionTimestamp,
    );
  });
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  await kubectl(cp, [
    'patch',
    'pod',
    pod.metadata.name,
    '-n',
    OPERATOR_NAMESPACE,
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({
      status: {
        phase: 'Running',
        conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }],
      },
    }),
  ]);
}

/** Waits until the pool's pods get their Localhost seccomp profile; returns it. */
const switchesToLocalhost = (ns: string, pool: string) =>
  waitFor(
    'the Localhost profile',
    async () => {
      const sp = (await deployment(ns, pool))?.spec?.template.spec?.securityContext?.seccompProfile;
      return sp?.type === 'Localhost' ? sp : undefined;
    },
    60_000,
    500,
  );

const holder = async () =>
  (
    await api.get<{ spec?: { holderIdentity?: string | null } }>(
      'coordination.k8s.io/v1',
      'Lease',
      OPERATOR_NAMESPACE,
      'sandboxpool-operator',
    )
  )?.spec?.holderIdentity ?? null;

const leads = (o: OperatorProcess) =>
  o.waitForLine('leadership', (l) => l.msg === 'became the leader', 30_000);
const touched = (o: OperatorProcess, key: string) => o.lines().some((l) => l.key === key);

describe('leader election', () => {
  it('lets only the leader reconcile, and hands over within 20 s when the leader is killed', async () => {
    const a = await operator('operator-a');
    await leads(a);
    const b = await operator('operator-b');
    await waitFor('operator-b synced', async () => {
      const r = await fetch(`http://127.0.0.1:${b.port}/readyz`);
      return r.status === 200 ? ((await r.json()) as { leader: boolean }) : undefined;
    });
    expect(await holder()).toBe('operator-a');

    const ns = await namespace('ha');
    await applyPool(ns, 'one');
    await reconciled(ns, 'one');
    expect(touched(a, `${ns}/one`)).toBe(true);
    expect(b.lines().filter((l) => typeof l.key === 'string')).toEqual([]);
    expect(b.lines().some((l) => l.msg === 'became the leader')).toBe(false);

    // A crash: nothing is released, the follower waits out the lease.
    const killedAt = Date.now();
    await a.kill();
    await leads(b);
    const handoverMs = Date.now() - killedAt;
    console.log(
      `[operator-ha] leader killed: operator-b took over after ${(handoverMs / 1000).toFixed(1)} s`,
    );
    expect(handoverMs).toBeLessThan(20_000);
    expect(await holder()).toBe('operator-b');

    await applyPool(ns, 'two');
    await reconciled(ns, 'two');
    expect(touched(b, `${ns}/two`)).toBe(true);
  }, 120_000);

  it('releases the lease when stopped, so the next one takes over at once', async () => {
    const c = await operator('operator-c');
    await leads(c);
    const d = await operator('operator-d');
    await waitFor('operator-d ready', async () =>
      (await fetch(`http://127.0.0.1:${d.port}/readyz`)).status === 200 ? true : undefined,
    );
    const stoppedAt = Date.now();
    expect((await c.stop()).code).toBe(0);
    await leads(d);
    const handoverMs = Date.now() - stoppedAt;
    console.log(
      `[operator-ha] leader stopped: operator-d took over after ${(handoverMs / 1000).toFixed(1)} s`,
    );
    expect(handoverMs).toBeLessThan(6_000);
  }, 90_000);
});

describe('a leader that stops', () => {
  it('finishes the reconciles under way before it gives up the lease', async () => {
    // An admission webhook that accepts the connection and never answers holds every write of
    // a Deployment in the namespace for its timeout: a reconcile stays under way that long.
    const blackhole = net.createServer(() => undefined);
    await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    const port = (blackhole.address() as net.AddressInfo).port;
    const ns = await namespace('handover');
    const webhook = `slow-${ns}`;
    await applyDeploymentWebhook(
      cp,
      webhook,
      ns,
      `https://127.0.0.1:${port}/validate`,
      'Ignore',
      6,
    );
    try {
      const g = await operator('operator-h');
      await leads(g);
      const h = await operator('operator-i');
      await waitFor('operator-i ready', async () =>
        (await fetch(`http://127.0.0.1:${h.port}/readyz`)).status === 200 ? true : undefined,
      );
      await applyPool(ns, 'slow');
      // The children before the Deployment are made; the Deployment's write now waits.
      await g.waitForLine(
        'the NetworkPolicy made',
        (l) => typeof l.msg === 'string' && l.msg.startsWith(`Created NetworkPolicy`),
      );
      const stopped = g.stop();
      const took = await leads(h);
      // The Deployment went through once the webhook timed out (failurePolicy Ignore), written
      // by the old leader before it let the lease go.
      const created = g
        .lines()
        .find((l) => typeof l.msg === 'string' && l.msg.startsWith('Created Deployment'));
      expect(created, 'the old leader finished its reconcile').toBeDefined();
      expect(Number(took.time)).toBeGreaterThan(Number(created!.time));
      expect((await stopped).code).toBe(0);
    } finally {
      await kubectl(cp, [
        'delete',
        'validatingwebhookconfiguration',
        webhook,
        '--ignore-not-found',
      ]);
      blackhole.close();
    }
  }, 120_000);
});

describe('outages', () => {
  it('recovers from API server and etcd restarts without restarting itself', async () => {
    const o = await operator('operator-e');
    await leads(o);
    const pid = o.child.pid;
    const ns = await namespace('outage');
    await applyPool(ns, 'before');
    await reconciled(ns, 'before');

    await cp.restart('kube-apiserver');
    await applyPool(ns, 'after-apiserver');
    await reconciled(ns, 'after-apiserver', 90_000);
    // Its watches came back too: a deleted child of an older pool is made again.
    const old = await deployment(ns, 'before');
    await kubectl(cp, ['delete', 'deployment', 'before-sandboxpool', '-n', ns]);
    await waitFor(
      'the deleted Deployment back',
      async () => {
        const now = await deployment(ns, 'before');
        return now && now.metadata?.uid !== old?.metadata?.uid ? now : undefined;
      },
      60_000,
      500,
    );

    await cp.restart('etcd');
    await applyPool(ns, 'after-etcd');
    await reconciled(ns, 'after-etcd', 90_000);

    expect(o.child.exitCode).toBeNull();
    expect(o.child.pid).toBe(pid);
    expect(o.lines().some((l) => l.msg === 'watch failed: retrying')).toBe(true);
  }, 240_000);
});

describe('the informer', () => {
  it('resumes after an API server restart, and relists when its resourceVersion is gone (410)', async () => {
    const ns = await namespace('informer');
    const other = await namespace('informer-other');
    const logs: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line));
        done();
      },
    });
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    const kube = new Kube(kc);
    const seen: string[] = [];
    const restarts: string[] = [];
    const informer = new Informer<V1ConfigMap & KubeObject>({
      kube,
      resource: { apiVersion: 'v1', kind: 'ConfigMap', namespace: ns },
      labelSelector: 'test=informer',
      logger: pino({ level: 'debug' }, sink),
      onChange: (change, cm) => seen.push(`${change} ${cm.metadata?.name}`),
      onRestart: (reason) => restarts.push(reason),
      backoffBaseMs: 200,
      backoffMaxMs: 2000,
    });
    informer.start();
    try {
      await waitFor('the first list', async () => (informer.synced ? true : undefined));
      await kubectl(cp, ['create', 'configmap', 'a', '-n', ns]);
      await kubectl(cp, ['label', 'configmap', 'a', '-n', ns, 'test=informer']);
      await waitFor('a seen', async () => (informer.get(ns, 'a') ? true : undefined));
      // Writes the informer does not see move the store's revision past its resourceVersion;
      // a restarted API server's watch cache starts there, so resuming from it is 410 Gone.
      for (let i = 0; i < 5; i++) await kubectl(cp, ['create', 'configmap', `x${i}`, '-n', other]);
      await cp.restart('kube-apiserver');
      await kubectl(cp, ['create', 'configmap', 'b', '-n', ns]);
      await kubectl(cp, ['label', 'configmap', 'b', '-n', ns, 'test=informer']);
      await waitFor(
        'b seen after the restart',
        async () => (informer.get(ns, 'b') ? true : undefined),
        60_000,
      );
      expect(
        informer
          .list()
          .map((c) => c.metadata?.name)
          .sort(),
      ).toEqual(['a', 'b']);
      expect(restarts).toContain('gone');
      expect(logs.some((l) => l.msg === 'watch expired (410 Gone): relisting')).toBe(true);
      expect(seen).toEqual(['add a', 'add b']);
    } finally {
      await informer.stop();
      kube.close();
    }
  }, 120_000);
});

describe('seccomp profile delivery', () => {
  it('switches the pods to the Localhost profile only once the installer runs on every node', async () => {
    // A Ready node (only the object: there is no kubelet) makes the installer DaemonSet schedule
    // a pod there that never becomes ready, so the profile is not installed everywhere.
    const nodeName = `node-${randomBytes(3).toString('hex')}`;
    const removeNodes = [await node(nodeName, true)];
    try {
      const o = await operator('operator-g', { SANDBOXPOOL_SECCOMP_PROFILE: PROFILE });
      await leads(o);
      const ns = await namespace('gating');
      await applyPool(ns, 'strict', { seccomp: { podProfile: 'Localhost' } });
      const pending = await waitFor('Progressing SeccompProfilePending', async () => {
        const p = await api.get<SandboxPool>(SBP, 'SandboxPool', ns, 'strict');
        const c = p?.status?.conditions?.find((x) => x.type === 'Progressing');
        return c?.reason === 'SeccompProfilePending' ? p : undefined;
      });
      expect(pending.status?.seccompProfile).toBe('RuntimeDefault');
      const d = await reconciled(ns, 'strict');
      expect(d.spec?.template.spec?.securityContext?.seccompProfile).toEqual({
        type: 'RuntimeDefault',
      });
      await installerScheduledOn(1);

      // The installer pod reports ready: now the profile is everywhere, and the pods switch.
      await installerReadyOn(nodeName);
      const switched = await switchesToLocalhost(ns, 'strict');
      expect(switched.localhostProfile).toMatch(/^sandboxpool\/runner-[0-9a-f]{16}\.json$/);

      // A node joins: the installer is busy again (its new pod is not ready). The pool's pods
      // keep the profile they have instead of rolling to RuntimeDefault and back.
      removeNodes.push(await node(`${nodeName}-b`, true));
      await installerScheduledOn(2);
      const busy = await waitFor('Progressing SeccompProfilePending again', async () => {
        const p = await api.get<SandboxPool>(SBP, 'SandboxPool', ns, 'strict');
        const c = p?.status?.conditions?.find((x) => x.type === 'Progressing');
        return c?.reason === 'SeccompProfilePending' ? { pool: p!, condition: c } : undefined;
      });
      expect(busy.condition.message).toContain(`the pods keep ${switched.localhostProfile}`);
      expect(busy.pool.status?.seccompProfile).toBe(`Localhost/${switched.localhostProfile}`);
      const kept = await deployment(ns, 'strict');
      expect(kept?.spec?.template.spec?.securityContext?.seccompProfile).toEqual(switched);

      // The pool asks for another profile while the installer is still busy: its pods keep the
      // one they run (still shipped beside the new one) instead of falling back to RuntimeDefault.
      await kubectl(cp, [
        'patch', 'sbp', 'strict', '-n', ns, '--type=merge',
        '-p', '{"spec":{"seccomp":{"extraSyscalls":["mbind"]}}}',
      ]); // prettier-ignore
      const profiles = () =>
        api.get<{ data?: Record<string, string> }>(
          'v1',
          'ConfigMap',
          OPERATOR_NAMESPACE,
          'sandboxpool-seccomp-profiles',
        );
      await waitFor('the new profile shipped', async () => {
        const names = Object.keys((await profiles())?.data ?? {});
        return names.length === 2 ? names : undefined;
      });
      await new Promise((r) => setTimeout(r, 3000)); // the pool's reconciles after that
      expect(Object.keys((await profiles())?.data ?? {})).toContain(
        path.posix.basename(switched.localhostProfile!),
      );
      const during = await deployment(ns, 'strict');
      expect(during?.spec?.template.spec?.securityContext?.seccompProfile).toEqual(switched);
    } finally {
      for (const remove of removeNodes) await remove();
    }
  }, 120_000);

  it('does not wait for a node that is not Ready', async () => {
    // One node up, one down (its kubelet reports NotReady): the pods switch once the installer
    // is ready on the one that can take pods. Before, every pool stayed on RuntimeDefault.
    const up = `node-${randomBytes(3).toString('hex')}`;
    const removeNodes = [await node(up, true), await node(`${up}-down`, false)];
    try {
      const o = await operator('operator-h', { SANDBOXPOOL_SECCOMP_PROFILE: PROFILE });
      await leads(o);
      const ns = await namespace('nodedown');
      await applyPool(ns, 'strict', { seccomp: { podProfile: 'Localhost' } });
      await installerScheduledOn(2);
      // The node that is up has no installer ready yet: pending.
      await waitFor('Progressing SeccompProfilePending', async () => {
        const p = await api.get<SandboxPool>(SBP, 'SandboxPool', ns, 'strict');
        const c = p?.status?.conditions?.find((x) => x.type === 'Progressing');
        return c?.reason === 'SeccompProfilePending' ? p : undefined;
      });
      expect((await reconciled(ns, 'strict')).spec?.template.spec?.securityContext).toMatchObject({
        seccompProfile: { type: 'RuntimeDefault' },
      });
      await installerReadyOn(up);
      const switched = await switchesToLocalhost(ns, 'strict');
      expect(switched.localhostProfile).toMatch(/^sandboxpool\/runner-[0-9a-f]{16}\.json$/);

      // Another profile while the node is still down: the installer rolls out on the node that
      // is up (a rolling budget the down node's pod used up stopped it there), and the pods
      // switch to it.
      const before = await installerHash();
      await kubectl(cp, [
        'patch', 'sbp', 'strict', '-n', ns, '--type=merge',
        '-p', '{"spec":{"seccomp":{"extraSyscalls":["mbind"]}}}',
      ]); // prettier-ignore
      await installerReadyOn(up, before);
      await waitFor(
        'the new Localhost profile',
        async () => {
          const dep = await deployment(ns, 'strict');
          const sp = dep?.spec?.template.spec?.securityContext?.seccompProfile;
          return sp?.type === 'Localhost' && sp.localhostProfile !== switched.localhostProfile
            ? sp
            : undefined;
        },
        60_000,
        500,
      );
    } finally {
      for (const remove of removeNodes) await remove();
    }
  }, 120_000);
});

describe('what only the operator can detect', () => {
  it('a Localhost seccomp pool without a profile to install is Ready=False, with the reason', async () => {
    const o = await operator('operator-f');
    await leads(o);
    const ns = await namespace('noprofile');
    await applyPool(ns, 'strict', { seccomp: { podProfile: 'Localhost' } });
    const pool = await waitFor('Ready=False', async () => {
      const p = await api.get<SandboxPool>(SBP, 'SandboxPool', ns, 'strict');
      const ready = p?.status?.conditions?.find((c) => c.type === 'Ready');
      return ready?.status === 'False' ? ready : undefined;
    });
    expect(pool.reason).toBe('SeccompProfileUnavailable');
    expect(pool.message).toContain('/nonexistent/sandboxpool-runner.json');
    expect(await deployment(ns, 'strict')).toBeUndefined();
    expect(o.child.exitCode).toBeNull();
  }, 90_000);
});
