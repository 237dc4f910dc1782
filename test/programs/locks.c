/* Self-checking file-locks program: four files in the temp dir, each open at a fixed fd.
 * fd 10 (locks.a): flock LOCK_EX. fd 13 (locks.d): flock LOCK_SH. fd 11 (locks.b): POSIX write
 * lock on bytes 100..199 and read lock from 1000 to EOF, both the parent's; a child (forked, the
 * fd shared) holds a POSIX write lock on 500..509. fd 12 (locks.c): OFD write lock on 0..9 and
 * read lock on 50..59. Before the check the parent closes fd 10: the flock must stay, held through
 * the child's fd (the same description, inherited). The check forks a probe that opens the files afresh (new descriptions,
 * so nothing of its own is shared) and asks the kernel who holds what: F_GETLK / F_OFD_GETLK
 * ranges, types and owner pids (the parent's and the child's, by PID), and flock conflicts.
 * Usage: locks RESULT_FILE */
#include "common.h"
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>

static const char *const break_kinds[] = { "flock", "posix", "owner", "ofd", NULL };
static char dir[4096];
static pid_t parent_pid, child_pid;
static char *probe_failure; /* shared with the probe */

static int open_at(const char *name, int fd)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/locks.%s", dir, name);
	int got = open(path, O_RDWR | O_CREAT, 0644);
	if (got < 0 || ftruncate(got, 4096) != 0 || dup2(got, fd) != fd)
		return -1;
	close(got);
	return fd;
}

static int posix_lock(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = start;
	fl.l_len = len;
	return fcntl(fd, cmd, &fl);
}

static void probe_fail(const char *fmt, ...)
{
	if (probe_failure[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(probe_failure, 400, fmt, ap);
	va_end(ap);
}

/* Who blocks a `type` lock on start..len of `name`: F_GETLK (or F_OFD_GETLK) from a new description. */
static void expect_holder(const char *name, int cmd, short type, off_t start, off_t len, short want_type,
			  pid_t want_pid, off_t want_start, off_t want_len)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/locks.%s", dir, name);
	int fd = open(path, O_RDWR);
	struct flock fl;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = start;
	fl.l_len = len;
	if (fd < 0 || fcntl(fd, cmd, &fl) != 0) {
		probe_fail("%s: getlk: %s", name, strerror(errno));
	} else if (fl.l_type != want_type ||
		   (want_type != F_UNLCK && (fl.l_pid != want_pid || fl.l_start != want_start || fl.l_len != want_len))) {
		probe_fail("%s %ld+%ld: holder type %d pid %d range %ld+%ld, expected type %d pid %d range %ld+%ld", name,
			   (long)start, (long)len, fl.l_type, fl.l_pid, (long)fl.l_start, (long)fl.l_len, want_type,
			   want_pid, (long)want_start, (long)want_len);
	}
	close(fd);
}

static void expect_flock(const char *name, int op, int want_ok)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/locks.%s", dir, name);
	int fd = open(path, O_RDWR);
	int ok = fd >= 0 && flock(fd, op | LOCK_NB) == 0;
	if (ok != want_ok)
		probe_fail("%s: flock(%s) %s, expected %s", name, op == LOCK_EX ? "LOCK_EX" : "LOCK_SH",
			   ok ? "succeeded" : strerror(errno), want_ok ? "success" : "EWOULDBLOCK");
	close(fd);
}

static void probe(void)
{
	expect_flock("a", LOCK_SH, 0);
	expect_flock("d", LOCK_SH, 1);
	expect_flock("d", LOCK_EX, 0);
	expect_holder("b", F_GETLK, F_WRLCK, 100, 100, F_WRLCK, parent_pid, 100, 100);
	expect_holder("b", F_GETLK, F_RDLCK, 150, 1, F_WRLCK, parent_pid, 100, 100);
	expect_holder("b", F_GETLK, F_WRLCK, 200, 100, F_UNLCK, 0, 0, 0);
	expect_holder("b", F_GETLK, F_WRLCK, 2000, 1, F_RDLCK, parent_pid, 1000, 0);
	expect_holder("b", F_GETLK, F_RDLCK, 2000, 1, F_UNLCK, 0, 0, 0);
	expect_holder("b", F_GETLK, F_RDLCK, 505, 1, F_WRLCK, child_pid, 500, 10);
	expect_holder("c", F_OFD_GETLK, F_RDLCK, 0, 10, F_WRLCK, -1, 0, 10);
	expect_holder("c", F_OFD_GETLK, F_WRLCK, 55, 1, F_RDLCK, -1, 50, 10);
	expect_holder("c", F_OFD_GETLK, F_WRLCK, 20, 10, F_UNLCK, 0, 0, 0);
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, break_kinds, 0);
	result_dir(dir, sizeof(dir));
	parent_pid = getpid();
	if (open_at("a", 10) < 0 || open_at("b", 11) < 0 || open_at("c", 12) < 0 ||
	    open_at("d", 13) < 0) {
		write_result("ERROR files: %s\n", strerror(errno));
		return 2;
	}
	if (flock(10, LOCK_EX | LOCK_NB) || flock(13, LOCK_SH | LOCK_NB) || posix_lock(11, F_SETLK, F_WRLCK, 100, 100) ||
	    posix_lock(11, F_SETLK, F_RDLCK, 1000, 0) || posix_lock(12, F_OFD_SETLK, F_WRLCK, 0, 10) ||
	    posix_lock(12, F_OFD_SETLK, F_RDLCK, 50, 10)) {
		write_result("ERROR locks: %s\n", strerror(errno));
		return 2;
	}
	int ready[2];
	if (pipe(ready)) {
		write_result("ERROR pipe\n");
		return 2;
	}
	child_pid = fork();
	if (child_pid == 0) {
		signal(SIGUSR1, SIG_IGN);
		close(ready[0]);
		char ok = posix_lock(11, F_SETLK, F_WRLCK, 500, 10) == 0 ? 'y' : 'n';
		if (write(ready[1], &ok, 1) != 1)
			_exit(3);
		close(ready[1]);
		for (;;)
			pause();
	}
	close(ready[1]);
	char ok = 0;
	if (read(ready[0], &ok, 1) != 1 || ok != 'y') {
		write_result("ERROR the child could not lock\n");
		kill(child_pid, SIGKILL);
		return 2;
	}
	close(ready[0]);
	protocol_ready();
	wait_for_check();
	if (breaking("flock"))
		flock(10, LOCK_UN);
	if (breaking("posix"))
		posix_lock(11, F_SETLK, F_UNLCK, 100, 100);
	if (breaking("owner")) {
		kill(child_pid, SIGKILL);
		waitpid(child_pid, NULL, 0);
	}
	if (breaking("ofd"))
		posix_lock(12, F_OFD_SETLK, F_RDLCK, 0, 10);
	/* The child shares fd 10's description (forked after the flock): with the parent's fd gone
	 * the lock must stay, held through the child's fd. A restore that gave the child a
	 * description of its own would lose it here. */
	close(10);
	/* mapped only now: no shared memory in the dump */
	probe_failure = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (probe_failure == MAP_FAILED) {
		write_result("ERROR mmap\n");
		return 2;
	}
	pid_t p = fork();
	if (p == 0) {
		probe();
		_exit(0);
	}
	int status;
	if (waitpid(p, &status, 0) != p || !WIFEXITED(status))
		fail("the probe did not finish");
	else if (probe_failure[0])
		fail("%s", probe_failure);
	kill(child_pid, SIGKILL);
	waitpid(child_pid, NULL, 0);
	return protocol_report();
}
