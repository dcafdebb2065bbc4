// Warm pools: each interpreter is confined before it is pooled, serves exactly one run, and
// nothing a run leaves behind (globals, modules, files, environment) reaches the next one.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { documentedMetrics } from '../support/metrics-docs.js';
import { childrenOf, commandLine, processState, waitGone } from '../support/processes.js';
import { startTestRunner, type TestRunner } from '../support/runner.js';

let t: TestRunner;
beforeAll(async () => {
  // Workers for more runs at once than the pools hold (the drain test).
  t = await startTestRunner({
    SANDBOX_WARM_PYTHON3: '3',
    SANDBOX_WARM_NODEJS: '2',
    MAX_WORKERS: '8',
  });
});
afterAll(async () => {
  await t.close();
});

async function metric(name: string, language: string): Promise<number> {
  const text = await (await fetch(`${t.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{language="${language}"}`));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

describe('warm pools', () => {
  it('are filled before the runner is ready', async () => {
    expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
    expect(await metric('sandbox_pool_ready', 'python3')).toBe(3);
    expect(await metric('sandbox_pool_ready', 'nodejs')).toBe(2);
    // The start-up self-test (a run of each language) is not traffic.
    const text = await (await fetch(`${t.url}/metrics`)).text();
    expect(text).not.toMatch(
      /^sandbox_(executions_total|pool_hits_total|pool_misses_total|execution_duration_seconds_count)\{/m,
    );
  });

  it.each([
    ['python3', 'import os\nprint(os.getpid())'],
    ['nodejs', 'console.log(process.pid)'],
  ] as const)(
    'serve every %s run from a process of its own, gone afterwards',
    async (language, code) => {
      const hitsBefore = await metric('sandbox_pool_hits_total', language);
      const pids = new Set<number>();
      for (let i = 0; i < 8; i++) {
        const pid = Number((await t.run(language, code)).stdout.trim());
        expect(pid).toBeGreaterThan(1);
        // Killed before the answer; the kernel may still be taking it apart.
        expect(processState(pid)).not.toBe('alive');
        expect(await waitGone(pid)).toBe(true);
        pids.add(pid);
      }
      expect(pids.size).toBe(8);
      expect(await metric('sandbox_pool_hits_total', language)).toBeGreaterThan(hitsBefore);
    },
  );

  it("may still signal itself (the policy's $pid is the run's own pid)", async () => {
    for (let i = 0; i < 3; i++) {
      const data = await t.run(
        'python3',
        'import os, signal\nos.kill(os.getpid(), 0)\nsignal.signal(signal.SIGUSR1, lambda *a: print("got it"))\nos.kill(os.getpid(), signal.SIGUSR1)',
      );
      expect(data.stdout).toBe('got it\n');
    }
    const js = await t.run(
      'nodejs',
      "process.on('SIGUSR1', () => console.log('got it')); process.kill(process.pid, 'SIGUSR1'); setTimeout(() => {}, 50)",
    );
    expect(js.stdout).toBe('got it\n');
  });

  it('a run may lower its own priority to nice 19 (what an ended Python run does for its teardown)', async () => {
    const data = await t.run(
      'python3',
      'import os\nos.setpriority(os.PRIO_PROCESS, 0, 19)\nprint(os.getpriority(os.PRIO_PROCESS, 0))',
    );
    expect(data.stdout).toBe('19\n');
  });

  it('a python3 run sees nothing of the previous one', async () => {
    const dirty = await t.run(
      'python3',
      [
        'import json, os, sys, random, types',
        'LEFT_BEHIND = 1',
        'json.dumps = lambda *a, **k: "poisoned"',
        'sys.modules["planted"] = types.ModuleType("planted")',
        'os.environ["LEFT_BEHIND"] = "1"',
        'open("left-behind.txt", "w").write("x")',
        'import builtins; builtins.print_original = print',
        'print(random.random())',
      ].join('\n'),
    );
    const clean = await t.run(
      'python3',
      [
        'import json, os, sys, random, builtins',
        'print("LEFT_BEHIND" in globals(), json.dumps([1]), "planted" in sys.modules)',
        'print("LEFT_BEHIND" in os.environ, os.listdir("."), hasattr(builtins, "print_original"))',
        'print(random.random())',
      ].join('\n'),
    );
    const [first, second, rnd] = clean.stdout.trim().split('\n');
    expect(first).toBe('False [1] False');
    expect(second).toBe('False [] False');
    // Not a replay of the zygote's random sequence.
    expect(rnd).not.toBe(dirty.stdout.trim());
  });

  it("a python3 run's C environment is its os.environ (what getenv() in a C library sees)", async () => {
    const data = await t.run(
      'python3',
      [
        'import ctypes, os',
        'e = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")',
        'c = []',
        'while e[len(c)] is not None:',
        '    c.append(e[len(c)])',
        'py = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in os.environ.items()]',
        'getenv = ctypes.CDLL(None).getenv',
        'getenv.restype = ctypes.c_char_p',
        'b = sorted(k + b"=" + v for k, v in os.environb.items())',
        'os.environ["SET_BY_RUN"] = "yes"',
        'print(sorted(c) == sorted(py) == b, getenv(b"MKL_NUM_THREADS") == b"1", getenv(b"SET_BY_RUN") == b"yes", os.environ["HOME"] == os.getcwd(), len(c))',
      ].join('\n'),
    );
    // os.environb too (it shares os.environ's mapping); and a name set later reaches getenv().
    expect(data.stdout).toMatch(/^True True True True \d+\n$/);
  });

  it('a nodejs run sees nothing of the previous one', async () => {
    await t.run(
      'nodejs',
      `leftBehind = 1; Object.prototype.polluted = 'yes'; process.env.LEFT_BEHIND = '1'; JSON.stringify = () => 'poisoned'; require('fs').writeFileSync('left-behind.txt', 'x')`,
    );
    const clean = await t.run(
      'nodejs',
      `console.log(typeof leftBehind, ({}).polluted, process.env.LEFT_BEHIND, JSON.stringify([1]), require('fs').readdirSync('.').length)`,
    );
    expect(clean.stdout).toBe('undefined undefined undefined [1] 0\n');
  });

  it('keeps serving when the pool is drained by concurrent runs', async () => {
    const runs = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        // Each holds its interpreter a while, so that all are taken at once.
        t.run(
          i % 2 === 0 ? 'python3' : 'nodejs',
          i % 2 === 0
            ? `import time\ntime.sleep(0.5)\nprint(${i})`
            : `setTimeout(() => console.log(${i}), 500)`,
        ),
      ),
    );
    runs.forEach((r, i) => expect(r.stdout).toBe(`${i}\n`));
    expect(await metric('sandbox_pool_misses_total', 'python3')).toBeGreaterThan(0);
  });
});

