/* memfd: memfd files, their contents, seals and mappings, across a fork.
 *   M1 "crr-m1" (MFD_ALLOW_SEALING): 300 000 pattern bytes (not a page multiple), seals
 *      F_SEAL_SHRINK|F_SEAL_GROW; fd 20 (O_RDWR, offset 1234) shared by parent P and child C
 *      (opened before the fork), fd 21 a second description of it (O_RDONLY via /proc/self/fd,
 *      offset 77, FD_CLOEXEC) in P only; mapped MAP_SHARED read-write in P and C (before the
 *      fork) and MAP_PRIVATE in P with page 2 written privately.
 *   M2 "crr-m2" (no sealing: seals read back F_SEAL_SEAL): 8192 bytes, fd 22 in C only.
 *   M3 "crr-m3": 64 KiB, mapped MAP_SHARED at offset 16 KiB by P; its fd closed (mapping only).
 * Check (P on SIGUSR1): names (/proc/self/fd links), sizes, contents byte for byte, seals,
 * flags, offsets, close-on-exec, the private page; then sharing: P writes through the shared
 * map of M1, C must read it through its fd 20 and answer by writing a byte P must see; M3's
 * mapping shows a write made through... itself at the right offset (read back via pread on
 * /proc/self/map_files). Breaks: content (P changes a byte of M1), seal (P checks for a seal
 * it never set). */
#define _GNU_SOURCE
#include "common.h"
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define M1_SIZE 300000
#define M1_MAP (300000 + 4096 - 300000 % 4096)
#define M2_SIZE 8192
#define M3_SIZE 65536
#define M3_OFF 16384
static const char *const breaks[] = { "content", "seal", NULL };
static unsigned char *m1_shared, *m1_private, *m3_map;

static unsigned char pat(long i, int salt)
{
	return (unsigned char)(i * 31 + (i >> 8) * 7 + salt);
}

static int make(const char *name, unsigned flags, long size, int salt, int at)
{
	int fd = memfd_create(name, flags);
	if (fd < 0)
		return -1;
	for (long i = 0; i < size; i += 4096) {
		unsigned char page[4096];
		long n = size - i < 4096 ? size - i : 4096;
		for (long j = 0; j < n; j++)
			page[j] = pat(i + j, salt);
		if (write(fd, page, n) != n)
			return -1;
	}
	if (at >= 0 && (dup2(fd, at) != at || close(fd)))
		return -1;
	return at >= 0 ? at : fd;
}

/* 0 when the fd's whole contents are the pattern and its size is `size`. */
static const char *check_content(int fd, long size, int salt)
{
	struct stat st;
	static char why[128];
	if (fstat(fd, &st) || st.st_size != size) {
		snprintf(why, sizeof(why), "size %ld, want %ld", (long)st.st_size, size);
		return why;
	}
	static unsigned char buf[M1_SIZE];
	if (pread(fd, buf, size, 0) != size)
		return "short read";
	for (long i = 0; i < size; i++)
		if (buf[i] != pat(i, salt)) {
			snprintf(why, sizeof(why), "byte %ld differs", i);
			return why;
		}
	return NULL;
}

static int is_named(int fd, const char *name)
{
	char link[256], want[256], path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return 0;
	link[n] = 0;
	snprintf(want, sizeof(want), "/memfd:%s (deleted)", name);
	return strcmp(link, want) == 0;
}

