/* namespaces: a parent P that unshares its UTS and IPC namespaces, names its host crr-ns-host
 * and domain crr-ns.example, sets IPC limits (kernel.msgmax 12345, kernel.sem "300 64000 50
 * 210", fs.mqueue.msg_max 42), then forks a child C that sleeps (C shares P's namespaces).
 * Check (P on SIGUSR1): uname's node and domain names, the three sysctls, and C in P's UTS and
 * IPC namespaces (same /proc/PID/ns links).
 * Setups (argv[2], for the dump's refusals): plain; nested (C unshares a UTS namespace of its
 * own); net (P unshares a network namespace too); sysv (P makes a SysV message queue).
 * Breaks: hostname (P renames its host before checking), msgmax (P changes kernel.msgmax). */
#include "common.h"
#include <sched.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/utsname.h>
#include <sys/wait.h>

static const char *const breaks[] = { "hostname", "msgmax", NULL };

#define HOST "crr-ns-host"
#define DOMAIN "crr-ns.example"
#define MSGMAX "12345"
#define SEM "300\t64000\t50\t210"
#define MQ_MSG_MAX "42"

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static void check_sysctl(const char *path, const char *want)
{
	char got[256];
	read_proc_file(path, got, sizeof(got));
	char *end = got + strlen(got);
	while (end > got && end[-1] == '\n')
		*--end = 0;
	if (strcmp(got, want))
		fail("%s is '%s', not '%s'", path, got, want);
}

static void check_same_ns(pid_t child, const char *kind)
{
	char mine[64], theirs[64], path[64];
	snprintf(path, sizeof(path), "/proc/self/ns/%s", kind);
	ssize_t a = readlink(path, mine, sizeof(mine) - 1);
	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)child, kind);
	ssize_t b = readlink(path, theirs, sizeof(theirs) - 1);
	if (a < 0 || b < 0 || a != b || memcmp(mine, theirs, a))
		fail("the child is not in the parent's %s namespace", kind);
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	const char *setup = argc > 2 ? argv[2] : "plain";
	int flags = CLONE_NEWUTS | CLONE_NEWIPC | (strcmp(setup, "net") ? 0 : CLONE_NEWNET);
	if (unshare(flags))
		return 3;
	if (sethostname(HOST, strlen(HOST)) || setdomainname(DOMAIN, strlen(DOMAIN)))
		return 4;
	if (write_file("/proc/sys/kernel/msgmax", MSGMAX) || write_file("/proc/sys/kernel/sem", "300 64000 50 210") ||
	    write_file("/proc/sys/fs/mqueue/msg_max", MQ_MSG_MAX))
		return 5;
	if (!strcmp(setup, "sysv") && msgget(IPC_PRIVATE, 0600) < 0)
		return 6;
	pid_t child = fork();
	if (child < 0)
		return 7;
	if (child == 0) {
		if (!strcmp(setup, "nested") && unshare(CLONE_NEWUTS))
			_exit(8);
		for (;;)
			pause();
	}
	protocol_ready();
	wait_for_check();
	if (breaking("hostname"))
		sethostname("renamed", 7);
	if (breaking("msgmax"))
		write_file("/proc/sys/kernel/msgmax", "8192");
	struct utsname u;
	uname(&u);
	if (strcmp(u.nodename, HOST))
		fail("the host name is '%s', not '%s'", u.nodename, HOST);
	if (strcmp(u.domainname, DOMAIN))
		fail("the domain name is '%s', not '%s'", u.domainname, DOMAIN);
	check_sysctl("/proc/sys/kernel/msgmax", MSGMAX);
	check_sysctl("/proc/sys/kernel/sem", SEM);
	check_sysctl("/proc/sys/fs/mqueue/msg_max", MQ_MSG_MAX);
	if (strcmp(setup, "nested"))
		check_same_ns(child, "uts");
	check_same_ns(child, "ipc");
	int rc = protocol_report();
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return rc;
}
