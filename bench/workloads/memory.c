/* Workload: one process holding MIB MiB of dirty anonymous memory (every page written, every
 * page different), blocked in pause() until killed. `thp`: advised MADV_HUGEPAGE before it is
 * written, so it is held in transparent huge pages.
 * Usage: memory MIB [thp] READY_FILE */
#include "common.h"

int main(int argc, char **argv) {
	close_inherited_fds();
	int huge = argc == 4 && strcmp(argv[2], "thp") == 0;
	if (argc < 3 || (argc == 4 && !huge)) {
		fprintf(stderr, "usage: memory MIB [thp] READY_FILE\n");
		return 2;
	}
	long mib = strtol(argv[1], NULL, 0);
	dirty_memory_huge((size_t)mib << 20, 7, huge);
	int pid = getpid();
	write_ready(argv[argc - 1], &pid, 1);
	wait_forever();
}
