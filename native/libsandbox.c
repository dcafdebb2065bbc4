/* libsandbox.so: preloaded into every sandboxed interpreter (LD_PRELOAD).
 *
 * - A syscall the policy does not allow raises SIGSYS (SECCOMP_RET_TRAP) instead of failing
 *   silently; the handler makes it fail with EPERM, as the program would expect, and reports
 *   its number on descriptor 3 so the runner can name the blocked call in its answer.
 * - Process creation is refused up front with the same report (see refuse_process_creation).
 * - A call of the dangerous set through libc (syscall(), ptrace(), mount(), ...) is reported
 *   ("kill NNN") just before the kernel kills the process for it, so the answer can name it.
 * - sandbox_enter() applies the whole isolation sequence inside a running process: a Python
 *   zygote's freshly forked child calls it (through ctypes) before it reads any user code.
 *
 * A zygote is started with SANDBOX_ZYGOTE=1: until it calls sandbox_enter() the refusals are
 * off, since the zygote itself must fork. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#include "policy.h"
#include "sandbox.h"

static int armed = 1;

/* The dangerous set: from SANDBOX_KILL (launcher) or from sandbox_apply() (zygote child). */
static int kill_set[POLICY_MAX_KILL];
static int n_kill;

/* "WORD NNN\n" on the report descriptor, formatted by hand: only async-signal-safe calls. */
static void report_number(const char *word, long nr) {
  char line[24];
  char digits[8];
  int len = 0, n = 0;
  while (*word != '\0' && len < 8) line[len++] = *word++;
  line[len++] = ' ';
  if (nr < 0) nr = 0;
  do {
    digits[n++] = (char)('0' + nr % 10);
    nr /= 10;
  } while (nr > 0 && n < 7);
  while (n > 0) line[len++] = digits[--n];
  line[len++] = '\n';
  int saved = errno;
  if (write(SANDBOX_REPORT_FD, line, (size_t)len) < 0) {
    /* Nothing to do: the report is a courtesy, the EPERM is what matters. */
  }
  errno = saved;
}

static void report_syscall(int nr) { report_number("sys", nr); }

/* Reports NR if it is in the dangerous set: the kernel is about to kill us for it. */
static void report_if_dangerous(long nr) {
  for (int i = 0; i < n_kill; i++)
    if (kill_set[i] == nr) {
      report_number("kill", nr);
      return;
    }
}

static void on_sigsys(int sig, siginfo_t *info, void *context) {
  (void)sig;
  ucontext_t *uc = context;
  /* sched_getaffinity of another id: glibc's pthread_getattr_np asks it of the calling thread's
   * own id, which the policy cannot tell from another process's. "Not implemented" is what glibc
   * takes as no affinity to tell (EPERM failed pthread_getattr_np, and so V8's, Rust's and
   * CPython 3.14's stack checks, in every thread but the first); it says nothing of the other
   * process either. Not reported: nothing the program needs named was refused. */
  int not_implemented = info->si_syscall == SYS_sched_getaffinity;
  long ret = not_implemented ? -ENOSYS : -EPERM;
#if defined(__x86_64__)
  uc->uc_mcontext.gregs[REG_RAX] = ret;
#elif defined(__aarch64__)
  uc->uc_mcontext.regs[0] = (unsigned long long)ret;
#else
#error "unsupported architecture"
#endif
  if (!not_implemented) report_syscall(info->si_syscall);
}

/* Closes exec (and seccomp) for good in an interpreter the launcher started. The launcher's filter has to
 * let execveat() through once, on the interpreter's descriptor, and seccomp cannot see that the
 * call's path is empty: with an absolute path the kernel ignores the descriptor, so that rule
 * alone would let the program execute the dynamic loader, and through it any file it can read.
 * A second filter, stacked on the first before any code of the program runs, traps every exec;
 * filters can only be added, never removed. Fails closed: without it the run does not start. */
