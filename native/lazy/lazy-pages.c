/* crr-lazy-pages: serves the memory of a tree restored with --lazy-pages. The restore registers
 * each task's private anonymous VMAs with a userfaultfd of the task's and sends crr's copy of it
 * here, with the task's pages files (pages-N.img, and those of parent checkpoints for an
 * incremental dump) and the runs of them (address range, file, offset in it); the
 * tasks then run before their pages are in. A page fault gets its page and the ones after it in
 * the same run (UFFDIO_COPY) or a zero page outside every run; once the restore is done, the
 * rest is copied in the background, and an address space whose every page is in has its
 * userfaultfd closed, which leaves its VMAs plain memory. The process exits when no address
 * space is left. forks, mremap, munmap and madvise(DONTNEED) of the tasks come as events and
 * keep the runs true. A failure kills the task it serves (its memory could not be made right).
 * `crr-lazy-pages --check` only says whether this kernel gives it what it needs (crr check).
 *
 * Control socket: fd 3, SOCK_SEQPACKET, from crr. Messages (native endianness):
 *   TASK {type 1, pid, runs in all, runs here} + runs, SCM_RIGHTS [uffd, pages fds...]
 *   RUNS {type 2, 0, 0, runs here} + runs: more runs of the last TASK
 *   DONE {type 3}: the restore succeeded; start the background copy.
 * End of file before DONE: the restore failed; exit at once (crr kills the tasks).
 * A run is {start, end, offset, file} (file: an index into the TASK's pages fds), page-aligned,
 * in address order. Protocol and design:
 * docs/RESTORER.md ("Lazy pages"). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define CONTROL_FD 3
/* A fault brings this much of its run: a task reading its memory in order faults once per chunk. */
#define FAULT_CHUNK (64UL * 1024)
/* The background copy's unit: between two of them the loop looks for faults. */
#define BACKGROUND_CHUNK (2UL << 20)
#define MAX_RUNS_PER_MESSAGE 4096
#define MAX_PAGES_FILES 64
/* The events crr asks for in the tasks' UFFDIO_API (src/restore/lazy-pages.ts, LAZY_UFFD_FEATURES). */
#define LAZY_FEATURES (UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP)

enum { MSG_TASK = 1, MSG_RUNS = 2, MSG_DONE = 3 };

struct msg_head {
	uint32_t type, pid, total, count;
};

struct run {
	uint64_t start, end, offset, file;
};

/* A task's pages files mapped read-only: the copies' source, shared by the task and the address
 * spaces it forks. Their pages are numbered one file after another (base) for the bitmaps. */
struct pages_set {
	int refs;
	size_t count;
	struct {
		const char *map;
		uint64_t size, base;
	} files[MAX_PAGES_FILES];
	uint64_t pages;
};

/* One userfaultfd: one address space. `done` has a bit per page of its pages files: copied, or
 * no longer wanted (unmapped, discarded). Runs never change but for mremap, which moves them. */
struct space {
	int uffd;
	pid_t pid; /* 0 for an address space forked after the restore: crr never knew its PID */
	struct pages_set *pages;
	struct run *runs;
	size_t nruns, total;
	uint64_t *done;
	uint64_t left; /* pages of the runs not yet done */
	int finished; /* nothing more to serve: gone, failed, or every run passed */
	size_t cursor; /* the background copy's run */
	struct space *next;
};

static struct space *spaces, *receiving;
static int epfd;
static int control_open = 1, restore_done;
static struct timespec background_at;
static unsigned long long faults, zero_faults, bytes_copied;

