/* Shared by the floor programs: a monotonic clock in milliseconds and a fatal-error exit that
 * names the syscall and errno, so a broken floor never prints a number that looks valid. */
#ifndef CRR_BENCH_FLOOR_COMMON_H
#define CRR_BENCH_FLOOR_COMMON_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* One JSON error object on stdout, so the runner can show it beside the figure it replaces. */
static inline void die(const char *syscall) {
	int err = errno;
	printf("{\"error\":\"%s\",\"errno\":%d,\"message\":\"%s\"}\n", syscall, err, strerror(err));
	exit(1);
}

static inline long arg_long(int argc, char **argv, int i, long fallback) {
	return argc > i ? strtol(argv[i], NULL, 0) : fallback;
}
#endif
