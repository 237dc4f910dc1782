/* inetsk: inet sockets on loopback at fixed fds, ports chosen by the kernel (port 0).
 *   20 T4  TCP/IPv4 listener on 127.0.0.1, SO_REUSEADDR, backlog 7, SO_OOBINLINE, SO_LINGER 5 s
 *   21 T6  TCP/IPv6 listener on [::1], IPV6_V6ONLY, backlog 5, O_NONBLOCK
 *   22 U4  UDP/IPv4 bound to 127.0.0.1, SO_RCVBUF 65536 (as read back), FD_CLOEXEC, IP_TOS 0x10
 *   23 UU  UDP/IPv4, never bound, bound to the lo interface (SO_BINDTODEVICE), a socket filter
 *          that drops everything (SO_ATTACH_FILTER: one BPF_RET 0)
 *   24 UC  UDP/IPv4 connected to U4 (so implicitly bound to 127.0.0.1:<ephemeral>)
 *   25 TC  TCP/IPv4, never bound, not listening
 *   26 R1, 27 R2  UDP/IPv4 on one port of 127.0.0.1, both SO_REUSEPORT; R1 also IP_FREEBIND
 * Recorded right after setup: SO_DOMAIN, SO_TYPE, SO_PROTOCOL, SO_REUSEADDR, SO_REUSEPORT,
 * SO_KEEPALIVE, SO_ACCEPTCONN, SO_OOBINLINE, SO_LINGER, SO_BUF_LOCK (which buffer sizes the
 * program fixed: U4's receive buffer only, the kernel tunes the rest), O_NONBLOCK, FD_CLOEXEC,
 * the getsockname bytes; TCP_KEEPIDLE of T4 (keepalive on, 77 s), IPV6_V6ONLY of T6, SO_RCVBUF
 * and IP_TOS of U4, IP_FREEBIND of R1, the getpeername bytes of UC. Check: all of it unchanged; then the sockets work: a new client
 * connects to T4 and to T6, the listener accepts and 3 bytes cross; UC sends "ping", U4
 * receives it from UC's address. Breaks: port (fd 20 replaced by a listener on another port),
 * option (SO_REUSEADDR turned off on fd 20), buflock (a send buffer size fixed on fd 25). Usage: inetsk RESULT_FILE */
#include "common.h"
#include <arpa/inet.h>
#include <linux/filter.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

enum { P_DOMAIN, P_TYPE, P_PROTOCOL, P_REUSEADDR, P_REUSEPORT, P_KEEPALIVE, P_ACCEPTCONN, P_V6ONLY, P_RCVBUF, P_KEEPIDLE, P_FREEBIND, P_NONBLOCK, P_CLOEXEC, P_OOBINLINE, P_LINGER, P_BUFLOCK, P_TOS, NPROPS };
#define PEER (1u << NPROPS)
static const struct {
	const char *name;
	int level, opt;
} props[NPROPS] = {
	{ "SO_DOMAIN", SOL_SOCKET, SO_DOMAIN },	      { "SO_TYPE", SOL_SOCKET, SO_TYPE },
	{ "SO_PROTOCOL", SOL_SOCKET, SO_PROTOCOL },   { "SO_REUSEADDR", SOL_SOCKET, SO_REUSEADDR },
	{ "SO_REUSEPORT", SOL_SOCKET, SO_REUSEPORT }, { "SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE },
	{ "SO_ACCEPTCONN", SOL_SOCKET, SO_ACCEPTCONN }, { "IPV6_V6ONLY", IPPROTO_IPV6, IPV6_V6ONLY },
	{ "SO_RCVBUF", SOL_SOCKET, SO_RCVBUF },	      { "TCP_KEEPIDLE", IPPROTO_TCP, TCP_KEEPIDLE },
	{ "IP_FREEBIND", IPPROTO_IP, IP_FREEBIND },   { "O_NONBLOCK", 0, 0 },
	{ "FD_CLOEXEC", 0, 0 },			      { "SO_OOBINLINE", SOL_SOCKET, SO_OOBINLINE },
	{ "SO_LINGER (on * 1000 + seconds)", SOL_SOCKET, SO_LINGER }, { "SO_BUF_LOCK", SOL_SOCKET, 72 /* SO_BUF_LOCK */ },
	{ "IP_TOS", IPPROTO_IP, IP_TOS },
};

struct state {
	int val[NPROPS];
	struct sockaddr_storage addr, peer;
	socklen_t addrlen, peerlen;
};
static struct sk {
	int fd;
	const char *name;
	unsigned extra; /* the optional properties this socket records */
	struct state rec;
} sks[] = {
	{ 20, "T4", 1u << P_KEEPIDLE, {} }, { 21, "T6", 1u << P_V6ONLY, {} }, { 22, "U4", 1u << P_RCVBUF | 1u << P_TOS, {} },
	{ 23, "UU", 0, {} }, { 24, "UC", PEER, {} }, { 25, "TC", 0, {} }, { 26, "R1", 1u << P_FREEBIND, {} },
	{ 27, "R2", 0, {} },
};
#define NSKS (int)(sizeof(sks) / sizeof(sks[0]))
static const char *const breaks[] = { "port", "option", "buflock", NULL };

static void need(int ok, const char *what)
{
	if (!ok) {
		write_result("ERROR %s: %s\n", what, strerror(errno));
		exit(2);
	}
}

/* A socket placed at fd `at` (dup3 flags: 0 or O_CLOEXEC). */
static void make(int domain, int type, int at, int flags)
{
	int s = socket(domain, type, 0);
	need(s >= 0 && dup3(s, at, flags) == at && close(s) == 0, "socket");
}

static int prop(int fd, int i)
{
	int v = -1;
	socklen_t len = sizeof(v);
	if (i == P_NONBLOCK)
		return (v = fcntl(fd, F_GETFL)) < 0 ? -1 : !!(v & O_NONBLOCK);
	if (i == P_CLOEXEC)
		return (v = fcntl(fd, F_GETFD)) < 0 ? -1 : !!(v & FD_CLOEXEC);
	if (i == P_LINGER) {
		struct linger l;
		socklen_t llen = sizeof(l);
		return getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &llen) ? -1 : l.l_onoff * 1000 + l.l_linger;
	}
	return getsockopt(fd, props[i].level, props[i].opt, &v, &len) ? -1 : v;
}

