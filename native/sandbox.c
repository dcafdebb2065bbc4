/* The isolation sequence: sandbox_apply() reads top to bottom as the steps that confine one
 * execution, each checked, each with the reason it stands where it does. */
#define _GNU_SOURCE
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "landlock.h"
#include "policy.h"

const char *sandbox_step = "arguments";

void sandbox_die(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char line[1200];
  int n = snprintf(line, sizeof line, "sandbox-launcher: %s: %s\n", sandbox_step, msg);
  if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
  /* Best effort: the exit status alone already says the setup failed. */
  if (write(STDERR_FILENO, line, (size_t)n) < 0) {
  }
  if (fcntl(SANDBOX_REPORT_FD, F_GETFD) >= 0 && write(SANDBOX_REPORT_FD, line, (size_t)n) < 0) {
  }
  _exit(SANDBOX_SETUP_FAILED);
}

static void sandbox_die_errno(const char *what) { sandbox_die("%s: %s", what, strerror(errno)); }

static rlim_t parse_limit(const char *s) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') sandbox_die("not a number: '%s'", s);
  return (rlim_t)v;
}

void sandbox_parse_args(int argc, char **argv, struct sandbox_options *o, int want_interpreter) {
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
    if (i + 1 >= argc) sandbox_die("option %s needs a value", a);
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
    else if (strcmp(a, "--read") == 0 && o->n_read < SANDBOX_MAX_LIST) o->read[o->n_read++] = v;
    else if (strcmp(a, "--env") == 0 && o->n_env < SANDBOX_MAX_LIST) o->env[o->n_env++] = v;
    else if (strcmp(a, "--landlock") == 0) o->landlock_required = strcmp(v, "optional") != 0;
    else sandbox_die("unknown or repeated option %s", a);
  }
  if (want_interpreter && i >= argc) sandbox_die("no interpreter after --");
  if (!want_interpreter && i < argc) sandbox_die("unexpected argument %s", argv[i]);
  if (o->policy_dir == NULL || o->n_policies == 0) sandbox_die("--policy-dir and --policy are required");
  if (o->workdir == NULL || o->workdir[0] != '/') sandbox_die("--workdir must be an absolute path");
  if ((o->uid < 0) != (o->gid < 0)) sandbox_die("--uid and --gid go together");
  if (o->open_files == 0 || o->open_files >= SANDBOX_EXEC_FD) o->open_files = 256;
  o->argv = &argv[i];
}

static void set_limit(int resource, const char *name, rlim_t value, rlim_t hard_extra) {
  if (value == 0) return;
  struct rlimit rl = {.rlim_cur = value, .rlim_max = value + hard_extra};
  if (setrlimit(resource, &rl) != 0) sandbox_die_errno(name);
}

/* Adds a Landlock rule granting ACCESS beneath PATH; a path that does not exist is skipped
 * (policies list the union of what Debian and other layouts need). */
static void landlock_allow_fd(int ruleset, int fd, const char *path, __u64 access) {
  struct stat st;
  if (fstat(fd, &st) != 0) sandbox_die_errno(path);
  if (!S_ISDIR(st.st_mode)) access &= LANDLOCK_FILE_ACCESS;
  struct landlock_path_beneath_attr rule = {.allowed_access = access, .parent_fd = fd};
  if (landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) != 0) sandbox_die_errno(path);
}

static void landlock_allow(int ruleset, const char *path, __u64 access) {
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return;
    sandbox_die("open %s: %s", path, strerror(errno));
  }
  landlock_allow_fd(ruleset, fd, path, access);
  if (close(fd) != 0) sandbox_die_errno("close");
}

static void apply_landlock(const struct sandbox_options *o, const struct policy_paths *paths, int exec_fd) {
  int abi = landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 1) {
    if (o->landlock_required) sandbox_die("Landlock is not available in this kernel (required)");
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
  if (ruleset < 0) sandbox_die_errno("landlock_create_ruleset");

  const __u64 read = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
  for (int i = 0; i < paths->n_read; i++) landlock_allow(ruleset, paths->read[i], read);
  for (int i = 0; i < o->n_read; i++) landlock_allow(ruleset, o->read[i], read);
  for (int i = 0; i < paths->n_exec; i++)
    landlock_allow(ruleset, paths->exec[i], read | LANDLOCK_ACCESS_FS_EXECUTE);
  if (exec_fd >= 0) landlock_allow_fd(ruleset, exec_fd, "interpreter", read | LANDLOCK_ACCESS_FS_EXECUTE);
  landlock_allow(ruleset, "/dev/null", LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE);
  /* The run's own directory: everything but executing, device nodes and sockets. */
  landlock_allow(ruleset, o->workdir,
                 all & ~(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                         LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SOCK |
                         LANDLOCK_ACCESS_FS_IOCTL_DEV));
  if (landlock_restrict_self(ruleset, 0) != 0) sandbox_die_errno("landlock_restrict_self");
  if (close(ruleset) != 0) sandbox_die_errno("close");
}

static void drop_capabilities(void) {
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &hdr, data) != 0) sandbox_die_errno("capset");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) sandbox_die_errno("clear ambient");
}

