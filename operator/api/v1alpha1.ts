// sandboxpool.dev/v1alpha1 SandboxPool: the one declaration of the API. The CRD in crds/ is
// rendered from it (npm run crds) and the operator's types are inferred from it, so the two
// cannot drift (test/unit/operator-crd.test.ts fails when the committed CRD is stale).
import type { V1Affinity, V1Toleration } from '@kubernetes/client-node';
import {
  array,
  boolean,
  enumOf,
  integer,
  object,
  optional,
  passthrough,
  quantity,
  record,
  string,
  type Infer,
  type ValidationRule,
} from './schema.js';

export const GROUP = 'sandboxpool.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'SandboxPool';
export const PLURAL = 'sandboxpools';

/** The runner's HTTP port (Dify's CODE_EXECUTION_ENDPOINT) and its separate metrics port. */
export const RUNNER_PORT = 8194;
export const METRICS_PORT = 9464;

const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

const labelMap = (description: string) =>
  record(string({ description: 'A label value.', maxLength: 63 }), {
    description,
    maxProperties: 64,
  });

const labelSelector = (description: string) =>
  object(
    {
      matchLabels: optional(
        labelMap('Labels the selected objects must carry (all of them, with these values).'),
      ),
      matchExpressions: optional(
        array(
          object(
            {
              key: string({
                description: 'The label key the requirement applies to.',
                maxLength: 317,
              }),
              operator: enumOf(['In', 'NotIn', 'Exists', 'DoesNotExist'] as const, {
                description: 'How the label value relates to `values`.',
              }),
              values: optional(
                array(string({ description: 'A label value.', maxLength: 63 }), {
                  description:
                    'Values for In and NotIn (non-empty); must be empty for Exists and DoesNotExist.',
                  maxItems: 64,
                }),
              ),
            },
            { description: 'One label requirement.' },
          ),
          { description: 'Label requirements, all of which must hold.', maxItems: 16 },
        ),
      ),
    },
    { description },
  );

/** What the runner accepts as a package spec: no option, no whitespace or shell characters. */
const PACKAGE_SPEC = '^[^-\\s;|&$`][^\\s;|&$`]*$';

const httpUrlRule: ValidationRule = {
  rule: "isURL(self) && url(self).getScheme() in ['http', 'https']",
  message: 'must be an http:// or https:// URL',
};

const cidrRule: ValidationRule = {
  rule: 'isCIDR(self)',
  message: 'must be a CIDR such as 10.0.0.0/8 or fd00::/8',
};

const networkPeer = object(
  {
    podSelector: optional(
      labelSelector(
        "Pods selected by labels (in the namespaces of namespaceSelector, or in the pool's namespace when it is absent). An empty selector selects every pod.",
      ),
    ),
    namespaceSelector: optional(
      labelSelector('Namespaces selected by labels; an empty selector selects every namespace.'),
    ),
    ipBlock: optional(
      object(
        {
          cidr: string({
            description: 'The addresses, as a CIDR.',
            maxLength: 64,
            validations: [cidrRule],
          }),
          except: optional(
            array(
              string({
                description: 'A CIDR inside `cidr`.',
                maxLength: 64,
                validations: [cidrRule],
              }),
              {
                description: 'Addresses inside `cidr` that are not included.',
                maxItems: 32,
              },
            ),
          ),
        },
        { description: "Addresses outside the cluster's pods, as a CIDR." },
      ),
    ),
  },
  {
    description: 'A NetworkPolicy peer: pods and/or namespaces selected by labels, or an IP block.',
    validations: [
      {
        rule: 'has(self.ipBlock) != (has(self.podSelector) || has(self.namespaceSelector))',
        message: 'a peer is either an ipBlock or pod/namespace selectors, and not empty',
      },
    ],
  },
);

const resourceList = (description: string) =>
  record(quantity({ description: 'A quantity, e.g. 500m (CPU) or 512Mi (memory).' }), {
    description,
    maxProperties: 16,
  });

