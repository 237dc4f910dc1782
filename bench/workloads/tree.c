/* Workload: a tree of N tasks (a root with N-1 children, the floor's shape), each with MIB MiB
 * of dirty anonymous memory, all blocked in pause() until killed. The ready file lists the
 * root's PID first, then every child's.
 * Usage: tree N MIB READY_FILE */
#include <signal.h>
#include "common.h"

int main(int argc, char **argv) {
	close_inherited_fds();
	if (argc < 4) {
		fprintf(stderr, "usage: tree N MIB READY_FILE\n");
		return 2;
	}
	long tasks = strtol(argv[1], NULL, 0), mib = strtol(argv[2], NULL, 0);
	if (tasks < 1) tasks = 1;
	int *pids = calloc(tasks, sizeof(int));
	int ready[2];
	if (!pids) fail("calloc");
	if (pipe(ready)) fail("pipe");
	pids[0] = getpid();
	for (long i = 1; i < tasks; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			for (long j = 1; j < i; j++) kill(pids[j], SIGKILL);
			fail("fork");
		}
		if (pid == 0) {
			close(ready[0]);
			dirty_memory(mib << 20, (unsigned)i);
			char c = 1;
			if (write(ready[1], &c, 1) != 1) _exit(1);
			close(ready[1]);
			wait_forever();
		}
		pids[i] = pid;
	}
	close(ready[1]);
	dirty_memory(mib << 20, 0);
	char buf[4096];
	long seen = 0;
	while (seen < tasks - 1) {
		ssize_t n = read(ready[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) fail("read(ready)");
		seen += n;
	}
	close(ready[0]);
	write_ready(argv[3], pids, tasks);
	wait_forever();
}
