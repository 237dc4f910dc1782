/* Self-checking timers program: the three itimers armed (REAL 100 s / 7 s, VIRTUAL 50 s / 3 s,
 * PROF 60 s), and POSIX timers with a hole in their ids (the second one is deleted): MONOTONIC
 * with SIGRTMIN+4 and a value, REALTIME with SIGEV_NONE, BOOTTIME with SIGEV_THREAD_ID to a
 * worker thread (disarmed), and a 300 ms periodic MONOTONIC one on blocked SIGRTMIN+6. After a
 * restore: /proc/self/timers lists the same timers (ids, signals, values, notify, clocks), every
 * timer_t still works, intervals are equal, remaining times have not grown and have not lost
 * more than the time that passed, and the periodic timer still fires with its id and value.
 * Usage: timers RESULT_FILE */
#include "common.h"
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <dirent.h>

static const char *const break_kinds[] = { "interval", "id", "itimer", "proc", NULL };

#define NTIMERS 5
static timer_t ids[NTIMERS];
static int live[NTIMERS] = { 1, 0, 1, 1, 1 };
static struct itimerspec specs_before[NTIMERS];
static struct itimerval itimers_before[3];
static struct timespec ready_at;
static char proc_before[4096];
static volatile pid_t worker_tid;

static void *worker(void *arg)
{
	(void)arg;
	worker_tid = (pid_t)syscall(SYS_gettid);
	for (;;) {
		struct timespec one_second = { 1, 0 };
		nanosleep(&one_second, NULL);
	}
	return NULL;
}

