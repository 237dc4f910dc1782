/* Self-checking unix socket program. Variants (default: all of them, each at its own fds):
 *   pairs     socketpairs: stream 10/11, dgram 12/13 (13 O_NONBLOCK), seqpacket 14/15 (15 CLOEXEC)
 *   path      dgram sockets bound to <dir>/dg-a (20) and <dir>/dg-b (21), 21 connected to 20
 *   abstract  dgram bound to an abstract name (22) and one connected to it (23); a stream listener
 *             on an abstract name (24)
 *   listen    stream listener bound to <dir>/listen (40, backlog 8) with two connections not yet
 *             accepted from 41 and 42
 *   queues    data queued both ways: stream 50/51, dgram 52/53, seqpacket 54/55 (packet bounds)
 *   shutdown  stream 60/61: 60 wrote "bye" then shut down writing
 *   options   dgram 70: SO_PASSCRED, SO_SNDBUF, SO_RCVBUF, SO_RCVTIMEO, SO_PRIORITY
 * Check: every fd is a socket of its type and flags, names and peers are the same, queued data
 * comes out byte for byte with its packet bounds, pairs still talk both ways, a pending
 * connection can be accepted and talks, shutdown state holds, options are equal.
 *   creds     (only when named) a datagram queued for dgram 92 (SO_PASSCRED; sender 91) by a child
 *             that dropped to uid 65534, gid 65533: received with that child's pid, uid and gid
 *   inflight-epoll  (only when named) an epoll instance sent on 89 and not received: refused
 *   inflight  (only when named) fds sent and not yet received: on stream 80/81 a file at offset 3
 *             and both ends of a pipe with data (its write end kept at 84), on dgram 82/83 one
 *             end of the pair 85/86; a child holds the file at 87; to dgram 88, bound to
 *             <dir>/inflight-dg, /dev/null from a socket closed since; checked: each comes
 *             with its message, reads and talks, the file is the child's description
 * Usage: unixsk RESULT_FILE [variant...]. Break kinds: data, peer, option, name, inflight. */
#include "common.h"
#include <stdbool.h>
#include <stddef.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/epoll.h>
#include <linux/kcmp.h>

static const char *const break_kinds[] = { "data", "peer", "option", "name", "inflight", NULL };
static char dir[4096];
static bool checking; /* set-up errors are ERRORs; check-time ones are FAILs */
static char abstract_dg[64], abstract_st[64];
static int opt_before[6];
static pid_t inflight_child, creds_child;

static bool want(int argc, char **argv, const char *v)
{
	if (argc <= 2)
		return true;
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], v))
			return true;
	return false;
}

static void must(bool ok, const char *what)
{
	if (!ok) {
		write_result("ERROR %s: %s\n", what, strerror(errno));
		exit(2);
	}
}

static void at(int fd, int want_fd)
{
	must(fd >= 0, "socket");
	if (fd != want_fd) {
		must(dup2(fd, want_fd) == want_fd, "dup2");
		close(fd);
	}
}

static socklen_t addr_of(struct sockaddr_un *sa, const char *name, bool abstract)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	size_t n = strlen(name);
	memcpy(sa->sun_path + (abstract ? 1 : 0), name, n);
	/* a path name's length counts its NUL, as getsockname reports it */
	return offsetof(struct sockaddr_un, sun_path) + n + 1;
}

static int bound(int type, const char *name, bool abstract, int fd)
{
	struct sockaddr_un sa;
	socklen_t len = addr_of(&sa, name, abstract);
	at(socket(AF_UNIX, type, 0), fd);
	must(bind(fd, (struct sockaddr *)&sa, len) == 0, "bind");
	return fd;
}

static void connect_to(int fd, const char *name, bool abstract)
{
	struct sockaddr_un sa;
	socklen_t len = addr_of(&sa, name, abstract);
	int rc = connect(fd, (struct sockaddr *)&sa, len);
	if (checking && rc != 0)
		fail("connect to '%s': %s", name, strerror(errno));
	else
		must(rc == 0, "connect");
}

static void pair(int type, int a, int b)
{
	int sv[2];
	must(socketpair(AF_UNIX, type, 0, sv) == 0, "socketpair");
	int tmp = fcntl(sv[1], F_DUPFD, 900);
	close(sv[1]);
	at(sv[0], a);
	at(tmp, b);
}

/* During set-up a failed send is an ERROR; during the check it is a FAIL (never a SIGPIPE). */
static void put(int fd, const char *text)
{
	ssize_t n = send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
	if (checking && n != (ssize_t)strlen(text))
		fail("send '%s' on fd %d: %s", text, fd, n < 0 ? strerror(errno) : "short");
	else
		must(n == (ssize_t)strlen(text), "send");
}

