/* Floor for tree restore: fork the workload's tree shape natively (a root with N-1 children),
 * each task dirtying MIB MiB of fresh anonymous memory; time until every task is ready, then
 * until all have exited and been reaped. Restoring a tree of N tasks must create the same tasks
 * and the same dirty memory, so ready_ms is the floor it is compared with.
 * Usage: tree N [MIB]   -> one JSON object on stdout. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

static void touch(size_t bytes) {
	char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) die("mmap");
	memset(mem, 0x5a, bytes);
}

int main(int argc, char **argv) {
	long tasks = arg_long(argc, argv, 1, 100), mib = arg_long(argc, argv, 2, 1);
	if (tasks < 1) tasks = 1;
	int ready[2], go[2];
	if (pipe(ready) || pipe(go)) die("pipe");
	pid_t *pids = calloc(tasks, sizeof(pid_t));
	if (!pids) die("calloc");

	double t0 = now_ms();
	for (long i = 1; i < tasks; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			int err = errno;
			for (long j = 1; j < i; j++) kill(pids[j], SIGKILL);
			errno = err;
			die("fork");
		}
		if (pid == 0) {
			close(ready[0]);
			close(go[1]);
			touch(mib << 20);
			char c = 1;
			if (write(ready[1], &c, 1) != 1) _exit(1);
			if (read(go[0], &c, 1) < 0) _exit(1); /* EOF when the root says go */
			_exit(0);
		}
		pids[i] = pid;
	}
	close(ready[1]);
	close(go[0]);
	touch(mib << 20);
	char buf[4096];
	long seen = 0;
	while (seen < tasks - 1) {
		ssize_t n = read(ready[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) die("read(ready)");
		seen += n;
	}
	double ready_ms = now_ms() - t0;
	close(go[1]);
	for (long i = 1; i < tasks; i++)
		if (waitpid(pids[i], NULL, 0) < 0) die("waitpid");
	double total_ms = now_ms() - t0;
	printf("{\"tasks\":%ld,\"mib_per_task\":%ld,\"ready_ms\":%.3f,\"total_ms\":%.3f}\n", tasks, mib, ready_ms, total_ms);
	return 0;
}