static double secs(struct timespec t)
{
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double tv_secs(struct timeval t)
{
	return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

static int cmp_lines(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* PIDs in /proc/self/timers are those of the namespace /proc was mounted in, which is not ours
 * after a restore into a fresh PID namespace: name them by role instead. */
static void proc_ids(long *pid, long *worker)
{
	char status[4096] = "";
	FILE *f = fopen("/proc/self/status", "r");
	size_t n = f ? fread(status, 1, sizeof(status) - 1, f) : 0;
	if (f)
		fclose(f);
	status[n] = 0;
	char *line = strstr(status, "\nPid:");
	*pid = line ? strtol(line + 5, NULL, 10) : -1;
	*worker = -1;
	DIR *d = opendir("/proc/self/task");
	for (struct dirent *e; d && (e = readdir(d));)
		if (e->d_name[0] != '.' && strtol(e->d_name, NULL, 10) != *pid)
			*worker = strtol(e->d_name, NULL, 10);
	if (d)
		closedir(d);
}

static void name_ids(char *text, const char *key, long id, const char *name)
{
	char from[64];
	snprintf(from, sizeof(from), "%s.%ld\n", key, id);
	for (char *p = strstr(text, from); p; p = strstr(p, from)) {
		size_t len = strlen(from), with = strlen(name);
		memmove(p + with, p + len, strlen(p + len) + 1);
		memcpy(p, name, with);
	}
}

/* /proc/self/timers with its blocks sorted (the kernel lists them in no promised order). */
static void proc_timers(char *out, size_t size)
{
	char raw[4096] = "";
	FILE *f = fopen("/proc/self/timers", "r");
	size_t n = f ? fread(raw, 1, sizeof(raw) - 1, f) : 0;
	if (f)
		fclose(f);
	raw[n] = 0;
	long pid, worker;
	proc_ids(&pid, &worker);
	name_ids(raw, "pid", pid, "pid.SELF\n");
	name_ids(raw, "tid", worker, "tid.WORKER\n");
	char *blocks[32];
	int count = 0;
	for (char *p = strstr(raw, "ID:"); p && count < 32; p = strstr(p + 1, "\nID:")) {
		if (*p == '\n')
			*p++ = 0;
		blocks[count++] = p;
	}
	for (int i = 0; i < count; i++) { /* the last block listed keeps the file's final newline */
		size_t len = strlen(blocks[i]);
		while (len && blocks[i][len - 1] == '\n')
			blocks[i][--len] = 0;
	}
	qsort(blocks, count, sizeof(blocks[0]), cmp_lines);
	out[0] = 0;
	for (int i = 0; i < count; i++) {
		strncat(out, blocks[i], size - strlen(out) - 2);
		strncat(out, "|", size - strlen(out) - 1);
	}
}

static int make_timer(int i, clockid_t clock, int notify, int signo, int value, pid_t tid)
{
	struct sigevent ev;
	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = notify;
	ev.sigev_signo = signo;
	ev.sigev_value.sival_int = value;
	if (notify == SIGEV_THREAD_ID)
		ev._sigev_un._tid = tid;
	return timer_create(clock, &ev, &ids[i]);
}

static int arm(int i, time_t value_s, long value_ns, time_t interval_s, long interval_ns)
{
	struct itimerspec spec = { { interval_s, interval_ns }, { value_s, value_ns } };
	return timer_settime(ids[i], 0, &spec, NULL);
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, break_kinds, 0);
	sigset_t blocked;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGRTMIN + 4);
	sigaddset(&blocked, SIGRTMIN + 5);
	sigaddset(&blocked, SIGRTMIN + 6);
	sigaddset(&blocked, SIGALRM);
	sigaddset(&blocked, SIGVTALRM);
	sigaddset(&blocked, SIGPROF);
	pthread_sigmask(SIG_BLOCK, &blocked, NULL);
	pthread_t thread;
	pthread_create(&thread, NULL, worker, NULL);
	while (!worker_tid)
		usleep(1000);

	struct itimerval real = { { 7, 0 }, { 100, 0 } }, virt = { { 3, 0 }, { 50, 0 } }, prof = { { 0, 0 }, { 60, 0 } };
	if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &virt, NULL) ||
	    setitimer(ITIMER_PROF, &prof, NULL)) {
		write_result("ERROR setitimer: %s\n", strerror(errno));
		return 2;
	}
	if (make_timer(0, CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 4, 0xabc, 0) ||
	    make_timer(1, CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 4, 1, 0) ||
	    make_timer(2, CLOCK_REALTIME, SIGEV_NONE, 0, 0, 0) ||
	    make_timer(3, CLOCK_BOOTTIME, SIGEV_THREAD_ID, SIGRTMIN + 5, 77, worker_tid) ||
	    make_timer(4, CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 6, 4242, 0) || timer_delete(ids[1]) ||
	    arm(0, 200, 0, 5, 0) || arm(2, 300, 0, 0, 0) || arm(4, 0, 300000000, 0, 300000000)) {
		write_result("ERROR timers: %s\n", strerror(errno));
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &ready_at);
	for (int i = 0; i < NTIMERS; i++)
		if (live[i])
			timer_gettime(ids[i], &specs_before[i]);
	getitimer(ITIMER_REAL, &itimers_before[0]);
	getitimer(ITIMER_VIRTUAL, &itimers_before[1]);
	getitimer(ITIMER_PROF, &itimers_before[2]);
	proc_timers(proc_before, sizeof(proc_before));
	protocol_ready();
	wait_for_check();

	if (breaking("interval"))
		arm(0, 200, 0, 6, 0);
	if (breaking("id")) {
		timer_delete(ids[2]);
		make_timer(2, CLOCK_REALTIME, SIGEV_NONE, 0, 0, 0);
		arm(2, 300, 0, 0, 0);
	}
	if (breaking("itimer")) {
		struct itimerval more = { { 7, 0 }, { 1000, 0 } };
		setitimer(ITIMER_REAL, &more, NULL);
	}
	if (breaking("proc")) {
		timer_t extra;
		timer_create(CLOCK_MONOTONIC, NULL, &extra);
	}
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double elapsed = secs(now) - secs(ready_at) + 0.5;

	char proc_now[4096];
	proc_timers(proc_now, sizeof(proc_now));
	if (strcmp(proc_now, proc_before) != 0)
		fail("/proc/self/timers differs: before '%s' now '%s'", proc_before, proc_now);
	for (int i = 0; i < NTIMERS && !first_failure[0]; i++) {
		if (!live[i])
			continue;
		struct itimerspec spec;
		if (timer_gettime(ids[i], &spec) != 0) {
			fail("timer %d (id %ld): timer_gettime: %s", i, (long)ids[i], strerror(errno));
			break;
		}
		if (secs(spec.it_interval) != secs(specs_before[i].it_interval))
			fail("timer %d: interval %.3f, was %.3f", i, secs(spec.it_interval), secs(specs_before[i].it_interval));
		if (i == 4)
			continue; /* periodic: its remaining time wraps around */
		double left = secs(spec.it_value), was = secs(specs_before[i].it_value);
		if (left > was + 0.001 || (was > 0 && left < was - elapsed) || (was == 0) != (left == 0))
			fail("timer %d: %.3f s left, was %.3f s %.3f s ago", i, left, was, elapsed);
	}
	for (int which = 0; which < 3 && !first_failure[0]; which++) {
		struct itimerval v;
		getitimer(which, &v);
		double left = tv_secs(v.it_value), was = tv_secs(itimers_before[which].it_value);
		if (tv_secs(v.it_interval) != tv_secs(itimers_before[which].it_interval))
			fail("itimer %d: interval %.3f, was %.3f", which, tv_secs(v.it_interval), tv_secs(itimers_before[which].it_interval));
		/* setitimer of a CPU itimer adds one scheduler tick (up to 10 ms) to the value it is given */
		else if (left > was + (which ? 0.0105 : 0.001) || left < was - elapsed || left == 0)
			fail("itimer %d: %.3f s left, was %.3f s %.3f s ago", which, left, was, elapsed);
	}
	if (!first_failure[0]) {
		/* The periodic timer: whatever is pending now, then a fresh expiry within a second. */
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, SIGRTMIN + 6);
		siginfo_t info;
		struct timespec zero = { 0, 0 }, wait = { 1, 0 };
		while (sigtimedwait(&one, &info, &zero) > 0)
			;
		if (sigtimedwait(&one, &info, &wait) != SIGRTMIN + 6)
			fail("the periodic timer did not fire within 1 s");
		else if (info.si_code != SI_TIMER || info.si_value.sival_int != 4242 || info.si_timerid != (int)(long)ids[4])
			fail("periodic timer signal: code %d value %d timerid %d, expected %d 4242 %ld", info.si_code,
			     info.si_value.sival_int, info.si_timerid, SI_TIMER, (long)ids[4]);
	}
	return protocol_report();
}
