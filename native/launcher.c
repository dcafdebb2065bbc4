/* sandbox-launcher: confines one execution, then becomes its interpreter.
 *
 *   sandbox-launcher --policy-dir DIR --policy NAME [--policy NAME]... --workdir PATH
 *                    [--uid N --gid N] [--memory-bytes N] [--cpu-seconds N] [--file-bytes N]
 *                    [--open-files N] [--processes N] [--read PATH]... [--env K=V]...
 *                    [--network] [--landlock required|optional] -- INTERPRETER [ARG]...
 *   sandbox-launcher --probe
 *
 * main() is the whole isolation sequence, top to bottom. Every step is checked; any failure
 * ends the launcher with exit status 125 and a line "sandbox-launcher: STEP: REASON" on stderr
 * and on the report descriptor (3), before a single byte of user code can run. The runner
 * feeds the user's code to the interpreter on stdin only after this program has exec'd it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "landlock.h"
#include "policy.h"

#define EXIT_SETUP_FAILED 125
#define REPORT_FD 3
/* The interpreter is kept open at this descriptor until execveat(). It is above the
 * RLIMIT_NOFILE hard limit set below, so after exec no code can create a descriptor with this
 * number again: the seccomp rule that allows execveat() on it alone can then never match. */
#define EXEC_FD 1000
#define MAX_LIST 64

struct options {
  const char *policy_dir;
  const char *policies[8];
  int n_policies;
  const char *workdir;
  long uid, gid;
  rlim_t memory_bytes, cpu_seconds, file_bytes, open_files, processes;
  const char *read[MAX_LIST];
  int n_read;
  const char *env[MAX_LIST];
  int n_env;
  int network;
  int landlock_required;
  char **argv;
};

static const char *current_step = "arguments";

static void die(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char line[1200];
  int n = snprintf(line, sizeof line, "sandbox-launcher: %s: %s\n", current_step, msg);
  if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
  /* Best effort: the exit status alone already says the setup failed. */
  if (write(STDERR_FILENO, line, (size_t)n) < 0) {
  }
  if (fcntl(REPORT_FD, F_GETFD) >= 0 && write(REPORT_FD, line, (size_t)n) < 0) {
  }
  _exit(EXIT_SETUP_FAILED);
}

static void die_errno(const char *what) { die("%s: %s", what, strerror(errno)); }

static rlim_t parse_limit(const char *s) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') die("not a number: '%s'", s);
  return (rlim_t)v;
}

static void parse_args(int argc, char **argv, struct options *o) {
  memset(o, 0, sizeof *o);
  o->uid = o->gid = -1;
  o->landlock_required = 1;
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(a, "--network") == 0) {
      o->network = 1;
      continue;
    }
    if (i + 1 >= argc) die("option %s needs a value", a);
    const char *v = argv[++i];
    if (strcmp(a, "--policy-dir") == 0) o->policy_dir = v;
    else if (strcmp(a, "--policy") == 0 && o->n_policies < 8) o->policies[o->n_policies++] = v;
    else if (strcmp(a, "--workdir") == 0) o->workdir = v;
    else if (strcmp(a, "--uid") == 0) o->uid = (long)parse_limit(v);
    else if (strcmp(a, "--gid") == 0) o->gid = (long)parse_limit(v);
    else if (strcmp(a, "--memory-bytes") == 0) o->memory_bytes = parse_limit(v);
    else if (strcmp(a, "--cpu-seconds") == 0) o->cpu_seconds = parse_limit(v);
    else if (strcmp(a, "--file-bytes") == 0) o->file_bytes = parse_limit(v);
    else if (strcmp(a, "--open-files") == 0) o->open_files = parse_limit(v);
    else if (strcmp(a, "--processes") == 0) o->processes = parse_limit(v);
    else if (strcmp(a, "--read") == 0 && o->n_read < MAX_LIST) o->read[o->n_read++] = v;
    else if (strcmp(a, "--env") == 0 && o->n_env < MAX_LIST) o->env[o->n_env++] = v;
    else if (strcmp(a, "--landlock") == 0) o->landlock_required = strcmp(v, "optional") != 0;
    else die("unknown or repeated option %s", a);
  }
  if (i >= argc) die("no interpreter after --");
  if (o->policy_dir == NULL || o->n_policies == 0) die("--policy-dir and --policy are required");
  if (o->workdir == NULL || o->workdir[0] != '/') die("--workdir must be an absolute path");
  if ((o->uid < 0) != (o->gid < 0)) die("--uid and --gid go together");
  if (o->open_files == 0 || o->open_files >= EXEC_FD) o->open_files = 256;
  o->argv = &argv[i];
}

static void set_limit(int resource, const char *name, rlim_t value, rlim_t hard_extra) {
  if (value == 0) return;
  struct rlimit rl = {.rlim_cur = value, .rlim_max = value + hard_extra};
  if (setrlimit(resource, &rl) != 0) die_errno(name);
}

