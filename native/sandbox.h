/* The isolation sequence shared by the launcher (which then execs the interpreter) and
 * libsandbox.so (which applies it inside an already running, freshly forked interpreter). */
#ifndef SANDBOX_SANDBOX_H
#define SANDBOX_SANDBOX_H

#include <sys/resource.h>
#include <sys/types.h>

#define SANDBOX_SETUP_FAILED 125
/* Descriptor 3 carries reports to the runner, a line each: "ready", "sys NNN" for a trapped
 * syscall, "kill NNN" for a call of the dangerous set about to be made, the limit or error an
 * uncaught exception came from ("eperm", "memory", "fsize", "disk", "nofile", "threads"),
 * "exit N" from a bootstrap that ends its run (then it closes every stream), and the
 * launcher's own failure line. */
#define SANDBOX_REPORT_FD 3
/* The interpreter stays open here until execveat() (or lower, when the launcher's hard
 * RLIMIT_NOFILE is: sandbox_interpreter_fd). It is above the run's RLIMIT_NOFILE, so after
 * exec no code can create a descriptor with this number again: the seccomp rule allowing
 * execveat() on it alone can then never match. Right below it, also above that limit, the
 * descriptors that pin the run's /proc entries (sandbox.c's pin). */
#define SANDBOX_EXEC_FD 1000
#define SANDBOX_MAX_LIST 64
#define SANDBOX_MAX_PORTS 16

struct sandbox_options {
  const char *policy_dir;
  const char *policies[8];
  int n_policies;
  const char *workdir;
  long uid, gid;
  rlim_t memory_bytes, cpu_seconds, file_bytes, open_files, processes;
  /* RLIMIT_AS; 0: none (Node.js: V8 reserves address space for each WebAssembly memory). */
  rlim_t address_space_bytes;
  /* As root, the run's directory is a tmpfs of this many bytes and files (inodes). */
  unsigned long long disk_bytes, disk_files;
  const char *read[SANDBOX_MAX_LIST];
  int n_read;
  const char *env[SANDBOX_MAX_LIST];
  int n_env;
  int network;
  /* With network: the only TCP ports connect() may reach (Landlock ABI 4); none listed: any. */
  unsigned short connect_ports[SANDBOX_MAX_PORTS];
  int n_connect_ports;
  int landlock_required;
  /* The process the run must be a child of (the runner or the zygote); 0: whichever parent it
   * has when sandbox_apply() begins. */
  pid_t parent;
  char **argv; /* the interpreter and its arguments, after "--" (launcher only) */
};

/* The dangerous set of the policy last applied by sandbox_apply() (syscall numbers). */
extern int sandbox_kill_set[];
extern int sandbox_n_kill;

/* The step being taken, for error messages. */
extern const char *sandbox_step;

/* Ends the process with SANDBOX_SETUP_FAILED and "sandbox-launcher: STEP: MESSAGE" on stderr
 * and on the report descriptor. Nothing of the user's has run when this is called. */
__attribute__((noreturn, format(printf, 1, 2))) void sandbox_die(const char *fmt, ...);

/* Parses the launcher's options; WANT_INTERPRETER: "-- INTERPRETER [ARG]..." must follow. */
void sandbox_parse_args(int argc, char **argv, struct sandbox_options *o, int want_interpreter);

/* Compiles the seccomp policy O names once, for processes forked later from this one (a
 * zygote): sandbox_apply() in such a child then loads the ready BPF program instead of
 * compiling it again (about 2 ms of each child's start). Dies on a bad policy. */
void sandbox_precompile(const struct sandbox_options *o);

/* The descriptor an interpreter is executed through: SANDBOX_EXEC_FD, or the highest the hard
 * RLIMIT_NOFILE allows when that is lower (a container started with `--ulimit nofile=512`).
 * The soft limit is raised to reach it, as dup3 and dup2 need; sandbox_apply() lowers it for
 * the run. */
int sandbox_interpreter_fd(void);

/* Applies every layer to the calling (single-threaded) process, in order. EXEC_FD >= 0 is the
 * only program that may still be executed, once; with -1 nothing can ever be executed. Returns
 * the scrubbed environment (also installed as the process environment). Dies on any failure. */
char **sandbox_apply(const struct sandbox_options *o, int exec_fd);

/* libsandbox.so: sandbox_apply() with the launcher's options (ARGV[0] a name), in a running
 * process that will execute nothing (a child of the Python zygote); then arms the SIGSYS
 * reports. Dies on any failure. */
int sandbox_enter(int argc, char **argv);

#endif
