/* The isolation sequence: sandbox_apply() reads top to bottom as the steps that confine one
 * execution, each checked, each with the reason it stands where it does. */
#define _GNU_SOURCE
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "landlock.h"
#include "policy.h"

const char *sandbox_step = "arguments";
int sandbox_kill_set[POLICY_MAX_KILL];
int sandbox_n_kill;

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
    else if (strcmp(a, "--address-space-bytes") == 0) o->address_space_bytes = parse_limit(v);
    else if (strcmp(a, "--cpu-seconds") == 0) o->cpu_seconds = parse_limit(v);
    else if (strcmp(a, "--file-bytes") == 0) o->file_bytes = parse_limit(v);
    else if (strcmp(a, "--open-files") == 0) o->open_files = parse_limit(v);
    else if (strcmp(a, "--processes") == 0) o->processes = parse_limit(v);
    else if (strcmp(a, "--disk-bytes") == 0) o->disk_bytes = parse_limit(v);
    else if (strcmp(a, "--disk-files") == 0) o->disk_files = parse_limit(v);
    else if (strcmp(a, "--read") == 0 && o->n_read < SANDBOX_MAX_LIST) o->read[o->n_read++] = v;
    else if (strcmp(a, "--env") == 0 && o->n_env < SANDBOX_MAX_LIST) o->env[o->n_env++] = v;
    else if (strcmp(a, "--landlock") == 0) o->landlock_required = strcmp(v, "optional") != 0;
    else if (strcmp(a, "--connect-port") == 0) {
      if (o->n_connect_ports == SANDBOX_MAX_PORTS) sandbox_die("at most %d --connect-port", SANDBOX_MAX_PORTS);
      rlim_t port = parse_limit(v);
      if (port == 0 || port > 65535) sandbox_die("--connect-port needs a TCP port, got '%s'", v);
      o->connect_ports[o->n_connect_ports++] = (unsigned short)port;
    }
    else if (strcmp(a, "--parent") == 0) {
      rlim_t pid = parse_limit(v);
      if (pid == 0 || pid > INT_MAX) sandbox_die("--parent needs a process id, got '%s'", v);
      o->parent = (pid_t)pid;
    }
    else sandbox_die("unknown or repeated option %s", a);
  }
  if (want_interpreter && i >= argc) sandbox_die("no interpreter after --");
  if (!want_interpreter && i < argc) sandbox_die("unexpected argument %s", argv[i]);
  if (o->policy_dir == NULL || o->n_policies == 0) sandbox_die("--policy-dir and --policy are required");
  if (o->workdir == NULL || o->workdir[0] != '/') sandbox_die("--workdir must be an absolute path");
  if ((o->uid < 0) != (o->gid < 0)) sandbox_die("--uid and --gid go together");
  if (o->n_connect_ports > 0 && !o->network) sandbox_die("--connect-port needs --network");
  /* Room above it for the /proc pins and the interpreter's descriptor. */
  if (o->open_files == 0 || o->open_files >= SANDBOX_EXEC_FD - POLICY_MAX_PATHS) o->open_files = 256;
  if (o->disk_bytes == 0) o->disk_bytes = 64ULL << 20;
  if (o->disk_files == 0) o->disk_files = 4096;
  o->argv = &argv[i];
}

static void set_limit(int resource, const char *name, rlim_t value, rlim_t hard_extra) {
  if (value == 0) return;
  struct rlimit rl = {.rlim_cur = value, .rlim_max = value + hard_extra};
  if (setrlimit(resource, &rl) != 0) sandbox_die_errno(name);
}

/* As set_limit, lowered to the hard limit already in force: for limits the runner cannot count
 * on being allowed to raise without root (`ulimit -v`, a small `ulimit -l`). Only ever as
 * strict or stricter than asked. */
static void set_limit_at_most(int resource, const char *name, rlim_t value) {
  struct rlimit now;
  if (getrlimit(resource, &now) != 0) sandbox_die_errno(name);
  if (now.rlim_max != RLIM_INFINITY && now.rlim_max < value) value = now.rlim_max;
  struct rlimit rl = {.rlim_cur = value, .rlim_max = value};
  if (setrlimit(resource, &rl) != 0) sandbox_die_errno(name);
}

