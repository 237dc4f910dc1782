/* hugepages: 24 MiB of private anonymous memory, 2 MiB aligned, advised MADV_HUGEPAGE before its
 * pattern is written (so it faults in as transparent huge pages where THP is on).
 * Check (SIGUSR1): every byte of the pattern; the VMA still advised (VmFlags "hg" in
 * /proc/self/smaps); and, unless THP is "never" here, some of it in huge pages (AnonHugePages):
 * a restore that filled it with 4 KiB pages (UFFDIO_COPY, or faults before the advice) loses
 * them. Breaks: content (a byte changed), advice (MADV_NOHUGEPAGE: the flag turns to "nh"). */
#include "common.h"
#include <sys/mman.h>

#define MIB (1024UL * 1024UL)
#define HUGE_SIZE (24 * MIB) /* over 16 MiB: a fill of its own, where UFFDIO_COPY is used */
#define ALIGN (2 * MIB)

static unsigned char *region;

static uint64_t word_at(uint64_t i)
{
	uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ULL;
	return z ^ (z >> 29);
}

/* The smaps block of the VMA starting at `region`: its "hg" flag and AnonHugePages in kB. */
static void smaps_of_region(int *advised, long *huge_kb)
{
	static char raw[1 << 20];
	read_proc_file("/proc/self/smaps", raw, sizeof(raw));
	*advised = 0;
	*huge_kb = -1;
	char head[32];
	snprintf(head, sizeof(head), "\n%lx-", (unsigned long)region);
	char *block = strstr(raw, head);
	if (!block)
		return;
	char *next = strchr(block + 1, '\n');
	while (next && !(next[1] >= '0' && next[1] <= '9') && !(next[1] >= 'a' && next[1] <= 'f'))
		next = strchr(next + 1, '\n');
	if (next)
		*next = 0;
	char *huge = strstr(block, "AnonHugePages:");
	if (huge)
		*huge_kb = strtol(huge + strlen("AnonHugePages:"), NULL, 10);
	char *flags = strstr(block, "VmFlags:");
	*advised = flags && strstr(flags, " hg");
}

static int thp_never(void)
{
	char mode[128] = "";
	int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY);
	if (fd < 0)
		return 1;
	ssize_t n = read(fd, mode, sizeof(mode) - 1);
	close(fd);
	mode[n > 0 ? n : 0] = 0;
	return strstr(mode, "[never]") != NULL;
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = { "content", "advice", NULL };
	protocol_start(argc, argv, kinds, 0);
	unsigned char *raw = mmap(NULL, HUGE_SIZE + ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return 3;
	region = (unsigned char *)(((uintptr_t)raw + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
	if (madvise(region, HUGE_SIZE, MADV_HUGEPAGE))
		return 3;
	uint64_t *words = (uint64_t *)region;
	for (uint64_t i = 0; i < HUGE_SIZE / 8; i++)
		words[i] = word_at(i);
	protocol_ready();
	wait_for_check();
	if (breaking("content"))
		region[3 * MIB + 17] ^= 1;
	if (breaking("advice"))
		madvise(region, HUGE_SIZE, MADV_NOHUGEPAGE);
	for (uint64_t i = 0; i < HUGE_SIZE / 8; i++)
		if (words[i] != word_at(i)) {
			fail("the pattern differs at offset %#lx", (unsigned long)(i * 8));
			break;
		}
	int advised;
	long huge_kb;
	smaps_of_region(&advised, &huge_kb);
	if (huge_kb < 0)
		fail("no smaps entry starts at %p", (void *)region);
	else if (!advised)
		fail("the region is no longer advised MADV_HUGEPAGE (no hg in VmFlags)");
	else if (huge_kb == 0 && !thp_never())
		fail("none of the region is in huge pages (AnonHugePages 0 kB)");
	return protocol_report();
}
