/* Self-checking memory program: 64 MiB of private anonymous pattern with holes, PROT_NONE guard
 * pages and read-only pages; a shared anonymous region; a private file mapping with some dirty
 * pages; a brk-heap block. After a restore every byte and the protections in /proc/self/maps
 * must be what they were. Usage: mem-pattern RESULT_FILE [SEED] */
#include "common.h"
#include <malloc.h>
#include <sys/mman.h>

#define MIB (1024UL * 1024UL)
#define PAGE 4096UL
#define BIG_SIZE (64 * MIB)
#define SHARED_SIZE (1 * MIB)
#define FILE_SIZE (256 * 1024UL)
#define HEAP_SIZE (2 * MIB)

enum piece_kind { HOLE, GUARD, READ_ONLY };
struct piece {
	unsigned long offset, size;
	enum piece_kind kind;
};
/* Offsets inside the big region; everything not listed stays read-write with its pattern. */
static const struct piece pieces[] = {
	{ 1 * MIB, 64 * 1024, HOLE },	   { 20 * MIB, 1 * MIB, HOLE },
	{ 40 * MIB, PAGE, HOLE },	   { 10 * MIB, 4 * PAGE, GUARD },
	{ 63 * MIB, PAGE, GUARD },	   { 30 * MIB, 2 * MIB, READ_ONLY },
	{ 50 * MIB + PAGE, 2 * PAGE, READ_ONLY },
};
#define PIECE_COUNT (sizeof(pieces) / sizeof(pieces[0]))
static const unsigned long dirty_file_pages[] = { 0, 5, 17, 63 };

static uint64_t seed;
static unsigned char *big, *shared_region, *file_map, *heap_block;
static char file_path[4096];
static char maps_before[65536], maps_now[65536];


static const struct piece *piece_at(unsigned long offset)
{
	for (unsigned i = 0; i < PIECE_COUNT; i++)
		if (offset >= pieces[i].offset && offset < pieces[i].offset + pieces[i].size)
			return &pieces[i];
	return NULL;
}

/* Cuts a maps line down to the part inside one of our regions: a restore may legitimately
 * merge our VMA with an unrelated neighbour that the original kept apart. */
static int clip(unsigned long *start, unsigned long *end, const void *region, unsigned long size)
{
	unsigned long r = (unsigned long)region;
	if (*start >= r + size || *end <= r)
		return 0;
	if (*start < r)
		*start = r;
	if (*end > r + size)
		*end = r + size;
	return 1;
}

/* The maps lines that cover our regions, reduced to what a restore must keep: range, perms,
 * offset, and the path for our file and [heap] (shared-anon inode numbers legitimately change).
 * Raw open/read into a static buffer: stdio would malloc and move the heap we are checking. */
static void snapshot_maps(char *out, size_t size)
{
	static char raw[262144];
	read_proc_file("/proc/self/maps", raw, sizeof(raw));
	out[0] = 0;
	size_t used = 0;
	for (char *line = strtok(raw, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned long start, end, offset;
		char perms[8], path[4096] = "";
		if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %4095[^\n]", &start, &end, perms, &offset,
			   path) < 4)
			continue;
		if (!clip(&start, &end, big, BIG_SIZE) &&
		    !clip(&start, &end, shared_region, SHARED_SIZE) &&
		    !clip(&start, &end, file_map, FILE_SIZE) &&
		    !clip(&start, &end, heap_block, HEAP_SIZE))
			continue;
		const char *keep = strcmp(path, file_path) == 0 || strcmp(path, "[heap]") == 0 ? path : "";
		used += snprintf(out + used, size - used, "%lx-%lx %s %lx %s\n", start, end, perms,
				 offset, keep);
	}
}

