/* Memory changed by its task while its pages may still be arriving (crr restore --lazy-pages).
 * On SIGUSR1: a forked child checks region A; part of A goes through a pipe (the kernel reads
 * those pages, not the task); region B moves by mremap; part of A is discarded by
 * madvise(MADV_DONTNEED), another part unmapped and mapped afresh; then every byte must be its
 * pattern, or zero where discarded or mapped afresh. Usage: lazy-ops RESULT_FILE */
#include "common.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define MIB (1024UL * 1024UL)
#define A_SIZE (32 * MIB)
#define B_SIZE (8 * MIB)
#define PIPED_AT (8 * MIB)
#define PIPED_SIZE (32 * 1024UL)
#define DISCARD_AT (16 * MIB)
#define FRESH_AT (24 * MIB)
#define PIECE (1 * MIB)
#define SEED_A 0xa11a5eedULL
#define SEED_B 0xb22b5eedULL

static unsigned char *a, *b;

static int all_zero(const unsigned char *start, unsigned long size)
{
	for (unsigned long i = 0; i < size; i++)
		if (start[i])
			return 0;
	return 1;
}

static void check_forked_child(void)
{
	pid_t child = fork();
	if (child == 0)
		_exit(first_mismatch(a, 0, A_SIZE, SEED_A) >= 0 ? 1 : 0);
	int status = 0;
	if (child < 0 || waitpid(child, &status, 0) != child)
		fail("fork or waitpid failed: %s", strerror(errno));
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("the forked child found region A wrong (status %#x)", status);
}

static void check_piped(void)
{
	static unsigned char back[PIPED_SIZE];
	int p[2];
	if (pipe(p) != 0 || write(p[1], a + PIPED_AT, PIPED_SIZE) != (ssize_t)PIPED_SIZE ||
	    read(p[0], back, PIPED_SIZE) != (ssize_t)PIPED_SIZE) {
		fail("pipe round trip of region A failed: %s", strerror(errno));
		return;
	}
	close(p[0]);
	close(p[1]);
	for (unsigned long i = 0; i < PIPED_SIZE / 8; i++)
		if (((uint64_t *)back)[i] != pattern_word(SEED_A, PIPED_AT / 8 + i)) {
			fail("bytes of region A written to a pipe differ at offset %#lx", PIPED_AT + i * 8);
			return;
		}
}

static void check_moved(void)
{
	void *target = mmap(NULL, B_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *moved = target == MAP_FAILED ? MAP_FAILED : mremap(b, B_SIZE, B_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, target);
	if (moved == MAP_FAILED) {
		fail("mremap of region B failed: %s", strerror(errno));
		return;
	}
	b = moved;
	long bad = first_mismatch(b, 0, B_SIZE, SEED_B);
	if (bad >= 0)
		fail("region B moved by mremap differs at offset %#lx", (unsigned long)bad);
}

static void check_changed(void)
{
	if (madvise(a + DISCARD_AT, PIECE, MADV_DONTNEED) != 0 || munmap(a + FRESH_AT, PIECE) != 0 ||
	    mmap(a + FRESH_AT, PIECE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
		fail("madvise, munmap or mmap in region A failed: %s", strerror(errno));
		return;
	}
	if (!all_zero(a + DISCARD_AT, PIECE))
		fail("region A's part discarded by MADV_DONTNEED is not zero");
	if (!all_zero(a + FRESH_AT, PIECE))
		fail("region A's part mapped afresh is not zero");
	long bad = first_mismatch(a, 0, DISCARD_AT, SEED_A);
	if (bad < 0)
		bad = first_mismatch(a, DISCARD_AT + PIECE, FRESH_AT - DISCARD_AT - PIECE, SEED_A);
	if (bad < 0)
		bad = first_mismatch(a, FRESH_AT + PIECE, A_SIZE - FRESH_AT - PIECE, SEED_A);
	if (bad >= 0)
		fail("region A differs at offset %#lx", (unsigned long)bad);
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = { "content", NULL };
	protocol_start(argc, argv, kinds, 0);
	a = mmap(NULL, A_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b = mmap(NULL, B_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED)
		return 3;
	fill(a, A_SIZE, SEED_A);
	fill(b, B_SIZE, SEED_B);
	protocol_ready();
	wait_for_check();
	if (breaking("content"))
		a[5 * MIB + 7] ^= 1;
	check_forked_child();
	check_piped();
	check_moved();
	check_changed();
	return protocol_report();
}