export const sandboxPoolSpecSchema = object(
  {
    replicas: integer({
      description:
        "Runner pods. Set through the scale subresource (kubectl scale sbp) too; ignored while `autoscaling` is set, when the HorizontalPodAutoscaler owns the Deployment's replicas.",
      default: 2,
      minimum: 0,
      maximum: 1000,
    }),
    image: optional(
      string({
        description:
          'The runner image. Empty or absent: the image the operator was built with (its SANDBOXPOOL_RUNNER_IMAGE).',
        maxLength: 512,
      }),
    ),
    imagePullPolicy: enumOf(['IfNotPresent', 'Always', 'Never'] as const, {
      description: 'When the kubelet pulls the runner image.',
      default: 'IfNotPresent',
    }),
    apiKeySecretRef: optional(
      object(
        {
          name: string({
            description: "Name of a Secret in the pool's namespace.",
            maxLength: 253,
            pattern: DNS_SUBDOMAIN,
          }),
          key: string({
            description: 'The key in the Secret whose value is the API key.',
            default: 'api-key',
            maxLength: 253,
            pattern: '^[-._a-zA-Z0-9]+$',
          }),
        },
        {
          description:
            "The Secret holding the API key callers send as X-Api-Key (Dify's CODE_EXECUTION_API_KEY). Absent: the operator generates a random key (32 bytes) into the Secret <name>-sandboxpool-api-key, once, and never overwrites it; status.apiKeySecretRef names it.",
        },
      ),
    ),
    execution: object(
      {
        timeoutSeconds: integer({
          description:
            'Wall-clock seconds per run; the whole run is killed after it (runner WORKER_TIMEOUT).',
          default: 15,
          minimum: 1,
          maximum: 3600,
        }),
        memoryMiB: integer({
          description: 'Memory per run in MiB, data segment and heap (runner SANDBOX_MEMORY_MIB).',
          default: 256,
          minimum: 32,
          maximum: 65536,
        }),
        cpuTimeSeconds: optional(
          integer({
            description:
              'CPU seconds per run (runner SANDBOX_CPU_SECONDS); unset: timeoutSeconds, so that a program computing for the whole timeout is not stopped earlier (as in DifySandbox).',
            minimum: 1,
            maximum: 3600,
          }),
        ),
        maxOutputBytes: integer({
          description:
            'Bytes of stdout and of stderr per run, each (runner SANDBOX_MAX_OUTPUT_BYTES).',
          default: 4194304,
          minimum: 1024,
          maximum: 1073741824,
        }),
        maxWorkers: integer({
          description: 'Runs executing at once in one pod (runner MAX_WORKERS).',
          default: 4,
          minimum: 1,
          maximum: 256,
        }),
        maxQueue: integer({
          description:
            'Runs waiting for a worker in one pod; beyond maxWorkers + maxQueue a request gets HTTP 503 (runner MAX_REQUESTS = maxWorkers + maxQueue).',
          default: 50,
          minimum: 0,
          maximum: 99000,
        }),
        warmPool: object(
          {
            python3: integer({
              description:
                'Python 3 interpreters kept started and confined per pod (0: start one per run).',
              default: 4,
              minimum: 0,
              maximum: 256,
            }),
            nodejs: integer({
              description:
                'Node.js interpreters kept started and confined per pod (0: start one per run).',
              default: 2,
              minimum: 0,
              maximum: 256,
            }),
          },
          {
            description: 'Interpreters kept started, confined and waiting for a run, per language.',
            default: {},
          },
        ),
        enablePreload: boolean({
          description:
            "Whether a request's `preload` code is run (inside the sandbox, before the code).",
          default: true,
        }),
      },
      { description: 'Limits and concurrency of the runs in each pod.', default: {} },
    ),
    network: object(
      {
        enabled: boolean({
          description:
            'Whether sandboxed code may use the network (through the egress proxy). false: sockets are refused in the sandbox and the pods get no egress at all, not even DNS.',
          default: true,
        }),
        egressProxy: optional(
          object(
            {
              url: string({
                description:
                  'The HTTP proxy handed to sandboxed code (HTTP_PROXY and HTTPS_PROXY), e.g. http://ssrf-proxy.dify.svc:3128; the port must be explicit.',
                maxLength: 2048,
                validations: [
                  {
                    rule: "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != '' && url(self).getPort() != ''",
                    message:
                      'must be an http:// or https:// URL with a host and an explicit port, e.g. http://ssrf-proxy.dify.svc:3128',
                  },
                ],
              }),
              noProxy: optional(
                string({
                  description:
                    'Hosts sandboxed code reaches without the proxy (NO_PROXY), comma-separated.',
                  maxLength: 4096,
                }),
              ),
              to: optional(
                array(networkPeer, {
                  description:
                    "Where the proxy runs, for the NetworkPolicy egress rule to its port. Required when the URL's host is a name; for an IP address the rule targets that address.",
                  maxItems: 8,
                  minItems: 1,
                }),
              ),
              targetPort: optional(
                integer({
                  description:
                    "The port the proxy's pods listen on, when its Service maps the URL's port to another: NetworkPolicies see the pod's port. Absent: the URL's port.",
                  minimum: 1,
                  maximum: 65535,
                }),
              ),
            },
            {
              description: 'The egress proxy: the only egress besides DNS (and allowedCIDRs).',
              validations: [
                {
                  rule: "has(self.to) || self.url.matches('^https?://([0-9.]+|\\\\[[0-9a-fA-F:.]+\\\\]):[0-9]+(/.*)?$')",
                  message:
                    'egressProxy.to is required when the proxy URL names a host: a NetworkPolicy needs pod/namespace selectors (or an IP address in the URL)',
                  fieldPath: '.to',
                },
              ],
            },
          ),
        ),
        dns: optional(
          object(
            {
              to: array(networkPeer, {
                description: "The cluster's DNS servers, for the NetworkPolicy egress rule.",
                minItems: 1,
                maxItems: 8,
              }),
              port: integer({
                description:
                  'The port the DNS server pods listen on (after the Service: 5353 for OpenShift DNS).',
                minimum: 1,
                maximum: 65535,
                default: 53,
              }),
            },
            {
              description:
                'Where the pods resolve names, when not kube-dns in kube-system (port 53): e.g. NodeLocal DNSCache (to: [{ipBlock: {cidr: 169.254.20.10/32}}]) or OpenShift DNS.',
            },
          ),
        ),
        allowedCIDRs: array(
          string({ description: 'A CIDR.', maxLength: 64, validations: [cidrRule] }),
          {
            description:
              "Extra egress the pods may reach directly (every port), as CIDRs. With an egressProxy and no allowedCIDRs, sandboxed code opens TCP connections only to the proxy's port and 53 (Linux 6.7+); with allowedCIDRs, to every port.",
            default: [],
            maxItems: 64,
            listType: 'set',
          },
        ),
        allowedClients: array(networkPeer, {
          description:
            "Who may call the runner on its HTTP port (NetworkPolicy ingress). Default: every pod in the pool's namespace. An empty list admits nobody.",
          default: [{ podSelector: {} }],
          maxItems: 32,
        }),
        metricsClients: optional(
          array(networkPeer, {
            description:
              'Who may scrape the metrics port (e.g. Prometheus). Absent: anyone; an empty list: nobody.',
            maxItems: 32,
          }),
        ),
      },
      {
        description: 'Network access of the sandboxed code and of the runner pods (NetworkPolicy).',
        default: {},
        validations: [
          {
            // Written for the default ({}) too, which the API server checks before defaulting inside.
            rule: '(!has(self.enabled) || self.enabled) || (!has(self.egressProxy) && (!has(self.allowedCIDRs) || size(self.allowedCIDRs) == 0))',
            message:
              'egressProxy and allowedCIDRs need network.enabled: true (with the network disabled the pods get no egress at all)',
          },
        ],
      },
    ),
    dependencies: object(
      {
        python: array(
          string({
            description: 'A pip requirement spec, e.g. numpy==2.1.3.',
            maxLength: 256,
            pattern: PACKAGE_SPEC,
          }),
          {
            description:
              'Extra Python packages for sandboxed code (pip requirement specs), installed from wheels into each pod when it starts, before it is ready; readable, not writable, by the code (runner dependencies.python).',
            default: [],
            maxItems: 64,
          },
        ),
        nodejs: array(
          string({
            description: 'An npm package spec, e.g. lodash@4.17.21.',
            maxLength: 256,
            pattern: PACKAGE_SPEC,
          }),
          {
            description:
              'Extra npm packages for sandboxed code (name@version), installed without install scripts into each pod when it starts, before it is ready (runner dependencies.nodejs).',
            default: [],
            maxItems: 64,
          },
        ),
        pipIndexUrl: optional(
          string({
            description:
              'The package index pip installs from (default: PyPI); the pods reach it through the egress proxy or allowedCIDRs.',
            maxLength: 2048,
            validations: [httpUrlRule],
          }),
        ),
        npmRegistry: optional(
          string({
            description:
              'The registry npm installs from (default: the npm registry); the pods reach it through the egress proxy or allowedCIDRs.',
            maxLength: 2048,
            validations: [httpUrlRule],
          }),
        ),
      },
      {
        description:
          'Packages installed into every pod at start (listed by the dependencies API). Installing needs egress: the proxy, or allowedCIDRs for a mirror.',
        default: {},
      },
    ),
    seccomp: object(
      {
        podProfile: enumOf(['RuntimeDefault', 'Localhost'] as const, {
          description:
            "The pods' seccomp profile: the container runtime's default, or Localhost: the profile generated from the runner's policies, which the operator installs on every node (a DaemonSet in its namespace) before switching the pods to it.",
          default: 'RuntimeDefault',
        }),
        extraSyscalls: array(
          string({ description: 'A syscall name.', maxLength: 64, pattern: '^[a-z_][a-z0-9_]*$' }),
          {
            description:
              'Syscalls added to every language policy of the runner (ALLOWED_SYSCALLS) and, with Localhost, to the pod profile.',
            default: [],
            maxItems: 64,
            listType: 'set',
          },
        ),
      },
      { description: 'Seccomp: the pod-level profile and extra allowed syscalls.', default: {} },
    ),
    autoscaling: optional(
      object(
        {
          minReplicas: integer({
            description: 'The fewest pods.',
            default: 2,
            minimum: 1,
            maximum: 1000,
          }),
          maxReplicas: integer({ description: 'The most pods.', minimum: 1, maximum: 1000 }),
          targetBusyWorkersPercent: integer({
            description:
              'Target share of busy workers per pod: the HorizontalPodAutoscaler aims at an average sandbox_executions_in_flight of maxWorkers × this / 100 (a Pods metric: needs a custom-metrics adapter such as prometheus-adapter).',
            default: 70,
            minimum: 1,
            maximum: 100,
          }),
        },
        {
          description:
            'Set: a HorizontalPodAutoscaler scales the runner Deployment and `replicas` is not applied.',
          validations: [
            {
              rule: 'self.maxReplicas >= self.minReplicas',
              message: 'autoscaling.maxReplicas must be at least autoscaling.minReplicas',
            },
          ],
        },
      ),
    ),
    resources: object(
      {
        requests: optional(resourceList('Resources the scheduler reserves for each runner pod.')),
        limits: optional(resourceList('The most each runner pod may use.')),
      },
      {
        description: 'CPU and memory of the runner container.',
        default: { requests: { cpu: '500m', memory: '512Mi' }, limits: { memory: '1536Mi' } },
      },
    ),
    workDir: object(
      {
        medium: enumOf(['Disk', 'Memory'] as const, {
          description:
            "Where run directories live: the node's disk, or memory (tmpfs, counted in the pod's memory).",
          default: 'Disk',
        }),
        sizeLimit: quantity({
          description: 'The most the run directories may hold in one pod.',
          default: '1Gi',
        }),
      },
      {
        description:
          'The writable scratch volume of the runner (the root filesystem is read-only), mounted at /tmp; run directories live under /tmp/sandboxpool.',
        default: {},
      },
    ),
    logLevel: enumOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const, {
      description: "The runner's log level.",
      default: 'info',
    }),
    podTemplate: object(
      {
        labels: optional(labelMap('Extra labels on the runner pods.')),
        annotations: optional(
          record(string({ description: 'An annotation value.', maxLength: 65536 }), {
            description: 'Extra annotations on the runner pods.',
            maxProperties: 64,
          }),
        ),
        imagePullSecrets: optional(
          array(
            object(
              {
                name: string({
                  description: "The name of a Secret in the pool's namespace.",
                  minLength: 1,
                  maxLength: 253,
                }),
              },
              { description: 'A Secret of type kubernetes.io/dockerconfigjson.' },
            ),
            {
              description:
                "Secrets in the pool's namespace for pulling the runner image from a registry that needs credentials.",
              maxItems: 16,
            },
          ),
        ),
        nodeSelector: optional(labelMap('Node labels the runner pods must be scheduled on.')),
        tolerations: optional(
          array(passthrough<V1Toleration>({ description: 'A core/v1 Toleration.' }), {
            description: 'Taints the runner pods tolerate (core/v1 Toleration).',
            maxItems: 32,
          }),
        ),
        affinity: optional(
          passthrough<V1Affinity>({
            description: 'Scheduling constraints of the runner pods (core/v1 Affinity).',
          }),
        ),
        priorityClassName: optional(
          string({ description: 'The PriorityClass of the runner pods.', maxLength: 253 }),
        ),
        runtimeClassName: optional(
          string({
            description:
              'The RuntimeClass of the runner pods (e.g. gVisor or Kata for another isolation layer).',
            maxLength: 253,
          }),
        ),
      },
      { description: 'Scheduling and metadata of the runner pods.', default: {} },
    ),
  },
  {
    description: 'The desired runner pool.',
    default: {},
    validations: [
      {
        // Written for the default ({}) too, which the API server checks before defaulting inside.
        rule: '!has(self.dependencies) || ((!has(self.dependencies.python) || size(self.dependencies.python) == 0) && (!has(self.dependencies.nodejs) || size(self.dependencies.nodejs) == 0)) || !has(self.network) || !has(self.network.enabled) || self.network.enabled',
        message:
          'dependencies are installed from the network when pods start: they need network.enabled: true',
      },
    ],
  },
);

