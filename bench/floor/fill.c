/* Floor for memory restore: the fastest native ways to fill fresh anonymous memory from a pages
 * file, in MB/s, on this machine. A restore does exactly this job (preadv from pages-N.img into
 * the task's new mappings), so the best fill method is the ceiling a restore can reach. Each
 * method's figure is the median of REPEATS runs (methods taking turns), like a restore's.
 * Usage: fill FILE [REPEATS] [cold]   -> one JSON object on stdout.
 * "cold" drops the page cache before every run (echo 3 > /proc/sys/vm/drop_caches).
 * direct_preadv reads with O_DIRECT (disk to memory, past the cache), as a restore does from a
 * cold pages file: it wins cold and loses warm (it reads the disk even when the cache holds all). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include "common.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define HUGE_2M (2UL << 20)
#define MAX_CALL (1UL << 30) /* read(2) stops at about 2 GiB a call: stay well below */

enum prep { PREP_NONE, PREP_POPULATE, PREP_HUGE, PREP_HUGE_POPULATE, PREP_REUSED, PREP_DIRECT };
struct method { const char *name; enum prep prep; };
static const struct method methods[] = {
	{ "read_reused", PREP_REUSED }, /* cat pages-*.img > /dev/null: the read cost alone */
	{ "preadv", PREP_NONE },
	{ "populate_preadv", PREP_POPULATE },
	{ "hugepage_preadv", PREP_HUGE },
	{ "hugepage_populate_preadv", PREP_HUGE_POPULATE },
	{ "direct_preadv", PREP_DIRECT },
};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

static int drop_caches(void) {
	sync();
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0) return -1;
	int ok = write(fd, "3\n", 2) == 2;
	close(fd);
	return ok ? 0 : -1;
}

static void read_all(int fd, char *dst, size_t size) {
	size_t done = 0;
	while (done < size) {
		size_t len = size - done < MAX_CALL ? size - done : MAX_CALL;
		struct iovec iov = { dst + done, len };
		ssize_t n = preadv(fd, &iov, 1, done);
		if (n < 0) die("preadv");
		if (n == 0) break;
		done += n;
	}
}

static void read_reused(int fd, size_t size) {
	static char buf[1 << 20];
	size_t done = 0;
	while (done < size) {
		ssize_t n = pread(fd, buf, sizeof(buf), done);
		if (n < 0) die("pread");
		if (n == 0) break;
		done += n;
	}
}

static int fd_direct = -1; /* the pages file opened O_DIRECT, for direct_preadv */

/* Fresh memory each run: the cost of first-touch page faults is the thing measured. */
static double run_once(int fd, size_t size, enum prep prep) {
	double t0 = now_ms();
	if (prep == PREP_REUSED) {
		read_reused(fd, size);
		return now_ms() - t0;
	}
	size_t len = (size + HUGE_2M - 1) & ~(HUGE_2M - 1);
	char *raw = mmap(NULL, len + HUGE_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) die("mmap");
	char *mem = (char *)(((uintptr_t)raw + HUGE_2M - 1) & ~(HUGE_2M - 1));
	if ((prep == PREP_HUGE || prep == PREP_HUGE_POPULATE) && madvise(mem, len, MADV_HUGEPAGE)) die("madvise(MADV_HUGEPAGE)");
	if ((prep == PREP_POPULATE || prep == PREP_HUGE_POPULATE) && madvise(mem, len, MADV_POPULATE_WRITE))
		die("madvise(MADV_POPULATE_WRITE)");
	if (prep == PREP_DIRECT) {
		/* O_DIRECT wants whole logical blocks: the last partial one is read through the cache. */
		size_t whole = size & ~(size_t)4095;
		read_all(fd_direct, mem, whole);
		if (whole < size && pread(fd, mem + whole, size - whole, whole) < 0) die("pread");
	} else
		read_all(fd, mem, size);
	double ms = now_ms() - t0;
	munmap(raw, len + HUGE_2M);
	return ms;
}

static int cmp_double(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: fill FILE [REPEATS] [cold]\n");
		return 2;
	}
	long repeats = arg_long(argc, argv, 2, 3);
	int cold = argc > 3 && strcmp(argv[3], "cold") == 0;
	if (repeats < 1 || repeats > 100) repeats = 3;
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0) die("open");
	fd_direct = open(argv[1], O_RDONLY | O_DIRECT);
	if (fd_direct < 0 && errno != EINVAL) die("open(O_DIRECT)");
	if (fd_direct < 0) fd_direct = fd; /* no O_DIRECT on this filesystem: crr reads buffered too */
	struct stat st;
	if (fstat(fd, &st)) die("fstat");
	size_t size = st.st_size;
	if (!cold) read_reused(fd, size); /* warm the page cache once, untimed */

	printf("{\"file\":\"%s\",\"bytes\":%zu,\"repeats\":%ld,\"cold\":%s,\"methods\":{", argv[1], size, repeats,
	       cold ? "true" : "false");
	const char *fastest = NULL;
	double fastest_mbps = 0;
	/* Methods take turns within each repeat: the disk's speed drifts (cold runs most), and each
	 * method should meet the same drift. */
	static double samples[NMETHODS][100];
	for (long r = 0; r < repeats; r++)
		for (size_t m = 0; m < NMETHODS; m++) {
			if (cold && drop_caches()) die("drop_caches");
			samples[m][r] = run_once(fd, size, methods[m].prep);
		}
	for (size_t m = 0; m < NMETHODS; m++) {
		qsort(samples[m], repeats, sizeof(double), cmp_double);
		double best = samples[m][0], median = samples[m][repeats / 2];
		/* A method's figure is its median, as a restore's is: the best of a few runs of one
		 * method, and then the best of several methods, would be the luckiest disk of the run. */
		double mbps = median > 0 ? (size / 1e6) / (median / 1e3) : 0;
		double best_mbps = best > 0 ? (size / 1e6) / (best / 1e3) : 0;
		printf("%s\"%s\":{\"best_ms\":%.3f,\"median_ms\":%.3f,\"mbps\":%.1f,\"best_mbps\":%.1f}", m ? "," : "",
		       methods[m].name, best, median, mbps, best_mbps);
		if (methods[m].prep != PREP_REUSED && mbps > fastest_mbps) {
			fastest_mbps = mbps;
			fastest = methods[m].name;
		}
	}
	printf("},\"fastest_fill\":\"%s\",\"fastest_fill_mbps\":%.1f}\n", fastest ? fastest : "", fastest_mbps);
	return 0;
}
