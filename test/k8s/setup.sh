#!/usr/bin/env bash
# Installs what the control-plane tests need, once per machine (idempotent; run as root):
#   - etcd, from Debian's etcd-server package;
#   - kube-apiserver, kube-controller-manager and kubectl, built from the k8s.io/kubernetes
#     release pinned in test/k8s/go.mod (mains under test/k8s/cmd/);
#   - helm, built from its Go module;
#   - the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, from its Go module (the
#     chart's monitoring objects are tested against them).
# The binaries go to a cache outside the repo, ~/.cache/sandboxpool/k8s-<version>/, and a later
# run reuses them when they report the expected versions. The first build takes ~10 minutes on
# 2 cores (about 1 GiB of modules and 3 GiB of Go build cache); later runs take a few seconds.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELM_VERSION=v3.19.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0

log() { printf 'test/k8s/setup.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Go: the machine's toolchain (Debian's golang is too old for Kubernetes 1.34).
if ! command -v go >/dev/null 2>&1; then
  [[ -x /usr/local/go/bin/go ]] || die "no Go toolchain found (need Go >= 1.24 on PATH or at /usr/local/go/bin/go)"
  export PATH="/usr/local/go/bin:$PATH"
fi
# Never switch to a downloaded toolchain; build with the one that is here.
export GOTOOLCHAIN=local

# The pinned release is stated once, in go.mod.
K8S_VERSION="$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
[[ "$K8S_VERSION" =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || die "unexpected k8s.io/kubernetes version in go.mod: $K8S_VERSION"
K8S_MINOR="${BASH_REMATCH[1]}"
cache_root="${HOME}/.cache/sandboxpool"
bin_dir="${cache_root}/k8s-${K8S_VERSION}"

# 1. etcd from Debian.
if ! command -v etcd >/dev/null 2>&1; then
  log "installing etcd-server from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends etcd-server
fi
command -v etcd >/dev/null 2>&1 || die "etcd is still missing after installing etcd-server"

# 2. The Kubernetes binaries and helm. One build at a time per machine: a second setup.sh
# waits here for the first and then finds the cache filled.
mkdir -p "$cache_root"
exec 9>"${cache_root}/k8s-${K8S_VERSION}.lock"
flock 9

has_version() { # binary expected-substring args...
  local bin="$1" want="$2" out
  shift 2
  [[ -x "$bin" ]] || return 1
  # Capture first: `| grep -q` would stop reading early and, under pipefail, fail on SIGPIPE.
  out="$("$bin" "$@" 2>/dev/null)" || return 1
  [[ "$out" == *"$want"* ]]
}
cache_ok() {
  has_version "$bin_dir/kube-apiserver" "Kubernetes $K8S_VERSION" --version &&
    has_version "$bin_dir/kube-controller-manager" "Kubernetes $K8S_VERSION" --version &&
    has_version "$bin_dir/kubectl" "Client Version: $K8S_VERSION" version --client &&
    has_version "$bin_dir/helm" "$HELM_VERSION" version --template '{{.Version}}'
}

if cache_ok; then
  log "cached binaries in $bin_dir are up to date ($K8S_VERSION, helm $HELM_VERSION)"
else
  # Build into a fresh directory and move it into place at the end, so an interrupted build never
  # leaves a cache that looks complete.
  staging="${bin_dir}.partial"
  rm -rf "$staging"
  mkdir -p "$staging"
  start=$SECONDS

  # Without these the binaries report v0.0.0-master: kubectl then cannot parse the server version
  # and charts with a kubeVersion constraint fail.
  k8s_ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${K8S_MINOR}"
    k8s_ldflags+=" -X ${pkg}.gitTreeState=clean"
  done
  log "building kube-apiserver, kube-controller-manager, kubectl $K8S_VERSION into $bin_dir (first time: ~8-9 min on 2 cores)"
  (cd "$here" && go build -buildvcs=false -ldflags "$k8s_ldflags" -o "$staging/" ./cmd/...)

  # helm: as its release Makefile sets them (client-go v0.34 => Kubernetes 1.34 as default capabilities).
  helm_ldflags="-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.metadata="
  helm_ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${K8S_MINOR}"
  helm_ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${K8S_MINOR}"
  log "building helm $HELM_VERSION (~2 min the first time)"
  GOBIN="$staging" go install -buildvcs=false -ldflags "$helm_ldflags" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"

  rm -rf "$bin_dir"
  mv "$staging" "$bin_dir"
  cache_ok || die "the binaries built in $bin_dir do not report $K8S_VERSION / helm $HELM_VERSION"
  log "built in $((SECONDS - start)) s: $(du -sh "$bin_dir" | cut -f1) in $bin_dir"
fi

# 3. The Prometheus Operator's CRDs (no registry or download site is reachable; its Go module,
# from the module proxy, carries them under example/prometheus-operator-crd/).
crd_dir="$bin_dir/monitoring-crds"
stamp="$crd_dir/.version"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$PROMETHEUS_OPERATOR_VERSION" ]]; then
  log "fetching the Prometheus Operator CRDs ($PROMETHEUS_OPERATOR_VERSION) from its Go module"
  module=github.com/prometheus-operator/prometheus-operator
  (cd / && GOFLAGS=-mod=mod go mod download "$module@$PROMETHEUS_OPERATOR_VERSION")
  src="$(go env GOMODCACHE)/$module@$PROMETHEUS_OPERATOR_VERSION/example/prometheus-operator-crd"
  rm -rf "$crd_dir"
  mkdir -p "$crd_dir"
  for kind in servicemonitors prometheusrules; do
    cp "$src/monitoring.coreos.com_$kind.yaml" "$crd_dir/"
  done
  echo "$PROMETHEUS_OPERATOR_VERSION" >"$stamp"
fi