/* Adds a Landlock rule granting ACCESS beneath PATH; a path that does not exist is skipped
 * (policies list the union of what Debian and other layouts need). */
static void landlock_allow_fd(int ruleset, int fd, const char *path, __u64 access) {
  struct stat st;
  if (fstat(fd, &st) != 0) die_errno(path);
  if (!S_ISDIR(st.st_mode)) access &= LANDLOCK_FILE_ACCESS;
  struct landlock_path_beneath_attr rule = {.allowed_access = access, .parent_fd = fd};
  if (landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) != 0) die_errno(path);
}

static void landlock_allow(int ruleset, const char *path, __u64 access) {
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return;
    die("open %s: %s", path, strerror(errno));
  }
  landlock_allow_fd(ruleset, fd, path, access);
  if (close(fd) != 0) die_errno("close");
}

static void apply_landlock(const struct options *o, const struct policy_paths *paths) {
  int abi = landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 1) {
    if (o->landlock_required) die("Landlock is not available in this kernel (required)");
    return;
  }
  __u64 all = landlock_fs_access_for_abi(abi);
  struct landlock_ruleset_attr attr = {.handled_access_fs = all};
  /* ABI 4: with network disabled, no TCP bind or connect at all (seccomp blocks sockets too). */
  if (abi >= 4 && !o->network)
    attr.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
  /* ABI 6: no signals to, and no abstract unix sockets of, processes outside this sandbox. */
  if (abi >= 6) attr.scoped = LANDLOCK_SCOPE_SIGNAL | LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET;
  int ruleset = landlock_create_ruleset(&attr, sizeof attr, 0);
  if (ruleset < 0) die_errno("landlock_create_ruleset");

  const __u64 read = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
  for (int i = 0; i < paths->n_read; i++) landlock_allow(ruleset, paths->read[i], read);
  for (int i = 0; i < o->n_read; i++) landlock_allow(ruleset, o->read[i], read);
  for (int i = 0; i < paths->n_exec; i++)
    landlock_allow(ruleset, paths->exec[i], read | LANDLOCK_ACCESS_FS_EXECUTE);
  landlock_allow_fd(ruleset, EXEC_FD, "interpreter", read | LANDLOCK_ACCESS_FS_EXECUTE);
  landlock_allow(ruleset, "/dev/null", LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE);
  /* The run's own directory: everything but executing, device nodes and sockets. */
  landlock_allow(ruleset, o->workdir,
                 all & ~(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                         LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SOCK |
                         LANDLOCK_ACCESS_FS_IOCTL_DEV));
  if (landlock_restrict_self(ruleset, 0) != 0) die_errno("landlock_restrict_self");
  if (close(ruleset) != 0) die_errno("close");
}

static void drop_capabilities(void) {
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &hdr, data) != 0) die_errno("capset");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) die_errno("clear ambient");
}

