# The Python zygote. Started by the runner outside the sandbox, with the runner's privileges;
# never runs user code. It pre-imports what Dify's scripts use, then forks one child per
# command read on stdin. A child connects its stdin (also its report channel), stdout and
# stderr back to the runner, applies every sandbox layer through libsandbox.so's
# sandbox_enter() (its own uid, directory, Landlock, seccomp, ...), and only then runs the
# bootstrap, which reports "ready" and reads the user's code.
#
# Usage: zygote.py SOCKET_PATH PYTHON_PACKAGES_DIR
#
# It also starts the other interpreters: for an "exec" command a child connects back the same
# way and then executes the launcher, which confines it and becomes the interpreter (a fork of
# this small process is cheaper than the runner spawning one itself).
#
# Protocol: see native/zygote.c, whose loop (sandbox_zygote_serve) reads the commands, forks,
# and reports on stdout; in the zygote Python runs only its at-fork steps from then on. One
# line before it: {"hello": true}.
import atexit
import ctypes
import gc
import importlib.util
import json
import os
import socket  # noqa: F401 (what programs reach the network with)
import sys

# What Dify's code nodes and templates use, imported once here so children start with it.
import base64  # noqa: F401
import collections  # noqa: F401
import datetime  # noqa: F401
import decimal  # noqa: F401
import hashlib  # noqa: F401
import jinja2  # noqa: F401
import jinja2.sandbox  # noqa: F401
import math  # noqa: F401
import random
import re  # noqa: F401
import time  # noqa: F401
import typing  # noqa: F401
import uuid  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
SOCKET_PATH = sys.argv[1]
# libsandbox.so is preloaded (LD_PRELOAD): its functions are found in the global namespace.
LIBRARY = ctypes.CDLL(None)
# The fork loop is called holding the GIL (PyDLL): the child resumes Python at once.
SERVE = ctypes.PyDLL(None, use_errno=True).sandbox_zygote_serve
SERVE.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
SERVE.restype = ctypes.c_long
LINE_MAX = ctypes.c_size_t.in_dll(LIBRARY, "sandbox_zygote_line_max").value
CHILD = LIBRARY.sandbox_zygote_child
CHILD.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p]

spec = importlib.util.spec_from_file_location("sandbox_bootstrap", os.path.join(HERE, "python3.py"))
bootstrap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bootstrap)
bootstrap.use_packages(sys.argv[2])

# What Dify's Jinja2 transform builds in every run, built once here: the default environment
# jinja2.Template uses and the lexer (with its compiled regular expressions) that it shares with
# every SandboxedEnvironment of the same settings. Constant templates: nothing of a run.
jinja2.Template("{{ s }}").render(s="a")
# And a walk of what compiling and rendering a template usually takes (loops, conditions,
# namespaces, macros, the common filters): Python specializes that code as it runs it, and a
# child that finds it specialized writes to fewer of the zygote's pages. A 20-line template of a
# Dify template transform then costs its child ~1.5 ms less CPU (of ~9.5), ~100 page copies less.
WARM_UP_TEMPLATE = """{#- constant -#}
{{ a.b }} {{ c | title }} <{{ c | lower }}> {{ c | upper }} {{ '-' * 4 }}
{% for i in xs -%}
{{ loop.index }}. {{ i.n }}: {{ i.q }} x {{ i.c }} = {{ i.q * i.c }}
{%- if i.t %} [{{ i.t | join(', ') }}]{% elif loop.first %} (f){% endif %}
{%- if loop.last %} (l){% endif %}
{% else %}none{% endfor -%}
{{ xs | length }} {{ xs | sum(attribute='q') }}
{%- set t = namespace(c=0) %}{% for i in xs %}{% set t.c = t.c + i.q %}{% endfor %}
{{ t.c // 100 }}.{{ '%02d' | format(t.c % 100) }} {{ a.x | default('none') }}
{% if a.v -%}{{ a.n.split(' ')[0] | title }}{%- else -%}n{%- endif %}
{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(1) }}{% raw %}{{ x }}{% endraw %}
{% for k, v in d.items() %}{{ k }}={{ v }}{% endfor %} {{ d | tojson }}
{{ x if y else z }} {{ [1, 2] | map('string') | join(',') }} {{ s | replace('a', 'b') | trim }}
{{ s | truncate(5) }} {{ n | round(2) }} {{ l | first }} {{ l | last }} {{ l | sort | list }}
{% with q = 1 %}{{ q }}{% endwith %}"""
try:
    jinja2.sandbox.SandboxedEnvironment().from_string(WARM_UP_TEMPLATE).render(
        a={"b": 1, "v": True, "n": "a b"},
        c="x",
        d={"k": 1},
        xs=[{"n": "n", "q": 2, "c": 3, "t": ["a"]}, {"n": "m", "q": 1, "c": 5, "t": []}],
        x=1,
        y=0,
        z=2,
        s=" abc ",
        n=1.234,
        l=[3, 1, 2],
    )