static char **build_env(const struct sandbox_options *o) {
  static char *envp[SANDBOX_MAX_LIST + 8];
  static char home[4200], tmpdir[4200];
  int n = 0;
  snprintf(home, sizeof home, "HOME=%s", o->workdir);
  snprintf(tmpdir, sizeof tmpdir, "TMPDIR=%s", o->workdir);
  envp[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
  envp[n++] = "LANG=C.UTF-8";
  envp[n++] = home;
  envp[n++] = tmpdir;
  for (int i = 0; i < o->n_env; i++) {
    if (strchr(o->env[i], '=') == NULL) sandbox_die("--env needs KEY=VALUE, got '%s'", o->env[i]);
    envp[n++] = (char *)o->env[i];
  }
  envp[n] = NULL;
  if (clearenv() != 0) sandbox_die("clearenv failed");
  for (int i = 0; i < n; i++)
    if (putenv(envp[i]) != 0) sandbox_die_errno("putenv");
  return envp;
}

/* Policies compiled by sandbox_precompile(), inherited by forked children. The execution's
 * pid is not known when compiling: rules on `$pid` are compiled against PID_SENTINEL, and each
 * child writes its own pid into the program before loading it. */
#define PID_SENTINEL 0x7fffe1e1u /* above any pid_max */
#define MAX_COMPILED 8

struct compiled_policy {
  char key[1024];
  struct sock_filter *program;
  unsigned short length;
  struct policy_paths paths;
};

static struct compiled_policy compiled[MAX_COMPILED];
static int n_compiled;

static void policy_key(const struct sandbox_options *o, char *key, size_t len) {
  int n = snprintf(key, len, "%s", o->policy_dir);
  for (int i = 0; i < o->n_policies && n > 0 && (size_t)n < len; i++)
    n += snprintf(key + n, len - (size_t)n, "|%s", o->policies[i]);
  if (n < 0 || (size_t)n >= len) sandbox_die("policy list too long");
}

static const struct compiled_policy *find_compiled(const struct sandbox_options *o) {
  char key[1024];
  policy_key(o, key, sizeof key);
  for (int i = 0; i < n_compiled; i++)
    if (strcmp(compiled[i].key, key) == 0) return &compiled[i];
  return NULL;
}

/* Reads the policies of O into a new filter (default action: trap), with `$pid` as SELF. */
static scmp_filter_ctx load_policies(const struct sandbox_options *o, pid_t self,
                                     struct policy_paths *paths) {
  char err[1024];
  scmp_filter_ctx filter = seccomp_init(SCMP_ACT_TRAP);
  if (filter == NULL) sandbox_die("seccomp_init failed");
  for (int i = 0; i < o->n_policies; i++)
    if (policy_load(filter, o->policy_dir, o->policies[i], self, paths, err, sizeof err) != 0)
      sandbox_die("%s", err);
  return filter;
}

void sandbox_precompile(const struct sandbox_options *o) {
  sandbox_step = "seccomp policy";
  if (find_compiled(o) != NULL) return;
  if (n_compiled == MAX_COMPILED) sandbox_die("too many different policies");
  struct compiled_policy *c = &compiled[n_compiled];
  memset(c, 0, sizeof *c);
  policy_key(o, c->key, sizeof c->key);
  scmp_filter_ctx filter = load_policies(o, (pid_t)PID_SENTINEL, &c->paths);
  /* libseccomp 2.5 exports BPF only to a descriptor: an anonymous memory file. */
  int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
  if (fd < 0) sandbox_die_errno("memfd_create");
  int rc = seccomp_export_bpf(filter, fd);
  if (rc != 0) sandbox_die("seccomp_export_bpf: %s", strerror(-rc));
  seccomp_release(filter);
  off_t size = lseek(fd, 0, SEEK_END);
  if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 ||
      size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS)
    sandbox_die("seccomp_export_bpf: unexpected program size %lld", (long long)size);
  c->program = malloc((size_t)size);
  if (c->program == NULL) sandbox_die("out of memory");
  if (pread(fd, c->program, (size_t)size, 0) != size) sandbox_die_errno("pread");
  if (close(fd) != 0) sandbox_die_errno("close");
  c->length = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
  n_compiled++;
}

/* Loads a precompiled program with this process's pid in place of the sentinel. */
static void load_compiled(const struct compiled_policy *c) {
  struct sock_filter *program = malloc(c->length * sizeof *program);
  if (program == NULL) sandbox_die("out of memory");
  memcpy(program, c->program, c->length * sizeof *program);
  for (unsigned i = 0; i < c->length; i++)
    if (program[i].code == (BPF_JMP | BPF_JEQ | BPF_K) && program[i].k == PID_SENTINEL)
      program[i].k = (__u32)getpid();
  struct sock_fprog prog = {.len = c->length, .filter = program};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) sandbox_die_errno("seccomp");
  free(program);
}

