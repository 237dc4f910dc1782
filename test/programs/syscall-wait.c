/* Self-checking syscall-restart program: the process sits in one blocking syscall while it is
 * dumped, and after a restore that syscall must complete or restart the way the kernel would
 * have done it. Usage: syscall-wait RESULT_FILE read|nanosleep|futex|waitpid [SECONDS]
 *   read      blocked in read() on a pipe it owns both ends of; the SIGUSR1 handler (SA_RESTART)
 *             writes the expected bytes, the restarted read must return them, never EINTR.
 *   nanosleep sleeps SECONDS (default 2) again and again, resuming with the remainder after an
 *             interruption; every completed sleep must have lasted at least SECONDS.
 *   futex     FUTEX_WAIT on a word that is 0; the handler (SA_RESTART) sets it to 1 and wakes;
 *             the wait must end with the word at 1, never EINTR.
 *   waitpid   waits for a child that sits in pause(); the handler tells it to exit 42; the
 *             restarted waitpid must reap exactly that child with status 42, never EINTR. */
#include "common.h"
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char message[] = "data written after the restore";
static int pipe_ends[2];
static volatile uint32_t futex_word;
static pid_t waited_child;

static void on_check_read(int sig)
{
	(void)sig;
	check_requested = 1;
	const char *text = breaking("result") ? "damaged data written after restore" : message;
	if (write(pipe_ends[1], text, sizeof(message) - 1) < 0)
		_exit(3);
}

static void on_check_futex(int sig)
{
	(void)sig;
	check_requested = 1;
	futex_word = breaking("result") ? 2 : 1;
	syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void on_check_waitpid(int sig)
{
	(void)sig;
	check_requested = 1;
	kill(waited_child, breaking("result") ? SIGTERM : SIGUSR2);
}

static void child_exit_42(int sig)
{
	(void)sig;
	_exit(42);
}

static void wait_in_read(void)
{
	if (pipe(pipe_ends) != 0)
		exit(3);
	catch_signal(SIGUSR1, on_check_read, SA_RESTART);
	protocol_ready();
	char got[sizeof(message)] = "";
	ssize_t n = read(pipe_ends[0], got, sizeof(message) - 1);
	if (n < 0)
		fail("read failed: %s", strerror(errno));
	else if ((size_t)n != sizeof(message) - 1 || memcmp(got, message, n) != 0)
		fail("read returned %zd bytes '%.*s'", n, (int)n, got);
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void wait_in_nanosleep(double seconds)
{
	protocol_ready();
	for (;;) {
		double started = now_seconds();
		struct timespec request = { (time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9) };
		struct timespec remaining;
		while (nanosleep(&request, &remaining) != 0) {
			if (errno != EINTR) {
				fail("nanosleep failed: %s", strerror(errno));
				return;
			}
			request = remaining;
		}
		if (check_requested && breaking("result"))
			started += seconds; /* pretend the sleep started later than it did */
		double slept = now_seconds() - started;
		if (slept < seconds)
			fail("a %.3f s nanosleep ended after %.3f s", seconds, slept);
		if (check_requested || first_failure[0])
			return;
	}
}

static void wait_in_futex(void)
{
	catch_signal(SIGUSR1, on_check_futex, SA_RESTART);
	protocol_ready();
	while (futex_word == 0) {
		long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		if (r != 0 && errno != EAGAIN) {
			fail("futex wait failed: %s", strerror(errno));
			return;
		}
	}
	if (futex_word != 1)
		fail("futex word is %u, expected 1", futex_word);
}

static void wait_in_waitpid(void)
{
	/* SIGUSR2 stays blocked in the child until its handler is in place: a check asked for
	 * right after READY must not find it still with the default action (killed by SIGUSR2). */
	sigset_t usr2, old;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_BLOCK, &usr2, &old);
	waited_child = fork();
	if (waited_child < 0)
		exit(3);
	if (waited_child == 0) {
		signal(SIGUSR1, SIG_IGN);
		signal(SIGUSR2, child_exit_42);
		sigprocmask(SIG_SETMASK, &old, NULL);
		for (;;)
			pause();
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	catch_signal(SIGUSR1, on_check_waitpid, SA_RESTART);
	protocol_ready();
	int status = 0;
	pid_t reaped = waitpid(waited_child, &status, 0);
	if (reaped < 0)
		fail("waitpid failed: %s", strerror(errno));
	else if (reaped != waited_child)
		fail("waitpid reaped %d, expected %d", reaped, waited_child);
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 42)
		fail("child status %#x, expected exit 42", status);
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = { "result", NULL };
	protocol_start(argc, argv, kinds, SA_RESTART);
	const char *which = argc > 2 ? argv[2] : "";
	if (strcmp(which, "read") == 0)
		wait_in_read();
	else if (strcmp(which, "nanosleep") == 0)
		wait_in_nanosleep(argc > 3 ? atof(argv[3]) : 2.0);
	else if (strcmp(which, "futex") == 0)
		wait_in_futex();
	else if (strcmp(which, "waitpid") == 0)
		wait_in_waitpid();
	else {
		write_result("ERROR syscall must be read, nanosleep, futex or waitpid\n");
		return 2;
	}
	return protocol_report();
}
