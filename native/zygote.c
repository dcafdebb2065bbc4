/* The Python zygote's fork loop, in C (part of libsandbox.so; runner/bootstrap/zygote.py calls it
 * through ctypes.PyDLL, holding the GIL).
 *
 * Why C: fork() makes every page of the zygote copy-on-write, for the zygote too. A loop in
 * Python writes to a couple of hundred pages between two forks (reference counts, the
 * allocator, the JSON it parses), and copying them cost the zygote ~1.3 ms of CPU per child. This
 * loop touches a few pages of its own, and Python runs again only in the children.
 *
 * Commands, one a line on stdin, fields separated by tabs (the runner refuses values holding a
 * tab or a newline):
 *   TOKEN  enter  N  ARG_1 .. ARG_N  KEY=VALUE ...   a child that confines itself: the N sandbox
 *                                                      options, then its environment
 *   TOKEN  exec   ARG ...                            a child that executes the launcher
 * TOKEN is 1 to 64 hexadecimal digits. The loop compiles the seccomp policy an "enter" command
 * names (once per policy, see sandbox_precompile), forks, and reports on stdout
 * {"forked": TOKEN, "pid": N}, and {"exit": TOKEN, "code": N} once the child is reaped (negative
 * N: killed by that signal). In the child it returns the command's length, the command copied to
 * OUT; in the zygote it returns 0 at the end of stdin, -1 with errno set on an error. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"

#define LINE_MAX_BYTES 65536
#define TOKEN_MAX 64

struct child {
  pid_t pid;
  char token[TOKEN_MAX + 1];
};

static struct child *children;
static size_t n_children, cap_children;

/* What was read of stdin and not yet acted on. */
static char pending[LINE_MAX_BYTES];
static size_t used;

/* Writes all of LINE to stdout (the runner reads it), or returns -1. */
static int emit(const char *line, size_t len) {
  while (len > 0) {
    ssize_t n = write(STDOUT_FILENO, line, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    line += n;
    len -= (size_t)n;
  }
  return 0;
}

static int remember(pid_t pid, const char *token) {
  if (n_children == cap_children) {
    size_t cap = cap_children == 0 ? 64 : 2 * cap_children;
    struct child *grown = realloc(children, cap * sizeof *grown);
    if (grown == NULL) return -1;
    children = grown;
    cap_children = cap;
  }
  children[n_children].pid = pid;
  snprintf(children[n_children].token, sizeof children[n_children].token, "%s", token);
  n_children++;
  return 0;
}

/* Reports every child that has exited (and forgets it). */
static int reap(void) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) return 0; /* none left to wait for (ECHILD), or none exited yet */
    for (size_t i = 0; i < n_children; i++) {
      if (children[i].pid != pid) continue;
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      char line[TOKEN_MAX + 64];
      int n = snprintf(line, sizeof line, "{\"exit\": \"%s\", \"code\": %d}\n", children[i].token, code);
      children[i] = children[--n_children];
      if (emit(line, (size_t)n) != 0) return -1;
      break;
    }
  }
}

static int valid_token(const char *token) {
  size_t n = strspn(token, "0123456789abcdef");
  return n > 0 && n <= TOKEN_MAX && token[n] == '\0';
}

/* Splits LINE (modified) at tabs into FIELDS; returns how many, or -1 if there are too many. */
static int split(char *line, char **fields, int max) {
  int n = 0;
  for (char *p = line;;) {
    if (n == max) return -1;
    fields[n++] = p;
    p = strchr(p, '\t');
    if (p == NULL) return n;
    *p++ = '\0';
  }
}

/* Starts the child COMMAND (one line, without its newline) asks for. Returns 1 in the child,
 * 0 in the zygote, -1 on an error there. */