static void die(const char *what)
{
	fprintf(stderr, "crr-lazy-pages: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int bit(const uint64_t *bits, uint64_t n) { return (bits[n / 64] >> (n % 64)) & 1; }

static uint64_t bitmap_words(const struct pages_set *p) { return (p->pages + 63) / 64; }

/* The number of the page at `addr` of run `r` among its space's pages files. */
static uint64_t page_of(const struct space *s, const struct run *r, uint64_t addr)
{
	return s->pages->files[r->file].base + (r->offset + (addr - r->start)) / PAGE;
}

static int is_done(const struct space *s, const struct run *r, uint64_t addr) { return bit(s->done, page_of(s, r, addr)); }

/* Marks the pages [addr, addr + len) of run `r` done; counts those that were not. */
static void mark_done(struct space *s, const struct run *r, uint64_t addr, uint64_t len)
{
	uint64_t first = page_of(s, r, addr);
	for (uint64_t n = first; n < first + len / PAGE; n++) {
		if (!bit(s->done, n)) {
			s->done[n / 64] |= 1ULL << (n % 64);
			s->left--;
		}
	}
}

/* The run holding `addr`, by binary search over the ordered runs, or NULL. */
static struct run *run_at(struct space *s, uint64_t addr)
{
	size_t lo = 0, hi = s->nruns;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (addr < s->runs[mid].start)
			hi = mid;
		else if (addr >= s->runs[mid].end)
			lo = mid + 1;
		else
			return &s->runs[mid];
	}
	return NULL;
}

static void fail_space(struct space *s, const char *what, uint64_t addr, int err)
{
	fprintf(stderr, "crr-lazy-pages: %s at 0x%llx of task %d: %s; the task is killed\n", what,
		(unsigned long long)addr, (int)s->pid, strerror(err));
	if (s->pid > 0)
		kill(s->pid, SIGKILL);
	s->finished = 1;
}

enum copy_result { COPIED, RETRY, GONE };

/* UFFDIO_COPY of [addr, addr + len) of run `r`; a page already there (EEXIST) is passed over. */
static enum copy_result copy_range(struct space *s, const struct run *r, uint64_t addr, uint64_t len)
{
	while (len > 0) {
		struct uffdio_copy copy = {
			.dst = addr,
			.src = (uint64_t)(uintptr_t)(s->pages->files[r->file].map + r->offset + (addr - r->start)),
			.len = len,
			.mode = 0,
		};
		int rc = ioctl(s->uffd, UFFDIO_COPY, &copy);
		uint64_t moved = copy.copy > 0 ? (uint64_t)copy.copy : 0;
		mark_done(s, r, addr, moved);
		bytes_copied += moved;
		addr += moved;
		len -= moved;
		if (rc == 0 || moved > 0)
			continue; /* a partial copy fails with EAGAIN: the rest is tried again */
		if (errno == EEXIST || errno == ENOENT) {
			/* there already, or no longer registered (its VMA changed): nothing to bring */
			mark_done(s, r, addr, PAGE);
			struct uffdio_range wake = {.start = addr, .len = PAGE};
			ioctl(s->uffd, UFFDIO_WAKE, &wake);
			addr += PAGE;
			len -= PAGE;
			continue;
		}
		if (errno == EAGAIN)
			return RETRY; /* the address space is changing: its events first */
		if (errno == ESRCH)
			return GONE;
		fail_space(s, "UFFDIO_COPY", addr, errno);
		return GONE;
	}
	return COPIED;
}

/* Serves one fault; RETRY leaves it for after the address space's pending events. */
static enum copy_result serve_fault(struct space *s, uint64_t addr)
{
	addr &= ~(PAGE - 1);
	struct run *r = run_at(s, addr);
	if (r && !is_done(s, r, addr)) {
		uint64_t end = addr;
		uint64_t limit = r->end - addr < FAULT_CHUNK ? r->end : addr + FAULT_CHUNK;
		while (end < limit && !is_done(s, r, end))
			end += PAGE;
		faults++;
		return copy_range(s, r, addr, end - addr);
	}
	zero_faults++;
	struct uffdio_zeropage zero = {.range = {.start = addr, .len = PAGE}, .mode = 0};
	if (ioctl(s->uffd, UFFDIO_ZEROPAGE, &zero) == 0)
		return COPIED;
	if (errno == EEXIST || errno == ENOENT) {
		struct uffdio_range wake = {.start = addr, .len = PAGE};
		ioctl(s->uffd, UFFDIO_WAKE, &wake);
		return COPIED;
	}
	if (errno == EAGAIN)
		return RETRY;
	if (errno == ESRCH)
		return GONE;
	fail_space(s, "UFFDIO_ZEROPAGE", addr, errno);
	return GONE;
}

/* Marks every page of the runs inside [start, end) done: unmapped or discarded, a fault there
 * must now see zeroes. */
static void forget_range(struct space *s, uint64_t start, uint64_t end)
{
	for (size_t i = 0; i < s->nruns; i++) {
		struct run *r = &s->runs[i];
		uint64_t from = r->start > start ? r->start : start, to = r->end < end ? r->end : end;
		if (from < to)
			mark_done(s, r, from, to - from);
	}
}

static int by_start(const void *a, const void *b)
{
	const struct run *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* mremap moved [from, from + len) to `to`: runs are cut at its edges and the inside moved. */
static void move_range(struct space *s, uint64_t from, uint64_t to, uint64_t len)
{
	struct run *out = calloc(s->nruns * 3 + 1, sizeof(*out));
	if (!out)
		die("calloc");
	size_t n = 0;
	for (size_t i = 0; i < s->nruns; i++) {
		struct run r = s->runs[i];
		uint64_t cut[4] = {r.start, r.start, r.end, r.end};
		if (from > r.start && from < r.end)
			cut[1] = from;
		else if (from >= r.end)
			cut[1] = r.end;
		if (from + len > cut[1] && from + len < r.end)
			cut[2] = from + len;
		else if (from + len <= cut[1])
			cut[2] = cut[1];
		for (int k = 0; k < 3; k++) {
			if (cut[k] >= cut[k + 1])
				continue;
			struct run piece = {cut[k], cut[k + 1], r.offset + (cut[k] - r.start), r.file};
			if (piece.start >= from && piece.end <= from + len) {
				piece.start = piece.start - from + to;
				piece.end = piece.end - from + to;
			}
			out[n++] = piece;
		}
	}
	qsort(out, n, sizeof(*out), by_start);
	free(s->runs);
	s->runs = out;
	s->nruns = n;
	s->cursor = 0;
}

static void watch(struct space *s)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
	if (fcntl(s->uffd, F_SETFL, O_NONBLOCK) < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, s->uffd, &ev) < 0)
		die("watch a userfaultfd");
}

