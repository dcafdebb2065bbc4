# Runs inside the sandbox: every layer is applied before main() is called (by the launcher
# before this interpreter started, or by sandbox_enter() in a child of the zygote). Reports
# "ready", reads one request ({"code", "preload"}) from stdin, runs the preload and then the
# code as the __main__ module, and reports on descriptor 3 why it failed, if it did.
import errno
import importlib
import json
import linecache
import os
import sys
import traceback
import types

REPORT_FD = 3
# The runner's extra packages (SANDBOX_PYTHON_PACKAGES), beside this file's directory.
PACKAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "packages", "python")
if PACKAGES not in sys.path:
    sys.path.append(PACKAGES)


def report(word):
    try:
        os.write(REPORT_FD, (word + "\n").encode())
    except OSError:
        pass


def run(source, filename, module):
    # Register the source so that tracebacks show the offending lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), module.__dict__)


def caused_by_eperm(exc):
    """Whether an EPERM from the kernel is behind EXC (libraries wrap it: URLError, ...)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno == errno.EPERM:
            return True
        reason = getattr(exc, "reason", None)
        if isinstance(reason, BaseException):
            exc = reason
        else:
            exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def print_user_traceback(exc):
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def main():
    # Packages may have been installed since the zygote looked at the directories.
    importlib.invalidate_caches()
    report("ready")
    request = json.loads(sys.stdin.buffer.read())
    module = types.ModuleType("__main__")
    module.__builtins__ = __builtins__
    sys.modules["__main__"] = module
    try:
        if request.get("preload"):
            run(request["preload"], "<preload>", module)
        run(request["code"], "<code>", module)
    except MemoryError as exc:
        report("memory")
        print_user_traceback(exc)
        sys.exit(1)
    except Exception as exc:
        if caused_by_eperm(exc):
            report("eperm")
        print_user_traceback(exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
