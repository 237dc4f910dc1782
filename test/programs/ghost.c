/* ghost: files deleted while the program holds them. In its directory it writes ghost-data
 * (10,000 bytes of a pattern), keeps it open at fd 20 at offset 1234, and ghost-map (8192 bytes
 * of another), keeps it mapped read-only; then unlinks both.
 * Check (SIGUSR1): fd 20 is still a deleted file (no links, /proc/self/fd/20 ends in
 * " (deleted)") at offset 1234 with the pattern, and writable; the mapping holds its pattern.
 * Setup (argv[2]) big: ghost-data is 2 MiB instead, over the dump's default ghost limit.
 * Setup tmpfile: besides, fd 21 is a file made with O_TMPFILE in its directory (never linked),
 * 300 bytes of a third pattern, at offset 300; checked the same way.
 * Break: content (a byte of ghost-data changed through fd 20). */
#include "common.h"
#include <sys/mman.h>
#include <sys/stat.h>

static const char *const breaks[] = { "content", NULL };

static unsigned char data_byte(long i) { return (unsigned char)(i * 13 + 5); }
static unsigned char map_byte(long i) { return (unsigned char)(i * 7 + 1); }
static unsigned char tmp_byte(long i) { return (unsigned char)(i * 3 + 11); }

static int make_file(const char *path, long size, unsigned char (*byte)(long))
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (fd < 0)
		return -1;
	for (long i = 0; i < size; i++) {
		unsigned char b = byte(i);
		if (write(fd, &b, 1) != 1)
			return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	long data_size = argc > 2 && !strcmp(argv[2], "big") ? 2L << 20 : 10000;
	int tmpfile = argc > 2 && !strcmp(argv[2], "tmpfile");
	char dir[4096], data_path[4200], map_path[4200];
	result_dir(dir, sizeof(dir));
	snprintf(data_path, sizeof(data_path), "%s/ghost-data", dir);
	snprintf(map_path, sizeof(map_path), "%s/ghost-map", dir);
	int data = make_file(data_path, data_size, data_byte);
	if (data < 0 || dup2(data, 20) != 20 || lseek(20, 1234, SEEK_SET) != 1234)
		return 3;
	close(data);
	int map_fd = make_file(map_path, 8192, map_byte);
	unsigned char *mapped = map_fd < 0 ? MAP_FAILED : mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, map_fd, 0);
	if (mapped == MAP_FAILED)
		return 4;
	close(map_fd);
	if (unlink(data_path) || unlink(map_path))
		return 5;
	if (tmpfile) {
		int fd = open(dir, O_TMPFILE | O_RDWR, 0600);
		for (long i = 0; fd >= 0 && i < 300; i++) {
			unsigned char b = tmp_byte(i);
			if (write(fd, &b, 1) != 1)
				return 6;
		}
		if (fd < 0 || dup2(fd, 21) != 21)
			return 6;
		close(fd);
	}
	protocol_ready();
	wait_for_check();
	if (breaking("content"))
		pwrite(20, "X", 1, 77);
	struct stat st;
	char link[4200] = "";
	ssize_t n = readlink("/proc/self/fd/20", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (fstat(20, &st) || st.st_nlink != 0)
		fail("fd 20 has %lu links, not 0", (unsigned long)st.st_nlink);
	if (n < 10 || strcmp(link + n - 10, " (deleted)"))
		fail("fd 20 is '%s', not a deleted file", link);
	if (lseek(20, 0, SEEK_CUR) != 1234)
		fail("fd 20 is at %ld, not 1234", (long)lseek(20, 0, SEEK_CUR));
	for (long i = 0; i < data_size; i++) {
		unsigned char b;
		if (pread(20, &b, 1, i) != 1 || b != data_byte(i)) {
			fail("ghost-data differs at byte %ld", i);
			break;
		}
	}
	if (pwrite(20, "w", 1, data_size) != 1)
		fail("fd 20 is not writable: %s", strerror(errno));
	if (tmpfile) {
		if (fstat(21, &st) || st.st_nlink != 0 || !S_ISREG(st.st_mode))
			fail("fd 21 is not an unlinked regular file");
		if (lseek(21, 0, SEEK_CUR) != 300)
			fail("fd 21 is at %ld, not 300", (long)lseek(21, 0, SEEK_CUR));
		for (long i = 0; i < 300; i++) {
			unsigned char b;
			if (pread(21, &b, 1, i) != 1 || b != tmp_byte(i)) {
				fail("the O_TMPFILE file differs at byte %ld", i);
				break;
			}
		}
		if (write(21, "w", 1) != 1)
			fail("fd 21 is not writable: %s", strerror(errno));
	}
	for (long i = 0; i < 8192; i++)
		if (mapped[i] != map_byte(i)) {
			fail("the mapping differs at byte %ld", i);
			break;
		}
	return protocol_report();
}