/* Adds a Landlock rule granting ACCESS beneath the file FD, opened at PATH. */
static void landlock_allow_fd(int ruleset, int fd, const char *path, __u64 access) {
  struct stat st;
  if (fstat(fd, &st) != 0) sandbox_die_errno(path);
  if (!S_ISDIR(st.st_mode)) access &= LANDLOCK_FILE_ACCESS;
  struct landlock_path_beneath_attr rule = {.allowed_access = access, .parent_fd = fd};
  if (landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) != 0) sandbox_die_errno(path);
}

/* PATH opened for a rule, or -1 when it does not exist (policies list the union of what Debian
 * and other layouts need). */
static int open_rule_path(const char *path) {
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0 && errno != ENOENT && errno != ENOTDIR) sandbox_die("open %s: %s", path, strerror(errno));
  return fd;
}

/* As landlock_allow_fd, by path; a path that does not exist is skipped. */
static void landlock_allow(int ruleset, const char *path, __u64 access) {
  int fd = open_rule_path(path);
  if (fd < 0) return;
  landlock_allow_fd(ruleset, fd, path, access);
  if (close(fd) != 0) sandbox_die_errno("close");
}

static int beneath(const char *path, const char *prefix);

/* Landlock ties a rule to an inode, and procfs makes a new inode whenever one of its entries is
 * looked up again after the kernel dropped it from its caches (memory pressure): a rule on the
 * old inode no longer applies, and the run is refused its own /proc files (Node.js's
 * process.memoryUsage() throws). An O_PATH descriptor on each such entry keeps it cached: the
 * pins, each moved at once to the top of the descriptor table, [TOP - n, TOP), right below the
 * interpreter's descriptor and above every descriptor the run may open. dup2 closes whatever
 * stood there: nothing of a zygote's survives among them. */
static int pin(int fd, int slot, const char *path) {
  if (slot <= SANDBOX_REPORT_FD) sandbox_die("the open file limit is too low to hold the /proc pins");
  /* Close-on-exec off (dup2 leaves it off): the pins must outlive the launcher's exec too. */
  if (fd == slot ? fcntl(fd, F_SETFD, 0) != 0 : dup2(fd, slot) != slot || close(fd) != 0)
    sandbox_die("pin %s: %s", path, strerror(errno));
  return slot;
}

/* Applies the filesystem rules. Rules on /proc entries are pinned below TOP (see pin); returns
 * the lowest pin (TOP when none). */
