// `npm run profile`: renders native/policies/ into the pod-level seccomp profile
// (native/tools/seccomp-profile.ts says how and why).
//
//   npm run profile                     writes native/build/seccomp-profile.json
//   npm run profile -- --update         also rewrites the committed copy (COMMITTED_PROFILE)
//   npm run profile -- --allow a,b      adds syscalls, e.g. the runner's ALLOWED_SYSCALLS
//   npm run profile -- --out FILE       writes FILE instead of the build copy
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { NATIVE_BUILD, POLICY_SOURCE, REPO_ROOT } from '../../runner/src/paths.js';
import { COMMITTED_PROFILE, formatProfile, profileFromFiles } from './seccomp-profile.js';

const argv = process.argv.slice(2);
let out = path.join(NATIVE_BUILD, 'seccomp-profile.json');
let update = false;
const extra: string[] = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const value = argv[i + 1];
  if (a === '--update') {
    update = true;
  } else if (a === '--out' && value !== undefined) {
    out = path.resolve(value);
    i++;
  } else if (a === '--allow' && value !== undefined) {
    extra.push(...value.split(',').filter(Boolean));
    i++;
  } else {
    throw new Error(`render-profile: unknown or incomplete argument '${a}'`);
  }
}
const text = formatProfile(
  profileFromFiles(POLICY_SOURCE, path.join(NATIVE_BUILD, 'syscalls.json'), extra),
);
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, text);
const written = [out];
if (update) {
  const committed = path.join(REPO_ROOT, COMMITTED_PROFILE);
  mkdirSync(path.dirname(committed), { recursive: true });
  writeFileSync(committed, text);
  written.push(committed);
}
process.stdout.write(`render-profile: wrote ${written.join(' and ')}\n`);
