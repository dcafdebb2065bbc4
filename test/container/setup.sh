#!/usr/bin/env bash
# Installs and starts what the container tests need (as root; idempotent, quick when all is
# there): a running Docker Engine (Debian's docker.io, started here when no daemon answers),
# debootstrap (the base image), docker-compose (the compose stack) and openssl (test
# certificates). The images themselves are built by the tests (test/container/global-setup.ts).
set -euo pipefail

packages=(debootstrap docker-compose openssl)
# Another Docker Engine (e.g. Docker CE) may already serve: then docker.io is not needed, and
# would conflict with it.
if ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null; then
  packages+=(docker.io)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) != 0 ]]; then
    echo "container setup: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "container setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "container setup: no Docker daemon answers, and starting one needs root" >&2
  exit 1
fi
if [[ -d /run/systemd/system ]]; then
  systemctl start docker
else
  # No init system to ask: start dockerd in its own session, logging beside the others.
  log=/var/log/sandboxpool-dockerd.log
  echo "container setup: starting dockerd (log: $log)"
  setsid nohup dockerd >>"$log" 2>&1 </dev/null &
fi
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "container setup: dockerd did not answer within 30 s; its log:" >&2
tail -20 /var/log/sandboxpool-dockerd.log >&2 || true
exit 1
