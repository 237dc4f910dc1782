/* fifo: named pipes (FIFOs in the temp dir) whose ends live in different tasks, with queued data.
 * Parent P and child C (forked, both stay):
 *   fifo-a: P holds a read end at fd 31 (O_RDONLY|O_NONBLOCK), C a write end at fd 32 (O_WRONLY);
 *           size set to 128 KiB with F_SETPIPE_SZ; 70 000 pattern bytes queued. One O_RDWR
 *           description at fd 50 is shared by P and C (opened before the fork); C has a dup of
 *           it at fd 51 with FD_CLOEXEC.
 *   fifo-b: only P holds it, a write end at fd 40 with no reader anywhere; "fifo-b-data" queued.
 * Check (P on SIGUSR1): every fd is the right FIFO (inode of the path), access mode, O_NONBLOCK,
 * close-on-exec, size; A's and B's queued bytes come out byte for byte with nothing after them;
 * O_NONBLOCK set by P on fd 50 shows in C on 50 and 51 (one description); then C writes '!'
 * through fd 32 and P reads it from fd 31.
 * Breaks: data (P eats one queued byte of A), nonblock (P clears O_NONBLOCK on 31). */
#include "common.h"
#include <sys/stat.h>
#include <sys/wait.h>

#define A_BYTES 70000
#define A_SIZE (128 * 1024)
static const char b_data[] = "fifo-b-data";
static const char *const breaks[] = { "data", "nonblock", NULL };
static char path_a[4096], path_b[4096];

static unsigned char pattern_byte(int i)
{
	return (unsigned char)(i * 13 + (i >> 9) * 5 + 3);
}

