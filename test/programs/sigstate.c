/* Self-checking per-process state program: sigactions (SA_RESTART, SA_SIGINFO, SA_ONSTACK,
 * SA_NODEFER, SA_RESETHAND, SIG_IGN, handler masks) for every signal, a sigaltstack, a blocked
 * mask, umask, lowered rlimits, cwd in a temp dir, a personality flag and comm. After a restore
 * all of it must be as recorded, and the SA_SIGINFO|SA_ONSTACK handler must still run, on the
 * alternate stack. Usage: sigstate RESULT_FILE */
#include "common.h"
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define ALTSTACK_SIZE (64 * 1024)
#define COMM "crr-sigstate"

static char altstack[ALTSTACK_SIZE] __attribute__((aligned(16)));
static struct sigaction actions_before[NSIG];
static int action_errors_before[NSIG];
static sigset_t blocked_before;
static stack_t altstack_before;
static const int limited[] = { RLIMIT_NOFILE, RLIMIT_CORE, RLIMIT_MSGQUEUE };
#define LIMITED_COUNT (sizeof(limited) / sizeof(limited[0]))
static struct rlimit limits_before[LIMITED_COUNT];
static char cwd_before[4096];
static ino_t cwd_ino;
static int personality_before;

static volatile int info_handler_runs, info_handler_on_altstack, info_handler_code, info_handler_pid;
static volatile int plain_handler_runs;

static void info_handler(int sig, siginfo_t *info, void *context)
{
	(void)sig;
	(void)context;
	char here;
	info_handler_runs++;
	info_handler_on_altstack = &here >= altstack && &here < altstack + ALTSTACK_SIZE;
	info_handler_code = info->si_code;
	info_handler_pid = info->si_pid;
}

static void plain_handler(int sig)
{
	(void)sig;
	plain_handler_runs++;
}

static void set_action(int sig, void (*handler)(int), void (*info)(int, siginfo_t *, void *),
		       int flags, int masked1, int masked2)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	if (info)
		sa.sa_sigaction = info;
	else
		sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	if (masked1)
		sigaddset(&sa.sa_mask, masked1);
	if (masked2)
		sigaddset(&sa.sa_mask, masked2);
	if (sigaction(sig, &sa, NULL) != 0)
		exit(3);
}

static int same_sets(const sigset_t *a, const sigset_t *b)
{
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(a, sig) != sigismember(b, sig))
			return 0;
	return 1;
}

static void set_up(void)
{
	set_action(SIGUSR2, NULL, info_handler, SA_SIGINFO | SA_ONSTACK | SA_RESTART, SIGINT, 0);
	set_action(SIGHUP, plain_handler, NULL, SA_NODEFER | SA_RESETHAND, SIGQUIT, SIGTERM);
	set_action(SIGRTMIN + 2, plain_handler, NULL, SA_RESTART, SIGRTMIN + 3, 0);
	set_action(SIGINT, SIG_IGN, NULL, 0, 0, 0);
	stack_t ss = { .ss_sp = altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL) != 0)
		exit(3);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGPIPE);
	sigaddset(&block, SIGALRM);
	sigaddset(&block, SIGWINCH);
	sigaddset(&block, SIGRTMIN + 5);
	sigprocmask(SIG_BLOCK, &block, NULL);
	umask(027);
	/* Only lowering: root here lacks CAP_SYS_RESOURCE, and a restorer can always lower. */
	for (unsigned i = 0; i < LIMITED_COUNT; i++) {
		struct rlimit lim;
		getrlimit(limited[i], &lim);
		rlim_t soft = limited[i] == RLIMIT_NOFILE ? 321 : limited[i] == RLIMIT_CORE ? 1 << 20 : 4096;
		if (lim.rlim_max != RLIM_INFINITY && soft > lim.rlim_max)
			soft = lim.rlim_max;
		lim.rlim_cur = soft;
		if (limited[i] == RLIMIT_CORE && (lim.rlim_max == RLIM_INFINITY || lim.rlim_max > 2 << 20))
			lim.rlim_max = 2 << 20; /* a lowered hard limit too */
		if (setrlimit(limited[i], &lim) != 0)
			exit(3);
	}
	char dir[4096];
	result_dir(dir, sizeof(dir));
	snprintf(cwd_before, sizeof(cwd_before), "%s/cwd-here", dir);
	mkdir(cwd_before, 0755);
	if (chdir(cwd_before) != 0 || !getcwd(cwd_before, sizeof(cwd_before)))
		exit(3);
	struct stat st;
	stat(".", &st);
	cwd_ino = st.st_ino;
	personality(PER_LINUX | ADDR_NO_RANDOMIZE);
	prctl(PR_SET_NAME, COMM);

	/* The record everything is compared against, taken after all changes. */
	for (int sig = 1; sig < NSIG; sig++)
		action_errors_before[sig] = sigaction(sig, NULL, &actions_before[sig]) != 0;
	sigprocmask(SIG_BLOCK, NULL, &blocked_before);
	sigaltstack(NULL, &altstack_before);
	for (unsigned i = 0; i < LIMITED_COUNT; i++)
		getrlimit(limited[i], &limits_before[i]);
	personality_before = personality(0xffffffff);
}