static struct space *new_space(int uffd, pid_t pid, struct pages_set *pages)
{
	struct space *s = calloc(1, sizeof(*s));
	if (!s || !(s->done = calloc(bitmap_words(pages) + 1, sizeof(uint64_t))))
		die("calloc");
	s->uffd = uffd;
	s->pid = pid;
	s->pages = pages;
	pages->refs++;
	s->next = spaces;
	spaces = s;
	return s;
}

/* The child of a fork has its parent's registered VMAs, and their missing pages are its too. */
static void add_fork(struct space *parent, int uffd)
{
	struct space *child = new_space(uffd, 0, parent->pages);
	child->runs = malloc((parent->nruns + 1) * sizeof(struct run));
	if (!child->runs)
		die("malloc");
	memcpy(child->runs, parent->runs, parent->nruns * sizeof(struct run));
	child->nruns = child->total = parent->nruns;
	memcpy(child->done, parent->done, bitmap_words(parent->pages) * sizeof(uint64_t));
	child->left = parent->left;
	watch(child);
}

/* Reads and handles every message waiting on `s`'s userfaultfd. */
static void read_events(struct space *s)
{
	struct uffd_msg msgs[64];
	for (;;) {
		ssize_t n = read(s->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			fail_space(s, "read the userfaultfd", 0, errno);
			return;
		}
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
			struct uffd_msg *m = &msgs[i];
			switch (m->event) {
			case UFFD_EVENT_PAGEFAULT:
				/* A copy refused for a change under way is tried again after its event,
				 * which the next read brings: the faulting thread waits meanwhile. */
				while (serve_fault(s, m->arg.pagefault.address) == RETRY) {
					read_events(s);
					sched_yield();
				}
				break;
			case UFFD_EVENT_FORK:
				add_fork(s, (int)m->arg.fork.ufd);
				break;
			case UFFD_EVENT_REMAP:
				move_range(s, m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
				break;
			case UFFD_EVENT_REMOVE:
			case UFFD_EVENT_UNMAP:
				forget_range(s, m->arg.remove.start, m->arg.remove.end);
				break;
			}
		}
	}
}