static int apply_landlock(const struct sandbox_options *o, const struct policy_paths *paths, int exec_fd, int top) {
  int abi = landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 1) {
    if (o->landlock_required) sandbox_die("Landlock is not available in this kernel (required)");
    return top;
  }
  __u64 all = landlock_fs_access_for_abi(abi);
  struct landlock_ruleset_attr attr = {.handled_access_fs = all};
  /* ABI 4: with network disabled, no TCP bind or connect at all (seccomp blocks sockets too).
   * With network, TCP binds to port 0 only (an ephemeral port: libraries probe for IPv6 that
   * way): a bind to a chosen port would tell by EADDRINUSE which ports the pod's sockets hold,
   * other runs' connections among them. With ports listed, TCP connects to those ports only
   * (the egress proxy's: the pod's loopback services and a direct way around the proxy stay out
   * of reach). Older kernels cannot filter ports; the runner says so at start. */
  if (abi >= 4 && !o->network)
    attr.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
  else if (abi >= 4)
    attr.handled_access_net =
        LANDLOCK_ACCESS_NET_BIND_TCP | (o->n_connect_ports > 0 ? LANDLOCK_ACCESS_NET_CONNECT_TCP : 0);
  /* ABI 6: no signals to, and no abstract unix sockets of, processes outside this sandbox. */
  if (abi >= 6) attr.scoped = LANDLOCK_SCOPE_SIGNAL | LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET;
  int ruleset = landlock_create_ruleset(&attr, sizeof attr, 0);
  if (ruleset < 0) sandbox_die_errno("landlock_create_ruleset");

  const __u64 read = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
  int n_pins = 0;
  for (int i = 0; i < paths->n_read; i++) {
    if (!beneath(paths->read[i], "/proc")) {
      landlock_allow(ruleset, paths->read[i], read);
      continue;
    }
    int fd = open_rule_path(paths->read[i]);
    if (fd < 0) continue;
    int slot = top - 1 - n_pins;
    if (slot < (int)o->open_files || slot == ruleset)
      sandbox_die("the hard open file limit leaves no room above the runs' limit (%llu) for the /proc pins: raise it or lower SANDBOX_MAX_OPEN_FILES",
                  (unsigned long long)o->open_files);
    landlock_allow_fd(ruleset, pin(fd, slot, paths->read[i]), paths->read[i], read);
    n_pins++;
  }
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
  if (abi >= 4 && o->network) {
    struct landlock_net_port_attr ephemeral = {.allowed_access = LANDLOCK_ACCESS_NET_BIND_TCP, .port = 0};
    if (landlock_add_rule(ruleset, LANDLOCK_RULE_NET_PORT, &ephemeral, 0) != 0)
      sandbox_die_errno("landlock_add_rule (TCP bind to port 0)");
  }
  for (int i = 0; i < o->n_connect_ports && (attr.handled_access_net & LANDLOCK_ACCESS_NET_CONNECT_TCP) != 0; i++) {
    struct landlock_net_port_attr port = {.allowed_access = LANDLOCK_ACCESS_NET_CONNECT_TCP,
                                          .port = o->connect_ports[i]};
    if (landlock_add_rule(ruleset, LANDLOCK_RULE_NET_PORT, &port, 0) != 0)
      sandbox_die_errno("landlock_add_rule (TCP port)");
  }
  if (landlock_restrict_self(ruleset, 0) != 0) sandbox_die_errno("landlock_restrict_self");
  if (close(ruleset) != 0) sandbox_die_errno("close");
  return top - n_pins;
}

/* ---- As root: a filesystem of the run's own (mount namespace + pivot_root) ---- */

/* Creates PATH (inside the new root ROOT, which nobody else can write; PATH starts with ROOT)
 * and its parents beneath ROOT: a directory, or an empty file to bind a file onto. ROOT itself
 * exists: its own components are not tried again (a failed mkdir per component and mount
 * point added up to about a hundred syscalls per run). */
static void make_mountpoint(const char *root, const char *path, int directory) {
  char buf[PATH_MAX];
  size_t skip = strlen(root);
  if (strncmp(path, root, skip) != 0 || path[skip] != '/') sandbox_die("%s is not beneath %s", path, root);
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) sandbox_die("path too long: %s", path);
  for (char *p = buf + skip + 1; *p != '\0'; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) sandbox_die("mkdir %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (directory) {
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) sandbox_die("mkdir %s: %s", buf, strerror(errno));
    return;
  }
  int fd = open(buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
  if (fd < 0 || close(fd) != 0) sandbox_die("create %s: %s", buf, strerror(errno));
}

/* Makes host PATH visible at the same path under ROOT, read-only and without setuid. A path that
 * does not exist is skipped, as Landlock skips it. Symlinks are followed: what appears is what
 * the path means on the host. */
static void bind_readonly(const char *root, const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return;
    sandbox_die("stat %s: %s", path, strerror(errno));
  }
  char target[PATH_MAX];
  if (snprintf(target, sizeof target, "%s%s", root, path) >= (int)sizeof target)
    sandbox_die("path too long: %s", path);
  make_mountpoint(root, target, S_ISDIR(st.st_mode));
  /* Not MS_REC: mounts beneath PATH on the host (a /usr/... overlay, say) stay out. */
  if (mount(path, target, NULL, MS_BIND, NULL) != 0) sandbox_die("bind %s: %s", path, strerror(errno));
  /* A bind mount takes its flags on a remount: read-only, no setuid, and devices only where a
   * device node is what was asked for (/dev/null). The host mount's own restrictions stay. */
  struct statvfs sv;
  if (statvfs(target, &sv) != 0) sandbox_die("statvfs %s: %s", target, strerror(errno));
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID;
  if (!S_ISCHR(st.st_mode) || (sv.f_flag & ST_NODEV)) flags |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
  if (mount(NULL, target, NULL, flags, NULL) != 0) sandbox_die("remount %s read-only: %s", path, strerror(errno));
}

