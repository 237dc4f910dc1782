/* clone-share: a parent P and a child C made by clone() that share one fs (`clone-share fs`:
 * CLONE_FS, cwd/root/umask) or one fd table (`clone-share files`: CLONE_FILES), or one address
 * space (`clone-share vm`: CLONE_VM without CLONE_THREAD, which crr refuses to dump; the check
 * only asks kcmp whether P and C still share it).
 * Check (P on SIGUSR1): the sharing is still there, shown by a change made now:
 *   fs:    P chdirs into <tmp>/moved and sets umask 0037; C must see both (getcwd, umask).
 *   files: P opens <tmp>/opened-by-parent at fd 77; C must see it at 77 (same inode), then opens
 *          <tmp>/opened-by-child at fd 78, which P must see after C exits.
 * Break: unshare (C calls unshare() on the shared object right after the clone). */
#include "common.h"
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char *const breaks[] = { "unshare", NULL };
static int files_mode;
static char dir[4096], moved[4096], by_parent[4096], by_child[4096];

static int same_file(int fd, const char *path)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

static int child_check(void)
{
	if (files_mode) {
		if (!same_file(77, by_parent))
			return 10;
		int fd = open(by_child, O_RDWR | O_CREAT, 0600);
		if (fd < 0 || dup2(fd, 78) != 78)
			return 11;
		close(fd);
		return 0;
	}
	char cwd[4096];
	if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, moved))
		return 12;
	mode_t old = umask(0);
	umask(old);
	return old == 0037 ? 0 : 13;
}

static const char *child_failure(int code)
{
	switch (code) {
	case 9: return "child could not unshare";
	case 10: return "fd 77 opened by the parent is not in the child (fd table not shared)";
	case 11: return "child could not open fd 78";
	case 12: return "the parent's chdir is not seen by the child (fs not shared)";
	case 13: return "the parent's umask is not seen by the child (fs not shared)";
	default: return "child died or failed";
	}
}

static int sleep_forever(void *unused)
{
	(void)unused;
	for (;;)
		pause();
	return 0;
}

/* C runs on a stack of its own in P's address space; kcmp(KCMP_VM) tells whether they share it. */
static int share_vm(void)
{
	static char stack[64 << 10] __attribute__((aligned(16)));
	pid_t child = clone(sleep_forever, stack + sizeof(stack), CLONE_VM | SIGCHLD, NULL);
	if (child < 0) {
		write_result("ERROR clone: %s\n", strerror(errno));
		return 2;
	}
	protocol_ready();
	wait_for_check();
	if (syscall(SYS_kcmp, getpid(), child, 1 /* KCMP_VM */, 0, 0) != 0)
		fail("P and C do not share an address space");
	return protocol_report();
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	if (argc < 3 || (strcmp(argv[2], "fs") && strcmp(argv[2], "files") && strcmp(argv[2], "vm"))) {
		write_result("ERROR usage: clone-share RESULT_FILE fs|files|vm\n");
		return 2;
	}
	if (!strcmp(argv[2], "vm"))
		return share_vm();
	files_mode = !strcmp(argv[2], "files");
	result_dir(dir, sizeof(dir));
	snprintf(moved, sizeof(moved), "%s/moved", dir);
	snprintf(by_parent, sizeof(by_parent), "%s/opened-by-parent", dir);
	snprintf(by_child, sizeof(by_child), "%s/opened-by-child", dir);
	if (mkdir(moved, 0700)) {
		write_result("ERROR mkdir: %s\n", strerror(errno));
		return 2;
	}
	/* The child says when it is past its unshare: READY before that, and a check that came
	 * quickly (a loaded machine) changed the shared object before the unshare copied it. */
	int started[2];
	if (pipe(started)) {
		write_result("ERROR pipe: %s\n", strerror(errno));
		return 2;
	}
	/* Raw clone with no new stack: the child runs on a copy of this stack, like fork. */
	long child = syscall(SYS_clone, (files_mode ? CLONE_FILES : CLONE_FS) | SIGCHLD, 0, 0, 0, 0);
	if (child < 0) {
		write_result("ERROR clone: %s\n", strerror(errno));
		return 2;
	}
	if (child == 0) {
		/* Before anything changes: an unshare after the parent's change would copy it. */
		if (breaking("unshare") && unshare(files_mode ? CLONE_FILES : CLONE_FS))
			_exit(9);
		if (write(started[1], "s", 1) != 1)
			_exit(9);
		if (!files_mode) { /* its own fd table: the parent's close does not reach these */
			close(started[0]);
			close(started[1]);
		}
		wait_for_check();
		_exit(child_check());
	}
	char byte;
	if (read(started[0], &byte, 1) != 1) {
		write_result("ERROR the child did not start\n");
		return 2;
	}
	close(started[0]);
	close(started[1]);
	protocol_ready();
	wait_for_check();

	if (files_mode) {
		int fd = open(by_parent, O_RDWR | O_CREAT, 0600);
		if (fd < 0 || dup2(fd, 77) != 77)
			fail("cannot open fd 77: %s", strerror(errno));
		close(fd);
	} else {
		if (chdir(moved))
			fail("chdir: %s", strerror(errno));
		umask(0037);
	}
	kill((pid_t)child, SIGUSR1);
	int status = 0;
	if (waitpid((pid_t)child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("%s", child_failure(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
	if (files_mode && !same_file(78, by_child))
		fail("fd 78 opened by the child is not in the parent (fd table not shared)");
	return protocol_report();
}
