/* Prints the syscall table of this architecture as JSON ({"0":"read",...}), from libseccomp,
 * so the runner can name the syscall number that the SIGSYS handler reports. */
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  printf("{");
  int first = 1;
  for (int nr = 0; nr < 1024; nr++) {
    char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    if (name == NULL) continue;
    printf("%s\"%d\":\"%s\"", first ? "" : ",", nr, name);
    first = 0;
    free(name);
  }
  printf("}\n");
  return ferror(stdout) ? 1 : 0;
}
