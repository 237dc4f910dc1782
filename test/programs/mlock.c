/* mlock: memory locked in RAM (mlock), as programs holding secrets or real-time data lock it.
 * A 64 KiB private anonymous region of pattern, mlock()ed; beside it a 64 KiB region of pattern
 * left unlocked.
 * Check: the locked region's VmFlags (smaps) still has "lo" and the unlocked one's has not,
 * VmLck counts the locked 64 KiB, both hold their pattern.
 * Break: unlock (munlock of the locked region). */
#include "common.h"
#include <sys/mman.h>

#define SIZE (64 << 10)
static const char *const breaks[] = { "unlock", NULL };

/* Whether the smaps entry starting at `start` has VmFlag `flag`; -1 when it is not there. */
static int has_vmflag(void *start, const char *flag)
{
	static char smaps[1 << 20];
	char head[32], *at;
	read_proc_file("/proc/self/smaps", smaps, sizeof(smaps));
	snprintf(head, sizeof(head), "%lx-", (unsigned long)start);
	for (at = smaps; at && strncmp(at, head, strlen(head)); at = strchr(at, '\n') ? strchr(at, '\n') + 1 : NULL)
		;
	char *flags = at ? strstr(at, "\nVmFlags:") : NULL;
	if (!flags)
		return -1;
	char line[256], word[8];
	sscanf(flags + 1, "%255[^\n]", line);
	snprintf(word, sizeof(word), " %s", flag);
	return strstr(line, word) != NULL;
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	/* One mapping split in two, so the two regions are neighbours that differ only in the lock. */
	unsigned char *both = mmap(NULL, 2 * SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (both == MAP_FAILED)
		return 3;
	unsigned char *locked = both, *unlocked = both + SIZE;
	fill(locked, SIZE, 11);
	fill(unlocked, SIZE, 12);
	if (mlock(locked, SIZE))
		return 4;
	protocol_ready();
	wait_for_check();
	if (breaking("unlock"))
		munlock(locked, SIZE);
	if (has_vmflag(locked, "lo") != 1)
		fail("the locked region is not locked (VmFlags lo: %d)", has_vmflag(locked, "lo"));
	if (has_vmflag(unlocked, "lo") != 0)
		fail("the unlocked region is locked or gone (VmFlags lo: %d)", has_vmflag(unlocked, "lo"));
	char status[8192];
	read_proc_file("/proc/self/status", status, sizeof(status));
	char *lck = strstr(status, "VmLck:");
	if (!lck || atol(lck + 6) < SIZE >> 10)
		fail("VmLck is %ld kB, not at least %d", lck ? atol(lck + 6) : -1L, SIZE >> 10);
	if (first_mismatch(locked, 0, SIZE, 11) >= 0 || first_mismatch(unlocked, 0, SIZE, 12) >= 0)
		fail("a region lost its pattern");
	return protocol_report();
}