/* 1 when fd is an open FIFO whose inode is the one at path. */
static int is_fifo(int fd, const char *path)
{
	struct stat a, b;
	if (fstat(fd, &a) || stat(path, &b))
		return 0;
	return S_ISFIFO(a.st_mode) && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

static int child_check(void)
{
	if (!is_fifo(32, path_a) || !is_fifo(50, path_a) || !is_fifo(51, path_a))
		return 10;
	int fl32 = fcntl(32, F_GETFL);
	if ((fl32 & O_ACCMODE) != O_WRONLY || (fl32 & O_NONBLOCK))
		return 11;
	if ((fcntl(50, F_GETFL) & O_ACCMODE) != O_RDWR)
		return 12;
	if (fcntl(50, F_GETFD) != 0 || fcntl(51, F_GETFD) != FD_CLOEXEC)
		return 13;
	if (!(fcntl(50, F_GETFL) & O_NONBLOCK) || !(fcntl(51, F_GETFL) & O_NONBLOCK))
		return 14;
	if (write(32, "!", 1) != 1)
		return 15;
	return 0;
}

static const char *child_failure(int code)
{
	switch (code) {
	case 10: return "a child fd is not fifo-a";
	case 11: return "child fd 32 is not a blocking write end";
	case 12: return "child fd 50 is not O_RDWR";
	case 13: return "child close-on-exec of fds 50/51 differs (want 0, 1)";
	case 14: return "fd 50 is not one description across tasks (O_NONBLOCK set by the parent not seen in the child)";
	case 15: return "child cannot write to fifo-a";
	default: return "child died or failed";
	}
}

static int open_at(const char *path, int flags, int at)
{
	int fd = open(path, flags);
	if (fd < 0 || dup2(fd, at) != at)
		return -1;
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	char dir[4096];
	result_dir(dir, sizeof(dir));
	snprintf(path_a, sizeof(path_a), "%s/fifo-a", dir);
	snprintf(path_b, sizeof(path_b), "%s/fifo-b", dir);
	if (mkfifo(path_a, 0600) || mkfifo(path_b, 0600)) {
		write_result("ERROR mkfifo: %s\n", strerror(errno));
		return 2;
	}
	/* The read end first, non-blocking, so that opening the write end does not block. */
	if (open_at(path_a, O_RDONLY | O_NONBLOCK, 31) || open_at(path_a, O_WRONLY, 32) || open_at(path_a, O_RDWR, 50)) {
		write_result("ERROR opening fifo-a: %s\n", strerror(errno));
		return 2;
	}
	if (fcntl(32, F_SETPIPE_SZ, A_SIZE) < A_SIZE) {
		write_result("ERROR F_SETPIPE_SZ: %s\n", strerror(errno));
		return 2;
	}
	static unsigned char data[A_BYTES];
	for (int i = 0; i < A_BYTES; i++)
		data[i] = pattern_byte(i);
	if (write(32, data, A_BYTES) != A_BYTES) {
		write_result("ERROR queueing into fifo-a: %s\n", strerror(errno));
		return 2;
	}
	/* fifo-b: a writer with no reader; a temporary O_RDWR open lets the O_WRONLY one succeed. */
	int keeper = open(path_b, O_RDWR);
	if (keeper < 0 || open_at(path_b, O_WRONLY, 40) || write(40, b_data, strlen(b_data)) != (ssize_t)strlen(b_data)) {
		write_result("ERROR fifo-b: %s\n", strerror(errno));
		return 2;
	}
	close(keeper);
	pid_t child = fork();
	if (child == 0) {
		close(31);
		close(40);
		dup3(50, 51, O_CLOEXEC);
		wait_for_check();
		_exit(child_check());
	}
	close(32);
	protocol_ready();
	wait_for_check();

	if (breaking("nonblock"))
		fcntl(31, F_SETFL, 0);
	if (breaking("data")) {
		char c;
		if (read(31, &c, 1) != 1)
			fail("could not eat a byte of fifo-a");
	}
	if (!is_fifo(31, path_a) || !is_fifo(50, path_a))
		fail("parent fds 31/50 are not fifo-a");
	if (!is_fifo(40, path_b))
		fail("parent fd 40 is not fifo-b");
	int fl31 = fcntl(31, F_GETFL);
	if ((fl31 & O_ACCMODE) != O_RDONLY || !(fl31 & O_NONBLOCK))
		fail("fd 31 is not an O_NONBLOCK read end (flags 0%o)", fl31);
	if ((fcntl(40, F_GETFL) & O_ACCMODE) != O_WRONLY)
		fail("fd 40 is not a write end");
	if (fcntl(31, F_GETFD) != 0 || fcntl(40, F_GETFD) != 0 || fcntl(50, F_GETFD) != 0)
		fail("a parent fd became close-on-exec");
	int size = fcntl(31, F_GETPIPE_SZ);
	if (size != A_SIZE)
		fail("fifo-a size is %d, was %d", size, A_SIZE);
	static unsigned char got[A_BYTES + 1];
	size_t done = 0;
	int old = fcntl(31, F_GETFL);
	fcntl(31, F_SETFL, old | O_NONBLOCK);
	while (done < sizeof(got)) {
		ssize_t n = read(31, got + done, sizeof(got) - done);
		if (n <= 0)
			break;
		done += n;
	}
	if (done != A_BYTES)
		fail("fifo-a holds %zu queued bytes, want %d", done, A_BYTES);
	for (size_t i = 0; i < done && i < A_BYTES; i++)
		if (got[i] != pattern_byte(i)) {
			fail("fifo-a queued bytes differ at %zu", i);
			break;
		}
	int rb = open(path_b, O_RDONLY | O_NONBLOCK);
	char bgot[64] = { 0 };
	ssize_t n = rb < 0 ? -1 : read(rb, bgot, sizeof(bgot) - 1);
	if (n != (ssize_t)strlen(b_data) || memcmp(bgot, b_data, n))
		fail("fifo-b queued bytes are '%.*s', want '%s'", (int)(n > 0 ? n : 0), bgot, b_data);
	fcntl(50, F_SETFL, O_NONBLOCK);
	kill(child, SIGUSR1);
	int status = 0;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("%s", child_failure(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
	char bang = 0;
	if (read(31, &bang, 1) != 1 || bang != '!')
		fail("a byte written to fifo-a by the child after the check did not reach the parent");
	return protocol_report();
}
