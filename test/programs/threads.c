/* Self-checking threads program: N threads (default 8), each with its own __thread values and
 * four ymm registers loaded with per-thread values that stay live in the registers across the
 * wait (an asm loop that only sleeps through raw syscalls and compares them every round), and
 * its TID recorded before READY, and its own scheduling: nice 1 + i % 7, thread 1 SCHED_BATCH,
 * thread 2 SCHED_RR priority 2; the main thread nice 3. After a restore each thread must still
 * have its TID, its TLS, its ymm values and its scheduling. Usage: threads RESULT_FILE [N] */
#include "common.h"
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define MAX_THREADS 256
#define YMM_HELD 4

struct thread_slot {
	int index;
	pid_t tid_before, tid_after;
	uint64_t ymm_values[YMM_HELD * 4] __attribute__((aligned(32)));
	volatile int ymm_loaded;
	int ymm_mismatch;
	char tls_failure[128];
	char sched_failure[128];
};

static struct thread_slot slots[MAX_THREADS];
static int thread_count = 8;
static volatile int stop_holding;
static volatile int corrupt_ymm; /* selftest: the asm loop zeroes ymm12 when set */

static __thread uint64_t tls_value;
static __thread char tls_name[32];

static uint64_t tls_expected(int index)
{
	return 0x7115000000000000ULL ^ ((uint64_t)index * 0x10001ULL) ^ 0xabcdef;
}

/* Keeps ymm12..15 loaded from slot->ymm_values and sleeps 50 ms per round via the raw
 * nanosleep syscall (no libc call that could clobber vector registers); each round compares
 * the registers with memory. Returns when stop_holding is set; sets ymm_mismatch on a
 * difference. AVX1 only (vxorps + vptest), so any AVX CPU runs it. */
static void hold_ymm(struct thread_slot *slot)
{
	static const struct timespec round = { 0, 50 * 1000 * 1000 };
	int mismatch;
	__asm__ volatile(
		"vmovdqa 0(%[v]), %%ymm12\n\t"
		"vmovdqa 32(%[v]), %%ymm13\n\t"
		"vmovdqa 64(%[v]), %%ymm14\n\t"
		"vmovdqa 96(%[v]), %%ymm15\n\t"
		"movl $1, (%[loaded])\n\t"
		"1:\n\t"
		"movl $35, %%eax\n\t" /* SYS_nanosleep */
		"movq %[ts], %%rdi\n\t"
		"xorl %%esi, %%esi\n\t"
		"syscall\n\t"
		"cmpl $0, (%[corrupt])\n\t"
		"je 4f\n\t"
		"vxorps %%ymm12, %%ymm12, %%ymm12\n\t"
		"4:\n\t"
		"vxorps 0(%[v]), %%ymm12, %%ymm0\n\t"
		"vptest %%ymm0, %%ymm0\n\t"
		"jnz 2f\n\t"
		"vxorps 32(%[v]), %%ymm13, %%ymm0\n\t"
		"vptest %%ymm0, %%ymm0\n\t"
		"jnz 2f\n\t"
		"vxorps 64(%[v]), %%ymm14, %%ymm0\n\t"
		"vptest %%ymm0, %%ymm0\n\t"
		"jnz 2f\n\t"
		"vxorps 96(%[v]), %%ymm15, %%ymm0\n\t"
		"vptest %%ymm0, %%ymm0\n\t"
		"jnz 2f\n\t"
		"cmpl $0, (%[stop])\n\t"
		"je 1b\n\t"
		"xorl %[mismatch], %[mismatch]\n\t"
		"jmp 3f\n\t"
		"2:\n\t"
		"movl $1, %[mismatch]\n\t"
		"3:\n\t"
		"vzeroupper\n\t"
		: [mismatch] "=&r"(mismatch)
		: [v] "r"(slot->ymm_values), [loaded] "r"(&slot->ymm_loaded), [ts] "r"(&round),
		  [stop] "r"(&stop_holding), [corrupt] "r"(&corrupt_ymm)
		: "rax", "rcx", "rdi", "rsi", "r11", "memory", "cc", "xmm0", "xmm12", "xmm13", "xmm14",
		  "xmm15");
	slot->ymm_mismatch = mismatch;
}

#define MAIN_NICE 3

struct scheduling {
	int policy, priority, nice;
};

static struct scheduling scheduling_of(int index)
{
	struct scheduling s = { SCHED_OTHER, 0, 1 + index % 7 };
	if (index == 1)
		s.policy = SCHED_BATCH;
	if (index == 2)
		s.policy = SCHED_RR, s.priority = 2;
	return s;
}

/* Both calls act on the calling thread only (Linux: scheduling and nice are per thread). */
static int set_own_scheduling(struct scheduling s)
{
	struct sched_param param = { .sched_priority = s.priority };
	if (sched_setscheduler(0, s.policy, &param) != 0)
		return -1;
	return setpriority(PRIO_PROCESS, 0, s.nice);
}

