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
# The npm packages sandboxed code can require, as the image has them (no install scripts).
if [[ ! -d dependencies/node_modules || dependencies/package.json -nt dependencies/node_modules ]]; then
  (cd dependencies && npm install --omit=dev --no-audit --no-fund --ignore-scripts --no-package-lock --silent)
  mkdir -p dependencies/node_modules && touch dependencies/node_modules
fi
export SANDBOX_HOST="${SANDBOX_HOST:-127.0.0.1}"
exec node dist/runner/src/main.js "$@"
