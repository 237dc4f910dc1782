/* Workload: one process holding MIB MiB of dirty anonymous memory (every page written, every
 * page different), blocked in pause() until killed.
 * Usage: memory MIB READY_FILE */
#include "common.h"

int main(int argc, char **argv) {
	close_inherited_fds();
	if (argc < 3) {
		fprintf(stderr, "usage: memory MIB READY_FILE\n");
		return 2;
	}
	long mib = strtol(argv[1], NULL, 0);
	dirty_memory((size_t)mib << 20, 7);
	int pid = getpid();
	write_ready(argv[2], &pid, 1);
	wait_forever();
}