describe('the Python zygote', () => {
  it("a child's memory holds its own command and no sibling's token (the fork loop reads several commands at once)", async () => {
    // At start the pool's commands arrive together: the first children are forked while their
    // siblings' commands (tokens, sandbox options) wait in the loop's buffer.
    const fresh = await startTestRunner({ SANDBOX_WARM_PYTHON3: '4', SANDBOX_WARM_NODEJS: '2' });
    try {
      const scan = [
        'import ctypes, re',
        'found = set()',
        'for line in open("/proc/self/maps"):',
        '    f = line.split()',
        '    if "r" not in f[1] or (len(f) > 5 and f[5].startswith("[v")):',
        '        continue',
        '    lo, hi = (int(x, 16) for x in f[0].split("-"))',
        '    data = ctypes.string_at(lo, hi - lo)',
        // A command as the runner sends it, and the loop's reports of a fork or an exit.
        '    for m in re.finditer(rb"([0-9a-f]{32})\\t(?:enter|exec)\\t|\\"(?:forked|exit)\\": \\"([0-9a-f]{32})\\"", data):',
        '        found.add(m.group(1) or m.group(2))',
        'print(len(found))',
      ].join('\n');
      for (let i = 0; i < 4; i++) expect((await fresh.run('python3', scan)).stdout).toBe('1\n');
    } finally {
      await fresh.close();
    }
  });

  it('when the Python zygote dies, its waiting interpreters die with it, and the runner still stops', async () => {
    const other = await startTestRunner({ SANDBOX_WARM_PYTHON3: '2', SANDBOX_WARM_NODEJS: '1' });
    let closed = false;
    try {
      // Its own zygote (in root mode every test runner is a child of this process).
      const zygote = childrenOf(other.pid).find((pid) =>
        commandLine(pid).includes(`${other.config.workDir}/runtime/zygote.py`),
      );
      expect(zygote).toBeDefined();
      const waiting = childrenOf(zygote!);
      // Two Python children and one Node.js launched through it (and any still starting).
      expect(waiting.length).toBeGreaterThanOrEqual(3);
      process.kill(zygote!, 'SIGKILL');
      for (const pid of waiting) expect(await waitGone(pid), `pooled process ${pid}`).toBe(true);
      await Promise.race([
        other.close().then(() => (closed = true)),
        new Promise((r) => setTimeout(r, 10_000)),
      ]);
      expect(closed, 'the runner did not stop within 10 s').toBe(true);
    } finally {
      if (!closed) await other.close();
    }
  });
});

describe('an idle runner', () => {
  it('wakes up rarely (the default metrics sample event-loop lag every 100 ms, not 10)', async () => {
    const wakeups = () =>
      Number(
        /^voluntary_ctxt_switches:\s+(\d+)/m.exec(
          readFileSync(`/proc/${t.pid}/status`, 'utf8'),
        )?.[1],
      );
    await new Promise((r) => setTimeout(r, 1000)); // refills of earlier tests done
    const before = wakeups();
    await new Promise((r) => setTimeout(r, 2000));
    // ~20 here at 100 ms; prom-client's default 10 ms made it ~220.
    expect(wakeups() - before).toBeLessThan(100);
  });
});

describe('/metrics', () => {
  it('exposes every metric of the README with its documented type', async () => {
    const text = await (await fetch(`${t.url}/metrics`)).text();
    const documented = documentedMetrics('runner-metrics');
    expect(documented.length).toBeGreaterThan(10);
    for (const { name, type } of documented) expect(text).toContain(`# TYPE ${name} ${type}\n`);
  });
});

describe('without pools or zygote', () => {
  it('starts every interpreter through the launcher and behaves the same', async () => {
    const cold = await startTestRunner({
      SANDBOX_WARM_PYTHON3: '0',
      SANDBOX_WARM_NODEJS: '0',
      SANDBOX_PYTHON_ZYGOTE: 'false',
    });
    try {
      expect((await cold.run('python3', 'import jinja2\nprint("cold")')).stdout).toBe('cold\n');
      expect((await cold.run('nodejs', 'console.log("cold")')).stdout).toBe('cold\n');
      const denied = await cold.run('python3', 'import socket\nsocket.socket()', {
        enable_network: false,
      });
      expect(denied.error).toMatch(
        /^error: operation not permitted: socket \(network is disabled\)/,
      );
    } finally {
      await cold.close();
    }
  });
});
