/* Workload: one process with N threads (the main one included), each blocked in a futex wait,
 * the main thread in pause(), until killed. Small stacks keep 10,000 threads' dirty stack pages
 * (what the dump stores) small.
 * Usage: threads N READY_FILE [STACK_KIB] */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include "common.h"

static atomic_int running;
static atomic_int never;

static void *thread_main(void *arg) {
	(void)arg;
	atomic_fetch_add(&running, 1);
	for (;;) syscall(SYS_futex, &never, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	return NULL;
}

int main(int argc, char **argv) {
	close_inherited_fds();
	if (argc < 3) {
		fprintf(stderr, "usage: threads N READY_FILE [STACK_KIB]\n");
		return 2;
	}
	long threads = strtol(argv[1], NULL, 0), stack_kib = argc > 3 ? strtol(argv[3], NULL, 0) : 64;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	if (pthread_attr_setstacksize(&attr, stack_kib << 10)) fail("pthread_attr_setstacksize");
	for (long i = 1; i < threads; i++) {
		pthread_t t;
		int err = pthread_create(&t, &attr, thread_main, NULL);
		if (err) {
			errno = err;
			fail("pthread_create");
		}
	}
	while (atomic_load(&running) < threads - 1) syscall(SYS_sched_yield);
	int pid = getpid();
	write_ready(argv[2], &pid, 1);
	wait_forever();
}
