// `npm run crds`: writes the CRD rendered from v1alpha1.ts into crds/. With --check, only
// compares (exit 1 when the committed file is stale).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../paths.js';
import { CRD_FILE, renderCRD } from './crd.js';

const file = path.join(REPO_ROOT, CRD_FILE);
const rendered = renderCRD();
if (process.argv.includes('--check')) {
  let committed = '';
  try {
    committed = readFileSync(file, 'utf8');
  } catch {
    // missing: stale
  }
  if (committed !== rendered) {
    process.stderr.write(`${CRD_FILE} is stale: run npm run crds\n`);
    process.exit(1);
  }
} else {
  writeFileSync(file, rendered);
  process.stdout.write(`wrote ${CRD_FILE}\n`);
}
