#!/usr/bin/env bash
# Renders the kubectl manifests from the Helm chart, so the chart is their one source:
#   manifests/install.yaml     the operator's namespace and everything the chart installs with
#                              its default values (CRD, ServiceAccount, RBAC, Deployment, ...)
#   manifests/monitoring.yaml  the chart's ServiceMonitors and PrometheusRule, for clusters that
#                              run the Prometheus Operator
# Usage: bash manifests/render.sh [--check]   (--check: exit 1 when a committed file is stale)
# helm: $HELM, else helm on PATH, else the one test/k8s/setup.sh builds.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chart="$root/charts/sandboxpool"
namespace=sandboxpool-system
release=sandboxpool

helm="${HELM:-}"
if [[ -z "$helm" ]]; then
  helm="$(command -v helm || true)"
  [[ -n "$helm" ]] || helm="$(ls -d "$HOME"/.cache/sandboxpool/k8s-v*/helm 2>/dev/null | sort -V | tail -1 || true)"
fi
[[ -x "$helm" ]] || {
  echo "manifests/render.sh: no helm (set HELM, put helm on PATH, or run bash test/k8s/setup.sh)" >&2
  exit 1
}

render_install() {
  cat <<YAML
# Generated from charts/sandboxpool with its default values by \`npm run manifests\`
# (manifests/render.sh); do not edit. Install with:
#   kubectl apply -f manifests/install.yaml
# The operator's namespace is not labelled for PodSecurity enforcement: the seccomp installer
# DaemonSet it starts for pools with seccomp.podProfile Localhost mounts a hostPath.
---
apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
  labels:
    app.kubernetes.io/part-of: sandboxpool
YAML
  "$helm" template "$release" "$chart" --namespace "$namespace" --include-crds
}

render_monitoring() {
  cat <<YAML
# Generated from charts/sandboxpool by \`npm run manifests\` (manifests/render.sh); do not edit.
# For clusters with the Prometheus Operator, after install.yaml:
#   kubectl apply -f manifests/monitoring.yaml
YAML
  "$helm" template "$release" "$chart" --namespace "$namespace" \
    --api-versions monitoring.coreos.com/v1/ServiceMonitor \
    --api-versions monitoring.coreos.com/v1/PrometheusRule \
    --show-only templates/servicemonitor.yaml --show-only templates/prometheusrule.yaml
}

stale=0
for name in install monitoring; do
  file="$root/manifests/$name.yaml"
  rendered="$("render_$name")"
  if [[ "${1:-}" == "--check" ]]; then
    if [[ ! -f "$file" ]] || [[ "$(cat "$file")" != "$rendered" ]]; then
      echo "manifests/$name.yaml is stale: run npm run manifests" >&2
      stale=1
    fi
  else
    printf '%s\n' "$rendered" >"$file"
    echo "wrote manifests/$name.yaml"
  fi
done
exit "$stale"
