/* ring: the busy tree. N processes (default 50: the root and N-1 children) pass numbered messages
 * around a ring of links, flat out: link i goes from member i to member (i+1) % N and is a pipe
 * (i % 3 == 0), a SOCK_STREAM socketpair (i % 3 == 1) or a SOCK_SEQPACKET socketpair (i % 3 == 2).
 * Every member reads its in-link at fd 10 and writes its out-link at fd 11; the root puts TOKENS
 * messages in flight first, so links hold queued messages at any moment. A message is 16 bytes:
 * the link's sequence number (0, 1, 2, ... per link) and a check word; a reader wants exactly the
 * next number, so a lost, duplicated, reordered or damaged message is a failure.
 * Check (root on SIGUSR1, any number of times): the root sends SIGUSR1 to every member; each
 * member, once it has passed 20 more messages (the ring still moves), writes RESULT_FILE.m<i> =
 * "PASS|FAIL <round> <received> [why]"; the root gathers all of them (20 s bound) and writes PASS
 * or the first failure. Nobody exits: the ring keeps going and can be dumped again; kill by PID.
 * Breaks (applied once, at member 7's 10th message): drop (member 7 skips one sequence number),
 * dup (member 7 sends one message twice). */
#include "common.h"
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define MAX_MEMBERS 256
#define TOKENS 64
#define MORE_AFTER_CHECK 20
#define DAMAGE_AT 10
#define IN_FD 10
#define OUT_FD 11
static const char *const breaks[] = { "drop", "dup", NULL };

struct message {
	uint64_t seq;
	uint64_t check;
};

static int members = 50;
static int me; /* index in the ring, 0 = root */
static pid_t pids[MAX_MEMBERS];
static uint64_t in_seq, out_seq, received;
static int round_no;
static char first_problem[256];
static int link_dead; /* an in- or out-link failed: this member can pass nothing on */

static uint64_t check_word(int link, uint64_t seq)
{
	return (seq + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)link * 0x100000001b3ull;
}

static int in_link(void)
{
	return (me + members - 1) % members;
}

