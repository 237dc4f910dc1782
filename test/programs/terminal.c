/* terminal: a program run on a terminal, as a shell job is. It opens the pty slave named by
 * argv[2] as fds 0, 1 and 2 (one description), and puts it in non-canonical mode without echo
 * (VMIN 1, VTIME 0), as an editor does.
 * Check (SIGUSR1): fds 0-2 are terminals with that mode, one byte arrives on fd 0 within 5 s
 * (the test writes "x" on the master), and "pong" goes out on fd 1.
 * Break: echo (ECHO and ICANON back on before the check). */
#include "common.h"
#include <poll.h>
#include <termios.h>

static const char *const breaks[] = { "echo", NULL };

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	if (argc < 3) {
		write_result("ERROR usage: terminal RESULT_FILE /dev/pts/N\n");
		return 2;
	}
	int fd = open(argv[2], O_RDWR | O_NOCTTY);
	if (fd < 0 || dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		return 3;
	close(fd);
	struct termios mode;
	if (tcgetattr(0, &mode))
		return 4;
	mode.c_lflag &= ~(ECHO | ICANON);
	mode.c_cc[VMIN] = 1;
	mode.c_cc[VTIME] = 0;
	if (tcsetattr(0, TCSANOW, &mode))
		return 5;
	protocol_ready();
	wait_for_check();
	if (breaking("echo")) {
		mode.c_lflag |= ECHO | ICANON;
		tcsetattr(0, TCSANOW, &mode);
	}
	for (int i = 0; i < 3; i++)
		if (!isatty(i))
			fail("fd %d is not a terminal", i);
	struct termios now;
	if (tcgetattr(0, &now))
		fail("tcgetattr: %s", strerror(errno));
	else if (now.c_lflag & (ECHO | ICANON))
		fail("the terminal echoes or is canonical again (c_lflag %#o)", now.c_lflag);
	else if (now.c_cc[VMIN] != 1 || now.c_cc[VTIME] != 0)
		fail("VMIN %d VTIME %d, not 1 and 0", now.c_cc[VMIN], now.c_cc[VTIME]);
	struct pollfd in = { .fd = 0, .events = POLLIN };
	char byte = 0;
	if (poll(&in, 1, 5000) != 1 || read(0, &byte, 1) != 1)
		fail("no byte came on fd 0 within 5 s");
	else if (byte != 'x')
		fail("fd 0 read '%c', not 'x'", byte);
	if (write(1, "pong\n", 5) != 5)
		fail("writing to fd 1: %s", strerror(errno));
	return protocol_report();
}
