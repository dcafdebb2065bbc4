// The runner pods' NetworkPolicy. Ingress: allowedClients on the API port, metricsClients (or
// anyone) on the metrics port. Egress: DNS (kube-dns unless network.dns says otherwise), the
// egress proxy and allowedCIDRs; none at all when the network is disabled.
import type {
  V1NetworkPolicy,
  V1NetworkPolicyEgressRule,
  V1NetworkPolicyIngressRule,
  V1NetworkPolicyPeer,
} from '@kubernetes/client-node';
import { METRICS_PORT, RUNNER_PORT, type NetworkPeer, type SandboxPool } from '../api/v1alpha1.js';
import { childMeta, childNames, selectorLabels } from './common.js';

const KUBE_DNS: V1NetworkPolicyPeer = {
  namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
  podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
};

const peers = (list: NetworkPeer[]): V1NetworkPolicyPeer[] => list.map((p) => structuredClone(p));

/** The proxy's host when it is an IP literal (then the rule can target it without selectors). */
function proxyIpBlock(url: string): V1NetworkPolicyPeer | undefined {
  const host = new URL(url).hostname;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) return { ipBlock: { cidr: `${host}/32` } };
  if (host.startsWith('[')) return { ipBlock: { cidr: `${host.slice(1, -1)}/128` } };
  return undefined;
}

function egressRules(pool: SandboxPool): V1NetworkPolicyEgressRule[] {
  const { network } = pool.spec;
  if (!network.enabled) return [];
  const dnsPort = network.dns?.port ?? 53;
  const rules: V1NetworkPolicyEgressRule[] = [
    {
      to: network.dns ? peers(network.dns.to) : [KUBE_DNS],
      ports: [
        { protocol: 'UDP', port: dnsPort },
        { protocol: 'TCP', port: dnsPort },
      ],
    },
  ];
  const proxy = network.egressProxy;
  if (proxy) {
    const url = new URL(proxy.url);
    const to = proxy.to
      ? peers(proxy.to)
      : [proxyIpBlock(proxy.url)].filter((p) => p !== undefined);
    // An empty `to` would mean every destination: never emit one.
    // URL.port is '' for the scheme's own port (http://proxy:80), which the schema accepts.
    // NetworkPolicies see the pod's port, after the Service's translation.
    const port =
      proxy.targetPort ??
      (url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80);
    if (to.length > 0) rules.push({ to, ports: [{ protocol: 'TCP', port }] });
  }
  if (network.allowedCIDRs.length > 0)
    rules.push({ to: network.allowedCIDRs.map((cidr) => ({ ipBlock: { cidr } })) });
  return rules;
}

/**
 * An ingress rule as the API's JSON has it. client-node's model calls `from` `_from` (its own
 * serializer renames it); the operator sends plain JSON, so it must say `from`.
 */
export type IngressRule = Omit<V1NetworkPolicyIngressRule, '_from'> & {
  from?: V1NetworkPolicyPeer[];
};

function ingressRules(pool: SandboxPool): IngressRule[] {
  const { allowedClients, metricsClients } = pool.spec.network;
  const rules: IngressRule[] = [];
  // A rule with an empty `from` admits everyone: an empty list of clients gets no rule at all.
  if (allowedClients.length > 0)
    rules.push({ from: peers(allowedClients), ports: [{ protocol: 'TCP', port: RUNNER_PORT }] });
  // metricsClients absent: anyone may scrape; empty: nobody.
  if (metricsClients === undefined)
    rules.push({ ports: [{ protocol: 'TCP', port: METRICS_PORT }] });
  else if (metricsClients.length > 0)
    rules.push({ from: peers(metricsClients), ports: [{ protocol: 'TCP', port: METRICS_PORT }] });
  return rules;
}

export function buildNetworkPolicy(pool: SandboxPool): V1NetworkPolicy {
  const ingress = ingressRules(pool);
  const egress = egressRules(pool);
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: childMeta(pool, childNames(pool).networkPolicy),
    spec: {
      podSelector: { matchLabels: selectorLabels(pool) },
      policyTypes: ['Ingress', 'Egress'],
      // No rules with a policy type: nothing comes in, or goes out. Empty lists are left out:
      // applied as [] they came back as a change on every apply (a reconcile loop).
      ...(ingress.length > 0
        ? { ingress: ingress as unknown as V1NetworkPolicyIngressRule[] }
        : {}),
      ...(egress.length > 0 ? { egress } : {}),
    },
  };
}