/* Copies the next BACKGROUND_CHUNK of pages not yet in of `s`. */
static void background_step(struct space *s)
{
	while (s->cursor < s->nruns) {
		struct run *r = &s->runs[s->cursor];
		uint64_t addr = r->start;
		while (addr < r->end && is_done(s, r, addr))
			addr += PAGE;
		if (addr == r->end) {
			s->cursor++;
			continue;
		}
		uint64_t end = addr;
		while (end < r->end && end - addr < BACKGROUND_CHUNK && !is_done(s, r, end))
			end += PAGE;
		enum copy_result res = copy_range(s, r, addr, end - addr);
		if (res == RETRY)
			read_events(s);
		else if (res == GONE)
			s->finished = 1;
		return;
	}
	s->finished = 1; /* every run passed */
}

static void release(struct space *s)
{
	/* Events queued (a fork waits for its own) are read first: a forked space then gets its
	 * own entry, and a task blocked in an event is let go. */
	read_events(s);
	epoll_ctl(epfd, EPOLL_CTL_DEL, s->uffd, NULL);
	close(s->uffd); /* the kernel unregisters every VMA of it */
	if (--s->pages->refs == 0) {
		for (size_t i = 0; i < s->pages->count; i++)
			if (s->pages->files[i].size)
				munmap((void *)s->pages->files[i].map, s->pages->files[i].size);
		free(s->pages);
	}
	free(s->runs);
	free(s->done);
	free(s);
}

/* Closes the spaces with nothing left: complete, gone, or failed; not one still receiving its
 * runs from crr. */
static void release_finished(void)
{
	for (struct space **at = &spaces; *at;) {
		struct space *s = *at;
		if ((s->left == 0 || s->finished) && s != receiving) {
			*at = s->next;
			release(s);
		} else {
			at = &s->next;
		}
	}
}

static void append_runs(struct space *s, const struct run *runs, size_t count)
{
	if (s->nruns + count > s->total) {
		fprintf(stderr, "crr-lazy-pages: task %d: more runs than announced\n", (int)s->pid);
		exit(1);
	}
	for (size_t i = 0; i < count; i++) {
		const struct run *r = &runs[i];
		if (r->start >= r->end || (r->start | r->end | r->offset) % PAGE || r->file >= s->pages->count ||
		    r->offset + (r->end - r->start) > s->pages->files[r->file].size ||
		    (s->nruns > 0 && r->start < s->runs[s->nruns - 1].end)) {
			fprintf(stderr, "crr-lazy-pages: task %d: a bad run 0x%llx-0x%llx at %llu\n", (int)s->pid,
				(unsigned long long)r->start, (unsigned long long)r->end, (unsigned long long)r->offset);
			exit(1);
		}
		s->runs[s->nruns++] = *r;
		s->left += (r->end - r->start) / PAGE;
	}
	if (s->nruns == s->total) {
		receiving = NULL;
		watch(s);
	}
}