static int start(const char *command, size_t len, char *out, size_t size, const sigset_t *old_mask,
                 int sfd) {
  char copy[LINE_MAX_BYTES];
  char *fields[2 * SANDBOX_MAX_LIST + 32];
  memcpy(copy, command, len + 1);
  int n = split(copy, fields, (int)(sizeof fields / sizeof fields[0]));
  if (n < 2 || !valid_token(fields[0])) {
    errno = EPROTO;
    return -1;
  }
  if (strcmp(fields[1], "enter") == 0) {
    char *end = NULL;
    long n_args = n >= 3 ? strtol(fields[2], &end, 10) : -1;
    if (end == NULL || *end != '\0' || n_args < 0 || n_args > n - 3) {
      errno = EPROTO;
      return -1;
    }
    /* argv[0] is a name, as for the launcher; the options follow. A bad option ends the
     * zygote (the runner then starts Python through the launcher, which says why). */
    fields[2] = "sandbox";
    struct sandbox_options o;
    sandbox_step = "arguments";
    sandbox_parse_args((int)n_args + 1, &fields[2], &o, 0);
    sandbox_precompile(&o);
  } else if (strcmp(fields[1], "exec") != 0) {
    errno = EPROTO;
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    /* The child: SIGCHLD as it was, nothing of the loop's, and Python's own bookkeeping after a
     * fork (its locks, its threads, its at-fork handlers), as os.fork() does. */
    if (close(sfd) != 0 || sigprocmask(SIG_SETMASK, old_mask, NULL) != 0) _exit(SANDBOX_SETUP_FAILED);
    /* Nothing of the siblings stays in this process's memory: their tokens, their commands. */
    explicit_bzero(children, cap_children * sizeof *children);
    free(children);
    children = NULL;
    n_children = cap_children = 0;
    if (len + 1 > size) _exit(SANDBOX_SETUP_FAILED);
    memcpy(out, command, len + 1); /* COMMAND lies in PENDING, cleared next */
    explicit_bzero(pending, used);
    used = 0;
    void (*after_fork_child)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "PyOS_AfterFork_Child");
    if (after_fork_child == NULL) _exit(SANDBOX_SETUP_FAILED);
    after_fork_child();
    return 1;
  }
  if (remember(pid, fields[0]) != 0) return -1;
  char line[TOKEN_MAX + 64];
  int m = snprintf(line, sizeof line, "{\"forked\": \"%s\", \"pid\": %d}\n", fields[0], (int)pid);
  return emit(line, (size_t)m);
}

long sandbox_zygote_serve(char *out, size_t size) {
  sigset_t chld, old_mask;
  if (sigemptyset(&chld) != 0 || sigaddset(&chld, SIGCHLD) != 0) return -1;
  /* SIGCHLD is read from a descriptor instead of interrupting: no Python handler runs here. */
  if (sigprocmask(SIG_BLOCK, &chld, &old_mask) != 0) return -1;
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return -1;
  long result = -1;
  for (;;) {
    /* Commands already read first: each is one child. */
    char *nl = memchr(pending, '\n', used);
    if (nl != NULL) {
      *nl = '\0';
      size_t len = (size_t)(nl - pending);
      int started = start(pending, len, out, size, &old_mask, sfd);
      if (started == 1) return (long)len;
      if (started < 0) break;
      used -= len + 1;
      memmove(pending, nl + 1, used);
      continue;
    }
    if (reap() != 0) break;
    struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) {
      struct signalfd_siginfo info;
      while (read(sfd, &info, sizeof info) == (ssize_t)sizeof info) {
      }
    }
    if (fds[0].revents == 0) continue;
    if (used == sizeof pending) {
      errno = E2BIG; /* a command longer than LINE_MAX_BYTES */
      break;
    }
    ssize_t n = read(STDIN_FILENO, pending + used, sizeof pending - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (n == 0) {
      result = 0; /* the runner is gone; the children end on their own */
      break;
    }
    used += (size_t)n;
  }
  int saved = errno;
  if (close(sfd) != 0 || sigprocmask(SIG_SETMASK, &old_mask, NULL) != 0) return -1;
  errno = saved;
  return result;
}
