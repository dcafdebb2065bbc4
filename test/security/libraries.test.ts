// The policy is usable: the common libraries of security.md work under it, in both modes, each
// imported and used; with network, requests/httpx and fetch reach a loopback server of the test.
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODES, startTestRunner, type TestRunner } from '../support/runner.js';

const PYTHON = `import json, re, datetime, zoneinfo, decimal, hashlib, base64, random, math, threading
import jinja2, jinja2.sandbox, requests, httpx, shutil
out = {}
out["json"] = json.loads(json.dumps({"a": [1, 2.5, None]}))["a"][1]
out["re"] = re.sub(r"(\\d+)", r"<\\1>", "a1b22")
out["datetime"] = datetime.datetime(2024, 2, 29, 12, tzinfo=datetime.timezone.utc).isoformat()
out["zoneinfo"] = datetime.datetime(2024, 7, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")).utcoffset().seconds
out["decimal"] = str(decimal.Decimal("0.1") + decimal.Decimal("0.2"))
out["hashlib"] = hashlib.sha256(b"abc").hexdigest()[:16]
out["base64"] = base64.b64encode(b"sandbox").decode()
random.seed(1)
out["random"] = 0 <= random.random() < 1 and len(random.sample(range(100), 5)) == 5
out["math"] = round(math.sqrt(2) * math.pi, 6)
results = []
threads = [threading.Thread(target=lambda i=i: results.append(i * i)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
out["threading"] = sorted(results)
out["jinja2"] = jinja2.Template("{% for x in xs %}{{ x|upper }}{% endfor %}").render(xs=["a", "b"])
env = jinja2.sandbox.SandboxedEnvironment()
out["jinja2.sandbox"] = env.from_string("{{ 6 * 7 }}").render()
try:
    env.from_string("{{ ().__class__.__bases__[0].__subclasses__() }}").render()
    out["jinja2.sandbox.blocks"] = False
except jinja2.exceptions.SecurityError:
    out["jinja2.sandbox.blocks"] = True
out["requests.prepare"] = requests.Request("POST", "http://example.com/x", json={"a": 1}).prepare().body.decode()
out["httpx.build"] = str(httpx.Client().build_request("GET", "http://example.com/", params={"q": 1}).url)
out["requests.get"] = requests.get("http://127.0.0.1:PORT/", timeout=5).text
out["httpx.get"] = httpx.get("http://127.0.0.1:PORT/", timeout=5).text
open("a.txt", "w").write("copy me")
shutil.copyfile("a.txt", "b.txt")
out["shutil.copyfile"] = open("b.txt").read()
print(json.dumps(out, sort_keys=True))
`;

const PYTHON_EXPECTED = {
  base64: 'c2FuZGJveA==',
  datetime: '2024-02-29T12:00:00+00:00',
  decimal: '0.3',
  hashlib: 'ba7816bf8f01cfea',
  'httpx.build': 'http://example.com/?q=1',
  'httpx.get': 'pong',
  jinja2: 'AB',
  'jinja2.sandbox': '42',
  'jinja2.sandbox.blocks': true,
  json: 2.5,
  math: 4.442883,
  random: true,
  re: 'a<1>b<22>',
  'requests.get': 'pong',
  'requests.prepare': '{"a": 1}',
  'shutil.copyfile': 'copy me',
  threading: [0, 1, 4, 9, 16, 25, 36, 49],
  zoneinfo: 7200,
};

