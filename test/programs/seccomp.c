/* Self-checking seccomp program. `seccomp RESULT_FILE filter`: no_new_privs, then two stacked
 * filters (the first makes getppid fail with errno 11, the second getpgid with 12 and getsid
 * with 13), installed in the main thread before a worker thread starts, so both threads carry
 * the chain. Check, in each thread: NoNewPrivs 1, Seccomp 2 and Seccomp_filters 2 in
 * /proc/thread-self/status, the filtered calls fail with exactly those errnos, getpid works.
 * `seccomp RESULT_FILE strict`: a child in strict mode (only read, write, _exit, sigreturn)
 * that reads a byte from one pipe and writes it back + 1 on another. Check: it still echoes,
 * and a 0xff byte makes it call getpid, which strict mode answers with SIGKILL.
 * Usage: seccomp RESULT_FILE filter|strict */
#include "common.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char *const break_kinds[] = { "filter", "child", NULL };

static int install_errno_filter(int nr1, int err1, int nr2, int err2)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr1, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err1),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err2),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static int status_field(const char *path, const char *field)
{
	char text[8192] = "";
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
	if (f)
		fclose(f);
	text[n] = 0;
	char key[64];
	snprintf(key, sizeof(key), "\n%s:", field);
	char *p = strstr(text, key);
	return p ? atoi(p + strlen(key)) : -1;
}

static void expect_errno(const char *who, long nr, int err)
{
	errno = 0;
	long r = syscall(nr, 0);
	if (r != -1 || errno != err)
		fail("%s: syscall %ld returned %ld errno %d, expected -1 errno %d", who, nr, r, errno, err);
}

static void check_filtered(const char *who)
{
	const char *path = "/proc/thread-self/status";
	if (status_field(path, "NoNewPrivs") != 1 || status_field(path, "Seccomp") != 2 ||
	    status_field(path, "Seccomp_filters") != 2)
		fail("%s: NoNewPrivs %d Seccomp %d Seccomp_filters %d, expected 1 2 2", who,
		     status_field(path, "NoNewPrivs"), status_field(path, "Seccomp"),
		     status_field(path, "Seccomp_filters"));
	expect_errno(who, SYS_getppid, 11);
	expect_errno(who, SYS_getpgid, 12);
	expect_errno(who, SYS_getsid, 13);
	if (syscall(SYS_getpid) <= 0)
		fail("%s: getpid is filtered", who);
}

static volatile int worker_go, worker_done;
static pid_t worker_tid;

static void *worker(void *arg)
{
	(void)arg;
	worker_tid = (pid_t)syscall(SYS_gettid);
	while (!worker_go) {
		struct timespec ten_ms = { 0, 10 * 1000 * 1000 };
		nanosleep(&ten_ms, NULL);
	}
	check_filtered("worker");
	worker_done = 1;
	return NULL;
}

static int filter_mode(void)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || install_errno_filter(SYS_getppid, 11, SYS_uname, 30) ||
	    install_errno_filter(SYS_getpgid, 12, SYS_getsid, 13)) {
		write_result("ERROR filters: %s\n", strerror(errno));
		return 2;
	}
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	pthread_t thread;
	pthread_create(&thread, NULL, worker, NULL);
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	while (!worker_tid)
		usleep(1000);
	protocol_ready();
	wait_for_check();
	if (breaking("filter"))
		install_errno_filter(SYS_getpid, 14, SYS_getpid, 14);
	check_filtered("main");
	worker_go = 1;
	while (!worker_done)
		usleep(1000);
	return protocol_report();
}

static int strict_mode(void)
{
	int to_child[2], from_child[2];
	if (pipe(to_child) || pipe(from_child)) {
		write_result("ERROR pipe\n");
		return 2;
	}
	pid_t child = fork();
	if (child == 0) {
		close(to_child[1]);
		close(from_child[0]);
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT))
			_exit(3);
		for (;;) {
			unsigned char b;
			if (read(to_child[0], &b, 1) != 1)
				syscall(SYS_exit, 0);
			if (b == 0xff)
				syscall(SYS_getpid); /* strict mode: SIGKILL here */
			b++;
			if (write(from_child[1], &b, 1) != 1)
				syscall(SYS_exit, 0);
		}
	}
	close(to_child[0]);
	close(from_child[1]);
	unsigned char b = 41;
	if (write(to_child[1], &b, 1) != 1 || read(from_child[0], &b, 1) != 1 || b != 42) {
		write_result("ERROR the strict child does not echo\n");
		return 2;
	}
	protocol_ready();
	wait_for_check();
	signal(SIGPIPE, SIG_IGN);
	if (breaking("child"))
		kill(child, SIGKILL);
	b = 99;
	if (write(to_child[1], &b, 1) != 1 || read(from_child[0], &b, 1) != 1 || b != 100)
		fail("the strict child does not echo any more");
	b = 0xff;
	int status = 0;
	if (!first_failure[0] && write(to_child[1], &b, 1) != 1)
		fail("cannot write to the strict child");
	if (waitpid(child, &status, 0) != child)
		fail("waitpid: %s", strerror(errno));
	else if (!first_failure[0] && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		fail("the child survived getpid: not in strict mode (status 0x%x)", status);
	return protocol_report();
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, break_kinds, 0);
	if (argc > 2 && strcmp(argv[2], "strict") == 0)
		return strict_mode();
	if (breaking("nnp")) {
		write_result("ERROR the nnp break needs the filter mode run without NNP\n");
		return 2;
	}
	return filter_mode();
}
