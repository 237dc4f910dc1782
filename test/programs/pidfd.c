/* pidfd: P forks C (which sleeps) and holds a pidfd of it at fd 30, PIDFD_NONBLOCK, watched by
 * an epoll at fd 31.
 * Check (P on SIGUSR1): fd 30's fdinfo names C's pid and keeps O_NONBLOCK; waitid on it finds C
 * still running (WNOHANG: nothing); a SIGTERM sent through it reaches C, after which the epoll
 * reports fd 30 readable and waitid on it collects C, killed by SIGTERM.
 * Break: other (fd 30 replaced by a pidfd of another child, which the check then kills). */
#include "common.h"
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static const char *const breaks[] = { "other", NULL };

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	pid_t child = fork();
	if (child < 0)
		return 3;
	if (child == 0)
		for (;;)
			pause();
	int fd = (int)syscall(SYS_pidfd_open, child, PIDFD_NONBLOCK);
	if (fd < 0 || dup2(fd, 30) != 30)
		return 4;
	close(fd);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 30 };
	if (ep < 0 || dup2(ep, 31) != 31 || epoll_ctl(31, EPOLL_CTL_ADD, 30, &ev))
		return 5;
	close(ep);
	protocol_ready();
	wait_for_check();
	if (breaking("other")) {
		pid_t other = fork();
		if (other == 0)
			for (;;)
				pause();
		dup2((int)syscall(SYS_pidfd_open, other, PIDFD_NONBLOCK), 30);
	}
	char path[64], info[1024];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/30");
	read_proc_file(path, info, sizeof(info));
	char *pid_line = strstr(info, "\nPid:");
	if (!pid_line || atoi(pid_line + 5) != child)
		fail("fd 30 is not a pidfd of C (%d)", (int)child);
	if (!(fcntl(30, F_GETFL) & O_NONBLOCK))
		fail("fd 30 lost O_NONBLOCK");
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, 30, &si, WEXITED | WNOHANG) || si.si_pid != 0)
		fail("C is not running (waitid: pid %d)", (int)si.si_pid);
	if (syscall(SYS_pidfd_send_signal, 30, SIGTERM, NULL, 0))
		fail("pidfd_send_signal: %s", strerror(errno));
	struct epoll_event got;
	if (epoll_wait(31, &got, 1, 5000) != 1 || got.data.u64 != 30)
		fail("the epoll did not report fd 30 readable");
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, 30, &si, WEXITED) || si.si_pid != child || si.si_status != SIGTERM)
		fail("waitid on fd 30: pid %d status %d, not C killed by SIGTERM", (int)si.si_pid, si.si_status);
	return protocol_report();
}
