/* epoll: an epoll instance whose registrations must survive a dump and restore.
 *   fd 20  epoll (FD_CLOEXEC) watching:
 *            fd 21 eventfd (counter 1)  EPOLLIN|EPOLLET, data 0x1122334455667788
 *            fd 22 pipe read end        EPOLLIN|EPOLLRDHUP, data 22 (empty: not ready)
 *            fd 23 pipe write end       EPOLLOUT, data 0xfffffffffffffffe
 *   fd 24  a second epoll watching fd 20 itself (nested), EPOLLIN, data 7
 * Check: /proc/self/fdinfo/20 lists exactly those targets with those events and data; an
 * epoll_wait reports 21 and 23 ready with their data; the nested epoll sees fd 20 ready.
 * Break kinds: data, events, extra. */
#include "common.h"

#include <inttypes.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

static const char *const break_kinds[] = { "data", "events", "extra", NULL };

struct reg {
	int fd;
	uint32_t events;
	uint64_t data;
};

static const struct reg regs[] = {
	{ 21, EPOLLIN | EPOLLET, 0x1122334455667788ULL },
	{ 22, EPOLLIN | EPOLLRDHUP, 22 },
	{ 23, EPOLLOUT, 0xfffffffffffffffeULL },
};

static void at(int fd, int want, int cloexec)
{
	if (fd < 0 || (fd != want && (dup3(fd, want, cloexec) != want || close(fd) != 0))) {
		write_result("ERROR setup fd %d: %s\n", want, strerror(errno));
		exit(2);
	}
}

/* Every "tfd:" line of /proc/self/fdinfo/FD must be one of `regs`, and each of them present. */
static void check_fdinfo(int epfd)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", epfd);
	FILE *f = fopen(path, "r");
	if (!f) {
		fail("open %s: %s", path, strerror(errno));
		return;
	}
	int seen = 0;
	while (fgets(line, sizeof(line), f)) {
		int tfd;
		unsigned events;
		unsigned long long data;
		if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events, &data) != 3)
			continue;
		int found = 0;
		for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
			if (regs[i].fd != tfd)
				continue;
			found = 1;
			seen++;
			/* the kernel adds EPOLLERR|EPOLLHUP to every registration */
			if ((events & ~(unsigned)(EPOLLERR | EPOLLHUP)) != regs[i].events)
				fail("tfd %d events %x, want %x", tfd, events, regs[i].events);
			if (data != regs[i].data)
				fail("tfd %d data %llx, want %llx", tfd, data, (unsigned long long)regs[i].data);
		}
		if (!found)
			fail("epoll watches an unexpected fd %d", tfd);
	}
	fclose(f);
	if (seen != (int)(sizeof(regs) / sizeof(regs[0])))
		fail("epoll watches %d fds, want %zu", seen, sizeof(regs) / sizeof(regs[0]));
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, break_kinds, 0);
	for (int fd = 3; fd < 64; fd++)
		close(fd);
	at(epoll_create1(EPOLL_CLOEXEC), 20, O_CLOEXEC);
	at(eventfd(1, 0), 21, 0);
	int p[2];
	if (pipe(p) != 0)
		return 2;
	at(p[0], 22, 0);
	at(p[1], 23, 0);
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
		struct epoll_event ev = { .events = regs[i].events, .data.u64 = regs[i].data };
		if (epoll_ctl(20, EPOLL_CTL_ADD, regs[i].fd, &ev) != 0) {
			write_result("ERROR epoll_ctl %d: %s\n", regs[i].fd, strerror(errno));
			return 2;
		}
	}
	at(epoll_create1(0), 24, 0);
	struct epoll_event nested = { .events = EPOLLIN, .data.u64 = 7 };
	if (epoll_ctl(24, EPOLL_CTL_ADD, 20, &nested) != 0)
		return 2;

	protocol_ready();
	wait_for_check();

	if (breaking("data")) {
		struct epoll_event ev = { .events = regs[1].events, .data.u64 = 99 };
		epoll_ctl(20, EPOLL_CTL_MOD, 22, &ev);
	}
	if (breaking("events")) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = regs[2].data };
		epoll_ctl(20, EPOLL_CTL_MOD, 23, &ev);
	}
	if (breaking("extra")) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };
		epoll_ctl(20, EPOLL_CTL_ADD, 0, &ev);
	}

	check_fdinfo(20);
	if (fcntl(20, F_GETFD) != FD_CLOEXEC || fcntl(24, F_GETFD) != 0)
		fail("close-on-exec of fds 20/24 is %d/%d", fcntl(20, F_GETFD), fcntl(24, F_GETFD));
	struct epoll_event ready[8];
	int nested_n = epoll_wait(24, ready, 8, 0);
	if (nested_n != 1 || ready[0].data.u64 != 7)
		fail("nested epoll: %d ready", nested_n);
	int n = epoll_wait(20, ready, 8, 0);
	int got21 = 0, got23 = 0;
	for (int i = 0; i < n; i++) {
		got21 |= ready[i].data.u64 == regs[0].data;
		got23 |= ready[i].data.u64 == regs[2].data;
	}
	if (!got21 || !got23)
		fail("epoll_wait gave %d events (eventfd %s, pipe write end %s)", n, got21 ? "ready" : "missing", got23 ? "ready" : "missing");
	return protocol_report();
}
