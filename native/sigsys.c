/* libsandbox-sigsys.so: preloaded into every sandboxed interpreter (LD_PRELOAD, set by the
 * launcher). A syscall the policy does not allow raises SIGSYS (SECCOMP_RET_TRAP) instead of
 * failing silently; this handler makes it fail with EPERM, as the program would expect, and
 * reports its number on descriptor 3 so the runner can name the blocked call in its answer. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#define REPORT_FD 3

static void on_sigsys(int sig, siginfo_t *info, void *context) {
  (void)sig;
  ucontext_t *uc = context;
#if defined(__x86_64__)
  uc->uc_mcontext.gregs[REG_RAX] = -EPERM;
#elif defined(__aarch64__)
  uc->uc_mcontext.regs[0] = (unsigned long long)-EPERM;
#else
#error "unsupported architecture"
#endif
  /* "sys NNN\n", formatted by hand: only async-signal-safe calls here. */
  char line[16] = "sys ";
  int nr = info->si_syscall, len = 4;
  char digits[8];
  int n = 0;
  do {
    digits[n++] = (char)('0' + nr % 10);
    nr /= 10;
  } while (nr > 0 && n < 7);
  while (n > 0) line[len++] = digits[--n];
  line[len++] = '\n';
  int saved = errno;
  if (write(REPORT_FD, line, (size_t)len) < 0) {
    /* Nothing to do: the report is a courtesy, the EPERM is what matters. */
  }
  errno = saved;
}

__attribute__((constructor)) static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  if (sigaction(SIGSYS, &sa, NULL) != 0) abort();
  /* The program need not know it was preloaded. */
  unsetenv("LD_PRELOAD");
}

/* glibc's posix_spawn() and system() block every signal around their clone(), so a trapped
 * clone would kill the program (a blocked SIGSYS is fatal) before it could say why. Process
 * creation is never allowed in the sandbox: refuse these up front, the way the filter would,
 * with the same report. Going around them with a raw syscall still meets the filter. */
static int refuse_process_creation(void) {
  static const char line[] = "sys 56\n"; /* clone */
  if (write(REPORT_FD, line, sizeof line - 1) < 0) {
  }
  errno = EPERM;
  return EPERM;
}

int posix_spawn(pid_t *pid, const char *path, const void *file_actions, const void *attr,
                char *const argv[], char *const envp[]) {
  (void)pid, (void)path, (void)file_actions, (void)attr, (void)argv, (void)envp;
  return refuse_process_creation();
}

int posix_spawnp(pid_t *pid, const char *file, const void *file_actions, const void *attr,
                 char *const argv[], char *const envp[]) {
  (void)pid, (void)file, (void)file_actions, (void)attr, (void)argv, (void)envp;
  return refuse_process_creation();
}

pid_t fork(void) {
  refuse_process_creation();
  return -1;
}

/* Never calls the real vfork: a wrapper cannot return twice from one stack frame. */
pid_t vfork(void) {
  refuse_process_creation();
  return -1;
}

int system(const char *command) {
  (void)command;
  refuse_process_creation();
  return -1;
}

/* A thread that blocks SIGSYS would be killed, not answered EPERM, by a trapped syscall:
 * blocking it is quietly left out. */
int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
  static int (*real)(int, const sigset_t *, sigset_t *);
  if (real == NULL) real = (int (*)(int, const sigset_t *, sigset_t *))dlsym(RTLD_NEXT, "pthread_sigmask");
  if (set == NULL || how == SIG_UNBLOCK) return real(how, set, old);
  sigset_t copy = *set;
  sigdelset(&copy, SIGSYS);
  return real(how, &copy, old);
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old) {
  return pthread_sigmask(how, set, old) == 0 ? 0 : (errno = EINVAL, -1);
}