const NODE = `const crypto = require('crypto');
const fs = require('fs');
(async () => {
  const out = {};
  out.buffer = Buffer.from('sandbox').toString('base64');
  out.hash = crypto.createHash('sha256').update('abc').digest('hex').slice(0, 16);
  out.hmac = crypto.createHmac('sha256', 'k').update('m').digest('hex').length;
  out.random = crypto.randomBytes(16).length + crypto.randomUUID().length;
  const key = crypto.generateKeyPairSync('ed25519');
  out.sign = crypto.verify(null, Buffer.from('m'), key.publicKey, crypto.sign(null, Buffer.from('m'), key.privateKey));
  out.subtle = (await crypto.subtle.digest('SHA-256', new TextEncoder().encode('abc'))).byteLength;
  out.url = new URL('../b?x=1#f', 'http://example.com/a/c').href;
  out.textEncoder = new TextDecoder().decode(new TextEncoder().encode('héllo'));
  out.timers = await new Promise((r) => setTimeout(() => r('fired'), 10));
  out.immediate = await new Promise((r) => setImmediate(() => r('ran')));
  out.promises = (await Promise.all([1, Promise.resolve(2), new Promise((r) => queueMicrotask(() => r(3)))])).join();
  out.fetch = await (await fetch('http://127.0.0.1:PORT/')).text();
  out.http = await new Promise((resolve, reject) => require('http').get('http://127.0.0.1:PORT/', (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => resolve(b)); }).on('error', reject));
  fs.writeFileSync('a.txt', 'copy me');
  // (fs.copyFileSync would also copy the mode, with fchmod: refused without root, see README)
  fs.writeFileSync('b.txt', fs.readFileSync('a.txt'));
  out.copyFile = fs.readFileSync('b.txt', 'utf8');
  out.intl = new Intl.NumberFormat('de-DE').format(1234.5) + ' ' + new Date(0).toISOString();
  console.log(JSON.stringify(out, Object.keys(out).sort()));
})();
`;

const NODE_EXPECTED = {
  buffer: 'c2FuZGJveA==',
  copyFile: 'copy me',
  fetch: 'pong',
  hash: 'ba7816bf8f01cfea',
  hmac: 64,
  http: 'pong',
  immediate: 'ran',
  intl: '1.234,5 1970-01-01T00:00:00.000Z',
  promises: '1,2,3',
  random: 52,
  sign: true,
  subtle: 32,
  textEncoder: 'héllo',
  timers: 'fired',
  url: 'http://example.com/b?x=1#f',
};

