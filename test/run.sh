#!/usr/bin/env bash
# The one command that passes all tests on a fresh Debian 12 machine (as root): installs and
# starts whatever the tests need, builds, lints, then runs every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash runner/setup-host.sh
# A test tool beyond what the runner needs: strace delays the Python zygote's reports.
if ! dpkg-query -W -f='${Status}' strace 2>/dev/null | grep -q "install ok installed"; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends strace >/dev/null
fi
bash test/k8s/setup.sh
bash test/container/setup.sh
npm ci --no-audit --no-fund
npm run build
npm run lint
results=$(mktemp)
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$results" || status=$?
node test/summary.mjs "$results" || status=1
exit "$status"
