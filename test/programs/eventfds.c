/* eventfds: eventfd, signalfd and timerfd state that must survive a dump and restore.
 *   fd 10  eventfd, counter 7, EFD_NONBLOCK
 *   fd 11  eventfd, counter 3, EFD_SEMAPHORE, FD_CLOEXEC; fd 12 = dup of 11 (one description)
 *   fd 13  signalfd {SIGUSR2, SIGRTMIN+3}, SFD_NONBLOCK (both blocked)
 *   fd 14  timerfd CLOCK_MONOTONIC, 1000 s left, interval 7.5 s
 *   fd 15  timerfd CLOCK_REALTIME, TFD_TIMER_ABSTIME at now + 3600 s, no interval
 *   fd 16  timerfd CLOCK_MONOTONIC that already fired once (ticks 1), disarmed
 * Check (reads fdinfo first, then consumes): counters, semaphore flag, fd flags, masks, clocks,
 * time left within the time that passed, the absolute deadline never earlier, ticks.
 * Break kinds: counter, mask, timer, ticks, cloexec. */
#include "common.h"

#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

static const char *const break_kinds[] = { "counter", "mask", "timer", "ticks", "cloexec", NULL };

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void at(int fd, int want)
{
	if (fd < 0) {
		write_result("ERROR setup: %s\n", strerror(errno));
		exit(2);
	}
	int cloexec = fcntl(fd, F_GETFD) & FD_CLOEXEC ? O_CLOEXEC : 0;
	if (fd != want && (dup3(fd, want, cloexec) != want || close(fd) != 0)) {
		write_result("ERROR dup2 %d: %s\n", want, strerror(errno));
		exit(2);
	}
}

/* The value of `key:` in /proc/self/fdinfo/FD, or "" */
static const char *fdinfo(int fd, const char *key)
{
	static char value[256];
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	value[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return value;
	size_t n = strlen(key);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, n) == 0 && line[n] == ':') {
			const char *v = line + n + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			snprintf(value, sizeof(value), "%s", v);
			value[strcspn(value, "\n")] = 0;
			break;
		}
	}
	fclose(f);
	return value;
}

