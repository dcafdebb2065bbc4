// `npm run docs`: refreshes the generated parts of README.md (see readme.ts).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './paths.js';
import { renderReadme } from './readme.js';

const file = path.join(REPO_ROOT, 'README.md');
writeFileSync(file, await renderReadme(readFileSync(file, 'utf8')));
