/* The syscall policy files under native/policies/ and how the launcher turns them into a
 * libseccomp filter. The format is documented in native/policies/README.md. */
#ifndef SANDBOX_POLICY_H
#define SANDBOX_POLICY_H

#include <seccomp.h>
#include <sys/types.h>

#define POLICY_MAX_PATHS 64
#define POLICY_MAX_KILL 128

/* What a policy says besides syscall rules: the paths the interpreter may read, and the
 * files it may execute (itself and the dynamic loader, which the kernel opens for exec). */
struct policy_paths {
  char *read[POLICY_MAX_PATHS];
  int n_read;
  char *exec[POLICY_MAX_PATHS];
  int n_exec;
  /* The syscall numbers of `kill` rules (the dangerous set), so that an attempt can be named. */
  int kill[POLICY_MAX_KILL];
  int n_kill;
};

/* Adds the rules of policy NAME (from DIR/NAME.policy, following `include` lines) to CTX and
 * collects its `read` and `exec` paths into PATHS. `$pid` in a rule stands for SELF_PID. Returns 0, or -1
 * with a message in ERR. */
int policy_load(scmp_filter_ctx ctx, const char *dir, const char *name, pid_t self_pid,
                struct policy_paths *paths, char *err, size_t err_len);

#endif