static int applies(const struct sk *s, int i)
{
	return (i != P_V6ONLY && i != P_RCVBUF && i != P_KEEPIDLE && i != P_FREEBIND && i != P_TOS) || (s->extra & 1u << i);
}

static void snapshot(const struct sk *s, struct state *st)
{
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < NPROPS; i++)
		st->val[i] = applies(s, i) ? prop(s->fd, i) : 0;
	st->addrlen = sizeof(st->addr);
	if (getsockname(s->fd, (struct sockaddr *)&st->addr, &st->addrlen))
		st->addrlen = 0;
	st->peerlen = sizeof(st->peer);
	if (!(s->extra & PEER) || getpeername(s->fd, (struct sockaddr *)&st->peer, &st->peerlen))
		st->peerlen = 0;
}

static const char *show(const struct sockaddr_storage *a)
{
	static char out[2][80];
	static int k;
	char *o = out[k ^= 1], host[INET6_ADDRSTRLEN] = "?";
	const struct sockaddr_in *in = (const void *)a;
	const struct sockaddr_in6 *in6 = (const void *)a;
	if (a->ss_family == AF_INET)
		snprintf(o, 80, "%s:%d", inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host)), ntohs(in->sin_port));
	else if (a->ss_family == AF_INET6)
		snprintf(o, 80, "[%s]:%d", inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host)), ntohs(in6->sin6_port));
	else
		snprintf(o, 80, "family %d", a->ss_family);
	return o;
}

static void same_address(const struct sk *s, const char *what, const struct sockaddr_storage *now, socklen_t nowlen,
			 const struct sockaddr_storage *was, socklen_t waslen)
{
	if (nowlen != waslen)
		fail("fd %d (%s): %s length is %d, was %d", s->fd, s->name, what, (int)nowlen, (int)waslen);
	else if (memcmp(now, was, nowlen))
		fail("fd %d (%s): %s differs: %s, was %s", s->fd, s->name, what, show(now), show(was));
}

static void compare(const struct sk *s)
{
	struct state now;
	snapshot(s, &now);
	for (int i = 0; i < NPROPS; i++)
		if (now.val[i] != s->rec.val[i])
			fail("fd %d (%s): %s is %d, was %d", s->fd, s->name, props[i].name, now.val[i], s->rec.val[i]);
	same_address(s, "address", &now.addr, now.addrlen, &s->rec.addr, s->rec.addrlen);
	same_address(s, "peer address", &now.peer, now.peerlen, &s->rec.peer, s->rec.peerlen);
}