static void break_state(void)
{
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, SIGTERM);
	if (breaking("mask"))
		sigprocmask(SIG_BLOCK, &one, NULL);
	if (breaking("action"))
		set_action(SIGHUP, plain_handler, NULL, SA_RESTART, SIGQUIT, SIGTERM);
	if (breaking("rlimit")) {
		struct rlimit lim = { 300, limits_before[0].rlim_max };
		setrlimit(RLIMIT_NOFILE, &lim);
	}
	if (breaking("umask"))
		umask(022);
	if (breaking("cwd"))
		chdir("..");
	if (breaking("comm"))
		prctl(PR_SET_NAME, "renamed");
	if (breaking("altstack")) {
		stack_t off = { .ss_flags = SS_DISABLE };
		sigaltstack(&off, NULL);
	}
	if (breaking("personality"))
		personality(PER_LINUX);
}

static void check_actions(void)
{
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction now;
		int error = sigaction(sig, NULL, &now) != 0;
		if (error != action_errors_before[sig]) {
			fail("sigaction(%d) %s now", sig, error ? "fails" : "works");
			continue;
		}
		if (error)
			continue;
		const struct sigaction *was = &actions_before[sig];
		if (now.sa_handler != was->sa_handler || now.sa_flags != was->sa_flags ||
		    !same_sets(&now.sa_mask, &was->sa_mask))
			fail("signal %d action: handler %p flags %#x, was %p flags %#x (or its mask)", sig,
			     (void *)now.sa_handler, now.sa_flags, (void *)was->sa_handler, was->sa_flags);
	}
}

static void check_process_state(void)
{
	sigset_t blocked;
	sigprocmask(SIG_BLOCK, NULL, &blocked);
	if (!same_sets(&blocked, &blocked_before))
		fail("blocked signal mask differs");
	stack_t ss;
	sigaltstack(NULL, &ss);
	if (ss.ss_sp != altstack_before.ss_sp || ss.ss_size != altstack_before.ss_size ||
	    ss.ss_flags != altstack_before.ss_flags)
		fail("sigaltstack %p+%zu flags %d, was %p+%zu flags %d", ss.ss_sp, ss.ss_size, ss.ss_flags,
		     altstack_before.ss_sp, altstack_before.ss_size, altstack_before.ss_flags);
	mode_t mask = umask(0);
	umask(mask);
	if (mask != 027)
		fail("umask %03o, expected 027", mask);
	for (unsigned i = 0; i < LIMITED_COUNT; i++) {
		struct rlimit lim;
		getrlimit(limited[i], &lim);
		if (lim.rlim_cur != limits_before[i].rlim_cur || lim.rlim_max != limits_before[i].rlim_max)
			fail("rlimit %d is %llu/%llu, was %llu/%llu", limited[i],
			     (unsigned long long)lim.rlim_cur, (unsigned long long)lim.rlim_max,
			     (unsigned long long)limits_before[i].rlim_cur,
			     (unsigned long long)limits_before[i].rlim_max);
	}
	char cwd[4096] = "";
	struct stat st;
	if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, cwd_before) != 0 || stat(".", &st) != 0 ||
	    st.st_ino != cwd_ino)
		fail("cwd is '%s', was '%s'", cwd, cwd_before);
	int persona = personality(0xffffffff);
	if (persona != personality_before)
		fail("personality %#x, was %#x", persona, personality_before);
	char comm[32] = "";
	prctl(PR_GET_NAME, comm);
	if (strcmp(comm, COMM) != 0)
		fail("comm '%s', expected '%s'", comm, COMM);
}

static void check_handlers_run(void)
{
	syscall(SYS_tgkill, getpid(), getpid(), SIGUSR2);
	if (info_handler_runs != 1)
		fail("SIGUSR2 handler ran %d times, expected once", info_handler_runs);
	else if (!info_handler_on_altstack)
		fail("SIGUSR2 handler did not run on the alternate stack");
	else if (info_handler_code != SI_TKILL || info_handler_pid != getpid())
		fail("SIGUSR2 siginfo code %d pid %d", info_handler_code, info_handler_pid);
	raise(SIGRTMIN + 2);
	if (plain_handler_runs != 1)
		fail("SIGRTMIN+2 handler ran %d times, expected once", plain_handler_runs);
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = { "mask", "action", "rlimit", "umask", "cwd",
					     "comm", "altstack", "personality", NULL };
	protocol_start(argc, argv, kinds, 0);
	set_up();
	protocol_ready();
	wait_for_check();
	break_state();
	check_actions();
	check_process_state();
	check_handlers_run();
	return protocol_report();
}
