// The operator's configuration: defaults, and one clear error per bad variable.
import { once } from 'node:events';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RUNNER_IMAGE,
  OperatorConfigError,
  loadOperatorConfig,
} from '../../operator/config.js';
import { PACKAGE_VERSION } from '../../operator/paths.js';

describe('operator configuration', () => {
  it('defaults the runner image to the package version', () => {
    const c = loadOperatorConfig({});
    expect(DEFAULT_RUNNER_IMAGE).toBe(`sandboxpool/runner:${PACKAGE_VERSION}`);
    expect(c).toMatchObject({
      namespace: 'sandboxpool-system',
      runnerImage: DEFAULT_RUNNER_IMAGE,
      seccompInstallerImage: DEFAULT_RUNNER_IMAGE,
      leaseName: 'sandboxpool-operator',
      leaseDurationSeconds: 12,
      renewDeadlineSeconds: 8,
      retryPeriodSeconds: 2,
      listenHost: '',
      listenPort: 8080,
      watchNamespace: '',
    });
    expect(loadOperatorConfig({ SANDBOXPOOL_RUNNER_IMAGE: 'r/x:1' }).runnerImage).toBe('r/x:1');
    expect(c.imagePullSecrets).toEqual([]);
    expect(
      loadOperatorConfig({ SANDBOXPOOL_IMAGE_PULL_SECRETS: 'regcred, other.creds' })
        .imagePullSecrets,
    ).toEqual(['regcred', 'other.creds']);
  });

  it('listens on every address by default (an IPv6-only cluster probes the pod over IPv6)', async () => {
    expect(loadOperatorConfig({}).listenHost).toBe('');
    expect(loadOperatorConfig({ SANDBOXPOOL_OPERATOR_LISTEN: '[::1]:9090' })).toMatchObject({
      listenHost: '::1',
      listenPort: 9090,
    });
    // What the empty host means to Node.js: the IPv6 wildcard, which takes IPv4 too.
    const server = createServer().listen(0, loadOperatorConfig({}).listenHost);
    await once(server, 'listening');
    const address = server.address();
    server.close();
    expect(typeof address === 'object' && address?.address).toBe('::');
  });

  it.each([
    [
      { POD_NAMESPACE: 'Not_A_Namespace' },
      "POD_NAMESPACE: 'Not_A_Namespace' is not a namespace name",
    ],
    [
      { SANDBOXPOOL_IMAGE_PULL_SECRETS: 'regcred,Bad_Name' },
      "SANDBOXPOOL_IMAGE_PULL_SECRETS: 'Bad_Name' is not a Secret name",
    ],
    [
      { SANDBOXPOOL_RESYNC_SECONDS: 'soon' },
      "SANDBOXPOOL_RESYNC_SECONDS: expected a whole number, got 'soon'",
    ],
    [{ SANDBOXPOOL_WORKERS: '0' }, 'SANDBOXPOOL_WORKERS: 0 is out of range (1..32)'],
    [
      { SANDBOXPOOL_OPERATOR_LISTEN: '8080' },
      "SANDBOXPOOL_OPERATOR_LISTEN: expected host:port, got '8080'",
    ],
    [
      { SANDBOXPOOL_LEASE_DURATION_SECONDS: '5', SANDBOXPOOL_RENEW_DEADLINE_SECONDS: '8' },
      'SANDBOXPOOL_RETRY_PERIOD_SECONDS < SANDBOXPOOL_RENEW_DEADLINE_SECONDS < SANDBOXPOOL_LEASE_DURATION_SECONDS must hold',
    ],
    [{ LOG_LEVEL: 'loud' }, "LOG_LEVEL: 'loud' is not a log level"],
  ])('refuses %o with one clear message', (env, message) => {
    expect(() => loadOperatorConfig(env)).toThrow(OperatorConfigError);
    expect(() => loadOperatorConfig(env)).toThrow(message);
  });
});