static void problem(const char *fmt, ...)
{
	if (first_problem[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(first_problem, sizeof(first_problem), fmt, ap);
	va_end(ap);
}

/* Whole messages only: a stream link may hand over part of one. */
static int io_all(int fd, void *buf, size_t len, int writing)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = writing ? write(fd, (char *)buf + done, len - done) : read(fd, (char *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += n;
	}
	return 0;
}

static int send_next(void)
{
	struct message m = { out_seq, check_word(me, out_seq) };
	out_seq++;
	return io_all(OUT_FD, &m, sizeof(m), 1);
}

static int pass_one(void)
{
	struct message m;
	if (io_all(IN_FD, &m, sizeof(m), 0)) {
		problem("member %d: in-link %d closed or failed (%s)", me, in_link(), strerror(errno));
		link_dead = 1;
		return -1;
	}
	if (m.seq != in_seq || m.check != check_word(in_link(), m.seq))
		problem("member %d: link %d gave message %llu, wanted %llu", me, in_link(), (unsigned long long)m.seq,
			(unsigned long long)in_seq);
	in_seq = m.seq + 1;
	received++;
	if (send_next()) {
		problem("member %d: out-link %d failed (%s)", me, me, strerror(errno));
		link_dead = 1;
		return -1;
	}
	return 0;
}

static void member_file(int i, char *out, size_t size)
{
	snprintf(out, size, "%s.m%d", result_path, i);
}

static void answer(void)
{
	char path[4096];
	member_file(me, path, sizeof(path));
	char text[512];
	snprintf(text, sizeof(text), "%s %d %llu %s\n", first_problem[0] ? "FAIL" : "PASS", round_no,
		 (unsigned long long)received, first_problem);
	write_file_atomically(path, text);
}

static int damaged;

static void damage(void)
{
	if (me != 7)
		return;
	if (breaking("drop"))
		out_seq++;
	if (breaking("dup")) {
		out_seq--;
		send_next();
	}
}

/* The root's gathering: 1 when every member answered this round (result written). */
static int gathered(void)
{
	for (int i = 1; i < members; i++) {
		char path[4096], text[512] = { 0 };
		member_file(i, path, sizeof(path));
		FILE *f = fopen(path, "r");
		if (!f)
			return 0;
		size_t n = fread(text, 1, sizeof(text) - 1, f);
		fclose(f);
		text[n] = 0;
		char verdict[8];
		int r = -1;
		if (sscanf(text, "%7s %d", verdict, &r) != 2 || r != round_no)
			return 0;
		if (strcmp(verdict, "PASS")) {
			char *why = strchr(strchr(strchr(text, ' ') + 1, ' ') + 1, ' ') + 1;
			why[strcspn(why, "\n")] = 0;
			fail("%s", why);
		}
	}
	return 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run(void)
{
	uint64_t answer_at = 0;
	int answering = 0, gathering = 0;
	double deadline = 0, last_look = 0;
	for (;;) {
		if (check_requested) {
			check_requested = 0;
			round_no++;
			answering = 1;
			answer_at = received + MORE_AFTER_CHECK;
			if (me == 0) {
				for (int i = 1; i < members; i++)
					kill(pids[i], SIGUSR1);
				first_failure[0] = 0;
				gathering = 1;
				deadline = now_s() + 20;
			}
		}
		if (me == 0) {
			/* The root never blocks for long: it must time out a stalled ring. */
			struct pollfd p = { IN_FD, POLLIN, 0 };
			int ready = poll(&p, 1, 100);
			if (ready > 0 && !link_dead)
				pass_one();
			if (answering && (received >= answer_at || link_dead))
				answering = 0;
			if (gathering && !answering && now_s() - last_look > 0.05) {
				last_look = now_s();
				if (gathered()) {
					gathering = 0;
					if (first_problem[0])
						fail("%s", first_problem);
					protocol_report();
				}
			}
			if (gathering && now_s() > deadline) {
				gathering = 0;
				fail("not every member answered round %d within 20 s (ring stalled?)%s%s", round_no,
				     first_problem[0] ? ": " : "", first_problem);
				protocol_report();
			}
			continue;
		}
		if (link_dead) {
			if (answering)
				answer(), answering = 0;
			struct timespec t = { 0, 100 * 1000 * 1000 };
			nanosleep(&t, NULL);
			continue;
		}
		pass_one();
		/* A break damages the stream early and once, so member 8 has surely seen it by the time it
		 * answers: it answers MORE_AFTER_CHECK messages after a check, all sent by member 7 later. */
		if (received == DAMAGE_AT && !damaged) {
			damage();
			damaged = 1;
		}
		if (answering && received >= answer_at) {
			answer();
			answering = 0;
		}
	}
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, SA_RESTART);
	if (argc > 2)
		members = atoi(argv[2]);
	if (members < 3 || members > MAX_MEMBERS) {
		write_result("ERROR members must be 3..%d\n", MAX_MEMBERS);
		return 2;
	}
	/* links[i][0] is read by member i+1, links[i][1] written by member i */
	static int links[MAX_MEMBERS][2];
	for (int i = 0; i < members; i++) {
		int kind = i % 3, r;
		if (kind == 0) {
			r = pipe(links[i]);
		} else {
			int sv[2];
			r = socketpair(AF_UNIX, kind == 1 ? SOCK_STREAM : SOCK_SEQPACKET, 0, sv);
			links[i][0] = sv[0];
			links[i][1] = sv[1];
		}
		if (r) {
			write_result("ERROR link %d: %s\n", i, strerror(errno));
			return 2;
		}
	}
	pids[0] = getpid();
	for (int i = 1; i < members; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			write_result("ERROR fork: %s\n", strerror(errno));
			return 2;
		}
		if (pid == 0) {
			me = i;
			break;
		}
		pids[i] = pid;
	}
	int in = links[in_link()][0], out = links[me][1];
	if (dup2(in, 100 + 2 * MAX_MEMBERS) < 0 || dup2(out, 101 + 2 * MAX_MEMBERS) < 0)
		_exit(2);
	for (int i = 0; i < members; i++)
		close(links[i][0]), close(links[i][1]);
	dup2(100 + 2 * MAX_MEMBERS, IN_FD);
	dup2(101 + 2 * MAX_MEMBERS, OUT_FD);
	close(100 + 2 * MAX_MEMBERS);
	close(101 + 2 * MAX_MEMBERS);
	if (me == 0) {
		for (int t = 0; t < TOKENS; t++)
			if (send_next()) {
				write_result("ERROR putting tokens in flight: %s\n", strerror(errno));
				return 2;
			}
		protocol_ready();
	}
	run();
	return 0;
}