static int compare_paths(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether PATH is PREFIX or lies beneath it. */
static int beneath(const char *path, const char *prefix) {
  size_t n = strlen(prefix);
  return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/' || (n == 1 && prefix[0] == '/'));
}

/* Replaces the process's view of the filesystem with a new root holding only: the policy's
 * read and exec paths and the runner's --read paths (read-only bind mounts), a /proc that shows
 * only processes of the run's own uid, and the run's directory as a tmpfs of its own, limited in
 * bytes and files. The new root is a small tmpfs mounted, in this namespace only, over the host
 * directory that would hold the run's directory: nothing is created on the host for the run (so
 * nothing there needs removing before its answer), and the host's root is unmounted from this
 * namespace, so no path leads back to it. */
static void enter_private_root(const struct sandbox_options *o, const struct policy_paths *paths) {
  /* A mount namespace of our own, and nothing we mount propagates back to the host. */
  if (unshare(CLONE_NEWNS) != 0) sandbox_die_errno("unshare(CLONE_NEWNS)");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) sandbox_die_errno("make / private");

  char root[PATH_MAX];
  if (snprintf(root, sizeof root, "%s", o->workdir) >= (int)sizeof root) sandbox_die("path too long: %s", o->workdir);
  char *slash = strrchr(root, '/');
  if (slash == root) sandbox_die("--workdir must lie in a directory other than /");
  *slash = '\0';
  if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=1024,mode=0755") != 0)
    sandbox_die_errno("mount the new root");

  const char *list[3 * POLICY_MAX_PATHS + SANDBOX_MAX_LIST];
  int n = 0;
  for (int i = 0; i < paths->n_read; i++) list[n++] = paths->read[i];
  for (int i = 0; i < paths->n_exec; i++) list[n++] = paths->exec[i];
  for (int i = 0; i < o->n_read; i++) list[n++] = o->read[i];
  list[n++] = "/dev/null";
  /* Parents sort before what lies beneath them: bind each tree once, at its top. */
  qsort(list, (size_t)n, sizeof list[0], compare_paths);
  const char *bound[3 * POLICY_MAX_PATHS + SANDBOX_MAX_LIST];
  int n_bound = 0;
  for (int i = 0; i < n; i++) {
    int seen = beneath(list[i], "/proc"); /* a /proc of our own, below */
    for (int k = 0; !seen && k < n_bound; k++) seen = beneath(list[i], bound[k]);
    if (seen) continue;
    bind_readonly(root, list[i]);
    bound[n_bound++] = list[i];
  }

  /* /proc: only the pid directories (subset=pid: no /proc/sys, /proc/kcore, ...), and of those
   * only the processes of this run's uid (hidepid=invisible): not the runner, not other runs. */
  char target[PATH_MAX];
  if (snprintf(target, sizeof target, "%s/proc", root) >= (int)sizeof target) sandbox_die("path too long: %s", root);
  make_mountpoint(root, target, 1);
  if (mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible,subset=pid") != 0)
    sandbox_die_errno("mount /proc");

  /* The run's directory, at the same path as on the host: a tmpfs that bounds what the run can
   * store (bytes and files), holds no executables or devices, and vanishes with the namespace. */
  if (snprintf(target, sizeof target, "%s%s", root, o->workdir) >= (int)sizeof target)
    sandbox_die("path too long: %s", o->workdir);
  make_mountpoint(root, target, 1);
  char data[256];
  snprintf(data, sizeof data, "size=%llu,nr_inodes=%llu,mode=0700,uid=%ld,gid=%ld", o->disk_bytes,
           o->disk_files + 1, o->uid, o->gid);
  if (mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, data) != 0)
    sandbox_die_errno("mount the run's directory");

  /* Nothing more is added to the new root: read-only from here on. */
  if (mount(NULL, root, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0)
    sandbox_die_errno("remount the new root read-only");

  /* pivot_root(".", ".") stacks the old root on the new one; detaching it leaves the new root
   * alone in this namespace, with no mount of the host's tree left to reach. */
  if (chdir(root) != 0) sandbox_die_errno("chdir to the new root");
  if (syscall(SYS_pivot_root, ".", ".") != 0) sandbox_die_errno("pivot_root");
  if (umount2(".", MNT_DETACH) != 0) sandbox_die_errno("detach the old root");
  if (chdir("/") != 0) sandbox_die_errno("chdir /");
}

static void drop_capabilities(void) {
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &hdr, data) != 0) sandbox_die_errno("capset");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) sandbox_die_errno("clear ambient");
}

