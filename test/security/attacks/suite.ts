// Plays the attack table (every family module) against a real runner in one mode. For each
// attack: the answer is what the table expects, nothing secret comes out, the runner is alive,
// and a normal run right after it is served correctly in a clean directory.
import { chmodSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../../runner/src/paths.js';
import {
  startTestRunner,
  TEST_KEY,
  type RunData,
  type RunnerMode,
  type TestRunner,
} from '../../support/runner.js';
import { SA_TOKEN, attacks as s01 } from './s01-read.js';
import { attacks as s02 } from './s02-write.js';
import { attacks as s03 } from './s03-exec.js';
import { attacks as s04 } from './s04-fork.js';
import { attacks as s05 } from './s05-network.js';
import { attacks as s06 } from './s06-other-processes.js';
import { attacks as s07 } from './s07-escalate.js';
import { attacks as s08 } from './s08-kernel.js';
import { attacks as s09 } from './s09-exhaust.js';
import { attacks as s10 } from './s10-outlive.js';
import { attacks as s11 } from './s11-before-sandbox.js';
import { attacks as s12 } from './s12-http.js';
import { isHttp, type Attack, type Context, type ProgramAttack } from './types.js';

export const FAMILIES: ReadonlyArray<[string, Attack[]]> = [
  ['S1 read outside the allowlist', s01],
  ['S2 write outside, fill the disk, leave files', s02],
  ['S3 start programs', s03],
  ['S4 fork, clone, namespaces', s04],
  ['S5 network while disabled', s05],
  ['S6 other processes', s06],
  ['S7 escalate', s07],
  ['S8 dangerous kernel surface', s08],
  ['S9 exhaust', s09],
  ['S10 outlive the run', s10],
  ['S11 run before the sandbox', s11],
  ['S12 the HTTP surface', s12],
];

/** Small limits, so that exhaustion attacks end quickly. */
export const SUITE_ENV: Record<string, string> = {
  WORKER_TIMEOUT: '8',
  SANDBOX_CPU_SECONDS: '1',
  SANDBOX_MEMORY_MIB: '128',
  SANDBOX_MAX_OUTPUT_BYTES: '1048576',
  SANDBOX_MAX_FILE_BYTES: '4194304',
  SANDBOX_MAX_DISK_BYTES: '8388608',
  SANDBOX_MAX_FILES: '256',
  SANDBOX_MAX_THREADS: '32',
  SANDBOX_MAX_OPEN_FILES: '64',
  SANDBOX_MAX_BODY_BYTES: '262144',
  MAX_WORKERS: '3',
  MAX_REQUESTS: '200',
  ENABLE_NETWORK: 'true',
};

const NORMAL = {
  python3: 'import os\nprint("normal", sorted(os.listdir(".")))',
  nodejs: "console.log('normal', JSON.stringify(require('fs').readdirSync('.')))",
} as const;
const NORMAL_OUT = { python3: 'normal []\n', nodejs: 'normal []\n' } as const;

function expectNoLeak(ctx: Context, data: RunData): void {
  const all = data.stdout + data.stderr + data.error;
  expect(all).not.toContain(ctx.secret);
  expect(all).not.toContain(ctx.apiKey);
  expect(all).not.toMatch(/root:[^:\n]*:\d+:\d*:/); // a line of /etc/shadow
}

function judge(attack: ProgramAttack, mode: RunnerMode, data: RunData): void {
  const shown = JSON.stringify(data).slice(0, 2000);
  expect(data.stdout, shown).not.toContain('ESCAPED');
  const e = typeof attack.expect === 'function' ? attack.expect(mode) : attack.expect;
  switch (e.kind) {
    case 'blocked':
      expect(data.stdout, shown).toContain('BLOCKED');
      break;
    case 'denied': {
      const m = /^error: operation not permitted: (\w+)/.exec(data.error);
      expect(m, shown).not.toBeNull();
      if (typeof e.syscall === 'string') expect(m![1], shown).toBe(e.syscall);
      else expect(m![1], shown).toMatch(e.syscall);
      expect(data.exit_code, shown).not.toBe(0);
      break;
    }
    case 'killed':
      expect(data.exit_code, shown).toBe(-1);
      expect(data.error, shown).toMatch(/^error: operation not permitted: .*\(killed\)/);
      if (e.syscall !== undefined)
        expect(data.error, shown).toMatch(
          new RegExp(`^error: operation not permitted: ${e.syscall} \\(killed\\)`),
        );
      break;
    case 'limit':
      expect(data.error, shown).toMatch(e.error);
      expect(data.exit_code, shown).not.toBe(0);
      break;
    case 'fails':
      expect(data.exit_code, shown).not.toBe(0);
      expect(data.error, shown).toMatch(e.error);
      break;
  }
}

export function attackSuite(mode: RunnerMode): void {
  let t: TestRunner;
  let ctx: Context;
  /** Whether this suite wrote the token (it removes it again). */
  let plantedToken = false;
  let echo: http.Server;
  let canaryDir: string;
  const secret = `canary-${mode}-${process.pid}-${Date.now()}`;

  beforeAll(async () => {
    echo = http.createServer((_req, res) => res.end('pong'));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    // Something any user may read and write, outside every allowlist: only the sandbox stops it.
    canaryDir = mkdtempSync(path.join(os.tmpdir(), 'sbp-canary-'));
    chmodSync(canaryDir, 0o777);
    const canaryFile = path.join(canaryDir, 'secret.txt');
    writeFileSync(canaryFile, secret);
    chmodSync(canaryFile, 0o666);
    // A service-account token readable by anyone, as on a pod: only the sandbox keeps it out
    // of reach. (Not /conf/config.yaml, the other file the attack tries: every runner on this
    // machine would read it as its configuration.)
    mkdirSync(path.dirname(SA_TOKEN), { recursive: true });
    try {
      writeFileSync(SA_TOKEN, secret, { flag: 'wx', mode: 0o644 });
      plantedToken = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    process.env.SANDBOXPOOL_TEST_SECRET = secret; // the runner's environment (root mode)
    // Python starts two ways: forked from the zygote (the default, played unprivileged) and
    // through the launcher (played as root; the other root-mode tests use the zygote).
    const python: Record<string, string> =
      mode === 'root' ? { SANDBOX_PYTHON_ZYGOTE: 'false' } : {};
    t = await startTestRunner(
      { ...SUITE_ENV, ...python, SANDBOXPOOL_TEST_SECRET: secret },
      { mode },
    );
    ctx = {
      mode,
      runnerPid: t.pid,
      runnerPort: Number(new URL(t.url).port),
      workDir: t.config.workDir,
      repoRoot: REPO_ROOT,
      canaryFile,
      canaryDir,
      secret,
      apiKey: TEST_KEY,
      echoPort: (echo.address() as AddressInfo).port,
    };
  });
  afterAll(async () => {
    await t?.close();
    await new Promise((r) => echo?.close(r));
    rmSync(canaryDir, { recursive: true, force: true });
    if (plantedToken) {
      rmSync(SA_TOKEN, { force: true });
      // Its directories too, as far as they are empty (the other mode's suite may still use them).
      for (let dir = path.dirname(SA_TOKEN); dir !== '/var/run'; dir = path.dirname(dir))
        try {
          rmdirSync(dir);
        } catch {
          break;
        }
    }
  });

  for (const [family, attacks] of FAMILIES) {
    describe.concurrent(family, () => {
      it.each(attacks.map((a) => [`${a.language}: ${a.name}`, a] as const))(
        '%s',
        async (_n, attack) => {
          if (isHttp(attack)) {
            const answer = await attack.http(ctx);
            expect(attack.status, answer.body.slice(0, 500)).toContain(answer.status);
            if (attack.code !== undefined && answer.status !== 431) {
              const body = JSON.parse(answer.body) as { code: number };
              expect(body.code).toBe(attack.code);
            }
          } else {
            const code = typeof attack.code === 'string' ? attack.code : attack.code(ctx);
            const preload =
              typeof attack.preload === 'function' ? attack.preload(ctx) : attack.preload;
            const { status, body } = await t.post({
              language: attack.language,
              code,
              ...(preload !== undefined ? { preload } : {}),
              enable_network: attack.network === true,
              ...attack.extra,
            });
            expect(status, JSON.stringify(body)).toBe(200);
            expect(body.code, JSON.stringify(body)).toBe(0);
            const data = body.data!;
            expectNoLeak(ctx, data);
            judge(attack, mode, data);
            await attack.after?.(ctx, data);
          }
          // The runner survived it, and serves the next run correctly, in a clean directory.
          expect(t.alive()).toBe(true);
          const normal = await t.run(attack.language, NORMAL[attack.language]);
          expect(normal).toEqual({
            stdout: NORMAL_OUT[attack.language],
            stderr: '',
            error: '',
            exit_code: 0,
          });
        },
      );
    });
  }
}
