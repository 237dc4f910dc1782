/* shared-file: one open file description shared by a parent and its child, a dup with
 * close-on-exec, and a second, separate description of the same file.
 * Parent P opens <dir>/shared-file.data at fd 30 (O_RDWR) and writes "P0" (offset 2), dups it to
 * fd 31 with FD_CLOEXEC, opens the file again at fd 40 (offset 0), then forks child C (which keeps
 * fds 30 and 31). Check (P on SIGUSR1): fd 30 is at offset 2; P relays to C, which checks its own
 * fd 30 offset and writes "C1" through it; then P's offset must be 4 (one offset, not a copy),
 * P writes "P2", and the file reads "P0C1P2": nobody overwrote anybody. fd 31 shares the offset
 * and is close-on-exec, fd 30 is not; fd 40 is still at 0 (its own description).
 * Breaks: offset (P seeks fd 30 to 1 first), cloexec (P clears FD_CLOEXEC on 31). */
#include "common.h"
#include <sys/wait.h>

static const char *const breaks[] = { "offset", "cloexec", NULL };

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	char dir[4096], path[4200];
	result_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/shared-file.data", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || dup2(fd, 30) != 30 || write(30, "P0", 2) != 2 || dup3(30, 31, O_CLOEXEC) != 31) {
		write_result("ERROR setting up %s: %s\n", path, strerror(errno));
		return 2;
	}
	close(fd);
	int other = open(path, O_RDONLY);
	if (other < 0 || dup2(other, 40) != 40) {
		write_result("ERROR second open: %s\n", strerror(errno));
		return 2;
	}
	close(other);
	pid_t child = fork();
	if (child == 0) {
		close(40);
		wait_for_check();
		if (lseek(30, 0, SEEK_CUR) != 2)
			_exit(10);
		if (write(30, "C1", 2) != 2)
			_exit(11);
		_exit(0);
	}
	protocol_ready();
	wait_for_check();
	if (breaking("offset"))
		lseek(30, 1, SEEK_SET);
	if (breaking("cloexec"))
		fcntl(31, F_SETFD, 0);
	off_t at = lseek(30, 0, SEEK_CUR);
	if (at != 2)
		fail("fd 30 offset is %lld, want 2", (long long)at);
	if (lseek(31, 0, SEEK_CUR) != at)
		fail("fds 30 and 31 do not share one offset");
	if (fcntl(30, F_GETFD) != 0 || fcntl(31, F_GETFD) != FD_CLOEXEC)
		fail("close-on-exec: fd 30 %d, fd 31 %d (want 0, 1)", fcntl(30, F_GETFD), fcntl(31, F_GETFD));
	kill(child, SIGUSR1);
	int status = 0;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("child: %s", WIFEXITED(status) && WEXITSTATUS(status) == 10 ? "its fd 30 is not at offset 2" : "failed or died");
	at = lseek(30, 0, SEEK_CUR);
	if (at != 4)
		fail("after the child wrote, parent fd 30 is at %lld, want 4 (one shared offset)", (long long)at);
	if (write(30, "P2", 2) != 2)
		fail("write P2: %s", strerror(errno));
	char got[16] = { 0 };
	if (pread(40, got, sizeof(got) - 1, 0) != 6 || strcmp(got, "P0C1P2"))
		fail("file holds '%s', want 'P0C1P2'", got);
	if (lseek(40, 0, SEEK_CUR) != 0)
		fail("fd 40 moved: it shares a description it should not");
	return protocol_report();
}
