// `npm run crds`: writes the CRD rendered from v1alpha1.ts into crds/ and into the Helm chart's
// crds/. With --check, only compares (exit 1 when a committed file is stale).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../paths.js';
import { CHART_CRD_FILE, CRD_FILE, renderCRD } from './crd.js';

const rendered = renderCRD();
let stale = false;
for (const name of [CRD_FILE, CHART_CRD_FILE]) {
  const file = path.join(REPO_ROOT, name);
  if (process.argv.includes('--check')) {
    let committed = '';
    try {
      committed = readFileSync(file, 'utf8');
    } catch {
      // missing: stale
    }
    if (committed !== rendered) {
      process.stderr.write(`${name} is stale: run npm run crds\n`);
      stale = true;
    }
  } else {
    writeFileSync(file, rendered);
    process.stdout.write(`wrote ${name}\n`);
  }
}
if (stale) process.exit(1);