static void lock_exec(void) {
#if defined(__x86_64__)
  const __u32 arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
  const __u32 arch = AUDIT_ARCH_AARCH64;
#endif
  struct sock_filter program[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    /* Calls of another ABI are the first filter's to refuse (it kills them). */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_execve, 3, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_execveat, 2, 0),
    /* The last filter: the program may add none (SECCOMP_RET_LOG would write to the host's
     * audit log for each of its calls). */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_seccomp, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    /* As any refused call: EPERM and a report naming it (on_sigsys). */
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
  };
  struct sock_fprog prog = {.len = sizeof program / sizeof program[0], .filter = program};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    char line[128];
    int len = snprintf(line, sizeof line, "sandbox-launcher: exec lock: seccomp: %s\n", strerror(errno));
    if (len > 0 && write(SANDBOX_REPORT_FD, line, (size_t)len) < 0) {
      /* The exit status says it all the same. */
    }
    _exit(SANDBOX_SETUP_FAILED);
  }
  /* The runner takes no interpreter of the launcher's as ready without this line before "ready":
   * an interpreter that ignored LD_PRELOAD (file capabilities, an unreadable library) would run
   * without the lock. */
  if (write(SANDBOX_REPORT_FD, "locked\n", 7) != 7) _exit(SANDBOX_SETUP_FAILED);
}

__attribute__((constructor)) static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  if (sigaction(SIGSYS, &sa, NULL) != 0) abort();
  const char *list = getenv("SANDBOX_KILL");
  for (const char *p = list; p != NULL && *p != '\0' && n_kill < POLICY_MAX_KILL;) {
    kill_set[n_kill++] = (int)strtol(p, (char **)&p, 10);
    if (*p == ',') p++;
    else break;
  }
  /* Set by the launcher for the interpreter it executes (sandbox.c's build_env). */
  const char *exec_lock = getenv("SANDBOX_EXEC_LOCK");
  if (exec_lock != NULL && strcmp(exec_lock, "1") == 0) lock_exec();
  const char *zygote = getenv("SANDBOX_ZYGOTE");
  armed = zygote == NULL || strcmp(zygote, "1") != 0;
  /* The program need not know it was preloaded. */
  unsetenv("LD_PRELOAD");
  unsetenv("SANDBOX_ZYGOTE");
  unsetenv("SANDBOX_KILL");
  unsetenv("SANDBOX_EXEC_LOCK");
}

/* libc's entry points to the dangerous set: report, then let the kernel decide (and kill).
 * A raw syscall instruction goes around them; then the run is killed without a name. */
#define REAL(name, type) ((type)dlsym(RTLD_NEXT, name))

