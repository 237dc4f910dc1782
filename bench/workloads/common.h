/* Shared by the workload programs: dirty memory and the readiness file. A workload says it is
 * ready by renaming a complete file into place (never a half-written one), listing every PID it
 * started so the bench can kill each by PID. It keeps no fd open but 0-2, so the dumped images
 * hold nothing the bench did not mean to measure. */
#ifndef CRR_BENCH_WORKLOAD_COMMON_H
#define CRR_BENCH_WORKLOAD_COMMON_H
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline void fail(const char *what);

/* Whatever launched the bench may leak fds into it (tap does): they would be dumped too. */
static inline void close_inherited_fds(void) {
	if (syscall(SYS_close_range, 3U, ~0U, 0U)) fail("close_range");
}

static inline void fail(const char *what) {
	fprintf(stderr, "workload: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Every page different, so no page is shared or zero: the dump stores them all. `huge`: the
 * memory is 2 MiB aligned and advised MADV_HUGEPAGE before it is written (transparent huge pages
 * where THP is on). */
static inline char *dirty_memory_huge(size_t bytes, unsigned seed, int huge) {
	const size_t align = huge ? 2UL << 20 : 0;
	char *mem = mmap(NULL, bytes + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) fail("mmap");
	if (huge) {
		mem = (char *)(((unsigned long)mem + align - 1) & ~(align - 1));
		if (madvise(mem, bytes, MADV_HUGEPAGE)) fail("madvise(MADV_HUGEPAGE)");
	}
	for (size_t off = 0; off < bytes; off += 4096) {
		memset(mem + off, (int)((off >> 12) + seed) | 1, 4096);
		*(unsigned long *)(mem + off) = off ^ seed;
	}
	return mem;
}

static inline char *dirty_memory(size_t bytes, unsigned seed) {
	return dirty_memory_huge(bytes, seed, 0);
}

static inline void write_ready(const char *path, const int *pids, long count) {
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f) fail("fopen(ready)");
	for (long i = 0; i < count; i++) fprintf(f, "%d\n", pids[i]);
	if (fclose(f)) fail("fclose(ready)");
	if (rename(tmp, path)) fail("rename(ready)");
}

static inline void wait_forever(void) {
	for (;;) pause();
}
#endif
