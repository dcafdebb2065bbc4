/* The Python zygote's fork loop, in C (part of libsandbox.so; runner/bootstrap/zygote.py calls it
 * through ctypes.PyDLL, holding the GIL).
 *
 * Why C: fork() makes every page of the zygote copy-on-write, for the zygote too. A loop in
 * Python writes to a couple of hundred pages between two forks (reference counts, the
 * allocator, the JSON it parses), and copying them cost the zygote 1.4–1.5 ms of CPU per
 * child. This loop touches a few pages of its own; in the zygote Python runs only its at-fork
 * steps.
 *
 * Commands, one a line on stdin, fields separated by tabs (the runner refuses values holding a
 * tab or a newline):
 *   TOKEN  enter  OPTION ...   a child that confines itself with these sandbox options (the
 *                              launcher's, without "--" and an interpreter)
 *   TOKEN  exec   ARG ...      a child that executes the launcher
 * TOKEN is 1 to 64 hexadecimal digits. The loop compiles the seccomp policy an "enter" command
 * names (once per policy, see sandbox_precompile), forks, and reports on stdout
 * {"forked": TOKEN, "pid": N}, and {"exit": TOKEN, "code": N} once the child is reaped (negative
 * N: killed by that signal), or {"failed": TOKEN, "errno": N} when fork() failed (the loop goes
 * on). In the child it returns the command's length, the command copied to OUT; in the zygote
 * it returns 0 at the end of stdin, -1 with errno set on an error. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"

#define LINE_MAX_BYTES 65536
/* The longest command, with its newline: the size of the buffer Python hands the loop. */
const size_t sandbox_zygote_line_max = LINE_MAX_BYTES;
#define TOKEN_MAX 64

struct child {
  pid_t pid;
  char token[TOKEN_MAX + 1];
};

/* Nothing of one child may remain in the memory of a child forked later (its token lets a
 * connection pass for it): every buffer below that held a token or a command is cleared once
 * used, and a child clears what is left of its siblings before Python runs again. */
static struct child *children;
static size_t n_children, cap_children;

/* What was read of stdin and not yet acted on; zeros beyond USED. */
static char pending[LINE_MAX_BYTES];
static size_t used;

/* The command being acted on, split into fields. */
static char command_copy[LINE_MAX_BYTES];

/* Python's own steps around a fork, as os.fork() takes them (its import lock, at-fork hooks). */
static void (*before_fork)(void), (*after_fork_parent)(void), (*after_fork_child)(void);