/* The next packet (or stream bytes) must be `text` exactly, without waiting. */
static void expect(int fd, const char *text, const char *what)
{
	char buf[4096];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	if (n < 0) {
		fail("%s: recv fd %d: %s", what, fd, strerror(errno));
		return;
	}
	buf[n] = 0;
	if ((size_t)n != strlen(text) || memcmp(buf, text, n))
		fail("%s: fd %d got '%s', want '%s'", what, fd, buf, text);
}

static void expect_empty(int fd, const char *what)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
	if (!(n < 0 && errno == EAGAIN))
		fail("%s: fd %d is not empty (%zd)", what, fd, n);
}

static void talks(int a, int b, const char *what)
{
	put(a, "ping");
	expect(b, "ping", what);
	put(b, "pong");
	expect(a, "pong", what);
}

static void send_fds(int sock, const char *text, const int *fds, int n)
{
	struct iovec iov = { (void *)text, strlen(text) };
	char control[CMSG_SPACE(sizeof(int) * 4)];
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = CMSG_SPACE(sizeof(int) * n) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	must(sendmsg(sock, &m, MSG_DONTWAIT) == (ssize_t)strlen(text), "sendmsg with fds");
}

/* The next message must be `text` with `n` fds, stored in fds[] (-1 each when not). */
static void expect_fds(int sock, const char *text, int *fds, int n, const char *what)
{
	char buf[256], control[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = { buf, sizeof(buf) - 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
	for (int i = 0; i < n; i++)
		fds[i] = -1;
	ssize_t got = recvmsg(sock, &m, MSG_DONTWAIT);
	if (got < 0) {
		fail("%s: recvmsg fd %d: %s", what, sock, strerror(errno));
		return;
	}
	buf[got] = 0;
	if (strcmp(buf, text))
		fail("%s: fd %d got '%s', want '%s'", what, sock, buf, text);
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	int count = c && c->cmsg_type == SCM_RIGHTS ? (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int)) : 0;
	if (count != n) {
		fail("%s: %d fds came with it, want %d", what, count, n);
		return;
	}
	memcpy(fds, CMSG_DATA(c), sizeof(int) * n);
}

static void is_socket(int fd, int type, int status_flags, int fd_flags)
{
	int got = -1;
	socklen_t len = sizeof(got);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &got, &len) != 0 || got != type) {
		fail("fd %d: type %d, want %d (%s)", fd, got, type, strerror(errno));
		return;
	}
	if ((fcntl(fd, F_GETFL) & O_NONBLOCK) != (status_flags & O_NONBLOCK))
		fail("fd %d: O_NONBLOCK differs", fd);
	if (fcntl(fd, F_GETFD) != fd_flags)
		fail("fd %d: FD_CLOEXEC differs", fd);
}

/* getsockname/getpeername must be `name` (abstract: with its leading NUL). */
static void named(int fd, bool peer, const char *name, bool abstract)
{
	struct sockaddr_un want_sa, got;
	socklen_t want_len = addr_of(&want_sa, name, abstract), len = sizeof(got);
	int rc = peer ? getpeername(fd, (struct sockaddr *)&got, &len) : getsockname(fd, (struct sockaddr *)&got, &len);
	if (rc != 0 || len != want_len || memcmp(&got, &want_sa, len))
		fail("fd %d: %s name differs (%s)", fd, peer ? "peer" : "own", rc ? strerror(errno) : "bytes");
}

static void read_options(int fd, int *out)
{
	const int names[] = { SO_PASSCRED, SO_SNDBUF, SO_RCVBUF, SO_PRIORITY };
	for (int i = 0; i < 4; i++) {
		socklen_t len = sizeof(int);
		getsockopt(fd, SOL_SOCKET, names[i], &out[i], &len);
	}
	struct timeval tv;
	socklen_t len = sizeof(tv);
	getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len);
	out[4] = (int)tv.tv_sec;
	out[5] = (int)tv.tv_usec;
}

