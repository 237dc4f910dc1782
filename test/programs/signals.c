/* Self-checking pending-signals program: blocked signals left pending, process-wide (two
 * SIGRTMIN+1 with si_value 111 and 222, SIGUSR2 with 333, SIGHUP by kill) and per thread
 * (SIGRTMIN+2 twice, 444 and 555, queued to a second thread; SIGRTMIN+3 with 666 to the main
 * thread). After a restore each thread must see exactly its own and the shared ones pending,
 * and sigtimedwait must hand them back in order with their codes, senders and values.
 * Usage: signals RESULT_FILE */
#include "common.h"
#include <pthread.h>
#include <sys/syscall.h>

static const char *const break_kinds[] = { "lost", "value", "thread", NULL };
static pid_t pid_before;
static volatile int worker_go, worker_done;
static char worker_failure[256];

#define SIG_SHARED_RT (SIGRTMIN + 1)
#define SIG_WORKER_RT (SIGRTMIN + 2)
#define SIG_MAIN_RT (SIGRTMIN + 3)

static void blocked_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGUSR2);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIG_SHARED_RT);
	sigaddset(set, SIG_WORKER_RT);
	sigaddset(set, SIG_MAIN_RT);
}

/* Takes one pending `sig` without waiting and checks what it carried. */
static int take(int sig, int code, int value, char *why, size_t why_size)
{
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, sig);
	struct timespec zero = { 0, 0 };
	siginfo_t info;
	if (sigtimedwait(&one, &info, &zero) != sig) {
		snprintf(why, why_size, "signal %d not pending (%s)", sig, strerror(errno));
		return -1;
	}
	if (info.si_code != code || info.si_pid != pid_before) {
		snprintf(why, why_size, "signal %d: code %d pid %d, expected %d %d", sig, info.si_code,
			 info.si_pid, code, (int)pid_before);
		return -1;
	}
	if (code == SI_QUEUE && info.si_value.sival_int != value) {
		snprintf(why, why_size, "signal %d: value %d, expected %d", sig, info.si_value.sival_int,
			 value);
		return -1;
	}
	return 0;
}

static int nothing_left(const char *who, char *why, size_t why_size)
{
	sigset_t set;
	blocked_set(&set);
	struct timespec zero = { 0, 0 };
	siginfo_t info;
	int sig = sigtimedwait(&set, &info, &zero);
	if (sig > 0) {
		snprintf(why, why_size, "%s: unexpected signal %d still pending", who, sig);
		return -1;
	}
	return 0;
}

/* sigpending() of the calling thread: its own queue plus the process's. */
static int pending_is(const char *who, const int *expected, int count, const int *absent, int absent_count,
		      char *why, size_t why_size)
{
	sigset_t set;
	sigpending(&set);
	for (int i = 0; i < count; i++)
		if (!sigismember(&set, expected[i])) {
			snprintf(why, why_size, "%s: signal %d is not pending", who, expected[i]);
			return -1;
		}
	for (int i = 0; i < absent_count; i++)
		if (sigismember(&set, absent[i])) {
			snprintf(why, why_size, "%s: signal %d is pending in the wrong thread", who, absent[i]);
			return -1;
		}
	return 0;
}

static void *worker(void *arg)
{
	(void)arg;
	while (!worker_go) {
		struct timespec ten_ms = { 0, 10 * 1000 * 1000 };
		nanosleep(&ten_ms, NULL);
	}
	char *why = worker_failure;
	size_t size = sizeof(worker_failure);
	int expected[] = { SIG_WORKER_RT, SIG_SHARED_RT, SIGUSR2, SIGHUP };
	int absent[] = { SIG_MAIN_RT };
	if (pending_is("worker", expected, 4, absent, 1, why, size) == 0 &&
	    take(SIG_WORKER_RT, SI_QUEUE, 444, why, size) == 0 && take(SIG_WORKER_RT, SI_QUEUE, 555, why, size) == 0) {
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, SIG_WORKER_RT);
		struct timespec zero = { 0, 0 };
		if (sigtimedwait(&one, NULL, &zero) > 0)
			snprintf(why, size, "worker: a third signal %d", SIG_WORKER_RT);
	}
	worker_done = 1;
	return NULL;
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, break_kinds, 0);
	pid_before = getpid();
	sigset_t blocked;
	blocked_set(&blocked);
	if (pthread_sigmask(SIG_BLOCK, &blocked, NULL) != 0) {
		write_result("ERROR sigmask\n");
		return 2;
	}
	sigset_t worker_mask = blocked;
	sigaddset(&worker_mask, SIGUSR1); /* the check request goes to the main thread */
	pthread_sigmask(SIG_SETMASK, &worker_mask, NULL);
	pthread_t thread;
	if (pthread_create(&thread, NULL, worker, NULL) != 0) {
		write_result("ERROR pthread_create\n");
		return 2;
	}
	pthread_sigmask(SIG_SETMASK, &blocked, NULL);

	union sigval v;
	v.sival_int = 111;
	sigqueue(getpid(), SIG_SHARED_RT, v);
	v.sival_int = 222;
	sigqueue(getpid(), SIG_SHARED_RT, v);
	v.sival_int = 333;
	sigqueue(getpid(), SIGUSR2, v);
	kill(getpid(), SIGHUP);
	v.sival_int = 444;
	pthread_sigqueue(thread, SIG_WORKER_RT, v);
	v.sival_int = 555;
	pthread_sigqueue(thread, SIG_WORKER_RT, v);
	v.sival_int = 666;
	pthread_sigqueue(pthread_self(), SIG_MAIN_RT, v);

	protocol_ready();
	wait_for_check();

	char why[256] = "";
	if (breaking("lost"))
		take(SIGHUP, SI_USER, 0, why, sizeof(why));
	if (breaking("value")) { /* the first SIGRTMIN+1 goes, a third one comes last */
		take(SIG_SHARED_RT, SI_QUEUE, 111, why, sizeof(why));
		v.sival_int = 111;
		sigqueue(getpid(), SIG_SHARED_RT, v);
	}
	if (breaking("thread")) { /* the main thread's own signal moves to the worker */
		take(SIG_MAIN_RT, SI_QUEUE, 666, why, sizeof(why));
		v.sival_int = 666;
		pthread_sigqueue(thread, SIG_MAIN_RT, v);
	}
	why[0] = 0;
	int expected[] = { SIG_MAIN_RT, SIG_SHARED_RT, SIGUSR2, SIGHUP };
	int absent[] = { SIG_WORKER_RT };
	if (pending_is("main", expected, 4, absent, 1, why, sizeof(why)) == 0) {
		worker_go = 1;
		while (!worker_done) {
			struct timespec ten_ms = { 0, 10 * 1000 * 1000 };
			nanosleep(&ten_ms, NULL);
		}
		if (worker_failure[0])
			snprintf(why, sizeof(why), "%s", worker_failure);
	}
	if (!why[0] && take(SIG_MAIN_RT, SI_QUEUE, 666, why, sizeof(why)) == 0 &&
	    take(SIG_SHARED_RT, SI_QUEUE, 111, why, sizeof(why)) == 0 &&
	    take(SIG_SHARED_RT, SI_QUEUE, 222, why, sizeof(why)) == 0 &&
	    take(SIGUSR2, SI_QUEUE, 333, why, sizeof(why)) == 0 && take(SIGHUP, SI_USER, 0, why, sizeof(why)) == 0)
		nothing_left("main", why, sizeof(why));
	if (why[0])
		fail("%s", why);
	return protocol_report();
}