static void check_own_scheduling(struct scheduling want, const char *who, char *failure, size_t size)
{
	struct sched_param param = { 0 };
	int policy = sched_getscheduler(0);
	sched_getparam(0, &param);
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, 0);
	if (policy != want.policy || param.sched_priority != want.priority || nice != want.nice)
		snprintf(failure, size, "%s scheduling policy %d priority %d nice %d, expected %d %d %d", who,
			 policy, param.sched_priority, nice, want.policy, want.priority, want.nice);
}

static void *thread_main(void *arg)
{
	struct thread_slot *slot = arg;
	char expected_name[32];
	snprintf(expected_name, sizeof(expected_name), "thread-%d", slot->index);
	tls_value = tls_expected(slot->index);
	snprintf(tls_name, sizeof(tls_name), "%s", expected_name);
	slot->tid_before = (pid_t)syscall(SYS_gettid);
	if (set_own_scheduling(scheduling_of(slot->index)) != 0)
		snprintf(slot->sched_failure, sizeof(slot->sched_failure), "ERROR thread %d: %s", slot->index, strerror(errno));
	hold_ymm(slot);
	slot->tid_after = (pid_t)syscall(SYS_gettid);
	char who[32];
	snprintf(who, sizeof(who), "thread %d", slot->index);
	if (!slot->sched_failure[0])
		check_own_scheduling(scheduling_of(slot->index), who, slot->sched_failure, sizeof(slot->sched_failure));
	if (breaking("tls") && slot->index == thread_count - 1)
		tls_value ^= 1;
	if (tls_value != tls_expected(slot->index) || strcmp(tls_name, expected_name) != 0)
		snprintf(slot->tls_failure, sizeof(slot->tls_failure),
			 "thread %d TLS value %#llx name '%s'", slot->index,
			 (unsigned long long)tls_value, tls_name);
	return NULL;
}

static int task_count(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = { "ymm", "tls", "tid", "sched", NULL };
	protocol_start(argc, argv, kinds, 0);
	if (argc > 2)
		thread_count = atoi(argv[2]);
	if (thread_count < 1 || thread_count > MAX_THREADS) {
		write_result("ERROR thread count must be 1..%d\n", MAX_THREADS);
		return 2;
	}
	/* Threads never take SIGUSR1: it must interrupt the main thread's wait. */
	sigset_t blocked, old;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &blocked, &old);
	pthread_t handles[MAX_THREADS];
	for (int i = 0; i < thread_count; i++) {
		slots[i].index = i;
		uint64_t state = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
		for (int w = 0; w < YMM_HELD * 4; w++)
			slots[i].ymm_values[w] = next_pattern(&state);
		if (pthread_create(&handles[i], NULL, thread_main, &slots[i]) != 0) {
			write_result("ERROR pthread_create failed\n");
			return 2;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	for (int i = 0; i < thread_count; i++)
		while (!slots[i].ymm_loaded)
			usleep(1000);
	for (int i = 0; i < thread_count; i++)
		if (strncmp(slots[i].sched_failure, "ERROR ", 6) == 0) {
			write_result("%s\n", slots[i].sched_failure);
			return 2;
		}
	if (setpriority(PRIO_PROCESS, 0, MAIN_NICE) != 0) {
		write_result("ERROR setpriority: %s\n", strerror(errno));
		return 2;
	}
	pid_t main_tid = (pid_t)syscall(SYS_gettid);
	protocol_ready();
	wait_for_check();

	if (breaking("ymm"))
		corrupt_ymm = 1;
	int tasks_now = task_count();
	if (breaking("tid"))
		slots[0].tid_before += 1;
	if (breaking("sched"))
		setpriority(PRIO_PROCESS, slots[0].tid_before, 6);
	stop_holding = 1;
	for (int i = 0; i < thread_count; i++)
		pthread_join(handles[i], NULL);

	if (tasks_now != thread_count + 1)
		fail("%d tasks, expected %d", tasks_now, thread_count + 1);
	if ((pid_t)syscall(SYS_gettid) != main_tid || main_tid != getpid())
		fail("main thread tid %d, was %d", (int)syscall(SYS_gettid), (int)main_tid);
	for (int i = 0; i < thread_count; i++) {
		if (slots[i].tid_after != slots[i].tid_before)
			fail("thread %d tid %d, was %d", i, slots[i].tid_after, slots[i].tid_before);
		if (slots[i].ymm_mismatch)
			fail("thread %d ymm registers lost their values", i);
		if (slots[i].tls_failure[0])
			fail("%s", slots[i].tls_failure);
		if (slots[i].sched_failure[0])
			fail("%s", slots[i].sched_failure);
	}
	char main_failure[128] = "";
	check_own_scheduling((struct scheduling){ SCHED_OTHER, 0, MAIN_NICE }, "main thread", main_failure, sizeof(main_failure));
	if (main_failure[0])
		fail("%s", main_failure);
	return protocol_report();
}
