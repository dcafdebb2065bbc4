/* sandbox-launcher: confines one execution, then becomes its interpreter.
 *
 *   sandbox-launcher --policy-dir DIR --policy NAME [--policy NAME]... --workdir PATH
 *                    [--uid N --gid N] [--memory-bytes N] [--address-space-bytes N]
 *                    [--cpu-seconds N] [--file-bytes N]
 *                    [--open-files N] [--processes N] [--disk-bytes N] [--disk-files N]
 *                    [--read PATH]... [--env K=V]...
 *                    [--network [--connect-port PORT]...] [--landlock required|optional]
 *                    [--parent PID]
 *                    -- INTERPRETER [ARG]...
 *   sandbox-launcher --probe
 *
 * Every step is checked; any failure ends the launcher with exit status 125 and a line
 * "sandbox-launcher: STEP: REASON" on stderr and on the report descriptor (3), before a single
 * byte of user code can run. The runner feeds the code to the interpreter on stdin only after
 * the interpreter reported "ready" from inside the sandbox. --parent names the process the run
 * must be a child of (it dies with it); without it, the parent the launcher starts with.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "landlock.h"
#include "sandbox.h"

/* Makes sure FD is open, on /dev/null if need be, so that no file the program opens later
 * can end up as its stdout or its report descriptor by accident. */
static void ensure_open(int fd, int flags) {
  if (fcntl(fd, F_GETFD) >= 0) return;
  int dn = open("/dev/null", flags | O_CLOEXEC);
  if (dn < 0) sandbox_die("/dev/null: %s", strerror(errno));
  if (dn != fd && (dup2(dn, fd) != fd || close(dn) != 0)) sandbox_die("dup2: %s", strerror(errno));
}

/* The descriptor the interpreter is executed through (sandbox_interpreter_fd): the seccomp
 * filter lets execveat run only this number, so it must lie beyond every descriptor the run may
 * open (below its RLIMIT_NOFILE, OPEN_FILES). */
static int interpreter_fd(rlim_t open_files) {
  int fd = sandbox_interpreter_fd();
  if ((rlim_t)fd < open_files || fd <= SANDBOX_REPORT_FD + 1)
    sandbox_die("the hard open file limit (%d) must be above the runs' limit (%llu): raise it or lower SANDBOX_MAX_OPEN_FILES",
                fd + 1, (unsigned long long)open_files);
  return fd;
}

int main(int argc, char **argv) {
  struct sandbox_options o;
  ensure_open(STDIN_FILENO, O_RDONLY);
  ensure_open(STDOUT_FILENO, O_WRONLY);
  ensure_open(STDERR_FILENO, O_WRONLY);
  ensure_open(SANDBOX_REPORT_FD, O_WRONLY);

  /* --probe: what the kernel offers, for the runner's start-up report. */
  if (argc == 2 && strcmp(argv[1], "--probe") == 0) {
    int abi = landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    printf("landlock_abi=%d\n", abi < 0 ? 0 : abi);
    return fflush(stdout) == 0 ? 0 : 1;
  }
  sandbox_parse_args(argc, argv, &o, 1);

  /* Open the interpreter while the whole filesystem is still visible: from here on it is the
   * only program this process can execute (the execveat rule of sandbox_apply). */
  sandbox_step = "interpreter";
  int exec_fd = interpreter_fd(o.open_files);
  int exe = open(o.argv[0], O_PATH | O_CLOEXEC);
  if (exe < 0) sandbox_die("open %s: %s", o.argv[0], strerror(errno));
  if (dup3(exe, exec_fd, O_CLOEXEC) != exec_fd || close(exe) != 0)
    sandbox_die("dup3: %s", strerror(errno));

  char **envp = sandbox_apply(&o, exec_fd);

  sandbox_step = "exec";
  syscall(SYS_execveat, exec_fd, "", o.argv, envp, AT_EMPTY_PATH);
  sandbox_die("%s: %s", o.argv[0], strerror(errno));
}
