/* Self-checking signal-driven I/O program: a pipe read at 70 (written at 71) with O_ASYNC, owned
 * by this process (F_SETOWN) and signalling SIGUSR2 (F_SETSIG); a socketpair end at 72 (the other
 * at 73) with O_ASYNC, owned by this process's group (F_SETOWN with -pgid), plain SIGIO.
 * Check: the owners, the signal and O_ASYNC are as set, a byte written to 71 brings SIGUSR2 and
 * one sent on 73 brings SIGIO. Break kind: owner (70's owner taken away).
 * Usage: fown RESULT_FILE */
#include "common.h"
#include <sys/socket.h>

static const char *const break_kinds[] = { "owner", NULL };
static volatile sig_atomic_t usr2, sigio;

static void on_usr2(int sig)
{
	(void)sig;
	usr2++;
}

static void on_sigio(int sig)
{
	(void)sig;
	sigio++;
}

static void must(int ok, const char *what)
{
	if (!ok) {
		write_result("ERROR %s: %s\n", what, strerror(errno));
		exit(2);
	}
}

/* Waits up to a second for *count to move past `before`. */
static int arrived(volatile sig_atomic_t *count, int before)
{
	for (int i = 0; i < 100 && *count == before; i++) {
		struct timespec ten_ms = { 0, 10 * 1000 * 1000 };
		nanosleep(&ten_ms, NULL);
	}
	return *count != before;
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, break_kinds, SA_RESTART);
	catch_signal(SIGUSR2, on_usr2, SA_RESTART);
	catch_signal(SIGIO, on_sigio, SA_RESTART);
	int p[2], s[2];
	must(pipe(p) == 0 && dup2(p[0], 70) == 70 && dup2(p[1], 71) == 71, "pipe");
	must(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0 && dup2(s[0], 72) == 72 && dup2(s[1], 73) == 73, "socketpair");
	close(p[0]), close(p[1]), close(s[0]), close(s[1]);
	must(fcntl(70, F_SETOWN, getpid()) == 0 && fcntl(70, F_SETSIG, SIGUSR2) == 0 && fcntl(70, F_SETFL, O_ASYNC | O_NONBLOCK) == 0, "pipe owner");
	must(fcntl(72, F_SETOWN, -getpgrp()) == 0 && fcntl(72, F_SETFL, O_ASYNC) == 0, "socket owner");
	protocol_ready();
	wait_for_check();
	if (breaking("owner"))
		fcntl(70, F_SETOWN, 0);
	if (fcntl(70, F_GETOWN) != getpid())
		fail("fd 70's owner is %d, not this process %d", fcntl(70, F_GETOWN), (int)getpid());
	if (fcntl(70, F_GETSIG) != SIGUSR2)
		fail("fd 70 signals %d, not SIGUSR2", fcntl(70, F_GETSIG));
	if ((fcntl(70, F_GETFL) & (O_ASYNC | O_NONBLOCK)) != (O_ASYNC | O_NONBLOCK))
		fail("fd 70's flags %#o lack O_ASYNC or O_NONBLOCK", fcntl(70, F_GETFL));
	if (fcntl(72, F_GETOWN) != -getpgrp())
		fail("fd 72's owner is %d, not this process group (-%d)", fcntl(72, F_GETOWN), (int)getpgrp());
	if (!(fcntl(72, F_GETFL) & O_ASYNC))
		fail("fd 72 lacks O_ASYNC");
	int before = usr2;
	if (write(71, "x", 1) != 1 || !arrived(&usr2, before))
		fail("no SIGUSR2 for a byte in the pipe");
	before = sigio;
	if (send(73, "y", 1, 0) != 1 || !arrived(&sigio, before))
		fail("no SIGIO for a byte on the socket");
	return protocol_report();
}