/* Writes all of LINE to stdout (the runner reads it), or returns -1. */
static int emit(const char *line, size_t len) {
  while (len > 0) {
    ssize_t n = write(STDOUT_FILENO, line, len);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = EIO;
    if (n <= 0) return -1;
    line += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Emits {"KEY": "TOKEN", "FIELD": NUMBER}, formatted by hand into a buffer cleared afterwards. */
static int report(const char *key, const char *token, const char *field, long number) {
  char line[TOKEN_MAX + 64];
  char digits[24];
  size_t len = 0, n = 0;
  unsigned long magnitude = number < 0 ? 0UL - (unsigned long)number : (unsigned long)number;
  do {
    digits[n++] = (char)('0' + magnitude % 10);
    magnitude /= 10;
  } while (magnitude > 0);
  if (number < 0) digits[n++] = '-';
  const char *parts[] = {"{\"", key, "\": \"", token, "\", \"", field, "\": "};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    size_t k = strlen(parts[i]);
    memcpy(line + len, parts[i], k);
    len += k;
  }
  while (n > 0) line[len++] = digits[--n];
  line[len++] = '}';
  line[len++] = '\n';
  int rc = emit(line, len);
  explicit_bzero(line, sizeof line);
  return rc;
}

static int remember(pid_t pid, const char *token) {
  if (n_children == cap_children) {
    /* Not realloc(): the old table would be freed with its tokens in it. */
    size_t cap = cap_children == 0 ? 64 : 2 * cap_children;
    struct child *grown = calloc(cap, sizeof *grown);
    if (grown == NULL) return -1;
    if (children != NULL) {
      memcpy(grown, children, n_children * sizeof *grown);
      explicit_bzero(children, cap_children * sizeof *children);
      free(children);
    }
    children = grown;
    cap_children = cap;
  }
  children[n_children].pid = pid;
  memcpy(children[n_children].token, token, strlen(token) + 1); /* valid_token(): it fits */
  n_children++;
  return 0;
}

/* Reports every child that has exited (and forgets it). */
static int reap(void) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0 && errno != ECHILD) return -1;
    if (pid <= 0) return 0; /* none left to wait for, or none exited yet */
    for (size_t i = 0; i < n_children; i++) {
      if (children[i].pid != pid) continue;
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      int rc = report("exit", children[i].token, "code", code);
      children[i] = children[--n_children];
      explicit_bzero(&children[n_children], sizeof children[n_children]);
      if (rc != 0) return -1;
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

/* Starts the child COMMAND (one line of PENDING, without its newline) asks for. Returns 1 in
 * the child (COMMAND copied to OUT), 0 in the zygote, -1 on an error there. */
static int start(const char *command, size_t len, char *out, size_t size, const sigset_t *old_mask,
                 int sfd) {
  char *fields[1024]; /* far more than the options sandbox_parse_args() takes */
  memcpy(command_copy, command, len + 1);
  int n = split(command_copy, fields, (int)(sizeof fields / sizeof fields[0]));
  if (n < 2 || !valid_token(fields[0])) {
    errno = EPROTO;
    return -1;
  }
  if (strcmp(fields[1], "enter") == 0) {
    /* argv[0] is a name, as for the launcher ("enter" takes its place); the options follow. A
     * bad option ends the zygote (the runner then starts Python through the launcher, which
     * says why). */
    fields[1] = "sandbox";
    struct sandbox_options o;
    sandbox_step = "arguments";
    sandbox_parse_args(n - 1, &fields[1], &o, 0);
    sandbox_precompile(&o);
  } else if (strcmp(fields[1], "exec") != 0) {
    errno = EPROTO;
    return -1;
  }
  before_fork();
  pid_t pid = fork();
  int saved = errno;
  if (pid == 0) {
    /* The child: SIGCHLD as it was, nothing of the loop's or of the siblings', then Python's
     * own bookkeeping after a fork (its locks, its threads, its at-fork hooks). */
    if (close(sfd) != 0 || sigprocmask(SIG_SETMASK, old_mask, NULL) != 0) _exit(SANDBOX_SETUP_FAILED);
    if (children != NULL) explicit_bzero(children, cap_children * sizeof *children);
    free(children);
    children = NULL;
    n_children = cap_children = 0;
    if (len + 1 > size) _exit(SANDBOX_SETUP_FAILED);
    memcpy(out, command, len + 1);
    explicit_bzero(pending, used); /* COMMAND lies there too; beyond USED all is zero */
    used = 0;
    explicit_bzero(command_copy, len + 1);
    after_fork_child();
    return 1;
  }
  after_fork_parent();
  int rc = -1;
  /* A failed fork (the pod's pid limit, memory) fails that child only: the loop goes on. */
  if (pid < 0) rc = report("failed", fields[0], "errno", saved);
  else if (remember(pid, fields[0]) == 0) rc = report("forked", fields[0], "pid", pid);
  explicit_bzero(command_copy, len + 1); /* FIELDS point into it: cleared once used */
  return rc;
}

long sandbox_zygote_serve(char *out, size_t size) {
  before_fork = (void (*)(void))dlsym(RTLD_DEFAULT, "PyOS_BeforeFork");
  after_fork_parent = (void (*)(void))dlsym(RTLD_DEFAULT, "PyOS_AfterFork_Parent");
  after_fork_child = (void (*)(void))dlsym(RTLD_DEFAULT, "PyOS_AfterFork_Child");
  if (before_fork == NULL || after_fork_parent == NULL || after_fork_child == NULL) {
    errno = ENOSYS; /* not inside a Python interpreter */
    return -1;
  }
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
      int started = len == 0 ? 0 : start(pending, len, out, size, &old_mask, sfd);
      if (started == 1) return (long)len;
      if (started < 0) break;
      used -= len + 1;
      memmove(pending, nl + 1, used);
      explicit_bzero(pending + used, len + 1);
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
      ssize_t n;
      while ((n = read(sfd, &info, sizeof info)) == (ssize_t)sizeof info) {
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) break;
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

/* The command a child acts on, split into fields: its own (the zygote never writes it). */
static char child_command[LINE_MAX_BYTES];

/* Ends a child that could not connect back, saying why on the zygote's stderr (the runner logs
 * each line of it as it comes); the runner sees a child that never connected. */
__attribute__((noreturn)) static void child_failed(const char *call) {
  int saved = errno;
  if (dprintf(STDERR_FILENO, "sandbox-launcher: zygote child: %s: %s\n", call, strerror(saved)) < 0)
    _exit(SANDBOX_SETUP_FAILED);
  _exit(SANDBOX_SETUP_FAILED);
}

/* In a child of the loop, before Python runs anything more: connects its streams back to the
 * runner (SOCKET_PATH), then confines itself (an "enter" command: sandbox_enter()) or executes
 * the launcher (an "exec" command: never returns). In C, not Python: Python's sockets and ctypes
 * would copy a hundred pages of the zygote's objects into each child, half a millisecond of CPU.
 * Any failure ends the child (SANDBOX_SETUP_FAILED): a child that never connected, or one whose
 * confinement failed and said why on its report descriptor. */
int sandbox_zygote_child(const char *command, size_t len, const char *socket_path) {
  char *fields[1025]; /* as start(): far more than the options take, and a closing NULL */
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (len >= sizeof child_command || strlen(socket_path) >= sizeof addr.sun_path)
    _exit(SANDBOX_SETUP_FAILED);
  memcpy(child_command, command, len);
  child_command[len] = '\0';
  int n = split(child_command, fields, 1024);
  if (n < 3 || !valid_token(fields[0])) _exit(SANDBOX_SETUP_FAILED);
  fields[n] = NULL;
  memcpy(addr.sun_path, socket_path, strlen(socket_path) + 1);
  for (int stream = 0; stream <= 2; stream++) {
    /* One connection a stream, which says first whose and which ("TOKEN STREAM\n"). A signal
     * (Python's SIGINT handler is still installed) only interrupts: tried again. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) child_failed("socket");
    int rc;
    while ((rc = connect(fd, (struct sockaddr *)&addr, sizeof addr)) != 0 && errno == EINTR) {
    }
    if (rc != 0 && errno != EISCONN) child_failed("connect");
    char hello[TOKEN_MAX + 8];
    int k = snprintf(hello, sizeof hello, "%s %d\n", fields[0], stream);
    if (k < 0 || (size_t)k >= sizeof hello) _exit(SANDBOX_SETUP_FAILED);
    ssize_t sent;
    while ((sent = send(fd, hello, (size_t)k, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    if (sent != k) child_failed("send");
    explicit_bzero(hello, sizeof hello);
    /* The stream's own descriptor; the report descriptor shares stdin's connection. */
    if (dup2(fd, stream) < 0 || (stream == 0 && dup2(fd, SANDBOX_REPORT_FD) < 0))
      _exit(SANDBOX_SETUP_FAILED);
    if (fd > SANDBOX_REPORT_FD && close(fd) != 0) _exit(SANDBOX_SETUP_FAILED);
  }
  if (strcmp(fields[1], "exec") == 0) {
    /* The streams survive the exec (dup2 onto itself leaves a socket's close-on-exec set). */
    for (int fd = 0; fd <= SANDBOX_REPORT_FD; fd++)
      if (fcntl(fd, F_SETFD, 0) != 0) _exit(SANDBOX_SETUP_FAILED);
    char *no_env[] = {NULL};
    execve(fields[2], &fields[2], no_env);
    /* Said on the report descriptor if it can be; the child ends either way. */
    if (dprintf(SANDBOX_REPORT_FD, "sandbox-launcher: exec: %s: %s\n", fields[2], strerror(errno)) < 0)
      _exit(SANDBOX_SETUP_FAILED);
    _exit(SANDBOX_SETUP_FAILED);
  }
  if (strcmp(fields[1], "enter") != 0) _exit(SANDBOX_SETUP_FAILED);
  /* argv[0] is a name, as for the launcher ("enter" takes its place); the options follow. */
  fields[1] = "sandbox";
  int rc = sandbox_enter(n - 1, &fields[1]);
  /* This copy of the command, token included, is not needed any more (the options were copied
   * where kept). Python's copy is the child's own too: its connections are already taken. */
  explicit_bzero(child_command, len);
  return rc;
}