const condition = object(
  {
    type: string({
      description: 'Ready, Progressing or Degraded.',
      maxLength: 316,
    }),
    status: enumOf(['True', 'False', 'Unknown'] as const, {
      description: 'True, False or Unknown.',
    }),
    observedGeneration: optional(
      integer({ description: 'The .metadata.generation the condition was set for.', minimum: 0 }),
    ),
    lastTransitionTime: string({
      description: 'When the status last changed.',
      format: 'date-time',
    }),
    reason: string({
      description: 'A CamelCase reason for the status, for machines.',
      maxLength: 1024,
      pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
    }),
    message: string({ description: 'What happened, for people.', maxLength: 32768 }),
  },
  { description: 'A condition (metav1.Condition).' },
);

export const sandboxPoolStatusSchema = object(
  {
    observedGeneration: optional(
      integer({ description: 'The .metadata.generation the operator last acted on.', minimum: 0 }),
    ),
    replicas: optional(
      integer({ description: 'Runner pods that exist (all versions).', minimum: 0 }),
    ),
    readyReplicas: optional(integer({ description: 'Runner pods that are ready.', minimum: 0 })),
    updatedReplicas: optional(
      integer({ description: 'Runner pods of the current pod template.', minimum: 0 }),
    ),
    selector: optional(
      string({ description: 'The label selector of the runner pods (for the scale subresource).' }),
    ),
    endpoint: optional(
      string({
        description: "The URL to set as Dify's CODE_EXECUTION_ENDPOINT.",
      }),
    ),
    apiKeySecretRef: optional(
      object(
        {
          name: string({ description: "The Secret's name." }),
          key: string({ description: 'The key holding the API key.' }),
        },
        { description: 'The Secret and key holding the API key callers must send.' },
      ),
    ),
    seccompProfile: optional(
      string({
        description:
          "The seccomp profile the runner pods use: RuntimeDefault, or Localhost/<path under the kubelet's seccomp root>.",
      }),
    ),
    conditions: optional(
      array(condition, {
        description: 'Ready, Progressing and Degraded.',
        maxItems: 8,
        listType: 'map',
        listMapKeys: ['type'],
      }),
    ),
  },
  { description: 'What the operator observed and did.' },
);

export type SandboxPoolSpec = Infer<typeof sandboxPoolSpecSchema>;
export type SandboxPoolStatus = Infer<typeof sandboxPoolStatusSchema>;
export type Condition = NonNullable<SandboxPoolStatus['conditions']>[number];
export type NetworkPeer = Infer<typeof networkPeer>;

export interface SandboxPool {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    generation?: number;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    creationTimestamp?: string;
    deletionTimestamp?: string;
  };
  spec: SandboxPoolSpec;
  status?: SandboxPoolStatus;
}

/** Rules on the whole object (the names of the children derive from the pool's name). */
export const rootValidations: ValidationRule[] = [
  {
    rule: "size(self.metadata.name) <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
    message:
      'metadata.name must be a DNS-1035 label of at most 40 characters (lower case letters, digits and "-", starting with a letter): the Service is named <name>-sandboxpool',
  },
];
