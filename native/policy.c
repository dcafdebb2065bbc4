/* Parser for the files in native/policies/: one line one statement, see native/policies/README.md.
 * Anything it does not understand is an error: a policy that half-loads must never run code. */
#define _GNU_SOURCE
#include "policy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 4
#define MAX_WORDS 64

static int fail(char *err, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, len, fmt, ap);
  va_end(ap);
  return -1;
}

static const struct {
  const char *name;
  int value;
} errno_names[] = {
    {"EPERM", EPERM}, {"ENOSYS", ENOSYS}, {"EACCES", EACCES},
    {"ENOTTY", ENOTTY}, {"EAFNOSUPPORT", EAFNOSUPPORT}, {"EINVAL", EINVAL},
};

/* WITH_PID: whether `$pid` may stand here. Only as the value of == and !=: a zygote compiles the
 * filter once with a sentinel for it and patches the sentinel in each child's copy, which it can
 * only find in the equality tests those two compile to (a mask or an ordering would keep it). */
static int parse_number(const char *word, int with_pid, pid_t self_pid, scmp_datum_t *out) {
  if (strcmp(word, "$pid") == 0) {
    if (!with_pid) return -1;
    *out = (scmp_datum_t)self_pid;
    return 0;
  }
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(word, &end, 0);
  if (errno != 0 || end == word || *end != '\0') return -1;
  *out = (scmp_datum_t)v;
  return 0;
}

/* Parses "aN OP VALUE" or "aN & MASK == VALUE" starting at words[*i]. */
static int parse_condition(char **words, int n, int *i, pid_t self_pid, struct scmp_arg_cmp *cmp) {
  const char *arg = words[*i];
  if (arg[0] != 'a' || arg[1] < '0' || arg[1] > '5' || arg[2] != '\0') return -1;
  cmp->arg = (unsigned int)(arg[1] - '0');
  cmp->datum_b = 0;
  if (*i + 2 >= n) return -1;
  const char *op = words[*i + 1];
  if (strcmp(op, "&") == 0) {
    if (*i + 4 >= n || strcmp(words[*i + 3], "==") != 0) return -1;
    if (parse_number(words[*i + 2], 0, self_pid, &cmp->datum_a) != 0) return -1;
    if (parse_number(words[*i + 4], 0, self_pid, &cmp->datum_b) != 0) return -1;
    cmp->op = SCMP_CMP_MASKED_EQ;
    *i += 5;
    return 0;
  }
  static const struct {
    const char *text;
    enum scmp_compare op;
  } ops[] = {{"==", SCMP_CMP_EQ}, {"!=", SCMP_CMP_NE}, {"<", SCMP_CMP_LT},
             {"<=", SCMP_CMP_LE}, {">", SCMP_CMP_GT},  {">=", SCMP_CMP_GE}};
  for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
    if (strcmp(op, ops[k].text) == 0) {
      cmp->op = ops[k].op;
      int with_pid = cmp->op == SCMP_CMP_EQ || cmp->op == SCMP_CMP_NE;
      if (parse_number(words[*i + 2], with_pid, self_pid, &cmp->datum_a) != 0) return -1;
      *i += 3;
      return 0;
    }
  }
  return -1;
}

static int add_rule(scmp_filter_ctx ctx, uint32_t action, const char *syscall_name,
                    struct scmp_arg_cmp *conds, unsigned int n_conds, const char *where,
                    char *err, size_t len) {
  int nr = seccomp_syscall_resolve_name(syscall_name);
  if (nr == __NR_SCMP_ERROR) return fail(err, len, "%s: unknown syscall '%s'", where, syscall_name);
  int rc = seccomp_rule_add_array(ctx, action, nr, n_conds, conds);
  if (rc != 0) return fail(err, len, "%s: rule for '%s': %s", where, syscall_name, strerror(-rc));
  return 0;
}

