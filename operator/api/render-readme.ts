// Part of `npm run docs`: refreshes the README's table of SandboxPool fields.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../paths.js';
import { renderSpecTable } from './docs.js';

const file = path.join(REPO_ROOT, 'README.md');
const readme = readFileSync(file, 'utf8');
if (!readme.includes('<!-- sandboxpool-spec:start -->'))
  throw new Error('README.md lacks the <!-- sandboxpool-spec:start/end --> markers');
writeFileSync(
  file,
  readme.replace(
    /<!-- sandboxpool-spec:start -->[\s\S]*?<!-- sandboxpool-spec:end -->/,
    `<!-- sandboxpool-spec:start -->\n${renderSpecTable()}\n<!-- sandboxpool-spec:end -->`,
  ),
);
