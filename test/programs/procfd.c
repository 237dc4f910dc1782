/* procfd: files of the tree's own /proc/PID directories held open, as a supervisor or a
 * monitoring agent holds them: P forks C (which sleeps, named procfd-child), then holds its own
 * /proc/self/stat at fd 30 (opened by that name: the kernel shows /proc/<P's pid>/stat) and
 * C's /proc/<C's pid>/status at fd 31.
 * Check (P on SIGUSR1): fd 30 reads P's stat (the pid /proc/self names, comm procfd), fd 31
 * reads C's status (Name procfd-child, its pid the one P's children file lists); /proc/PID
 * numbers a process as the /proc mount's PID namespace does, which a restore into a PID
 * namespace of its own does not change for a /proc it does not mount.
 * Break: other (fd 31 reopened on P's own status). */
#include "common.h"
#include <sys/prctl.h>

static const char *const breaks[] = { "other", NULL };

/* The pid this /proc mount gives a process whose /proc/self or children entry is read. */
static long proc_number(const char *path)
{
	char buf[256];
	if (!strcmp(path, "/proc/self")) {
		ssize_t n = readlink(path, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = 0;
		return atol(buf);
	}
	return atol(read_proc_file(path, buf, sizeof(buf)));
}

static void read_fd(int fd, char *buf, size_t size)
{
	ssize_t n = pread(fd, buf, size - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	if (n <= 0)
		fail("fd %d reads nothing: %s", fd, n < 0 ? strerror(errno) : "end of file");
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	pid_t child = fork();
	if (child < 0)
		return 3;
	if (child == 0) {
		prctl(PR_SET_NAME, "procfd-child");
		for (;;)
			pause();
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)child);
	int self_stat = open("/proc/self/stat", O_RDONLY);
	int child_status = open(path, O_RDONLY);
	if (self_stat < 0 || child_status < 0 || dup2(self_stat, 30) != 30 || dup2(child_status, 31) != 31)
		return 4;
	close(self_stat);
	close(child_status);
	protocol_ready();
	wait_for_check();
	if (breaking("other"))
		dup2(open("/proc/self/status", O_RDONLY), 31);
	char buf[4096], children[64];
	read_fd(30, buf, sizeof(buf));
	if (atol(buf) != proc_number("/proc/self") || !strstr(buf, "(procfd) "))
		fail("fd 30 is not this process's stat: '%.60s', /proc/self is %ld", buf, proc_number("/proc/self"));
	read_fd(31, buf, sizeof(buf));
	snprintf(children, sizeof(children), "/proc/self/task/%ld/children", proc_number("/proc/self"));
	char *pid_line = strstr(buf, "\nPid:");
	if (!strstr(buf, "Name:\tprocfd-child\n") || !pid_line || atol(pid_line + 5) != proc_number(children))
		fail("fd 31 is not C's status: '%.40s', pid %ld, C is %ld", buf, pid_line ? atol(pid_line + 5) : -1L, proc_number(children));
	return protocol_report();
}