static int load_file(scmp_filter_ctx ctx, const char *dir, const char *name, pid_t self_pid,
                     struct policy_paths *paths, int depth, char *err, size_t len) {
  if (depth > MAX_DEPTH) return fail(err, len, "%s: includes nest too deep", name);
  for (const char *c = name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
      return fail(err, len, "invalid policy name '%s'", name);

  char path[4096];
  if (snprintf(path, sizeof path, "%s/%s.policy", dir, name) >= (int)sizeof path)
    return fail(err, len, "policy path too long");
  FILE *f = fopen(path, "re");
  if (f == NULL) return fail(err, len, "open %s: %s", path, strerror(errno));

  char line[1024];
  int lineno = 0, rc = 0;
  while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
    lineno++;
    char *hash = strchr(line, '#');
    if (hash != NULL) *hash = '\0';
    char *words[MAX_WORDS];
    int n = 0;
    for (char *save = NULL, *w = strtok_r(line, " \t\r\n", &save); w != NULL;
         w = strtok_r(NULL, " \t\r\n", &save)) {
      if (n == MAX_WORDS) {
        rc = fail(err, len, "%s:%d: line too long", path, lineno);
        break;
      }
      words[n++] = w;
    }
    if (rc != 0 || n == 0) continue;
    char where[4200];
    snprintf(where, sizeof where, "%s:%d", path, lineno);

    const char *verb = words[0];
    if (strcmp(verb, "include") == 0) {
      for (int i = 1; rc == 0 && i < n; i++)
        rc = load_file(ctx, dir, words[i], self_pid, paths, depth + 1, err, len);
    } else if (strcmp(verb, "read") == 0 || strcmp(verb, "exec") == 0) {
      char **list = verb[0] == 'r' ? paths->read : paths->exec;
      int *count = verb[0] == 'r' ? &paths->n_read : &paths->n_exec;
      for (int i = 1; i < n; i++) {
        if (words[i][0] != '/' || *count == POLICY_MAX_PATHS) {
          rc = fail(err, len, "%s: not an absolute path, or too many paths", where);
          break;
        }
        if ((list[(*count)++] = strdup(words[i])) == NULL) {
          rc = fail(err, len, "out of memory");
          break;
        }
      }
    } else if (strcmp(verb, "allow") == 0 || strcmp(verb, "kill") == 0 ||
               strcmp(verb, "errno") == 0) {
      uint32_t action = SCMP_ACT_ALLOW;
      int first = 1;
      if (strcmp(verb, "kill") == 0) action = SCMP_ACT_KILL_PROCESS;
      if (strcmp(verb, "errno") == 0) {
        action = 0;
        for (size_t k = 0; n > 1 && k < sizeof errno_names / sizeof errno_names[0]; k++)
          if (strcmp(words[1], errno_names[k].name) == 0)
            action = SCMP_ACT_ERRNO((uint32_t)errno_names[k].value);
        if (action == 0) {
          rc = fail(err, len, "%s:%d: unknown errno '%s'", path, lineno, n > 1 ? words[1] : "");
          break;
        }
        first = 2;
      }
      /* "allow NAME if COND [&& COND]..." or "allow NAME NAME ..." */
      int if_at = -1;
      for (int i = first; i < n; i++)
        if (strcmp(words[i], "if") == 0) if_at = i;
      if (if_at < 0) {
        for (int i = first; rc == 0 && i < n; i++) {
          rc = add_rule(ctx, action, words[i], NULL, 0, where, err, len);
          if (rc == 0 && action == SCMP_ACT_KILL_PROCESS && paths->n_kill < POLICY_MAX_KILL)
            paths->kill[paths->n_kill++] = seccomp_syscall_resolve_name(words[i]);
        }
        continue;
      }
      if (if_at != first + 1) {
        rc = fail(err, len, "%s:%d: a conditional rule names exactly one syscall", path, lineno);
        break;
      }
      struct scmp_arg_cmp conds[6];
      unsigned int n_conds = 0;
      int i = if_at + 1;
      while (rc == 0 && i < n) {
        if (n_conds == 6 || parse_condition(words, n, &i, self_pid, &conds[n_conds]) != 0) {
          rc = fail(err, len, "%s:%d: bad condition", path, lineno);
          break;
        }
        n_conds++;
        if (i < n && strcmp(words[i], "&&") == 0) i++;
      }
      if (rc == 0) rc = add_rule(ctx, action, words[first], conds, n_conds, where, err, len);
    } else {
      rc = fail(err, len, "%s:%d: unknown statement '%s'", path, lineno, verb);
    }
  }
  if (rc == 0 && ferror(f)) rc = fail(err, len, "read %s: %s", path, strerror(errno));
  fclose(f);
  return rc;
}

int policy_load(scmp_filter_ctx ctx, const char *dir, const char *name, pid_t self_pid,
                struct policy_paths *paths, char *err, size_t err_len) {
  return load_file(ctx, dir, name, self_pid, paths, 0, err, err_len);
}
