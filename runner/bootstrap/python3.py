# Runs inside the sandbox: every layer is applied before main() is called (by the launcher
# before this interpreter started, or by sandbox_enter() in a child of the zygote). Reports
# "ready", reads one request ({"code", "preload"}) from stdin, runs the preload and then the
# code as the __main__ module, and reports on descriptor 3 why it failed, if it did.
import errno
import json
import linecache
import os
import sys
import traceback
import types

REPORT_FD = 3


PACKAGES = None


def use_packages(directory):
    """Lets code import the runner's extra packages (SANDBOX_PYTHON_PACKAGES): the runner names
    their directory (an argument of this file, or of the zygote)."""
    global PACKAGES
    PACKAGES = directory
    if directory not in sys.path:
        sys.path.append(directory)


def refresh_packages():
    """Packages may have been installed since the zygote looked at their directory (the only one
    of sys.path the runner changes): its import caches are dropped, and those of the packages
    in it. Only those, not all of them (importlib.invalidate_caches): in a child of the zygote
    that would copy every finder's page, a third of a millisecond of each run's CPU."""
    if PACKAGES is None:
        return
    beneath = PACKAGES + os.sep
    for path in [p for p in sys.path_importer_cache if isinstance(p, str)]:
        if path != PACKAGES and not path.startswith(beneath):
            continue
        finder = sys.path_importer_cache[path]
        if finder is None:
            del sys.path_importer_cache[path]  # looked for before it existed: look again
        elif hasattr(finder, "invalidate_caches"):
            finder.invalidate_caches()


def report(word):
    try:
        os.write(REPORT_FD, (word + "\n").encode())
    except OSError:
        pass


def run(source, filename, module):
    # Register the source so that tracebacks show the offending lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), module.__dict__)


# Which limit an errno means, in the words of the runner's reports.
LIMIT_ERRNOS = {
    errno.EFBIG: "fsize",  # RLIMIT_FSIZE (Python ignores SIGXFSZ, so the write fails instead)
    errno.ENOSPC: "disk",  # the run directory's bytes or files
    errno.EDQUOT: "disk",
    errno.EMFILE: "nofile",  # RLIMIT_NOFILE
}


def causes(exc):
    """EXC and what is behind it (libraries wrap errors: URLError.reason, __cause__, ...)."""
    seen = 0
    while exc is not None and seen < 10:
        yield exc
        reason = getattr(exc, "reason", None)
        if isinstance(reason, BaseException):
            exc = reason
        else:
            exc = exc.__cause__ or exc.__context__
        seen += 1


def explain(exc):
    """The report word for why EXC ended the program, or None."""
    for cause in causes(exc):
        if isinstance(cause, MemoryError):
            return "memory"
        if isinstance(cause, OSError) and cause.errno == errno.EPERM:
            return "eperm"
        if isinstance(cause, OSError) and cause.errno in LIMIT_ERRNOS:
            return LIMIT_ERRNOS[cause.errno]
        if isinstance(cause, RuntimeError) and "can't start new thread" in str(cause):
            return "threads"  # RLIMIT_NPROC
    return None


def print_user_traceback(exc):
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def main():
    refresh_packages()
    # Touch what every run uses (the JSON decoder, the compiler, exec) before "ready": in a child
    # of the zygote the first writes to those pages copy them, which need not be the run's time.
    json.loads('{"code": "pass", "preload": ""}')
    exec(compile("pass", "<warm-up>", "exec"), {})
    report("ready")
    request = json.loads(sys.stdin.buffer.read())
    # "run" before anything of the request runs: a process that ends without having said so ran
    # none of it, and the runner may give the request to another. Not a courtesy: unsaid, stop.
    if os.write(REPORT_FD, b"run\n") != 4:
        os._exit(125)
    module = types.ModuleType("__main__")
    module.__builtins__ = __builtins__
    # DifySandbox runs the code inside its prescript, whose os, sys and traceback the code could
    # use without importing them: code nodes written against it keep working.
    module.os, module.sys, module.traceback = os, sys, traceback
    # As for a script (DifySandbox runs the code from one): os.path.dirname(__file__) works.
    module.__file__ = os.path.join(os.getcwd(), "code.py")
    # And argv as for that script (not the bootstrap's or the zygote's own arguments).
    sys.argv = [module.__file__]
    sys.modules["__main__"] = module
    try:
        if request.get("preload"):
            run(request["preload"], "<preload>", module)
        run(request["code"], "<code>", module)
    except SystemExit:
        raise
    except BaseException as exc:
        # Not only Exception: KeyboardInterrupt or asyncio.CancelledError left to the interpreter
        # would show the bootstrap's and the zygote's frames and end the run by a signal.
        why = explain(exc)
        if why is not None:
            report(why)
        print_user_traceback(exc)
        sys.exit(1)


if __name__ == "__main__":
    use_packages(sys.argv.pop(1))  # taken off, so that programs see argv as Dify's runner has it
    main()
