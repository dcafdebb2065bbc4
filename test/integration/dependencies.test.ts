// Packages for sandboxed code: installed from the real registries at start, importable in the
// sandbox, listed with versions, and out of reach for writing.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packagesDir } from '../../runner/src/dependencies.js';
import { startTestRunner, type TestRunner } from '../support/runner.js';
import { waitFor } from '../support/wait.js';

let t: TestRunner;
beforeAll(async () => {
  t = await startTestRunner({
    SANDBOX_PYTHON_PACKAGES: 'tabulate==0.9.0',
    SANDBOX_NODEJS_PACKAGES: 'lodash@4.17.21',
  });
}, 300_000);
afterAll(async () => {
  await t.close();
});

async function list(language: string): Promise<Array<{ name: string; version: string }>> {
  const res = await fetch(`${t.url}/v1/sandbox/dependencies?language=${language}`, {
    headers: { 'X-Api-Key': t.config.apiKey },
  });
  const body = (await res.json()) as {
    code: number;
    data: { dependencies: Array<{ name: string; version: string }> };
  };
  expect(body.code).toBe(0);
  return body.data.dependencies;
}

describe('installed at start', () => {
  it('a PyPI package imports and works in the sandbox', async () => {
    const data = await t.run(
      'python3',
      'import tabulate\nprint(tabulate.__version__, tabulate.tabulate([["ok"]], tablefmt="plain"))',
    );
    expect(data).toMatchObject({ stdout: '0.9.0 ok\n', error: '' });
  });

  it('an npm package is require()d in the sandbox', async () => {
    const data = await t.run(
      'nodejs',
      "const _ = require('lodash'); console.log(_.VERSION, _.chunk([1, 2, 3], 2).length)",
    );
    expect(data).toMatchObject({ stdout: '4.17.21 2\n', error: '' });
  });

  it('the list routes show them with their versions', async () => {
    expect(await list('python3')).toContainEqual({ name: 'tabulate', version: '0.9.0' });
    expect(await list('nodejs')).toContainEqual({ name: 'lodash', version: '4.17.21' });
    const refreshed = await fetch(`${t.url}/v1/sandbox/dependencies/refresh?language=nodejs`, {
      headers: { 'X-Api-Key': t.config.apiKey },
    });
    expect(
      ((await refreshed.json()) as { data: { dependencies: unknown[] } }).data.dependencies,
    ).toContainEqual({
      name: 'lodash',
      version: '4.17.21',
    });
  });

  it('the update route takes the language from a JSON body too, as DifySandbox binds it', async () => {
    const res = await fetch(`${t.url}/v1/sandbox/dependencies/update`, {
      method: 'POST',
      headers: { 'X-Api-Key': t.config.apiKey, 'Content-Type': 'application/json' },
      body: JSON.stringify({ language: 'python3' }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { dependencies: unknown[] } };
    expect(body.data.dependencies).toContainEqual({ name: 'tabulate', version: '0.9.0' });
  });

  it('a module that appears in the packages directory later is found by the next run', async () => {
    // As after /dependencies/update; the directory's time set back, as if within one tick of
    // an earlier listing (Python's import cache trusts an unchanged mtime).
    const dir = packagesDir(t.config).python;
    const before = statSync(dir);
    const name = `late_${randomBytes(4).toString('hex')}`;
    const miss = await t.run('python3', `import ${name}`);
    expect(miss.error).toContain('ModuleNotFoundError');
    writeFileSync(path.join(dir, `${name}.py`), 'VALUE = 42\n');
    utimesSync(dir, before.atime, before.mtime);
    try {
      const data = await t.run('python3', `import ${name}\nprint(${name}.VALUE)`);
      expect(data).toMatchObject({ stdout: '42\n', error: '' });
    } finally {
      rmSync(path.join(dir, `${name}.py`));
    }
  });

  it('sandboxed code cannot modify or replace an installed package', async () => {
    const py = await t.run(
      'python3',
      [
        'import errno, os, tabulate',
        'for attempt in (lambda: open(tabulate.__file__, "a"), lambda: open(os.path.join(os.path.dirname(tabulate.__file__), "evil.py"), "w"), lambda: os.rename(tabulate.__file__, tabulate.__file__ + ".bak"), lambda: os.unlink(tabulate.__file__)):',
        '    try:',
        '        attempt()',
        '        print("modified")',
        '    except OSError as e:',
        '        print("denied" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else e)',
      ].join('\n'),
    );
    expect(py.stdout).toBe('denied\ndenied\ndenied\ndenied\n');
    const js = await t.run(
      'nodejs',
      "const fs = require('fs'); const f = require.resolve('lodash'); for (const a of [() => fs.appendFileSync(f, 'x'), () => fs.writeFileSync(f + '.evil.js', 'x'), () => fs.unlinkSync(f)]) { try { a(); console.log('modified') } catch (e) { console.log(e.code) } }",
    );
    // EACCES from Landlock, or EROFS where the runner (as root) mounted it read-only.
    expect(js.stdout).toMatch(/^(EACCES|EROFS)\n(EACCES|EROFS)\n(EACCES|EROFS)\n$/);
    expect((await t.run('python3', 'import tabulate\nprint(tabulate.__version__)')).stdout).toBe(
      '0.9.0\n',
    );
  });
});

describe('without root (as in the runner image)', () => {
  it("a run that resets an installed package's timestamps does not make later runs compile it again", async () => {
    const u = await startTestRunner(
      { SANDBOX_PYTHON_PACKAGES: 'tabulate==0.9.0' },
      { mode: 'unprivileged' },
    );
    try {
      // The run shares the runner's uid, which owns the package: the kernel lets it set times.
      const reset = await u.run(
        'python3',
        'import os, importlib.util\nfile = importlib.util.find_spec("tabulate").origin\nos.utime(file, (0, 0))\nprint(os.stat(file).st_mtime)',
      );
      expect(reset).toMatchObject({ stdout: '0.0\n', error: '' });
      const compiled = await u.run(
        'python3',
        [
          'import importlib.machinery as m',
          'compiled = []',
          'source_to_code = m.SourceFileLoader.source_to_code',
          'def spy(self, data, path, *args, **kwargs):',
          '    compiled.append(path)',
          '    return source_to_code(self, data, path, *args, **kwargs)',
          'm.SourceFileLoader.source_to_code = spy',
          'import tabulate',
          'print(tabulate.__version__, [p for p in compiled if "tabulate" in p])',
        ].join('\n'),
      );
      expect(compiled).toMatchObject({ stdout: '0.9.0 []\n', error: '' });
    } finally {
      await u.close();
    }
  }, 300_000);

  it('a package installed at start imports in the sandbox, forked from the zygote or launched', async () => {
    for (const zygote of ['true', 'false']) {
      const u = await startTestRunner(
        {
          SANDBOX_PYTHON_PACKAGES: 'tabulate==0.9.0',
          SANDBOX_PYTHON_ZYGOTE: zygote,
        },
        { mode: 'unprivileged' },
      );
      try {
        expect(
          await u.run('python3', 'import tabulate\nprint(tabulate.__version__)'),
        ).toMatchObject({
          stdout: '0.9.0\n',
          error: '',
        });
      } finally {
        await u.close();
      }
    }
  }, 300_000);
});

describe('scientific packages under the default policy', () => {
  it('numpy and pandas import and compute a group-by', async () => {
    const data = await t.run(
      'python3',
      [
        'import numpy as np, pandas as pd',
        'df = pd.DataFrame({"k": ["a", "b", "a", "c", "b"], "v": [1, 2, 3, 4, 5]})',
        'print(df.groupby("k")["v"].sum().to_dict())',
        'print(np.linalg.inv(np.eye(3) * 2).trace(), np.arange(12).reshape(3, 4).sum(axis=0).tolist())',
      ].join('\n'),
    );
    expect(data.error).toBe('');
    expect(data.stdout).toBe("{'a': 4, 'b': 7, 'c': 4}\n1.5 [12, 15, 18, 21]\n");
  });
});

describe('a failed install', () => {
  it('is a clear not-ready reason, not a crash', async () => {
    const broken = await startTestRunner({
      SANDBOX_PYTHON_PACKAGES: 'sandboxpool-no-such-package-x7q==1.0',
    });
    try {
      const ready = await fetch(`${broken.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { reason: string }).reason).toMatch(
        /^installing Python packages failed: .*sandboxpool-no-such-package-x7q/,
      );
      expect((await fetch(`${broken.url}/healthz`)).status).toBe(200);
      const { status, body } = await broken.post({ language: 'python3', code: 'print(1)' });
      expect(status).toBe(503);
      expect(body.message).toMatch(/^sandbox not ready: installing Python packages failed/);
    } finally {
      await broken.close();
    }
  }, 300_000);

  it('is tried again until the index answers, then the runner is ready', async () => {
    // A registry of one package, down (404) until the test brings it up.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sandboxpool-registry-'));
    mkdirSync(path.join(dir, 'package'));
    writeFileSync(
      path.join(dir, 'package', 'package.json'),
      JSON.stringify({ name: 'sbp-late-package', version: '1.0.0', main: 'index.js' }),
    );
    writeFileSync(path.join(dir, 'package', 'index.js'), 'module.exports = "late but here";');
    execFileSync('tar', ['-czf', 'p.tgz', 'package'], { cwd: dir });
    const tarball = readFileSync(path.join(dir, 'p.tgz'));
    rmSync(dir, { recursive: true, force: true });
    let up = false;
    const registry = createServer((req, res) => {
      const base = `http://127.0.0.1:${(registry.address() as AddressInfo).port}`;
      if (!up) res.writeHead(404).end('{}');
      else if (req.url === '/sbp-late-package')
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(
          JSON.stringify({
            name: 'sbp-late-package',
            'dist-tags': { latest: '1.0.0' },
            versions: {
              '1.0.0': {
                name: 'sbp-late-package',
                version: '1.0.0',
                dist: {
                  tarball: `${base}/p.tgz`,
                  shasum: createHash('sha1').update(tarball).digest('hex'),
                  integrity: `sha512-${createHash('sha512').update(tarball).digest('base64')}`,
                },
              },
            },
          }),
        );
      else if (req.url === '/p.tgz') res.writeHead(200).end(tarball);
      else res.writeHead(404).end('{}');
    });
    await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
    const port = (registry.address() as AddressInfo).port;
    const late = await startTestRunner({
      SANDBOX_NODEJS_PACKAGES: 'sbp-late-package@1.0.0',
      NPM_REGISTRY: `http://127.0.0.1:${port}/`,
    });
    try {
      const ready = await fetch(`${late.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { reason: string }).reason).toMatch(
        /^installing npm packages failed: .*404/,
      );
      up = true;
      // The first retry comes 5 s after the failed start.
      await waitFor(
        'the runner to be ready',
        async () => ((await fetch(`${late.url}/readyz`)).status === 200 ? true : undefined),
        30_000,
      );
      const data = await late.run('nodejs', 'console.log(require("sbp-late-package"))');
      expect(data.stdout).toBe('late but here\n');
    } finally {
      await late.close();
      await new Promise((r) => registry.close(r));
    }
  }, 120_000);
});
