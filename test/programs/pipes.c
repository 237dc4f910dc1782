/* pipes: pipes whose ends live in different tasks, with queued data, flags and a pipe size.
 * Parent P and child C (forked, both stay):
 *   pipe A: P holds the write end at fd 10 (O_NONBLOCK), C the read end at fd 11; size set to
 *           256 KiB with F_SETPIPE_SZ; 100 000 pattern bytes queued.
 *   pipe B: C holds the write end at fd 22; P holds the read end at fd 20 and a dup at fd 21
 *           (FD_CLOEXEC on 21 only); "pipe-b-data" queued.
 * Check (P on SIGUSR1; it relays to C and waits for C's exit status): A and B are one pipe each
 * across the tasks (same /proc fd link), flags, size, cloexec, 20/21 one description (a flag set
 * through 21 shows on 20), and the queued bytes come out byte for byte with nothing after them;
 * then a byte written now crosses each pipe.
 * Breaks: data (C eats one queued byte), nonblock (P clears O_NONBLOCK on 10), cloexec (P sets
 * FD_CLOEXEC on 20). */
#include "common.h"
#include <sys/wait.h>

#define A_BYTES 100000
#define A_SIZE (256 * 1024)
static const char b_data[] = "pipe-b-data";
static const char *const breaks[] = { "data", "nonblock", "cloexec", NULL };

static unsigned char pattern_byte(int i)
{
	return (unsigned char)(i * 31 + (i >> 8) * 7 + 1);
}

static int link_of(pid_t pid, int fd, char *out, size_t size)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	ssize_t n = readlink(path, out, size - 1);
	if (n < 0)
		return -1;
	out[n] = 0;
	return 0;
}

/* The child's check: its exit status says what differed (0 = all good). */
static int child_check(void)
{
	if (breaking("data")) {
		char c;
		if (read(11, &c, 1) != 1)
			return 10;
	}
	if (fcntl(11, F_GETFL) & O_NONBLOCK)
		return 11;
	static unsigned char got[A_BYTES];
	size_t done = 0;
	fcntl(11, F_SETFL, O_NONBLOCK);
	while (done < A_BYTES) {
		ssize_t n = read(11, got + done, A_BYTES - done);
		if (n <= 0)
			return 12; /* fewer queued bytes than written */
		done += n;
	}
	for (int i = 0; i < A_BYTES; i++)
		if (got[i] != pattern_byte(i))
			return 13;
	char extra;
	if (read(11, &extra, 1) != -1 || errno != EAGAIN)
		return 14;
	if ((fcntl(22, F_GETFL) & O_ACCMODE) != O_WRONLY)
		return 15;
	if (write(22, "!", 1) != 1)
		return 16;
	fcntl(11, F_SETFL, 0);
	if (read(11, &extra, 1) != 1 || extra != '?') /* P writes '?' after relaying */
		return 17;
	return 0;
}

static const char *child_failure(int code)
{
	switch (code) {
	case 10: return "child could not eat a byte";
	case 11: return "pipe A read end is O_NONBLOCK in the child";
	case 12: return "pipe A holds fewer queued bytes than were written";
	case 13: return "pipe A queued bytes differ";
	case 14: return "pipe A holds more bytes than were written";
	case 15: return "child fd 22 is not a write end";
	case 16: return "child cannot write to pipe B";
	case 17: return "a byte written to pipe A after restore did not reach the child";
	default: return "child died or failed";
	}
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	int a[2], b[2];
	if (pipe(a) || pipe(b)) {
		write_result("ERROR pipe: %s\n", strerror(errno));
		return 2;
	}
	if (fcntl(a[1], F_SETPIPE_SZ, A_SIZE) < A_SIZE) {
		write_result("ERROR F_SETPIPE_SZ: %s\n", strerror(errno));
		return 2;
	}
	dup2(a[1], 10);
	dup2(a[0], 11);
	dup2(b[0], 20);
	dup2(b[1], 22);
	close(a[0]), close(a[1]), close(b[0]), close(b[1]);
	fcntl(10, F_SETFL, O_NONBLOCK);
	static unsigned char data[A_BYTES];
	for (int i = 0; i < A_BYTES; i++)
		data[i] = pattern_byte(i);
	if (write(10, data, A_BYTES) != A_BYTES || write(22, b_data, strlen(b_data)) != (ssize_t)strlen(b_data)) {
		write_result("ERROR queueing data: %s\n", strerror(errno));
		return 2;
	}
	pid_t child = fork();
	if (child == 0) {
		close(10);
		close(20);
		wait_for_check();
		_exit(child_check());
	}
	close(11);
	close(22);
	dup3(20, 21, O_CLOEXEC);
	protocol_ready();
	wait_for_check();

	if (breaking("nonblock"))
		fcntl(10, F_SETFL, 0);
	if (breaking("cloexec"))
		fcntl(20, F_SETFD, FD_CLOEXEC);
	char mine[128], theirs[128];
	if (link_of(getpid(), 10, mine, sizeof(mine)) || link_of(child, 11, theirs, sizeof(theirs)) || strcmp(mine, theirs))
		fail("pipe A is not one pipe across parent fd 10 and child fd 11 (%s, %s)", mine, theirs);
	if (link_of(getpid(), 20, mine, sizeof(mine)) || link_of(child, 22, theirs, sizeof(theirs)) || strcmp(mine, theirs))
		fail("pipe B is not one pipe across parent fd 20 and child fd 22 (%s, %s)", mine, theirs);
	if (!(fcntl(10, F_GETFL) & O_NONBLOCK))
		fail("fd 10 lost O_NONBLOCK");
	if ((fcntl(10, F_GETFL) & O_ACCMODE) != O_WRONLY)
		fail("fd 10 is not a write end");
	int size = fcntl(10, F_GETPIPE_SZ);
	if (size != A_SIZE)
		fail("pipe A size is %d, was %d", size, A_SIZE);
	if (fcntl(20, F_GETFD) != 0 || fcntl(21, F_GETFD) != FD_CLOEXEC)
		fail("close-on-exec: fd 20 %d, fd 21 %d (want 0, 1)", fcntl(20, F_GETFD), fcntl(21, F_GETFD));
	fcntl(21, F_SETFL, O_NONBLOCK);
	if (!(fcntl(20, F_GETFL) & O_NONBLOCK))
		fail("fds 20 and 21 are not one description (O_NONBLOCK set on 21 not seen on 20)");
	char got[64] = { 0 };
	ssize_t n = read(20, got, sizeof(got) - 1);
	if (n != (ssize_t)strlen(b_data) || memcmp(got, b_data, n))
		fail("pipe B queued bytes are '%.*s', want '%s'", (int)(n > 0 ? n : 0), got, b_data);
	/* C says '!' through pipe B once it has drained pipe A; only then does '?' go into A. */
	kill(child, SIGUSR1);
	fcntl(20, F_SETFL, 0);
	char bang = 0;
	int crossed = read(20, &bang, 1) == 1 && bang == '!';
	if (crossed && write(10, "?", 1) != 1)
		fail("cannot write to pipe A: %s", strerror(errno));
	int status = 0;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("%s", child_failure(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
	if (!crossed)
		fail("a byte written to pipe B after restore did not reach the parent");
	return protocol_report();
}
