/*
 * Target for the tracer and stub tests: maps an RWX scratch area (CRR_STUB_SCRATCH_SIZE), prints
 * "<pid> <scratch address in hex>\n" on stdout, then waits in pause(). Every SIGUSR1 makes it
 * write "pong <n>\n" to stdout, so a test can tell it still runs normally after being traced.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stub.h"

static volatile sig_atomic_t pongs;

static void on_usr1(int sig) {
  (void)sig;
  char line[32];
  int n = snprintf(line, sizeof line, "pong %d\n", (int)++pongs);
  if (write(STDOUT_FILENO, line, n) < 0) _exit(3);
}

int main(void) {
  void *scratch = mmap(NULL, CRR_STUB_SCRATCH_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (scratch == MAP_FAILED) return 2;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  printf("%d %lx\n", (int)getpid(), (unsigned long)scratch);
  fflush(stdout);
  for (;;) pause();
}