static void set_up(int argc, char **argv)
{
	char path[4200];
	if (want(argc, argv, "pairs")) {
		pair(SOCK_STREAM, 10, 11);
		pair(SOCK_DGRAM, 12, 13);
		fcntl(13, F_SETFL, O_NONBLOCK);
		pair(SOCK_SEQPACKET, 14, 15);
		fcntl(15, F_SETFD, FD_CLOEXEC);
	}
	if (want(argc, argv, "path")) {
		snprintf(path, sizeof(path), "%s/dg-a", dir);
		bound(SOCK_DGRAM, path, false, 20);
		snprintf(path, sizeof(path), "%s/dg-b", dir);
		bound(SOCK_DGRAM, path, false, 21);
		snprintf(path, sizeof(path), "%s/dg-a", dir);
		connect_to(21, path, false);
	}
	if (want(argc, argv, "abstract")) {
		bound(SOCK_DGRAM, abstract_dg, true, 22);
		at(socket(AF_UNIX, SOCK_DGRAM, 0), 23);
		connect_to(23, abstract_dg, true);
		bound(SOCK_STREAM, abstract_st, true, 24);
		must(listen(24, 4) == 0, "listen");
	}
	if (want(argc, argv, "listen")) {
		snprintf(path, sizeof(path), "%s/listen", dir);
		bound(SOCK_STREAM, path, false, 40);
		must(listen(40, 8) == 0, "listen");
		at(socket(AF_UNIX, SOCK_STREAM, 0), 41);
		connect_to(41, path, false);
		at(socket(AF_UNIX, SOCK_STREAM, 0), 42);
		connect_to(42, path, false);
	}
	if (want(argc, argv, "queues")) {
		pair(SOCK_STREAM, 50, 51);
		put(50, "stream one,");
		put(50, "stream two");
		put(51, "back the other way");
		pair(SOCK_DGRAM, 52, 53);
		put(52, "d1");
		put(52, "datagram 2");
		put(52, "3");
		put(53, "reverse datagram");
		pair(SOCK_SEQPACKET, 54, 55);
		put(54, "record A");
		put(54, "record BB");
		put(55, "record back");
	}
	if (want(argc, argv, "shutdown")) {
		pair(SOCK_STREAM, 60, 61);
		put(60, "bye");
		must(shutdown(60, SHUT_WR) == 0, "shutdown");
	}
	if (argc > 2 && want(argc, argv, "inflight")) {
		/* fds sent and not yet received: a file at offset 3 (closed here), both ends of a pipe
		 * holding "piped" (the write end also kept at 84), and over dgram 82/83 one end of the
		 * pair 85/86 (86 closed here) */
		pair(SOCK_STREAM, 80, 81);
		pair(SOCK_DGRAM, 82, 83);
		pair(SOCK_STREAM, 85, 86);
		char path[4200];
		snprintf(path, sizeof(path), "%s/inflight-file", dir);
		int file = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		must(file >= 0 && write(file, "0123456789", 10) == 10 && lseek(file, 3, SEEK_SET) == 3, "inflight file");
		int p[2];
		must(pipe(p) == 0 && write(p[1], "piped", 5) == 5, "pipe");
		/* a child holds the file's description too, at 87: the one in flight must stay it */
		inflight_child = fork();
		must(inflight_child >= 0, "fork");
		if (inflight_child == 0) {
			must(dup2(file, 87) == 87, "dup2");
			for (int fd = 3; fd < 1024; fd++)
				if (fd != 87)
					close(fd);
			for (;;)
				pause();
		}
		send_fds(80, "file", (int[]){ file }, 1);
		put(80, "plain,");
		send_fds(80, "pipe", p, 2);
		send_fds(82, "sock", (int[]){ 86 }, 1);
		/* a datagram with an fd from a sender gone since, to dgram 88 bound to <dir>/inflight-dg */
		snprintf(path, sizeof(path), "%s/inflight-dg", dir);
		bound(SOCK_DGRAM, path, false, 88);
		int gone = socket(AF_UNIX, SOCK_DGRAM, 0), null = open("/dev/null", O_WRONLY);
		must(gone >= 0 && null >= 0, "socket, /dev/null");
		connect_to(gone, path, false);
		send_fds(gone, "named", &null, 1);
		close(gone), close(null);
		must(dup2(p[1], 84) == 84, "dup2");
		close(file), close(p[0]), close(p[1]), close(86);
	}
	if (argc > 2 && want(argc, argv, "creds")) {
		/* a datagram queued for 92 (SO_PASSCRED) by a child that dropped to uid 65534, gid 65533 */
		pair(SOCK_DGRAM, 91, 92);
		int one = 1;
		must(setsockopt(92, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) == 0, "SO_PASSCRED");
		creds_child = fork();
		must(creds_child >= 0, "fork");
		if (creds_child == 0) {
			if (setresgid(65533, 65533, 65533) || setresuid(65534, 65534, 65534) || send(91, "from child", 10, 0) != 10)
				_exit(3);
			for (;;)
				pause();
		}
		char c;
		for (int i = 0; i < 500 && recv(92, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0; i++)
			usleep(10000);
	}
	if (argc > 2 && want(argc, argv, "inflight-epoll")) {
		/* an epoll instance sent and not yet received: the dump must refuse it (checks nothing) */
		pair(SOCK_STREAM, 89, 90);
		int ep = epoll_create1(0);
		must(ep >= 0, "epoll_create1");
		send_fds(89, "epoll", &ep, 1);
		close(ep);
	}
	if (want(argc, argv, "options")) {
		at(socket(AF_UNIX, SOCK_DGRAM, 0), 70);
		int one = 1, snd = 65536, rcv = 100000, prio = 5;
		struct timeval tv = { .tv_sec = 3, .tv_usec = 500000 };
		setsockopt(70, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
		setsockopt(70, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd));
		setsockopt(70, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
		setsockopt(70, SOL_SOCKET, SO_PRIORITY, &prio, sizeof(prio));
		setsockopt(70, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		read_options(70, opt_before);
	}
}

static void damage(void)
{
	char c[64];
	if (!strcmp(break_kind, "data"))
		recv(50, c, 3, MSG_DONTWAIT), recv(12, c, 1, MSG_DONTWAIT), recv(13, c, 1, MSG_DONTWAIT), recv(55, c, 64, MSG_DONTWAIT);
	else if (!strcmp(break_kind, "peer"))
		pair(SOCK_STREAM, 10, 900), pair(SOCK_DGRAM, 22, 901), pair(SOCK_STREAM, 41, 902), pair(SOCK_STREAM, 61, 903);
	else if (!strcmp(break_kind, "option")) {
		int zero = 0;
		setsockopt(70, SOL_SOCKET, SO_PASSCRED, &zero, sizeof(zero));
	} else if (!strcmp(break_kind, "name"))
		close(20), close(22), close(24), close(40);
	else if (!strcmp(break_kind, "inflight"))
		recv(81, c, 4, MSG_DONTWAIT); /* takes "file" and drops the fd in flight */
}

static void check(int argc, char **argv)
{
	char path[4200];
	if (want(argc, argv, "pairs")) {
		is_socket(10, SOCK_STREAM, 0, 0);
		is_socket(13, SOCK_DGRAM, O_NONBLOCK, 0);
		is_socket(15, SOCK_SEQPACKET, 0, FD_CLOEXEC);
		talks(10, 11, "stream pair");
		talks(12, 13, "dgram pair");
		talks(14, 15, "seqpacket pair");
	}
	if (want(argc, argv, "path")) {
		snprintf(path, sizeof(path), "%s/dg-a", dir);
		named(20, false, path, false);
		named(21, true, path, false);
		put(21, "to a");
		expect(20, "to a", "path dgram");
		snprintf(path, sizeof(path), "%s/dg-b", dir);
		named(21, false, path, false);
		struct sockaddr_un sa;
		socklen_t len = addr_of(&sa, path, false);
		if (sendto(20, "to b", 4, 0, (struct sockaddr *)&sa, len) != 4)
			fail("sendto %s: %s", path, strerror(errno));
		expect(21, "to b", "path dgram reply");
	}
	if (want(argc, argv, "abstract")) {
		named(22, false, abstract_dg, true);
		named(23, true, abstract_dg, true);
		put(23, "abstract");
		expect(22, "abstract", "abstract dgram");
		named(24, false, abstract_st, true);
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		connect_to(c, abstract_st, true);
		int s = accept(24, NULL, NULL);
		if (s < 0)
			fail("accept on abstract listener: %s", strerror(errno));
		else
			talks(c, s, "abstract stream"), close(s);
		close(c);
	}
	if (want(argc, argv, "listen")) {
		snprintf(path, sizeof(path), "%s/listen", dir);
		named(40, false, path, false);
		named(41, true, path, false);
		fcntl(40, F_SETFL, O_NONBLOCK);
		int a = accept(40, NULL, NULL), b = accept(40, NULL, NULL), extra = accept(40, NULL, NULL);
		if (a < 0 || b < 0)
			fail("pending connections: accept gave %d, %d (%s)", a, b, strerror(errno));
		else {
			talks(41, a, "first pending connection");
			talks(42, b, "second pending connection");
		}
		if (extra >= 0)
			fail("a third connection was pending");
	}
	if (want(argc, argv, "queues")) {
		expect(51, "stream one,stream two", "stream queue");
		expect(50, "back the other way", "stream queue back");
		expect(53, "d1", "dgram 1");
		expect(53, "datagram 2", "dgram 2");
		expect(53, "3", "dgram 3");
		expect_empty(53, "dgram queue end");
		expect(52, "reverse datagram", "dgram back");
		expect(55, "record A", "seqpacket 1");
		expect(55, "record BB", "seqpacket 2");
		expect(54, "record back", "seqpacket back");
		expect_empty(55, "seqpacket queue end");
	}
	if (want(argc, argv, "shutdown")) {
		expect(61, "bye", "data before shutdown");
		char c;
		ssize_t n = recv(61, &c, 1, MSG_DONTWAIT);
		if (n != 0)
			fail("after shutdown: recv gave %zd, want end of stream (%s)", n, strerror(errno));
		put(61, "still open");
		expect(60, "still open", "the other direction");
		if (send(60, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
			fail("send on a shut-down socket did not fail with EPIPE");
	}
	if (argc > 2 && want(argc, argv, "inflight")) {
		int file, ends[2], sock;
		char buf[16] = { 0 };
		expect_fds(81, "file", &file, 1, "a file in flight");
		if (file >= 0 && (read(file, buf, 4) != 4 || strcmp(buf, "3456")))
			fail("the file in flight reads '%s' at its offset, want '3456'", buf);
		if (file >= 0 && syscall(SYS_kcmp, getpid(), inflight_child, KCMP_FILE, file, 87) != 0)
			fail("the file in flight is not the description child %d holds at 87", (int)inflight_child);
		expect_fds(81, "plain,pipe", ends, 2, "a pipe in flight, after plain bytes");
		if (ends[0] >= 0) {
			memset(buf, 0, sizeof(buf));
			if (read(ends[0], buf, 5) != 5 || strcmp(buf, "piped"))
				fail("the pipe in flight held '%s', want 'piped'", buf);
			memset(buf, 0, sizeof(buf));
			if (write(84, "kept", 4) != 4 || write(ends[1], "sent", 4) != 4 || read(ends[0], buf, 8) != 8 || strcmp(buf, "keptsent"))
				fail("the pipe's write end kept at 84 and the one in flight: read '%s', want 'keptsent'", buf);
		}
		expect_empty(81, "the stream's queue end");
		expect_fds(83, "sock", &sock, 1, "a socket in flight");
		if (sock >= 0)
			talks(sock, 85, "the socket in flight and its peer kept at 85");
		int null;
		expect_fds(88, "named", &null, 1, "an fd in flight to a named dgram socket");
		char link[64] = { 0 }, at_fd[32];
		snprintf(at_fd, sizeof(at_fd), "/proc/self/fd/%d", null);
		if (null >= 0 && (readlink(at_fd, link, sizeof(link) - 1) < 0 || strcmp(link, "/dev/null") || (fcntl(null, F_GETFL) & O_ACCMODE) != O_WRONLY))
			fail("the fd in flight to 88 is '%s', want /dev/null open for writing", link);
	}
	if (argc > 2 && want(argc, argv, "creds")) {
		char buf[32] = { 0 }, control[CMSG_SPACE(sizeof(struct ucred))];
		struct iovec iov = { buf, sizeof(buf) - 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
		ssize_t got = recvmsg(92, &m, MSG_DONTWAIT);
		struct cmsghdr *c = got < 0 ? NULL : CMSG_FIRSTHDR(&m);
		struct ucred u = { 0 };
		if (c && c->cmsg_type == SCM_CREDENTIALS)
			memcpy(&u, CMSG_DATA(c), sizeof(u));
		if (got != 10 || strcmp(buf, "from child") || u.pid != creds_child || u.uid != 65534 || u.gid != 65533)
			fail("the queued datagram: '%s' from pid %d uid %d gid %d, want 'from child' from pid %d uid 65534 gid 65533", buf, (int)u.pid, (int)u.uid, (int)u.gid, (int)creds_child);
	}
	if (want(argc, argv, "options")) {
		int now[6];
		read_options(70, now);
		const char *names[] = { "SO_PASSCRED", "SO_SNDBUF", "SO_RCVBUF", "SO_PRIORITY", "SO_RCVTIMEO sec", "SO_RCVTIMEO usec" };
		for (int i = 0; i < 6; i++)
			if (now[i] != opt_before[i])
				fail("%s is %d, was %d", names[i], now[i], opt_before[i]);
	}
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, break_kinds, 0);
	result_dir(dir, sizeof(dir));
	snprintf(abstract_dg, sizeof(abstract_dg), "crr-unixsk-dg-%d", (int)getpid());
	snprintf(abstract_st, sizeof(abstract_st), "crr-unixsk-st-%d", (int)getpid());
	set_up(argc, argv);
	protocol_ready();
	wait_for_check();
	checking = true;
	if (break_kind)
		damage();
	check(argc, argv);
	int rc = protocol_report();
	if (creds_child > 0)
		kill(creds_child, SIGKILL);
	return rc;
}
