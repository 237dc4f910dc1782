/* ptypair: a pseudo-terminal with both ends in the tree, as a terminal multiplexer has it. P
 * holds the master; C is a session leader whose controlling terminal is the slave (fds 0-2, no
 * echo, canonical) and answers each line it reads with the line in capitals.
 * Check (P on SIGUSR1): the slave is still /dev/pts/N of the same N, C's controlling terminal
 * (/proc/C/stat) is that slave and its session and foreground group (TIOCGSID, TIOCGPGRP on the
 * master) are C's, and "ping\n" written on the master comes back as "PING" within 5 s (not
 * echoed first).
 * Break: echo (C leaves echo on). */
#include "common.h"
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>

static const char *const breaks[] = { "echo", NULL };

static void answer_lines(const char *slave)
{
	if (setsid() < 0)
		_exit(20);
	int fd = open(slave, O_RDWR); /* a session leader without a terminal: it becomes the controlling one */
	if (fd < 0 || dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		_exit(21);
	if (fd > 2)
		close(fd);
	struct termios mode;
	tcgetattr(0, &mode);
	if (!breaking("echo"))
		mode.c_lflag &= ~ECHO;
	tcsetattr(0, TCSANOW, &mode);
	char line[256];
	for (;;) {
		ssize_t n = read(0, line, sizeof(line));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(22);
		for (ssize_t i = 0; i < n; i++)
			if (line[i] >= 'a' && line[i] <= 'z')
				line[i] -= 'a' - 'A';
		if (write(1, line, n) != n)
			_exit(23);
	}
}

/* Field 7 of /proc/PID/stat: the controlling terminal's device number. */
static unsigned long tty_nr_of(pid_t pid)
{
	char path[64], text[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	read_proc_file(path, text, sizeof(text));
	char *at = strrchr(text, ')');
	unsigned long nr = 0;
	if (at)
		sscanf(at + 2, "%*c %*d %*d %*d %lu", &nr);
	return nr;
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) || unlockpt(master))
		return 3;
	char slave[64];
	snprintf(slave, sizeof(slave), "%s", ptsname(master));
	pid_t child = fork();
	if (child < 0)
		return 4;
	if (child == 0)
		answer_lines(slave);
	/* C's set-up (setsid, open, termios) done before READY: wait for its session. */
	for (int i = 0; i < 500; i++) {
		pid_t sid = 0;
		if (ioctl(master, TIOCGSID, &sid) == 0 && sid == child)
			break;
		usleep(10000);
	}
	usleep(50000);
	protocol_ready();
	wait_for_check();
	const char *now = ptsname(master);
	if (!now || strcmp(now, slave))
		fail("the slave is %s, not %s", now ? now : "(none)", slave);
	struct stat st;
	if (stat(slave, &st) || tty_nr_of(child) != (unsigned long)st.st_rdev)
		fail("C's controlling terminal is %#lx, not %s", tty_nr_of(child), slave);
	pid_t sid = 0, pgrp = 0;
	if (ioctl(master, TIOCGSID, &sid) || sid != child)
		fail("the terminal's session is %d, not C's %d", (int)sid, (int)child);
	if (ioctl(master, TIOCGPGRP, &pgrp) || pgrp != child)
		fail("the terminal's foreground group is %d, not C's %d", (int)pgrp, (int)child);
	if (write(master, "ping\n", 5) != 5)
		fail("writing to the master: %s", strerror(errno));
	char got[256] = "";
	size_t have = 0;
	struct pollfd in = { .fd = master, .events = POLLIN };
	while (!strchr(got, '\n') && have < sizeof(got) - 1 && poll(&in, 1, 5000) == 1) {
		ssize_t n = read(master, got + have, sizeof(got) - 1 - have);
		if (n <= 0)
			break;
		have += n;
		got[have] = 0;
	}
	if (strncmp(got, "PING", 4))
		fail("the master read '%s', not PING first", got);
	int rc = protocol_report();
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return rc;
}