static void set_up(void)
{
	big = mmap(NULL, BIG_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	shared_region = mmap(NULL, SHARED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (big == MAP_FAILED || shared_region == MAP_FAILED)
		exit(3);
	fill(big, BIG_SIZE, seed);
	fill(shared_region, SHARED_SIZE, seed + 1);
	for (unsigned i = 0; i < PIECE_COUNT; i++) {
		unsigned char *at = big + pieces[i].offset;
		if (pieces[i].kind == HOLE)
			munmap(at, pieces[i].size);
		else if (pieces[i].kind == GUARD) /* fresh and never touched, like a stack guard */
			mmap(at, pieces[i].size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		else
			mprotect(at, pieces[i].size, PROT_READ);
	}

	char dir[4096];
	result_dir(dir, sizeof(dir));
	snprintf(file_path, sizeof(file_path), "%s/mem-pattern.%d.data", dir, (int)getpid());
	static unsigned char file_content[FILE_SIZE];
	fill(file_content, FILE_SIZE, seed + 2);
	int fd = open(file_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, file_content, FILE_SIZE) != (ssize_t)FILE_SIZE)
		exit(3);
	file_map = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (file_map == MAP_FAILED)
		exit(3);
	for (unsigned i = 0; i < sizeof(dirty_file_pages) / sizeof(dirty_file_pages[0]); i++)
		fill(file_map + dirty_file_pages[i] * PAGE, PAGE, seed + 3 + dirty_file_pages[i]);

	/* Below the mmap threshold so the block really lives in [heap] (brk). */
	mallopt(M_MMAP_THRESHOLD, 64 * MIB);
	heap_block = malloc(HEAP_SIZE);
	if (!heap_block)
		exit(3);
	fill(heap_block, HEAP_SIZE, seed + 4);
	snapshot_maps(maps_before, sizeof(maps_before));
}

static void break_state(void)
{
	if (breaking("content"))
		big[5 * MIB + 123] ^= 0x40;
	if (breaking("maps"))
		mprotect(big + 7 * MIB, PAGE, PROT_READ);
	if (breaking("file"))
		file_map[3 * PAGE + 8] ^= 1;
	if (breaking("heap"))
		heap_block[HEAP_SIZE - 1] ^= 1;
	if (breaking("shared"))
		shared_region[100] ^= 1;
}

static void check_file_map(void)
{
	for (unsigned long page = 0; page < FILE_SIZE / PAGE; page++) {
		int dirty = 0;
		for (unsigned i = 0; i < sizeof(dirty_file_pages) / sizeof(dirty_file_pages[0]); i++)
			dirty |= dirty_file_pages[i] == page;
		/* a clean page shows the file; a dirty page keeps its private copy */
		long bad = dirty ? first_mismatch(file_map + page * PAGE, 0, PAGE, seed + 3 + page)
				 : first_mismatch(file_map, page * PAGE, PAGE, seed + 2);
		if (bad >= 0) {
			fail("file mapping page %lu (%s) differs", page, dirty ? "dirty" : "clean");
			return;
		}
	}
}

static void check(void)
{
	snapshot_maps(maps_now, sizeof(maps_now));
	if (strcmp(maps_before, maps_now) != 0)
		fail("/proc/self/maps differs: before {%.200s} now {%.200s}", maps_before, maps_now);
	for (unsigned long offset = 0; offset < BIG_SIZE; offset += PAGE) {
		const struct piece *p = piece_at(offset);
		if (p && p->kind != READ_ONLY)
			continue;
		long bad = first_mismatch(big, offset, PAGE, seed);
		if (bad >= 0) {
			fail("anonymous pattern differs at offset %#lx", (unsigned long)bad);
			break;
		}
	}
	long bad = first_mismatch(shared_region, 0, SHARED_SIZE, seed + 1);
	if (bad >= 0)
		fail("shared anonymous region differs at offset %#lx", (unsigned long)bad);
	check_file_map();
	bad = first_mismatch(heap_block, 0, HEAP_SIZE, seed + 4);
	if (bad >= 0)
		fail("heap block differs at offset %#lx", (unsigned long)bad);
	if (!strstr(maps_now, "[heap]"))
		fail("heap block is not inside [heap]");
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = { "content", "maps", "file", "heap", "shared", NULL };
	protocol_start(argc, argv, kinds, 0);
	seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x5eed0000c0ffeeULL;
	set_up();
	protocol_ready();
	wait_for_check();
	break_state();
	check();
	return protocol_report();
}