/* A new client connects to the listener at s->fd, which accepts; 3 bytes cross. */
static void tcp_works(const struct sk *s)
{
	int c = socket(s->rec.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), a = -1;
	char buf[4] = "";
	struct pollfd p = { .fd = s->fd, .events = POLLIN };
	if (c < 0 || connect(c, (const struct sockaddr *)&s->rec.addr, s->rec.addrlen))
		fail("fd %d (%s): connect to %s: %s", s->fd, s->name, show(&s->rec.addr), strerror(errno));
	else if (poll(&p, 1, 5000) != 1 || (a = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		fail("fd %d (%s): no connection to accept within 5 s", s->fd, s->name);
	else if (send(c, "abc", 3, 0) != 3 || (p.fd = a, poll(&p, 1, 5000)) != 1 ||
		 recv(a, buf, 3, MSG_WAITALL) != 3 || memcmp(buf, "abc", 3))
		fail("fd %d (%s): an accepted connection did not carry 3 bytes", s->fd, s->name);
	if (a >= 0)
		close(a);
	if (c >= 0)
		close(c);
}

/* UC (fd 24) sends "ping"; U4 (fd 22) receives it from UC's address. */
static void udp_works(void)
{
	const struct sk *uc = &sks[4];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof(from);
	char buf[16];
	struct pollfd p = { .fd = 22, .events = POLLIN };
	ssize_t n = -1;
	if (send(24, "ping", 4, 0) != 4)
		fail("fd 24 (UC): send: %s", strerror(errno));
	else if (poll(&p, 1, 5000) != 1 || (n = recvfrom(22, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen)) < 0)
		fail("fd 22 (U4): no datagram from fd 24 within 5 s");
	else if (n != 4 || memcmp(buf, "ping", 4))
		fail("fd 22 (U4): received %zd bytes, not \"ping\"", n);
	else
		same_address(&sks[2], "sender of the datagram", &from, fromlen, &uc->rec.addr, uc->rec.addrlen);
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	struct sockaddr_in lo4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 lo6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_storage u4;
	socklen_t u4len = sizeof(u4);
	int one = 1, rcvbuf = 65536;

	make(AF_INET, SOCK_STREAM, 20, 0);
	int idle = 77;
	struct linger linger = { .l_onoff = 1, .l_linger = 5 };
	need(!setsockopt(20, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) && !setsockopt(20, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) &&
		     !setsockopt(20, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) &&
		     !setsockopt(20, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)) && !setsockopt(20, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger)) &&
		     !bind(20, (struct sockaddr *)&lo4, sizeof(lo4)) && !listen(20, 7), "T4");
	make(AF_INET6, SOCK_STREAM, 21, 0);
	need(!setsockopt(21, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) &&
		     !bind(21, (struct sockaddr *)&lo6, sizeof(lo6)) && !listen(21, 5) && !fcntl(21, F_SETFL, O_NONBLOCK), "T6");
	make(AF_INET, SOCK_DGRAM, 22, O_CLOEXEC);
	int tos = 0x10;
	need(!setsockopt(22, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) && !setsockopt(22, IPPROTO_IP, IP_TOS, &tos, sizeof(tos)) &&
		     !bind(22, (struct sockaddr *)&lo4, sizeof(lo4)) && !getsockname(22, (struct sockaddr *)&u4, &u4len), "U4");
	make(AF_INET, SOCK_DGRAM, 23, 0);
	struct sock_filter drop_all = BPF_STMT(BPF_RET | BPF_K, 0);
	struct sock_fprog drop = { .len = 1, .filter = &drop_all };
	need(!setsockopt(23, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) && !setsockopt(23, SOL_SOCKET, SO_ATTACH_FILTER, &drop, sizeof(drop)), "UU");
	make(AF_INET, SOCK_DGRAM, 24, 0);
	need(!connect(24, (struct sockaddr *)&u4, u4len), "UC");
	make(AF_INET, SOCK_STREAM, 25, 0);
	/* Two UDP sockets on one port, as a server with a socket per worker has (SO_REUSEPORT). */
	struct sockaddr_storage r1;
	socklen_t r1len = sizeof(r1);
	make(AF_INET, SOCK_DGRAM, 26, 0);
	make(AF_INET, SOCK_DGRAM, 27, 0);
	need(!setsockopt(26, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) && !setsockopt(26, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) &&
		     !bind(26, (struct sockaddr *)&lo4, sizeof(lo4)) && !getsockname(26, (struct sockaddr *)&r1, &r1len) &&
		     !setsockopt(27, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) && !bind(27, (struct sockaddr *)&r1, r1len), "R1, R2");
	for (int i = 0; i < NSKS; i++)
		snapshot(&sks[i], &sks[i].rec);
	protocol_ready();
	wait_for_check();

	if (breaking("port")) {
		/* like T4 but bound while T4 still holds its port, so only the port differs */
		int s = socket(AF_INET, SOCK_STREAM, 0);
		need(s >= 0 && !setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) &&
			     !setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) && !setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) &&
			     !setsockopt(s, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)) && !setsockopt(s, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger)) &&
			     !bind(s, (struct sockaddr *)&lo4, sizeof(lo4)) && !listen(s, 7) &&
			     dup2(s, 20) == 20 && !close(s), "break port");
	}
	if (breaking("option")) {
		int zero = 0;
		setsockopt(20, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof(zero));
	}
	if (breaking("buflock")) {
		int size = 50000;
		setsockopt(25, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	}
	for (int i = 0; i < NSKS; i++)
		compare(&sks[i]);
	char device[IFNAMSIZ] = "";
	socklen_t devlen = sizeof(device);
	if (getsockopt(23, SOL_SOCKET, SO_BINDTODEVICE, device, &devlen) || strcmp(device, "lo"))
		fail("fd 23 (UU): bound to interface '%s', not lo", device);
	struct sock_filter got[4];
	socklen_t count = 4; /* SO_GET_FILTER counts instructions */
	if (getsockopt(23, SOL_SOCKET, SO_GET_FILTER, got, &count) || count != 1 || got[0].code != (BPF_RET | BPF_K) || got[0].k != 0)
		fail("fd 23 (UU): its socket filter is gone or another (%u instructions)", (unsigned)count);
	tcp_works(&sks[0]);
	tcp_works(&sks[1]);
	udp_works();
	return protocol_report();
}