static double left(int fd, double *interval)
{
	struct itimerspec its;
	if (timerfd_gettime(fd, &its) != 0)
		return -1;
	if (interval)
		*interval = its.it_interval.tv_sec + its.it_interval.tv_nsec / 1e9;
	return its.it_value.tv_sec + its.it_value.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, break_kinds, 0);
	for (int fd = 3; fd < 64; fd++)
		close(fd);

	at(eventfd(7, EFD_NONBLOCK), 10);
	at(eventfd(3, EFD_SEMAPHORE | EFD_CLOEXEC), 11);
	if (dup3(11, 12, O_CLOEXEC) != 12)
		return 2;

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR2);
	sigaddset(&mask, SIGRTMIN + 3);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	at(signalfd(-1, &mask, SFD_NONBLOCK), 13);

	at(timerfd_create(CLOCK_MONOTONIC, 0), 14);
	struct itimerspec rel = { { 7, 500000000 }, { 1000, 0 } };
	timerfd_settime(14, 0, &rel, NULL);
	double rel_armed_at = mono_now();

	at(timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK), 15);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	time_t deadline = now.tv_sec + 3600;
	struct itimerspec abs = { { 0, 0 }, { deadline, 0 } };
	timerfd_settime(15, TFD_TIMER_ABSTIME, &abs, NULL);

	at(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), 16);
	struct itimerspec once = { { 0, 0 }, { 0, 1000000 } };
	timerfd_settime(16, 0, &once, NULL);
	usleep(20000);

	protocol_ready();
	wait_for_check();

	if (breaking("counter"))
		eventfd_write(10, 1);
	if (breaking("mask")) {
		sigset_t other;
		sigemptyset(&other);
		sigaddset(&other, SIGUSR2);
		signalfd(13, &other, 0);
	}
	if (breaking("timer")) {
		struct itimerspec changed = { { 7, 0 }, { 500, 0 } };
		timerfd_settime(14, 0, &changed, NULL);
	}
	if (breaking("ticks")) {
		uint64_t drained;
		if (read(16, &drained, sizeof(drained)) < 0)
			fail("drain: %s", strerror(errno));
	}
	if (breaking("cloexec"))
		fcntl(12, F_SETFD, 0);

	/* eventfd 10: counter 7, O_NONBLOCK, no semaphore */
	if (strcmp(fdinfo(10, "eventfd-count"), "7") != 0)
		fail("fd 10 eventfd-count '%s', want 7", fdinfo(10, "eventfd-count"));
	if (strcmp(fdinfo(10, "eventfd-semaphore"), "0") != 0)
		fail("fd 10 is a semaphore");
	if (!(fcntl(10, F_GETFL) & O_NONBLOCK) || fcntl(10, F_GETFD) != 0)
		fail("fd 10 flags %o/%d", fcntl(10, F_GETFL), fcntl(10, F_GETFD));
	/* eventfd 11/12: counter 3, semaphore, one description, both close-on-exec */
	if (strcmp(fdinfo(11, "eventfd-count"), "3") != 0 || strcmp(fdinfo(11, "eventfd-semaphore"), "1") != 0)
		fail("fd 11 count '%s' semaphore '%s'", fdinfo(11, "eventfd-count"), fdinfo(11, "eventfd-semaphore"));
	if (fcntl(11, F_GETFD) != FD_CLOEXEC || fcntl(12, F_GETFD) != FD_CLOEXEC)
		fail("fd 11/12 not close-on-exec");
	if (fcntl(11, F_GETFL) & O_NONBLOCK)
		fail("fd 11 became O_NONBLOCK");
	uint64_t v = 0;
	if (read(12, &v, sizeof(v)) != sizeof(v) || v != 1)
		fail("semaphore read through fd 12 gave %llu", (unsigned long long)v);
	if (strcmp(fdinfo(11, "eventfd-count"), "2") != 0)
		fail("fds 11 and 12 are not one eventfd (count '%s' after a read of 12)", fdinfo(11, "eventfd-count"));
	if (read(10, &v, sizeof(v)) != sizeof(v) || v != 7)
		fail("fd 10 read %llu", (unsigned long long)v);

	/* signalfd 13 */
	if (strcmp(fdinfo(13, "sigmask"), "0000001000000800") != 0)
		fail("fd 13 sigmask %s", fdinfo(13, "sigmask"));
	if (!(fcntl(13, F_GETFL) & O_NONBLOCK))
		fail("fd 13 not O_NONBLOCK");
	raise(SIGUSR2);
	struct signalfd_siginfo si;
	if (read(13, &si, sizeof(si)) != sizeof(si) || si.ssi_signo != SIGUSR2)
		fail("signalfd read did not give SIGUSR2");

	/* timerfd 14: relative, CLOCK_MONOTONIC; time left <= 1000 - time passed (monotonic kept) */
	double interval = 0, elapsed = mono_now() - rel_armed_at;
	double l14 = left(14, &interval);
	if (strcmp(fdinfo(14, "clockid"), "1") != 0)
		fail("fd 14 clockid %s", fdinfo(14, "clockid"));
	if (interval != 7.5)
		fail("fd 14 interval %.9f, want 7.5", interval);
	/* The time a task spends dumped does not count: never more than 1000, never less than what
	 * the program itself lived through. */
	if (l14 > 1000.01 || l14 < 1000 - elapsed - 1)
		fail("fd 14 left %.3f s, want between %.3f and 1000", l14, 1000 - elapsed);
	/* timerfd 15: absolute CLOCK_REALTIME deadline */
	clock_gettime(CLOCK_REALTIME, &now);
	double l15 = left(15, &interval);
	double want15 = deadline - (now.tv_sec + now.tv_nsec / 1e9);
	if (strcmp(fdinfo(15, "clockid"), "0") != 0 || strcmp(fdinfo(15, "settime flags"), "01") != 0)
		fail("fd 15 clockid %s settime flags %s", fdinfo(15, "clockid"), fdinfo(15, "settime flags"));
	/* Like CRIU, a restore re-arms an absolute timer at "now + time left at dump": the
	 * deadline may move later by the time spent dumped, never earlier, and never more than
	 * the 3600 s it had. */
	if (l15 < want15 - 2 || l15 > 3600.01)
		fail("fd 15 left %.3f s, want between %.3f and 3600", l15, want15);
	if (!(fcntl(15, F_GETFL) & O_NONBLOCK))
		fail("fd 15 not O_NONBLOCK");
	/* timerfd 16: one pending expiration */
	uint64_t ticks = 0;
	if (read(16, &ticks, sizeof(ticks)) != sizeof(ticks) || ticks != 1)
		fail("fd 16 ticks %llu, want 1", (unsigned long long)ticks);
	return protocol_report();
}