/* EXEC: the interpreter is still to be started; libsandbox.so learns the dangerous set from
 * SANDBOX_KILL and closes exec behind it for SANDBOX_EXEC_LOCK (it removes both at once). */
static char **build_env(const struct sandbox_options *o, int exec) {
  static char *envp[SANDBOX_MAX_LIST + 8];
  static char home[4200], tmpdir[4200], kill_list[8 + 8 * POLICY_MAX_KILL];
  int n = 0;
  snprintf(home, sizeof home, "HOME=%s", o->workdir);
  snprintf(tmpdir, sizeof tmpdir, "TMPDIR=%s", o->workdir);
  envp[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
  envp[n++] = "LANG=C.UTF-8";
  envp[n++] = home;
  envp[n++] = tmpdir;
  for (int i = 0; i < o->n_env; i++) {
    if (strchr(o->env[i], '=') == NULL) sandbox_die("--env needs KEY=VALUE, got '%s'", o->env[i]);
    /* The SANDBOX_ names are the launcher's own (getenv finds the first of two). */
    if (strncmp(o->env[i], "SANDBOX_", 8) == 0) sandbox_die("--env may not set %s", o->env[i]);
    /* putenv() keeps the pointer: a copy of our own, since a zygote child's options are
     * Python's memory, freed once sandbox_enter() returns. */
    envp[n] = strdup(o->env[i]);
    if (envp[n++] == NULL) sandbox_die("out of memory");
  }
  if (exec) envp[n++] = "SANDBOX_EXEC_LOCK=1";
  if (exec && sandbox_n_kill > 0) {
    size_t used = (size_t)snprintf(kill_list, sizeof kill_list, "SANDBOX_KILL=");
    for (int i = 0; i < sandbox_n_kill && used < sizeof kill_list; i++)
      used += (size_t)snprintf(kill_list + used, sizeof kill_list - used, "%s%d", i > 0 ? "," : "",
                               sandbox_kill_set[i]);
    envp[n++] = kill_list;
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
  /* Syscalls of another ABI (int 0x80, x32) are not in any policy: kill, as the dangerous set. */
  int rc = seccomp_attr_set(filter, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc != 0) sandbox_die("bad-arch action: %s", strerror(-rc));
  /* A binary tree of syscall numbers instead of a linear list: a filtered syscall of the run
   * walks fewer instructions, and so does the kernel when it loads the filter (it runs the
   * filter for every syscall number then, to cache which ones are always allowed). */
  rc = seccomp_attr_set(filter, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rc != 0) sandbox_die("filter optimization: %s", strerror(-rc));
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

int sandbox_interpreter_fd(void) {
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) != 0) sandbox_die_errno("getrlimit(RLIMIT_NOFILE)");
  rlim_t fd = SANDBOX_EXEC_FD;
  if (nofile.rlim_max != RLIM_INFINITY && nofile.rlim_max <= fd) fd = nofile.rlim_max > 0 ? nofile.rlim_max - 1 : 0;
  if (nofile.rlim_cur != RLIM_INFINITY && nofile.rlim_cur <= fd) {
    nofile.rlim_cur = fd + 1;
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) sandbox_die_errno("setrlimit(RLIMIT_NOFILE)");
  }
  return (int)fd;
}

