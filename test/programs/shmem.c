/* shmem: shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS) across a fork and within one task.
 *   A: 2 MiB region mapped before the fork, so parent P and child C share it; P wrote a pattern
 *      into its first half, C into its second half (after the fork, so only C touched those
 *      pages), and page 300 (in C's half) is left untouched (zeros).
 *   B: 256 KiB region only P maps, created as 4 pages by P then mremap'ed twice into P's space
 *      (MREMAP_MAYMOVE with old_size 0 makes a second mapping of the same object), so P sees one
 *      object at two addresses, and a third mapping shows it from page 16 on (offset != 0).
 * Check (P on SIGUSR1): every byte of A and B is the pattern (zeros where never written); the
 * maps lines are MAP_SHARED ("s") with the right offsets; then the sharing itself: P writes a
 * word into A, C must see it and answer by writing another that P must see; a write through
 * B's first mapping shows at the second one and at the third (offset) one.
 * Breaks: content (P flips a byte of A), unshare (P remaps B's second view as a private copy). */
#define _GNU_SOURCE
#include "common.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096UL
#define A_SIZE (2UL << 20)
#define B_SIZE (256UL << 10)
#define B_OFF_PAGES 16
#define ZERO_PAGE 300
static const char *const breaks[] = { "content", "unshare", NULL };
static unsigned char *a, *b1, *b2, *b3;
static volatile uint32_t *ping, *pong;

static unsigned char pat(unsigned long i, unsigned salt)
{
	return (unsigned char)((i * 2654435761UL >> 13) + salt + (i >> 12));
}

static long first_bad(const unsigned char *p, unsigned long from, unsigned long to, unsigned salt, unsigned long base)
{
	for (unsigned long i = from; i < to; i++) {
		unsigned char want = (base + i) / PAGE == ZERO_PAGE && salt == 1 ? 0 : pat(base + i, salt);
		if (p[i] != want)
			return (long)i;
	}
	return -1;
}

/* The maps line starting at addr: its perms and offset; 0 when there is none. */
static int maps_line(const void *addr, char perms[8], unsigned long *offset)
{
	static char raw[262144];
	read_proc_file("/proc/self/maps", raw, sizeof(raw));
	for (char *line = strtok(raw, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned long start;
		if (sscanf(line, "%lx-%*x %7s %lx", &start, perms, offset) == 3 && start == (unsigned long)addr)
			return 1;
	}
	return 0;
}

static void check_line(const char *what, const void *addr, unsigned long want_offset)
{
	char perms[8] = "";
	unsigned long offset = 0;
	if (!maps_line(addr, perms, &offset))
		fail("%s: no mapping at %p", what, addr);
	else if (strcmp(perms, "rw-s") || offset != want_offset)
		fail("%s: maps says %s offset %lx, want rw-s offset %lx", what, perms, offset, want_offset);
}

static int wait_word(volatile uint32_t *w, uint32_t want)
{
	for (int i = 0; i < 500; i++) {
		if (*w == want)
			return 1;
		usleep(10000);
	}
	return 0;
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	a = mmap(NULL, A_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	b1 = mmap(NULL, B_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b1 == MAP_FAILED) {
		write_result("ERROR mmap: %s\n", strerror(errno));
		return 2;
	}
	b2 = mremap(b1, 0, B_SIZE, MREMAP_MAYMOVE);
	/* A third view from page 16 on: a window of the second mapping, moved elsewhere. */
	unsigned char *tmp = mremap(b1, 0, B_SIZE, MREMAP_MAYMOVE);
	if (b2 == MAP_FAILED || tmp == MAP_FAILED) {
		write_result("ERROR mremap: %s\n", strerror(errno));
		return 2;
	}
	munmap(tmp, B_OFF_PAGES * PAGE);
	b3 = tmp + B_OFF_PAGES * PAGE;
	for (unsigned long i = 0; i < A_SIZE / 2; i++)
		a[i] = pat(i, 1);
	for (unsigned long i = 0; i < B_SIZE; i++)
		b1[i] = pat(i, 2);
	ping = (volatile uint32_t *)(a + A_SIZE - 8);
	pong = (volatile uint32_t *)(a + A_SIZE - 4);
	pid_t child = fork();
	if (child == 0) {
		for (unsigned long i = A_SIZE / 2; i < A_SIZE - PAGE; i++)
			a[i] = (i / PAGE == ZERO_PAGE) ? 0 : pat(i, 1);
		*ping = 0;
		*pong = 0;
		a[A_SIZE - PAGE] = 1; /* tells P the child's half is written */
		/* Child: answers a ping from P with a pong, until killed. */
		for (;;) {
			if (*ping == 0x5eed)
				*pong = 0xcafe;
			usleep(10000);
		}
	}
	for (int i = 0; i < 500 && a[A_SIZE - PAGE] != 1; i++)
		usleep(10000);
	if (a[A_SIZE - PAGE] != 1) {
		write_result("ERROR the child did not write its half\n");
		return 2;
	}
	protocol_ready();
	wait_for_check();

	if (breaking("content"))
		a[12345] ^= 0x40;
	if (breaking("unshare")) {
		unsigned char copy[B_SIZE];
		memcpy(copy, b2, B_SIZE);
		mmap(b2, B_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		memcpy(b2, copy, B_SIZE);
	}
	long bad = first_bad(a, 0, A_SIZE - PAGE, 1, 0);
	if (bad >= 0)
		fail("region A differs at byte %ld (%s half)", bad, bad < (long)(A_SIZE / 2) ? "parent's" : "child's");
	if ((bad = first_bad(b1, 0, B_SIZE, 2, 0)) >= 0)
		fail("region B (first view) differs at byte %ld", bad);
	if ((bad = first_bad(b2, 0, B_SIZE, 2, 0)) >= 0)
		fail("region B (second view) differs at byte %ld", bad);
	if ((bad = first_bad(b3, 0, B_SIZE - B_OFF_PAGES * PAGE, 2, B_OFF_PAGES * PAGE)) >= 0)
		fail("region B (third view, offset) differs at byte %ld", bad);
	check_line("region A", a, 0);
	check_line("region B first view", b1, 0);
	check_line("region B second view", b2, 0);
	check_line("region B third view", b3, B_OFF_PAGES * PAGE);

	b1[100] = 0x77;
	b1[B_OFF_PAGES * PAGE + 5] = 0x99;
	if (b2[100] != 0x77)
		fail("a write to B's first view does not show in its second view (not one object)");
	if (b3[5] != 0x99)
		fail("a write to B's first view does not show in its third view");
	*ping = 0x5eed;
	if (!wait_word(pong, 0xcafe))
		fail("the child does not see the parent's write to A, or the parent not the child's (not shared)");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return protocol_report();
}
