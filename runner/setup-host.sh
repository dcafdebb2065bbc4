#!/usr/bin/env bash
# Installs what building and running the runner on a Debian 12 host needs (as root):
# the C toolchain with libseccomp for native/, and Python 3 with the packages sandboxed code
# may import. Node.js >= 20.19 must already be there. Idempotent and quiet when nothing is missing.
set -euo pipefail

packages=(gcc make pkg-config libseccomp-dev python3 python3-pip python3-jinja2 python3-requests python3-httpx python3-socks python3-socksio python3-numpy python3-pandas)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) != 0 ]]; then
    echo "setup-host: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "setup-host: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_version=$(node -p 'process.versions.node' 2>/dev/null || echo 0)
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' 2>/dev/null; then
  echo "setup-host: Node.js >= 20.19 is required (found ${node_version})" >&2
  exit 1
fi