static char **build_env(const struct options *o) {
  static char *envp[MAX_LIST + 8];
  static char home[4200], tmpdir[4200];
  int n = 0;
  snprintf(home, sizeof home, "HOME=%s", o->workdir);
  snprintf(tmpdir, sizeof tmpdir, "TMPDIR=%s", o->workdir);
  envp[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
  envp[n++] = "LANG=C.UTF-8";
  envp[n++] = home;
  envp[n++] = tmpdir;
  for (int i = 0; i < o->n_env; i++) {
    if (strchr(o->env[i], '=') == NULL) die("--env needs KEY=VALUE, got '%s'", o->env[i]);
    envp[n++] = (char *)o->env[i];
  }
  envp[n] = NULL;
  return envp;
}

static void ensure_open(int fd, int flags) {
  if (fcntl(fd, F_GETFD) >= 0) return;
  int dn = open("/dev/null", flags | O_CLOEXEC);
  if (dn < 0) die_errno("/dev/null");
  if (dn != fd && (dup2(dn, fd) != fd || close(dn) != 0)) die_errno("dup2");
}

int main(int argc, char **argv) {
  struct options o;
  struct policy_paths paths;
  char err[1024];
  memset(&paths, 0, sizeof paths);
  ensure_open(STDIN_FILENO, O_RDONLY);
  ensure_open(STDOUT_FILENO, O_WRONLY);
  ensure_open(STDERR_FILENO, O_WRONLY);
  ensure_open(REPORT_FD, O_WRONLY);
  /* --probe: what the kernel offers, for the runner's start-up report. */
  if (argc == 2 && strcmp(argv[1], "--probe") == 0) {
    int abi = landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    printf("landlock_abi=%d\n", abi < 0 ? 0 : abi);
    return fflush(stdout) == 0 ? 0 : 1;
  }
  parse_args(argc, argv, &o);
  const int as_root = geteuid() == 0;

  /* Open the interpreter while the whole filesystem is still visible: from here on it is the
   * only program this process can execute (the execveat rule added to the filter below). */
  current_step = "interpreter";
  int exe = open(o.argv[0], O_PATH | O_CLOEXEC);
  if (exe < 0) die("open %s: %s", o.argv[0], strerror(errno));
  if (dup3(exe, EXEC_FD, O_CLOEXEC) != EXEC_FD || close(exe) != 0) die_errno("dup3");

  /* Compile the syscall policy now: its files are invisible once Landlock applies. It is
   * loaded last, so that every step before it may use any syscall it needs. */
  current_step = "seccomp policy";
  scmp_filter_ctx filter = seccomp_init(SCMP_ACT_TRAP);
  if (filter == NULL) die("seccomp_init failed");
  for (int i = 0; i < o.n_policies; i++)
    if (policy_load(filter, o.policy_dir, o.policies[i], getpid(), &paths, err, sizeof err) != 0)
      die("%s", err);
  int rc = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(execveat), 2,
                            SCMP_A0(SCMP_CMP_EQ, EXEC_FD), SCMP_A4(SCMP_CMP_EQ, AT_EMPTY_PATH));
  if (rc != 0) die("execveat rule: %s", strerror(-rc));

  /* Resource limits: inherited by every thread, and the hard limits cannot be raised again
   * once privileges are gone. */
  current_step = "rlimits";
  set_limit(RLIMIT_CORE, "RLIMIT_CORE", 1, 0); /* 1 byte: effectively no core dumps */
  set_limit(RLIMIT_DATA, "RLIMIT_DATA", o.memory_bytes, 0);
  /* The soft CPU limit sends SIGXCPU, which names the cause; the hard one a second later kills. */
  set_limit(RLIMIT_CPU, "RLIMIT_CPU", o.cpu_seconds, 1);
  set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", o.file_bytes, 0);
  set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", o.open_files, 0);
  /* RLIMIT_NPROC counts every process of the real uid: only meaningful with a uid of our own. */
  if (as_root) set_limit(RLIMIT_NPROC, "RLIMIT_NPROC", o.processes, 0);

  /* A private, empty working directory. mkdir fails if anything already stands at that path,
   * so nobody can prepare it (or a symlink in its place) for us. */
  current_step = "workdir";
  if (mkdir(o.workdir, 0700) != 0) die("mkdir %s: %s", o.workdir, strerror(errno));
  if (as_root && o.uid >= 0 && chown(o.workdir, (uid_t)o.uid, (gid_t)o.gid) != 0)
    die_errno("chown");
  if (chdir(o.workdir) != 0) die_errno("chdir");

  /* no_new_privs before Landlock: without CAP_SYS_ADMIN Landlock requires it, and nothing
   * after this point may gain privileges through exec anyway. */
  current_step = "no_new_privs";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die_errno("prctl");

  /* The filesystem view: read-only access to what the interpreter needs, read-write access
   * to the run's own directory, nothing else. */
  current_step = "landlock";
  apply_landlock(&o, &paths);

  /* Privileges. As root each run gets its own uid and gid; as non-root there is nothing to
   * change, but any capability we were given goes. */
  current_step = "privileges";
  if (as_root) {
    if (o.uid <= 0 || o.gid <= 0) die("running as root requires a non-zero --uid and --gid");
    /* Supplementary groups first: setgid/setuid leave them in place. */
    if (setgroups(0, NULL) != 0) die_errno("setgroups");
    /* Group before user: once the uid is dropped the gid could no longer be changed
     * (the ordering bug that left DifySandbox runs in group 0). */
    if (setresgid((gid_t)o.gid, (gid_t)o.gid, (gid_t)o.gid) != 0) die_errno("setresgid");
    if (setresuid((uid_t)o.uid, (uid_t)o.uid, (uid_t)o.uid) != 0) die_errno("setresuid");
    if (setuid(0) == 0 || setgid(0) == 0) die("root could be regained after the drop");
  } else if (o.uid >= 0 && (getuid() != (uid_t)o.uid || getgid() != (gid_t)o.gid)) {
    die("--uid/--gid need root; the runner is not root");
  }
  drop_capabilities();

  /* A scrubbed environment: only what we set, nothing of the runner's (its API key). */
  current_step = "environment";
  char **envp = build_env(&o);

  /* Descriptors: stdin, stdout, stderr, the report pipe and the interpreter; nothing else of
   * the runner's may leak into the sandbox. */
  current_step = "descriptors";
  if (close_range(REPORT_FD + 1, EXEC_FD - 1, 0) != 0) die_errno("close_range");
  if (close_range(EXEC_FD + 1, ~0U, 0) != 0) die_errno("close_range");

  /* The syscall allowlist, last: from here on only what the policy allows. */
  current_step = "seccomp";
  rc = seccomp_load(filter);
  if (rc != 0) die("seccomp_load: %s", strerror(-rc));
  seccomp_release(filter);

  current_step = "exec";
  syscall(SYS_execveat, EXEC_FD, "", o.argv, envp, AT_EMPTY_PATH);
  die_errno(o.argv[0]);
}