except Exception as exc:  # a warm-up only: another Jinja2 may lack a filter
    print(f"zygote: the Jinja2 warm-up failed: {exc!r}", file=sys.stderr)

# Everything imported so far is shared with the children copy-on-write; keep the collector
# from touching (and so copying) it in every child.
gc.collect()
gc.freeze()


def emit(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def become_sandboxed(line):
    """In the child: connect back, confine, then run the bootstrap (or exec the launcher).
    Never returns."""
    # In C (native/zygote.c): the connections, then sandbox_enter(), or the exec of the launcher.
    CHILD(line, len(line), SOCKET_PATH.encode())
    # sandbox_enter() replaced the C environment (sandbox.c's build_env): make Python's view
    # match it, as if this interpreter had started with it.
    c_environ = ctypes.POINTER(ctypes.c_char_p).in_dll(LIBRARY, "environ")
    entries = []
    while c_environ[len(entries)] is not None:
        entries.append(c_environ[len(entries)])
    mirror_environ(e.split(b"=", 1) for e in entries if b"=" in e)
    # A child must not replay the zygote's random sequence (or a sibling's).
    random.seed()
    try:
        bootstrap.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    finish(code)


def mirror_environ(pairs):
    """os.environ (and os.environb) become PAIRS, the C environment as it already is. Filled as
    Python fills it at start, bytes to bytes in the mapping both share, rather than through
    clear() and update(), which would unsetenv and setenv every name again and run Python code
    whose pages this child would then copy: a quarter of a millisecond of each run's CPU."""
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):  # another Python's layout: the public way
        os.environ.clear()
        os.environ.update((os.fsdecode(k), os.fsdecode(v)) for k, v in pairs)
        return
    data.clear()
    for name, value in pairs:
        data.setdefault(name, value)  # as Python at start, and getenv(): the first one counts


def finish(code):
    """Ends the child as the interpreter would, minus tearing down every module the zygote
    imported (tens of milliseconds): non-daemon threads are joined, atexit handlers run,
    output is flushed."""
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            code = code or 120  # as Python does when the final flush fails
    # The kernel takes a process apart (its memory, its mount namespace) for milliseconds after
    # it exits, and tells the zygote only then. The answer need not wait: report the status and
    # close every connection; seeing both, the runner kills what is left and answers. Only then
    # the lowest priority, for the teardown, so that it does not hold the CPU the runner needs
    # for that answer; lowered before the report, the report itself waited behind every other
    # process on a busy machine (the program itself ran at the runner's priority).
    try:
        os.write(3, f"exit {code & 0xFF}\n".encode())
    except OSError:
        pass
    os.closerange(0, 4)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    except OSError:
        pass
    os._exit(code & 0xFF)


def main():
    emit({"hello": True})
    line = ctypes.create_string_buffer(LINE_MAX)
    length = SERVE(line, len(line))
    if length > 0:
        become_sandboxed(line.raw[:length])
    if length < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"the fork loop failed: {os.strerror(err)}")
    # 0: the runner is gone; the children end on their own.


main()