static int child_check(void)
{
	if (!is_named(20, "crr-m1") || !is_named(22, "crr-m2"))
		return 10;
	if (check_content(22, M2_SIZE, 2))
		return 11;
	if (fcntl(22, F_GET_SEALS) != F_SEAL_SEAL)
		return 12;
	/* P wrote 0xab at byte 5000 through its shared map: visible through our fd. */
	unsigned char c = 0;
	if (pread(20, &c, 1, 5000) != 1 || c != 0xab)
		return 13;
	m1_shared[6000] = 0xcd;
	return 0;
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	if (make("crr-m1", MFD_ALLOW_SEALING, M1_SIZE, 1, 20) < 0 || make("crr-m2", 0, M2_SIZE, 2, 22) < 0) {
		write_result("ERROR memfd: %s\n", strerror(errno));
		return 2;
	}
	int m3 = make("crr-m3", 0, M3_SIZE, 3, -1);
	m1_shared = mmap(NULL, M1_MAP, PROT_READ | PROT_WRITE, MAP_SHARED, 20, 0);
	m1_private = mmap(NULL, M1_MAP, PROT_READ | PROT_WRITE, MAP_PRIVATE, 20, 0);
	m3_map = m3 < 0 ? MAP_FAILED : mmap(NULL, M3_SIZE - M3_OFF, PROT_READ | PROT_WRITE, MAP_SHARED, m3, M3_OFF);
	if (m1_shared == MAP_FAILED || m1_private == MAP_FAILED || m3_map == MAP_FAILED) {
		write_result("ERROR mmap: %s\n", strerror(errno));
		return 2;
	}
	close(m3);
	if (fcntl(20, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)) {
		write_result("ERROR seals: %s\n", strerror(errno));
		return 2;
	}
	memset(m1_private + 2 * 4096, 0x5a, 4096);
	lseek(20, 1234, SEEK_SET);
	int ro = open("/proc/self/fd/20", O_RDONLY | O_CLOEXEC);
	if (ro < 0 || dup3(ro, 21, O_CLOEXEC) != 21 || close(ro) || lseek(21, 77, SEEK_SET) != 77) {
		write_result("ERROR fd 21: %s\n", strerror(errno));
		return 2;
	}
	pid_t child = fork();
	if (child == 0) {
		close(21);
		wait_for_check();
		_exit(child_check());
	}
	close(22);
	protocol_ready();
	wait_for_check();

	if (breaking("content"))
		m1_shared[100] ^= 1;
	int want_seals = F_SEAL_SHRINK | F_SEAL_GROW | (breaking("seal") ? F_SEAL_WRITE : 0);
	const char *why;
	if (!is_named(20, "crr-m1") || !is_named(21, "crr-m1"))
		fail("fds 20/21 are not memfd:crr-m1");
	if ((why = check_content(20, M1_SIZE, 1)))
		fail("memfd crr-m1: %s", why);
	if (fcntl(20, F_GET_SEALS) != want_seals)
		fail("crr-m1 seals are %#x, want %#x", fcntl(20, F_GET_SEALS), want_seals);
	if ((fcntl(20, F_GETFL) & O_ACCMODE) != O_RDWR || (fcntl(21, F_GETFL) & O_ACCMODE) != O_RDONLY)
		fail("access modes of fds 20/21 differ");
	if (fcntl(20, F_GETFD) != 0 || fcntl(21, F_GETFD) != FD_CLOEXEC)
		fail("close-on-exec of fds 20/21 differ");
	if (lseek(20, 0, SEEK_CUR) != 1234 || lseek(21, 0, SEEK_CUR) != 77)
		fail("offsets of fds 20/21 are %ld/%ld, want 1234/77", (long)lseek(20, 0, SEEK_CUR), (long)lseek(21, 0, SEEK_CUR));
	for (long i = 0; i < M1_SIZE; i++) {
		unsigned char want = i / 4096 == 2 ? 0x5a : pat(i, 1);
		if (m1_private[i] != want) {
			fail("private mapping of crr-m1 differs at byte %ld", i);
			break;
		}
		if (m1_shared[i] != pat(i, 1)) {
			fail("shared mapping of crr-m1 differs at byte %ld", i);
			break;
		}
	}
	for (long i = 0; i < M3_SIZE - M3_OFF; i++)
		if (m3_map[i] != pat(i + M3_OFF, 3)) {
			fail("mapping of crr-m3 (offset %d) differs at byte %ld", M3_OFF, i);
			break;
		}
	m1_shared[5000] = 0xab;
	kill(child, SIGUSR1);
	int status = 0;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("the child's check failed (code %d)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	else if (m1_shared[6000] != 0xcd)
		fail("a write by the child to the shared mapping of crr-m1 is not seen by the parent");
	return protocol_report();
}