static void read_control(void)
{
	static union {
		struct msg_head head;
		char bytes[sizeof(struct msg_head) + MAX_RUNS_PER_MESSAGE * sizeof(struct run)];
	} buf;
	char cbuf[CMSG_SPACE((1 + MAX_PAGES_FILES) * sizeof(int))];
	struct iovec iov = {.iov_base = &buf, .iov_len = sizeof(buf)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t n = recvmsg(CONTROL_FD, &mh, MSG_CMSG_CLOEXEC);
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN)
			return;
		die("read the control socket");
	}
	if (n == 0) {
		if (!restore_done)
			exit(0); /* the restore failed: crr kills the tasks */
		control_open = 0;
		epoll_ctl(epfd, EPOLL_CTL_DEL, CONTROL_FD, NULL);
		return;
	}
	if ((size_t)n < sizeof(struct msg_head) || (size_t)n != sizeof(struct msg_head) + buf.head.count * sizeof(struct run)) {
		fprintf(stderr, "crr-lazy-pages: a control message of %zd bytes\n", n);
		exit(1);
	}
	const struct run *runs = (const struct run *)(buf.bytes + sizeof(struct msg_head));
	switch (buf.head.type) {
	case MSG_TASK: {
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		size_t nfds = c && c->cmsg_type == SCM_RIGHTS ? (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) : 0;
		if (receiving || nfds < 2 || (mh.msg_flags & MSG_CTRUNC)) {
			fprintf(stderr, "crr-lazy-pages: a task message without its userfaultfd and pages files\n");
			exit(1);
		}
		int fds[1 + MAX_PAGES_FILES];
		memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
		struct pages_set *pages = calloc(1, sizeof(*pages));
		if (!pages)
			die("calloc");
		pages->count = nfds - 1;
		for (size_t i = 0; i < pages->count; i++) {
			struct stat st;
			if (fstat(fds[1 + i], &st) < 0)
				die("fstat a pages file");
			uint64_t size = (uint64_t)st.st_size & ~(PAGE - 1);
			const char *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fds[1 + i], 0) : NULL;
			if (map == MAP_FAILED)
				die("map a pages file");
			close(fds[1 + i]);
			pages->files[i].map = map;
			pages->files[i].size = size;
			pages->files[i].base = pages->pages;
			pages->pages += size / PAGE;
		}
		struct space *s = new_space(fds[0], (pid_t)buf.head.pid, pages);
		s->total = buf.head.total;
		if (!(s->runs = calloc(s->total + 1, sizeof(struct run))))
			die("calloc");
		receiving = s;
		append_runs(s, runs, buf.head.count);
		break;
	}
	case MSG_RUNS:
		if (!receiving) {
			fprintf(stderr, "crr-lazy-pages: runs without a task\n");
			exit(1);
		}
		append_runs(receiving, runs, buf.head.count);
		break;
	case MSG_DONE: {
		restore_done = 1;
		const char *delay = getenv("CRR_LAZY_BACKGROUND_DELAY_MS");
		long ms = delay ? atol(delay) : 0;
		clock_gettime(CLOCK_MONOTONIC, &background_at);
		background_at.tv_sec += ms / 1000;
		background_at.tv_nsec += (ms % 1000) * 1000000L;
		if (background_at.tv_nsec >= 1000000000L) {
			background_at.tv_sec++;
			background_at.tv_nsec -= 1000000000L;
		}
		break;
	}
	default:
		fprintf(stderr, "crr-lazy-pages: unknown control message %u\n", buf.head.type);
		exit(1);
	}
}

/* Milliseconds until the background copy may start: 0 now, -1 not yet known (no DONE). */
static int background_wait_ms(void)
{
	if (!restore_done)
		return -1;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long long ms = (background_at.tv_sec - now.tv_sec) * 1000LL + (background_at.tv_nsec - now.tv_nsec) / 1000000LL;
	return ms > 0 ? (int)ms : 0;
}

/* --check: can this kernel give a restore's tasks userfaultfds with the events the server follows? */
static int check_kernel(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd < 0) {
		printf("userfaultfd: %s\n", strerror(errno));
		return 1;
	}
	struct uffdio_api api = {.api = UFFD_API, .features = LAZY_FEATURES};
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		printf("UFFDIO_API with the fork, remap, remove and unmap events: %s\n", strerror(errno));
		return 1;
	}
	close(fd);
	printf("userfaultfd with the fork, remap, remove and unmap events\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--check") == 0)
		return check_kernel();
	signal(SIGPIPE, SIG_IGN);
	/* A userfaultfd per address space: a large tree needs more fds than a default soft limit. */
	struct rlimit files;
	if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
		files.rlim_cur = files.rlim_max;
		setrlimit(RLIMIT_NOFILE, &files);
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, CONTROL_FD, &ev) < 0)
		die("watch the control socket");
	unsigned long turn = 0; /* the background copy goes round the spaces a chunk each */
	for (;;) {
		release_finished();
		if (!spaces && restore_done && !receiving)
			break;
		int wait = background_wait_ms();
		int timeout = spaces && wait >= 0 ? wait : (control_open ? -1 : 0);
		struct epoll_event evs[64];
		int n = epoll_wait(epfd, evs, 64, timeout);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL)
				read_control();
			else
				read_events(evs[i].data.ptr);
		}
		if (n == 0 && spaces && background_wait_ms() == 0) {
			unsigned long count = 0;
			for (struct space *s = spaces; s; s = s->next)
				count++;
			struct space *s = spaces;
			for (unsigned long k = turn++ % count; k > 0; k--)
				s = s->next;
			if (!s->finished && s->left > 0 && s != receiving)
				background_step(s);
		}
	}
	if (getenv("CRR_LAZY_STATS"))
		fprintf(stderr, "crr-lazy-pages: %llu faults copied, %llu zero pages, %llu bytes copied\n", faults, zero_faults, bytes_copied);
	return 0;
}
