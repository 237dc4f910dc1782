/* Self-checking kernel AIO program (io_setup, io_submit, io_getevents as raw syscalls): three
 * contexts reading a memfd of 64 KiB of pattern bytes (fd 60).
 *  - "wrapped": io_setup(64), 300 reads submitted and reaped (its ring of 255 went round), then
 *    5 reads completed and left in the ring (head 45, tail 50);
 *  - "across": io_setup(16), reads reaped until its tail stood 2 short of the ring's end, then 4
 *    left in it across the end (tail < head);
 *  - "fresh": io_setup(8), never used (head = tail = 0).
 * Check: each ring is at its address with the head and tail it had; io_getevents gives each left
 * event in order with its cookie, iocb and result, and its buffer holds the memfd's bytes; a new
 * read on each context completes and is reaped. Break kind: ring (an event of "wrapped" reaped
 * before the check, as a restore that lost the ring's head would show).
 * Usage: aio RESULT_FILE */
#define _GNU_SOURCE
#include "common.h"
#include <linux/aio_abi.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define FILE_BYTES 65536
#define READ_BYTES 512
#define MAX_LEFT 8

static const char *const break_kinds[] = { "ring", NULL };

struct ring_header {
	unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
};

struct context {
	const char *name;
	aio_context_t ctx;
	unsigned head, tail, left;
	struct iocb iocbs[MAX_LEFT];
	unsigned char bufs[MAX_LEFT][READ_BYTES];
};

static struct context contexts[3] = { { .name = "wrapped" }, { .name = "across" }, { .name = "fresh" } };
static unsigned char pattern[FILE_BYTES];

static void must(int ok, const char *what)
{
	if (!ok) {
		write_result("ERROR %s: %s\n", what, strerror(errno));
		exit(2);
	}
}

static struct ring_header *ring_of(const struct context *c)
{
	return (struct ring_header *)c->ctx;
}

static long submit_read(struct context *c, struct iocb *cb, unsigned char *buf, unsigned serial)
{
	memset(cb, 0, sizeof(*cb));
	cb->aio_data = 0xa10000 + serial;
	cb->aio_lio_opcode = IOCB_CMD_PREAD;
	cb->aio_fildes = 60;
	cb->aio_buf = (uint64_t)(uintptr_t)buf;
	cb->aio_nbytes = READ_BYTES;
	cb->aio_offset = (serial * READ_BYTES) % FILE_BYTES;
	struct iocb *list[1] = { cb };
	return syscall(SYS_io_submit, c->ctx, 1, list);
}

static long reap(struct context *c, long n, struct io_event *events)
{
	struct timespec second = { 1, 0 };
	return syscall(SYS_io_getevents, c->ctx, n, n, events, &second);
}

/* Submits and reaps `count` reads one by one: head and tail move on by `count`. */
static void go_round(struct context *c, unsigned count)
{
	static unsigned char scratch[READ_BYTES];
	struct iocb cb;
	struct io_event ev;
	for (unsigned i = 0; i < count; i++)
		must(submit_read(c, &cb, scratch, i) == 1 && reap(c, 1, &ev) == 1, "a read going round");
}

/* Leaves `n` completed reads in the ring, numbered from `first`. */
static void leave(struct context *c, unsigned n, unsigned first)
{
	for (unsigned i = 0; i < n; i++)
		must(submit_read(c, &c->iocbs[i], c->bufs[i], first + i) == 1, "a read left in the ring");
	c->left = n;
	c->head = ring_of(c)->head;
	c->tail = ring_of(c)->tail;
}

static void check_context(struct context *c, unsigned first)
{
	struct ring_header *ring = ring_of(c);
	if (ring->magic != 0xa10a10a1 || ring->head != c->head || ring->tail != c->tail) {
		fail("%s: ring at %#llx has magic %#x, head %u, tail %u; expected head %u, tail %u", c->name,
		     (unsigned long long)c->ctx, ring->magic, ring->head, ring->tail, c->head, c->tail);
		return;
	}
	struct io_event events[MAX_LEFT];
	long got = c->left ? reap(c, c->left, events) : 0;
	if (got != (long)c->left) {
		fail("%s: io_getevents gave %ld of %u events (%s)", c->name, got, c->left, strerror(errno));
		return;
	}
	for (unsigned i = 0; i < c->left; i++) {
		unsigned serial = first + i;
		if (events[i].data != 0xa10000 + serial || events[i].obj != (uint64_t)(uintptr_t)&c->iocbs[i] || events[i].res != READ_BYTES)
			fail("%s: event %u is data %#llx obj %#llx res %lld", c->name, i, (unsigned long long)events[i].data,
			     (unsigned long long)events[i].obj, (long long)events[i].res);
		else if (memcmp(c->bufs[i], pattern + (serial * READ_BYTES) % FILE_BYTES, READ_BYTES) != 0)
			fail("%s: the buffer of event %u lacks the file's bytes", c->name, i);
	}
	struct iocb cb;
	struct io_event ev;
	static unsigned char buf[READ_BYTES];
	if (submit_read(c, &cb, buf, 7) != 1 || reap(c, 1, &ev) != 1 || ev.data != 0xa10007 || ev.res != READ_BYTES)
		fail("%s: a new read did not complete (%s)", c->name, strerror(errno));
	else if (memcmp(buf, pattern + 7 * READ_BYTES, READ_BYTES) != 0)
		fail("%s: a new read's buffer lacks the file's bytes", c->name);
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, break_kinds, SA_RESTART);
	uint64_t state = 0xa10a10a1;
	for (size_t i = 0; i < FILE_BYTES; i += 8) {
		uint64_t v = next_pattern(&state);
		memcpy(pattern + i, &v, 8);
	}
	int fd = memfd_create("aio-source", 0);
	must(fd >= 0 && dup2(fd, 60) == 60 && write(60, pattern, FILE_BYTES) == FILE_BYTES, "the memfd");
	close(fd);
	static const unsigned setup[3] = { 64, 16, 8 };
	for (int i = 0; i < 3; i++)
		must(syscall(SYS_io_setup, setup[i], &contexts[i].ctx) == 0, "io_setup");
	go_round(&contexts[0], 300);
	leave(&contexts[0], 5, 100);
	go_round(&contexts[1], ring_of(&contexts[1])->nr - 2);
	leave(&contexts[1], 4, 200);
	contexts[2].head = contexts[2].tail = 0;
	if (!(contexts[0].tail > contexts[0].head && contexts[1].tail < contexts[1].head))
		fail("set-up: wrapped head %u tail %u, across head %u tail %u", contexts[0].head, contexts[0].tail,
		     contexts[1].head, contexts[1].tail);
	protocol_ready();
	wait_for_check();
	if (breaking("ring")) {
		struct io_event ev;
		reap(&contexts[0], 1, &ev);
	}
	check_context(&contexts[0], 100);
	check_context(&contexts[1], 200);
	check_context(&contexts[2], 0);
	return protocol_report();
}
