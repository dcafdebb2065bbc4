#!/usr/bin/env bash
# The one command to run the runner locally: installs what is missing, builds, and starts it on
# 127.0.0.1:8194 (API key "dify-sandbox" unless API_KEY is set). Any setting of the README's
# configuration table can be passed in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

bash runner/setup-host.sh
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
export SANDBOX_HOST="${SANDBOX_HOST:-127.0.0.1}"
exec node dist/runner/src/main.js "$@"