long syscall(long nr, ...) {
  va_list ap;
  va_start(ap, nr);
  long a[6];
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  report_if_dangerous(nr);
  typedef long (*fn)(long, ...);
  static fn real;
  if (real == NULL) real = REAL("syscall", fn);
  return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

long ptrace(int request, ...) {
  va_list ap;
  va_start(ap, request);
  long pid = va_arg(ap, long), addr = va_arg(ap, long), data = va_arg(ap, long);
  va_end(ap);
  report_if_dangerous(SYS_ptrace);
  return REAL("ptrace", long (*)(int, long, long, long))(request, pid, addr, data);
}

int mount(const char *source, const char *target, const char *type, unsigned long flags,
          const void *data) {
  report_if_dangerous(SYS_mount);
  typedef int (*fn)(const char *, const char *, const char *, unsigned long, const void *);
  return REAL("mount", fn)(source, target, type, flags, data);
}

int umount2(const char *target, int flags) {
  report_if_dangerous(SYS_umount2);
  return REAL("umount2", int (*)(const char *, int))(target, flags);
}

int unshare(int flags) {
  report_if_dangerous(SYS_unshare);
  return REAL("unshare", int (*)(int))(flags);
}

int setns(int fd, int type) {
  report_if_dangerous(SYS_setns);
  return REAL("setns", int (*)(int, int))(fd, type);
}

int chroot(const char *path) {
  report_if_dangerous(SYS_chroot);
  return REAL("chroot", int (*)(const char *))(path);
}

int personality(unsigned long persona) {
  report_if_dangerous(SYS_personality);
  return REAL("personality", int (*)(unsigned long))(persona);
}

ssize_t process_vm_readv(pid_t pid, const struct iovec *local, unsigned long n_local,
                         const struct iovec *remote, unsigned long n_remote, unsigned long flags) {
  report_if_dangerous(SYS_process_vm_readv);
  typedef ssize_t (*fn)(pid_t, const struct iovec *, unsigned long, const struct iovec *,
                        unsigned long, unsigned long);
  return REAL("process_vm_readv", fn)(pid, local, n_local, remote, n_remote, flags);
}

/* glibc's posix_spawn() and system() block every signal around their clone(), so a trapped
 * clone would kill the program (a blocked SIGSYS is fatal) before it could say why. Process
 * creation is never allowed in the sandbox: refuse it up front, the way the filter would, with
 * the same report. Going around these with a raw syscall still meets the filter. */
static int refuse_process_creation(void) {
  report_syscall(SYS_clone);
  errno = EPERM;
  return EPERM;
}

int posix_spawn(pid_t *pid, const char *path, const void *file_actions, const void *attr,
                char *const argv[], char *const envp[]) {
  typedef int (*fn)(pid_t *, const char *, const void *, const void *, char *const[], char *const[]);
  if (!armed) return REAL("posix_spawn", fn)(pid, path, file_actions, attr, argv, envp);
  return refuse_process_creation();
}

int posix_spawnp(pid_t *pid, const char *file, const void *file_actions, const void *attr,
                 char *const argv[], char *const envp[]) {
  typedef int (*fn)(pid_t *, const char *, const void *, const void *, char *const[], char *const[]);
  if (!armed) return REAL("posix_spawnp", fn)(pid, file, file_actions, attr, argv, envp);
  return refuse_process_creation();
}

pid_t fork(void) {
  if (!armed) return REAL("fork", pid_t (*)(void))();
  refuse_process_creation();
  return -1;
}

/* Never calls the real vfork: a wrapper cannot return twice from one stack frame. The zygote
 * does not use vfork. */
pid_t vfork(void) {
  refuse_process_creation();
  return -1;
}

int system(const char *command) {
  if (!armed) return REAL("system", int (*)(const char *))(command);
  refuse_process_creation();
  return -1;
}

/* A thread that blocks SIGSYS would be killed, not answered EPERM, by a trapped syscall:
 * blocking it is quietly left out. */
int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
  typedef int (*fn)(int, const sigset_t *, sigset_t *);
  static fn real;
  if (real == NULL) real = REAL("pthread_sigmask", fn);
  if (set == NULL || how == SIG_UNBLOCK) return real(how, set, old);
  sigset_t copy = *set;
  sigdelset(&copy, SIGSYS);
  return real(how, &copy, old);
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old) {
  int rc = pthread_sigmask(how, set, old);
  if (rc == 0) return 0;
  errno = rc;
  return -1;
}

/* The whole isolation sequence, in the calling process, with the launcher's options (without
 * "--" and an interpreter). Returns 0, or never: a failure ends the process with status 125. */
int sandbox_enter(int argc, char **argv) {
  struct sandbox_options o;
  sandbox_step = "arguments";
  sandbox_parse_args(argc, argv, &o, 0);
  sandbox_apply(&o, -1);
  /* As in an interpreter the launcher started (install() above): nothing will be executed
   * here, and the program need not know it was preloaded. */
  if (unsetenv("LD_PRELOAD") != 0) sandbox_die("unsetenv LD_PRELOAD: %s", strerror(errno));
  for (int i = 0; i < sandbox_n_kill; i++) kill_set[i] = sandbox_kill_set[i];
  n_kill = sandbox_n_kill;
  armed = 1;
  return 0;
}