char **sandbox_apply(const struct sandbox_options *o, int exec_fd) {
  struct policy_paths paths;
  memset(&paths, 0, sizeof paths);
  const int as_root = geteuid() == 0;

  /* Compile the syscall policy first: its files are invisible once Landlock applies. It is
   * loaded last, so that every step before it may use any syscall it needs. A zygote has
   * compiled it already (nothing to execute there, so no execveat rule). */
  sandbox_step = "seccomp policy";
  const struct compiled_policy *precompiled = exec_fd < 0 ? find_compiled(o) : NULL;
  scmp_filter_ctx filter = NULL;
  if (precompiled != NULL) paths = precompiled->paths;
  else filter = load_policies(o, getpid(), &paths);
  if (exec_fd >= 0) {
    int rc = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(execveat), 2,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)exec_fd),
                              SCMP_A4(SCMP_CMP_EQ, AT_EMPTY_PATH));
    if (rc != 0) sandbox_die("execveat rule: %s", strerror(-rc));
  }

  /* Resource limits: inherited by every thread, and the hard limits cannot be raised again
   * once privileges are gone. */
  sandbox_step = "rlimits";
  set_limit(RLIMIT_CORE, "RLIMIT_CORE", 1, 0); /* 1 byte: effectively no core dumps */
  set_limit(RLIMIT_DATA, "RLIMIT_DATA", o->memory_bytes, 0);
  /* The soft CPU limit sends SIGXCPU, which names the cause; the hard one a second later kills. */
  set_limit(RLIMIT_CPU, "RLIMIT_CPU", o->cpu_seconds, 1);
  set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", o->file_bytes, 0);
  set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", o->open_files, 0);
  /* RLIMIT_NPROC counts every process of the real uid: only meaningful with a uid of our own. */
  if (as_root) set_limit(RLIMIT_NPROC, "RLIMIT_NPROC", o->processes, 0);

  /* A private, empty working directory. mkdir fails if anything already stands at that path,
   * so nobody can prepare it (or a symlink in its place) for us. */
  sandbox_step = "workdir";
  if (mkdir(o->workdir, 0700) != 0) sandbox_die("mkdir %s: %s", o->workdir, strerror(errno));
  if (as_root && o->uid >= 0 && chown(o->workdir, (uid_t)o->uid, (gid_t)o->gid) != 0)
    sandbox_die_errno("chown");
  if (chdir(o->workdir) != 0) sandbox_die_errno("chdir");

  /* no_new_privs before Landlock: without CAP_SYS_ADMIN Landlock requires it, and nothing
   * after this point may gain privileges through exec anyway. */
  sandbox_step = "no_new_privs";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) sandbox_die_errno("prctl");

  /* The filesystem view: read-only access to what the interpreter needs, read-write access
   * to the run's own directory, nothing else. */
  sandbox_step = "landlock";
  apply_landlock(o, &paths, exec_fd);

  /* Privileges. As root each run gets its own uid and gid; as non-root there is nothing to
   * change, but any capability we were given goes. */
  sandbox_step = "privileges";
  if (as_root) {
    if (o->uid <= 0 || o->gid <= 0) sandbox_die("running as root requires a non-zero --uid and --gid");
    /* Supplementary groups first: setgid/setuid leave them in place. */
    if (setgroups(0, NULL) != 0) sandbox_die_errno("setgroups");
    /* Group before user: once the uid is dropped the gid could no longer be changed
     * (the ordering bug that left DifySandbox runs in group 0). */
    if (setresgid((gid_t)o->gid, (gid_t)o->gid, (gid_t)o->gid) != 0) sandbox_die_errno("setresgid");
    if (setresuid((uid_t)o->uid, (uid_t)o->uid, (uid_t)o->uid) != 0) sandbox_die_errno("setresuid");
    if (setuid(0) == 0 || setgid(0) == 0) sandbox_die("root could be regained after the drop");
  } else if (o->uid >= 0 && (getuid() != (uid_t)o->uid || getgid() != (gid_t)o->gid)) {
    sandbox_die("--uid/--gid need root; the runner is not root");
  }
  drop_capabilities();

  /* A scrubbed environment: only what we set, nothing of the runner's (its API key). */
  sandbox_step = "environment";
  char **envp = build_env(o);

  /* Descriptors: stdin, stdout, stderr, the report descriptor and the interpreter; nothing
   * else of the runner's (or of a zygote's) may leak into the sandbox. */
  sandbox_step = "descriptors";
  if (exec_fd >= 0) {
    if (close_range(SANDBOX_REPORT_FD + 1, (unsigned)exec_fd - 1, 0) != 0 ||
        close_range((unsigned)exec_fd + 1, ~0U, 0) != 0)
      sandbox_die_errno("close_range");
  } else if (close_range(SANDBOX_REPORT_FD + 1, ~0U, 0) != 0) {
    sandbox_die_errno("close_range");
  }

  /* The syscall allowlist, last: from here on only what the policy allows. */
  sandbox_step = "seccomp";
  if (precompiled != NULL) {
    load_compiled(precompiled);
  } else {
    int rc = seccomp_load(filter);
    if (rc != 0) sandbox_die("seccomp_load: %s", strerror(-rc));
    seccomp_release(filter);
  }
  return envp;
}
