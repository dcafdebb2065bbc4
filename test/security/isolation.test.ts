// Two runs at the same time cannot see or touch each other: a victim run keeps a secret file in
// its directory and tells the test (over loopback) where it lives; while it is still running, an
// attacker run that knows its pid and directory tries to read, list, write, delete and signal it.
// Both ways round (Python victim and Node.js attacker, and the reverse), in both modes.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODES, startTestRunner, type TestRunner } from '../support/runner.js';

interface Victim {
  pid: number;
  cwd: string;
  token: string;
}

const q = JSON.stringify;

const victimCode = {
  python3: (port: number, token: string) => `import json, os, time, urllib.request
open("secret.txt", "w").write(${q(token)})
urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:${port}/victim", data=json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "token": ${q(token)}}).encode()), timeout=5).read()
ok = True
for _ in range(40):
    time.sleep(0.1)
    ok = ok and open("secret.txt").read() == ${q(token)}
print("VICTIM", "OK" if ok else "TOUCHED", sorted(os.listdir(".")))
`,
  nodejs: (port: number, token: string) => `const fs = require('fs');
fs.writeFileSync('secret.txt', ${q(token)});
fetch('http://127.0.0.1:${port}/victim', { method: 'POST', body: JSON.stringify({ pid: process.pid, cwd: process.cwd(), token: ${q(token)} }) }).then(async (r) => {
  await r.text();
  let ok = true;
  for (let i = 0; i < 40; i++) {
    await new Promise((res) => setTimeout(res, 100));
    ok = ok && fs.readFileSync('secret.txt', 'utf8') === ${q(token)};
  }
  console.log('VICTIM', ok ? 'OK' : 'TOUCHED', JSON.stringify(fs.readdirSync('.').sort()));
});
`,
};

/** Every attempt prints "<name> blocked" or "<name> ESCAPED <detail>". */
const attackerCode = {
  python3: (v: Victim) => `import os, signal
secret = ${q(`${v.cwd}/secret.txt`)}
def attempt(name, f):
    try:
        out = f()
        print(name, "ESCAPED", repr(out)[:100])
    except BaseException as e:
        print(name, "blocked", type(e).__name__)
attempt("read", lambda: open(secret).read())
attempt("list", lambda: os.listdir(${q(v.cwd)}))
attempt("write", lambda: open(${q(`${v.cwd}/planted`)}, "w").write("x"))
attempt("delete", lambda: os.unlink(secret))
attempt("proc-cwd", lambda: open("/proc/${v.pid}/cwd/secret.txt").read())
attempt("proc-root", lambda: open("/proc/${v.pid}/root" + secret).read())
attempt("proc-environ", lambda: open("/proc/${v.pid}/environ").read())
attempt("proc-status", lambda: open("/proc/${v.pid}/status").read())
attempt("signal-0", lambda: os.kill(${v.pid}, 0))
attempt("sigstop", lambda: os.kill(${v.pid}, signal.SIGSTOP))
attempt("sigkill", lambda: os.kill(${v.pid}, signal.SIGKILL))
`,
  nodejs: (v: Victim) => `const fs = require('fs');
const secret = ${q(`${v.cwd}/secret.txt`)};
function attempt(name, f) {
  try { const out = f(); console.log(name, 'ESCAPED', String(out).slice(0, 100)) }
  catch (e) { console.log(name, 'blocked', e.code || e.message) }
}
attempt('read', () => fs.readFileSync(secret, 'utf8'));
attempt('list', () => fs.readdirSync(${q(v.cwd)}));
attempt('write', () => fs.writeFileSync(${q(`${v.cwd}/planted`)}, 'x'));
attempt('delete', () => fs.unlinkSync(secret));
attempt('proc-cwd', () => fs.readFileSync('/proc/${v.pid}/cwd/secret.txt', 'utf8'));
attempt('proc-root', () => fs.readFileSync('/proc/${v.pid}/root' + secret, 'utf8'));
attempt('proc-environ', () => fs.readFileSync('/proc/${v.pid}/environ', 'utf8'));
attempt('proc-status', () => fs.readFileSync('/proc/${v.pid}/status', 'utf8'));
attempt('signal-0', () => process.kill(${v.pid}, 0));
attempt('sigstop', () => process.kill(${v.pid}, 'SIGSTOP'));
attempt('sigkill', () => process.kill(${v.pid}, 'SIGKILL'));
`,
};

const ATTEMPTS = [
  'read',
  'list',
  'write',
  'delete',
  'proc-cwd',
  'proc-root',
  'proc-environ',
  'proc-status',
  'signal-0',
  'sigstop',
  'sigkill',
];

describe.each(MODES)('two concurrent runs, runner started %s', (mode) => {
  let t: TestRunner;
  let rendezvous: http.Server;
  const waiting = new Map<string, (v: Victim) => void>();

  beforeAll(async () => {
    rendezvous = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const v = JSON.parse(body) as Victim;
        waiting.get(v.token)?.(v);
        res.end('ok');
      });
    });
    await new Promise<void>((r) => rendezvous.listen(0, '127.0.0.1', r));
    t = await startTestRunner({ WORKER_TIMEOUT: '20', MAX_WORKERS: '2' }, { mode });
  });
  afterAll(async () => {
    await t?.close();
    await new Promise((r) => rendezvous?.close(r));
  });

  it.each([
    ['python3', 'nodejs'],
    ['nodejs', 'python3'],
  ] as const)(
    'a %s victim is untouched by a %s attacker that knows where it is',
    async (victimLanguage, attackerLanguage) => {
      const port = (rendezvous.address() as AddressInfo).port;
      const token = `victim-${mode}-${victimLanguage}-${Date.now()}`;
      const located = new Promise<Victim>((resolve) => waiting.set(token, resolve));
      const victimRun = t.run(victimLanguage, victimCode[victimLanguage](port, token), {
        enable_network: true,
      });
      const victim = await Promise.race([
        located,
        victimRun.then((d) => {
          throw new Error(`the victim ended before it was located: ${JSON.stringify(d)}`);
        }),
      ]);
      // The attack, while the victim is running.
      const attack = await t.run(attackerLanguage, attackerCode[attackerLanguage](victim), {
        enable_network: false,
      });
      const done = await victimRun;

      expect(done.error, JSON.stringify(done)).toBe('');
      expect(done.stdout).toBe(
        victimLanguage === 'python3' ? "VICTIM OK ['secret.txt']\n" : 'VICTIM OK ["secret.txt"]\n',
      );
      const lines = attack.stdout.trim().split('\n');
      expect(lines.map((l) => l.split(' ')[0])).toEqual(ATTEMPTS);
      for (const line of lines) expect(line, attack.stdout).toMatch(/^\S+ blocked/);
      expect(attack.stdout).not.toContain(token);
    },
  );
});
