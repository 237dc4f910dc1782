/* Floor for thread restore: start N plain threads (pthread_create, which glibc runs through
 * clone3) and time until every one is running; then end them all with exit_group. A restore of
 * a process with N threads creates the same N threads, so this is its floor.
 * Usage: threads N [STACK_KIB]   -> one JSON object on stdout. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "common.h"

static atomic_int running;
static atomic_int never; /* threads block on this futex word until the process exits */

static void *thread_main(void *arg) {
	(void)arg;
	atomic_fetch_add(&running, 1);
	syscall(SYS_futex, &never, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	return NULL;
}

int main(int argc, char **argv) {
	long threads = arg_long(argc, argv, 1, 100), stack_kib = arg_long(argc, argv, 2, 64);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	if (pthread_attr_setstacksize(&attr, stack_kib << 10)) die("pthread_attr_setstacksize");
	double t0 = now_ms();
	for (long i = 0; i < threads; i++) {
		pthread_t t;
		int err = pthread_create(&t, &attr, thread_main, NULL);
		if (err) {
			errno = err;
			die("pthread_create");
		}
	}
	while (atomic_load(&running) < threads) syscall(SYS_sched_yield);
	double ready_ms = now_ms() - t0;
	printf("{\"threads\":%ld,\"stack_kib\":%ld,\"ready_ms\":%.3f}\n", threads, stack_kib, ready_ms);
	fflush(stdout);
	syscall(SYS_exit_group, 0);
	return 0;
}