describe.each(MODES)('common libraries under the policy, runner started %s', (mode) => {
  let t: TestRunner;
  let server: http.Server;
  let port: number;

  beforeAll(async () => {
    server = http.createServer((_req, res) => res.end('pong'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    t = await startTestRunner({ ENABLE_NETWORK: 'true' }, { mode });
  });
  afterAll(async () => {
    await t?.close();
    await new Promise((r) => server?.close(r));
  });

  it('python3: json, re, datetime, zoneinfo, decimal, hashlib, base64, random, math, threading, jinja2 (and its sandbox), requests, httpx', async () => {
    const data = await t.run('python3', PYTHON.replaceAll('PORT', String(port)), {
      enable_network: true,
    });
    expect(data.error, JSON.stringify(data)).toBe('');
    expect(JSON.parse(data.stdout)).toEqual(PYTHON_EXPECTED);
  });

  it('nodejs: Buffer, crypto, URL, TextEncoder, timers, promises, fetch, http, fs, Intl', async () => {
    const data = await t.run('nodejs', NODE.replaceAll('PORT', String(port)), {
      enable_network: true,
    });
    expect(data.error, JSON.stringify(data)).toBe('');
    expect(JSON.parse(data.stdout)).toEqual(NODE_EXPECTED);
  });

  it('a program may still ask about itself (it leads a session and group of its own): session, group, priority, scheduling', async () => {
    const py = await t.run(
      'python3',
      'import os\nme = os.getpid()\nfor pid in (0, me):\n    print(os.getsid(pid) == me, os.getpgid(pid) == me, os.getpriority(os.PRIO_PROCESS, pid), len(os.sched_getaffinity(pid)) > 0, os.sched_getparam(pid).sched_priority, os.sched_getscheduler(pid))',
    );
    expect(py).toEqual({
      stdout: 'True True 0 True 0 0\nTrue True 0 True 0 0\n',
      stderr: '',
      error: '',
      exit_code: 0,
    });
    const js = await t.run(
      'nodejs',
      "const os = require('os'); console.log(os.getPriority(), os.getPriority(process.pid), os.availableParallelism() > 0)",
    );
    expect(js.stdout).toBe('0 0 true\n');
  });

  it("a thread may read its own attributes (glibc's pthread_getattr_np asks sched_getaffinity of the thread's id)", async () => {
    const py = await t.run(
      'python3',
      [
        'import ctypes, threading',
        'libc = ctypes.CDLL(None)',
        'libc.pthread_self.restype = ctypes.c_ulong',
        'libc.pthread_getattr_np.argtypes = [ctypes.c_ulong, ctypes.c_void_p]',
        'def attributes():',
        '    attr = ctypes.create_string_buffer(128)',
        '    r = libc.pthread_getattr_np(libc.pthread_self(), attr)',
        '    if r == 0:',
        '        libc.pthread_attr_destroy(attr)',
        '    return r',
        'seen = []',
        'thread = threading.Thread(target=lambda: seen.append(attributes()))',
        'thread.start()',
        'thread.join()',
        'print(attributes(), seen[0])',
      ].join('\n'),
    );
    // 0 in both; the thread got EPERM (1) before.
    expect(py).toEqual({ stdout: '0 0\n', stderr: '', error: '', exit_code: 0 });
  });

  it('a program may read its own /proc entry (memory, limits, descriptors, mounts), though not the socket table', async () => {
    const py = await t.run(
      'python3',
      [
        'import os, resource, threading',
        'me = open("/proc/self/status").read()',
        'rss = int([l for l in me.splitlines() if l.startswith("VmRSS")][0].split()[1])',
        'maps = open("/proc/self/maps").read()',
        'stat = open("/proc/self/stat").read().split()',
        'statm = open("/proc/self/statm").read().split()',
        'limits = open("/proc/self/limits").read()',
        'fds = os.listdir("/proc/self/fd")',
        'info = open("/proc/self/fdinfo/0").read()',
        'mounts = open("/proc/self/mountinfo").read()',
        'threading.Thread(target=lambda: None).start()',
        'print(rss > 0, "python3" in maps, stat[0] == str(os.getpid()), int(statm[1]) > 0, "Max open files" in limits, "0" in fds, "flags" in info, len(mounts) > 0)',
      ].join('\n'),
    );
    expect(py).toEqual({
      stdout: 'True True True True True True True True\n',
      stderr: '',
      error: '',
      exit_code: 0,
    });
    const js = await t.run(
      'nodejs',
      "const fs = require('fs'); console.log(process.memoryUsage().rss > 0, process.resourceUsage().maxRSS > 0, /VmRSS/.test(fs.readFileSync('/proc/self/status', 'utf8')), fs.readdirSync('/proc/self/fd').includes('1'), fs.readFileSync('/proc/self/maps', 'utf8').includes('node'))",
    );
    expect(js.error, JSON.stringify(js)).toBe('');
    expect(js.stdout).toBe('true true true true true\n');
  });

  it('keeps reading its own /proc entry after the kernel drops it from its caches (memory pressure)', async () => {
    // The warm interpreters were confined before this: their Landlock rules name /proc inodes
    // that the kernel would make anew after dropping them, unless something keeps them cached.
    writeFileSync('/proc/sys/vm/drop_caches', '2');
    for (let i = 0; i < 3; i++) {
      const py = await t.run(
        'python3',
        'import os\nprint(len(open("/proc/self/status").read()) > 0, len(os.listdir("/proc/self/fd")) > 0, len(open("/proc/self/maps").read()) > 0)',
      );
      expect(py, JSON.stringify(py)).toMatchObject({ stdout: 'True True True\n', error: '' });
      const js = await t.run(
        'nodejs',
        "console.log(process.memoryUsage().rss > 0, require('fs').readFileSync('/proc/self/status', 'utf8').length > 0)",
      );
      expect(js, JSON.stringify(js)).toMatchObject({ stdout: 'true true\n', error: '' });
    }
  });

  it('without network, the same libraries import and build requests; only sending fails', async () => {
    const data = await t.run(
      'python3',
      'import requests, httpx, jinja2.sandbox\nprint(requests.Request("GET", "http://x/").prepare().url, httpx.Request("GET", "http://x/").url)',
      { enable_network: false },
    );
    expect(data).toEqual({ stdout: 'http://x/ http://x/\n', stderr: '', error: '', exit_code: 0 });
  });
});