char **sandbox_apply(const struct sandbox_options *o, int exec_fd) {
  struct policy_paths paths;
  memset(&paths, 0, sizeof paths);
  const int as_root = geteuid() == 0;
  /* Named by the caller where it can be: a process orphaned before this point has a new parent
   * already, which PR_SET_PDEATHSIG below would then watch instead of the one that started it. */
  const pid_t parent = o->parent > 0 ? o->parent : getppid();
  /* Checked first: as root, every later step assumes a uid and gid to drop to. */
  sandbox_step = "privileges";
  if (as_root && (o->uid <= 0 || o->gid <= 0)) sandbox_die("running as root requires a non-zero --uid and --gid");

  /* Compile the syscall policy first: its files are invisible once Landlock applies. It is
   * loaded last, so that every step before it may use any syscall it needs. A zygote has
   * compiled it already (nothing to execute there, so no execveat rule). */
  sandbox_step = "seccomp policy";
  const struct compiled_policy *precompiled = exec_fd < 0 ? find_compiled(o) : NULL;
  scmp_filter_ctx filter = NULL;
  if (precompiled != NULL) paths = precompiled->paths;
  else filter = load_policies(o, getpid(), &paths);
  for (int i = 0; i < paths.n_kill; i++) sandbox_kill_set[i] = paths.kill[i];
  sandbox_n_kill = paths.n_kill;
  if (exec_fd >= 0) {
    int rc = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(execveat), 2,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)exec_fd),
                              SCMP_A4(SCMP_CMP_EQ, AT_EMPTY_PATH));
    if (rc != 0) sandbox_die("execveat rule: %s", strerror(-rc));
    /* And, once, the filter libsandbox.so stacks on this one to close exec behind the
     * interpreter (without flags; that filter then refuses seccomp itself). */
    rc = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(seccomp), 2,
                          SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER), SCMP_A1(SCMP_CMP_EQ, 0));
    if (rc != 0) sandbox_die("seccomp rule: %s", strerror(-rc));
  }

  /* Resource limits: inherited by every thread, and the hard limits cannot be raised again
   * once privileges are gone. */
  sandbox_step = "rlimits";
  set_limit(RLIMIT_CORE, "RLIMIT_CORE", 1, 0); /* 1 byte: effectively no core dumps */
  set_limit(RLIMIT_DATA, "RLIMIT_DATA", o->memory_bytes, 0);
  /* RLIMIT_DATA counts writable private memory only: read-only anonymous mappings cost nothing
   * against it, yet each 2 MiB of them touched costs a page table (4 KiB) of the pod's memory.
   * Bounding the address space bounds those of big mappings (to 1/512 of it); small mappings far
   * apart, a page table or two each, are the runner's watchdog's to bound (VmPTE). */
  if (o->address_space_bytes > 0) set_limit_at_most(RLIMIT_AS, "RLIMIT_AS", o->address_space_bytes);
  /* No page pinned in memory beyond the kernel's default (mlock of file pages would hold page
   * cache outside RLIMIT_DATA). */
  set_limit_at_most(RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK", 64 << 10);
  /* The soft CPU limit sends SIGXCPU, which names the cause; the hard one a second later kills. */
  set_limit(RLIMIT_CPU, "RLIMIT_CPU", o->cpu_seconds, 1);
  set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", o->file_bytes, 0);
  /* RLIMIT_NOFILE below, once the /proc pins sit above it. */
  /* RLIMIT_NPROC counts every process of the real uid: only meaningful with a uid of our own. */
  if (as_root) set_limit(RLIMIT_NPROC, "RLIMIT_NPROC", o->processes, 0);
  /* The main thread's stack is not part of RLIMIT_DATA: bound it too, whatever the runner's was. */
  set_limit(RLIMIT_STACK, "RLIMIT_STACK", 8 << 20, 0);
  sandbox_step = "oom score";
  /* Should memory still run short around us, the kernel's OOM killer takes a run, never the
   * runner: the highest score. Raising it needs no privilege; lowering it again would, and the
   * file is read-only to the run (Landlock, and as root the run's own /proc). */
  int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (oom < 0 || write(oom, "1000", 4) != 4 || close(oom) != 0) sandbox_die_errno("oom_score_adj");

  /* As root: the run's own filesystem (mount namespace, read-only binds, its own /proc, a
   * size-limited tmpfs for its directory), while we still have CAP_SYS_ADMIN. Landlock below
   * then applies to this view. Without root there is no mount namespace to be had (a restricted
   * pod refuses user namespaces): Landlock alone draws the view, and the run's directory is a
   * private, empty host directory. mkdir fails if anything already stands at that path, so
   * nobody can prepare it (or a symlink in its place) for us. */
  if (as_root) {
    sandbox_step = "filesystem";
    enter_private_root(o, &paths);
  } else {
    sandbox_step = "workdir";
    if (mkdir(o->workdir, 0700) != 0) sandbox_die("mkdir %s: %s", o->workdir, strerror(errno));
  }

  /* no_new_privs before Landlock: without CAP_SYS_ADMIN Landlock requires it, and nothing
   * after this point may gain privileges through exec anyway. */
  sandbox_step = "no_new_privs";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) sandbox_die_errno("prctl");

  /* The filesystem view: read-only access to what the interpreter needs, read-write access
   * to the run's own directory, nothing else. */
  sandbox_step = "landlock";
  /* The pins end where the interpreter's descriptor is, or would be (a zygote's child). */
  int top = exec_fd >= 0 ? exec_fd : sandbox_interpreter_fd();
  int pins_low = apply_landlock(o, &paths, exec_fd, top);
  /* Lowered now: the pins and the interpreter's descriptor stay above it. */
  set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", o->open_files, 0);

  /* Privileges. As root each run gets its own uid and gid; as non-root there is nothing to
   * change, but any capability we were given goes. */
  sandbox_step = "privileges";
  if (as_root) {
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

  /* Dies with the process that started it (the runner, or the Python zygote): a run must not
   * outlive what would end it and give its uid back. Set after the uid change, which clears
   * it; should that process be gone already, stop here. */
  sandbox_step = "parent";
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) sandbox_die_errno("prctl(PR_SET_PDEATHSIG)");
  if (getppid() != parent) sandbox_die("the process that started the run is gone");

  /* A session of its own (bubblewrap's --new-session): no controlling terminal shared with
   * the runner (TIOCSTI could type into it), no process group or session of the runner's to
   * observe. A run the runner spawned detached leads its session already; a zygote's child
   * starts in the runner's. */
  sandbox_step = "session";
  if (getsid(0) != getpid() && setsid() < 0) sandbox_die_errno("setsid");

  /* Into the run's directory as the run itself: as root its tmpfs (mode 0700) admits only the
   * run's uid, without needing CAP_DAC_OVERRIDE to get in. */
  sandbox_step = "workdir";
  if (chdir(o->workdir) != 0) sandbox_die_errno("chdir");

  /* A scrubbed environment: only what we set, nothing of the runner's (its API key). */
  sandbox_step = "environment";
  char **envp = build_env(o, exec_fd >= 0);

  /* Descriptors: stdin, stdout, stderr, the report descriptor, the /proc pins and the
   * interpreter; nothing else of the runner's (or of a zygote's) may leak into the sandbox. */
  sandbox_step = "descriptors";
  if (pins_low > SANDBOX_REPORT_FD + 1 && close_range(SANDBOX_REPORT_FD + 1, (unsigned)pins_low - 1, 0) != 0)
    sandbox_die_errno("close_range");
  if (close_range((unsigned)(top + (exec_fd >= 0)), ~0U, 0) != 0) sandbox_die_errno("close_range");

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
