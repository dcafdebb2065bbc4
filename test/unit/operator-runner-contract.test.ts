// The contract between the operator and the runner: the runner's own loadConfig accepts exactly
// what the builders render (the ConfigMap's config.yaml plus the Deployment's environment), with
// the values the pool asked for, and the pod spec matches what that configuration needs.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SETTINGS, loadConfig } from '../../runner/src/config.js';
import type { BuildContext } from '../../operator/builders/common.js';
import { buildConfigMap, runnerSettings } from '../../operator/builders/configmap.js';
import { buildDeployment } from '../../operator/builders/deployment.js';
import { poolWith, type SpecInput } from '../support/pools.js';

const ctx: BuildContext = {
  image: 'sandboxpool/runner:test',
  apiKey: { name: 'key-secret', key: 'api-key' },
  apiKeyVersion: 'uid/1',
  seccomp: { type: 'RuntimeDefault' },
};
const SECRET_VALUE = 'a-key-from-the-secret';

/** Every dotted leaf path of a YAML document. */
function leaves(doc: unknown, prefix = ''): string[] {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return [prefix];
  return Object.entries(doc).flatMap(([k, v]) => leaves(v, prefix ? `${prefix}.${k}` : k));
}

const specs: Record<string, SpecInput> = {
  defaults: {},
  'custom limits': {
    execution: {
      timeoutSeconds: 60,
      memoryMiB: 512,
      cpuTimeSeconds: 30,
      maxOutputBytes: 1048576,
      maxWorkers: 8,
      maxQueue: 0,
      warmPool: { python3: 0, nodejs: 1 },
      enablePreload: false,
    },
    logLevel: 'debug',
  },
  'egress proxy and extra syscalls': {
    network: { egressProxy: { url: 'https://10.0.0.1:3128', noProxy: 'localhost,.svc' } },
    seccomp: { extraSyscalls: ['mbind', 'get_mempolicy'] },
  },
  'egress proxy and allowed CIDRs': {
    network: { egressProxy: { url: 'http://10.0.0.1:3128' }, allowedCIDRs: ['10.1.0.0/16'] },
  },
  'network disabled': { network: { enabled: false } },
  dependencies: {
    network: { egressProxy: { url: 'http://10.0.0.1:3128' } },
    dependencies: {
      python: ['numpy==2.1.3', 'pandas>=2,<3'],
      nodejs: ['lodash@4.17.21', '@scope/pkg@1.0.0'],
      pipIndexUrl: 'https://pypi.internal/simple',
      npmRegistry: 'https://npm.internal/',
    },
  },
};

/** The TCP ports runs may connect to (undefined: any): the proxy's and DNS, unless allowedCIDRs
 * (reachable on every port through the NetworkPolicy) or no proxy at all. */
const connectPorts: Record<string, number[] | undefined> = {
  defaults: undefined,
  'custom limits': undefined,
  'egress proxy and extra syscalls': [53, 3128],
  'egress proxy and allowed CIDRs': undefined,
  'network disabled': undefined,
  dependencies: [53, 3128],
};

describe('runner contract', () => {
  it.each(Object.entries(specs))(
    'loadConfig accepts the rendered configuration (%s)',
    (_name, spec) => {
      const pool = poolWith(spec);
      const cm = buildConfigMap(pool);
      const deployment = buildDeployment(pool, ctx);
      const pod = deployment.spec!.template.spec!;
      const container = pod.containers[0]!;

      // The files the ConfigMap volume puts in the container, at the mount path.
      const mount = container.volumeMounts!.find((m) => m.name === 'config')!;
      const volume = pod.volumes!.find((v) => v.name === mount.name)!;
      expect(volume.configMap?.name).toBe(cm.metadata?.name);
      const dir = mkdtempSync(path.join(os.tmpdir(), 'sbp-contract-'));
      for (const [file, text] of Object.entries(cm.data ?? {}))
        writeFileSync(path.join(dir, file), text);

      // The container's environment, with the Secret's value where it refers to one; the config
      // path it names is translated from the mount path to the temporary directory.
      const env: Record<string, string> = {};
      for (const e of container.env ?? []) {
        if (e.valueFrom?.secretKeyRef) {
          expect(e.valueFrom.secretKeyRef).toEqual({ name: 'key-secret', key: 'api-key' });
          env[e.name] = SECRET_VALUE;
        } else env[e.name] = e.value!;
      }
      expect(env.SANDBOX_CONFIG?.startsWith(`${mount.mountPath}/`)).toBe(true);
      const configPath = path.join(dir, path.relative(mount.mountPath, env.SANDBOX_CONFIG!));

      const config = loadConfig({ env, configPath });
      expect(config).toMatchObject(runnerSettings(pool));
      expect(config.apiKey).toBe(SECRET_VALUE);
      expect(config.apiKeyDefaulted).toBe(false);
      expect(config.unknownKeys).toEqual([]);
      expect(config.connectPorts).toEqual(connectPorts[_name]);

      // Nothing rendered is ignored by the runner: every key and variable is one of its settings.
      const known = new Set(SETTINGS.map((s) => s.yaml));
      expect(leaves(parse(cm.data!['config.yaml']!)).filter((k) => !known.has(k))).toEqual([]);
      const knownEnv = new Set([...SETTINGS.map((s) => s.env), 'SANDBOX_CONFIG']);
      expect(Object.keys(env).filter((k) => !knownEnv.has(k))).toEqual([]);

      // The pod gives the runner what this configuration needs.
      const port = (name: string) => container.ports!.find((p) => p.name === name)!.containerPort;
      expect(port('http')).toBe(config.port);
      expect(port('metrics')).toBe(config.metricsPort);
      const scratch = container.volumeMounts!.find((m) => m.name === 'scratch')!;
      expect(config.workDir.startsWith(`${scratch.mountPath}/`)).toBe(true);
      expect(config.host).toBe(''); // every address, IPv6 and IPv4
      // A run may last workerTimeoutSeconds; the pod waits longer than that when stopped.
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(config.workerTimeoutSeconds);
      // ... and longer than its preStop sleep plus the runner's drain (WORKER_TIMEOUT + 10 s).
      const sleep = container.lifecycle?.preStop?.exec?.command;
      expect(sleep?.[0]).toBe('/bin/sleep');
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(
        Number(sleep?.[1]) + config.workerTimeoutSeconds + 10,
      );
    },
  );
});
