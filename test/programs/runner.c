/* Starts a test program so that it is not a child of the caller: a Node test would otherwise
 * reap it through libuv and swallow the ptrace stops a dumper needs. The runner forks; the child
 * starts a new session, gets /dev/null as stdio and no other inherited fds, and execs the
 * program. The runner prints the child's PID, lets go of its stdout, and stays as a child
 * subreaper that reaps the program and any of its orphans as soon as they die (this VM's init
 * reaps slowly, and a restore has to wait for killed PIDs to be free). If the caller dies
 * without cleaning up, the runner kills what it started (PR_SET_PDEATHSIG).
 * Usage: runner PROGRAM [args...] */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t caller_died;

static void on_caller_death(int sig)
{
	(void)sig;
	caller_died = 1;
}

/* SIGKILL every current child: the program, and any orphan of its tree adopted by us. */
static void kill_children(void)
{
	char path[64], text[4096];
	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, text, sizeof(text) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return;
	text[n] = 0;
	for (char *p = text, *end; *p; p = end) {
		long pid = strtol(p, &end, 10);
		if (end == p)
			break;
		kill((pid_t)pid, SIGKILL);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROGRAM [args...]\n", argv[0]);
		return 2;
	}
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	struct sigaction sa = { .sa_handler = on_caller_death };
	sigaction(SIGTERM, &sa, NULL); /* no SA_RESTART: waitpid below must notice */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	pid_t caller = getppid();
	int devnull = open("/dev/null", O_RDWR);
	if (devnull < 0) {
		perror("/dev/null");
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		setsid();
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(devnull, 2);
		/* fds the test runner leaked to us would become part of every dump */
		syscall(SYS_close_range, 3, ~0U, 0);
		execv(argv[1], argv + 1);
		_exit(127);
	}
	printf("%d\n", (int)pid);
	fflush(stdout);
	/* The caller reads stdout until EOF-free newline; drop the pipe so nothing waits on us. */
	dup2(devnull, 1);
	dup2(devnull, 2);
	if (getppid() != caller) /* died before PDEATHSIG was armed */
		caller_died = 1;
	for (;;) {
		if (caller_died)
			kill_children();
		if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD)
			return 0;
	}
}
