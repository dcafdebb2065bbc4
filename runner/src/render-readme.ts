// `npm run docs`: refreshes the generated parts of README.md (the configuration table).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { renderConfigTable } from './config.js';
import { REPO_ROOT } from './paths.js';

const file = path.join(REPO_ROOT, 'README.md');
const readme = readFileSync(file, 'utf8');
const updated = readme.replace(
  /<!-- config-table:start -->[\s\S]*?<!-- config-table:end -->/,
  `<!-- config-table:start -->\n${renderConfigTable()}\n<!-- config-table:end -->`,
);
if (updated === readme && !readme.includes('<!-- config-table:start -->'))
  throw new Error('README.md lacks the <!-- config-table:start/end --> markers');
writeFileSync(file, updated);
