/* inotify: an inotify instance whose watches must survive a dump and restore.
 *   fd 30  inotify (IN_NONBLOCK) with watches, in this order:
 *            <tmp>/watched-dir   IN_CREATE|IN_DELETE       (wd 1)
 *            <tmp>/gone          removed again              (wd 2 freed: the next is 3)
 *            <tmp>/watched-file  IN_MODIFY|IN_CLOSE_WRITE  (wd 3)
 *   fd 31  = dup of fd 30
 * Check: fdinfo lists wd 1 and 3 with their inodes and masks, nothing else; creating a file in
 * the directory and writing the file give events with those wds and names through fd 31.
 * Break kinds: mask, wd, missing. */
#include "common.h"

#include <libgen.h>
#include <sys/inotify.h>
#include <sys/stat.h>

static const char *const break_kinds[] = { "mask", "wd", "missing", NULL };
static char dir_path[4096], file_path[4096];

struct watch {
	int wd;
	unsigned mask;
	const char *path;
};

static void check_fdinfo(const struct watch *w, int n)
{
	char line[512];
	FILE *f = fopen("/proc/self/fdinfo/30", "r");
	if (!f) {
		fail("open fdinfo: %s", strerror(errno));
		return;
	}
	int seen = 0;
	while (fgets(line, sizeof(line), f)) {
		int wd;
		unsigned long ino;
		unsigned mask;
		if (sscanf(line, "inotify wd:%x ino:%lx sdev:%*x mask:%x", &wd, &ino, &mask) != 3)
			continue;
		int found = 0;
		for (int i = 0; i < n; i++) {
			if (w[i].wd != wd)
				continue;
			struct stat st;
			found = 1;
			seen++;
			if (stat(w[i].path, &st) != 0 || st.st_ino != ino)
				fail("wd %d watches inode %lx, not %s", wd, ino, w[i].path);
			if (mask != w[i].mask)
				fail("wd %d mask %x, want %x", wd, mask, w[i].mask);
		}
		if (!found)
			fail("unexpected watch wd %d", wd);
	}
	fclose(f);
	if (seen != n)
		fail("%d watches, want %d", seen, n);
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, break_kinds, 0);
	for (int fd = 3; fd < 64; fd++)
		close(fd);
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", argv[1]);
	const char *base = dirname(tmp);
	char gone[4096];
	snprintf(dir_path, sizeof(dir_path), "%s/watched-dir", base);
	snprintf(file_path, sizeof(file_path), "%s/watched-file", base);
	snprintf(gone, sizeof(gone), "%s/gone", base);
	if (mkdir(dir_path, 0755) != 0 || mkdir(gone, 0755) != 0)
		return 2;
	int ffd = open(file_path, O_CREAT | O_WRONLY, 0644);
	if (ffd < 0)
		return 2;
	close(ffd);
	int fd = inotify_init1(IN_NONBLOCK);
	if (fd != 30 && (dup2(fd, 30) != 30 || close(fd) != 0))
		return 2;
	struct watch w[2] = { { 0, IN_CREATE | IN_DELETE, dir_path }, { 0, IN_MODIFY | IN_CLOSE_WRITE, file_path } };
	w[0].wd = inotify_add_watch(30, dir_path, w[0].mask);
	int wd_gone = inotify_add_watch(30, gone, IN_ALL_EVENTS);
	w[1].wd = inotify_add_watch(30, file_path, w[1].mask);
	if (w[0].wd != 1 || wd_gone != 2 || w[1].wd != 3 || inotify_rm_watch(30, wd_gone) != 0) {
		write_result("ERROR watches %d %d %d\n", w[0].wd, wd_gone, w[1].wd);
		return 2;
	}
	/* the IN_IGNORED event of the removed watch is read now, so no event is queued at dump */
	char buf[4096];
	while (read(30, buf, sizeof(buf)) > 0)
		;
	if (dup2(30, 31) != 31)
		return 2;

	protocol_ready();
	wait_for_check();

	if (breaking("mask"))
		inotify_add_watch(30, dir_path, IN_CREATE);
	if (breaking("wd")) {
		inotify_rm_watch(30, 3);
		inotify_add_watch(30, file_path, w[1].mask);
	}
	if (breaking("missing"))
		inotify_rm_watch(30, 1);
	/* the rm_watch of a break queues IN_IGNORED: drop it so only the check's events follow */
	while (read(30, buf, sizeof(buf)) > 0)
		;

	check_fdinfo(w, 2);
	if (!(fcntl(30, F_GETFL) & O_NONBLOCK))
		fail("fd 30 not O_NONBLOCK");
	char made[4200];
	snprintf(made, sizeof(made), "%s/new-file", dir_path);
	int nfd = open(made, O_CREAT | O_WRONLY, 0644);
	close(nfd);
	ffd = open(file_path, O_WRONLY);
	if (write(ffd, "x", 1) != 1)
		fail("write %s", file_path);
	close(ffd);
	int got_create = 0, got_modify = 0;
	ssize_t n = read(31, buf, sizeof(buf));
	for (ssize_t at = 0; n > 0 && at < n;) {
		struct inotify_event *ev = (struct inotify_event *)(buf + at);
		if (ev->wd == 1 && (ev->mask & IN_CREATE) && ev->len && strcmp(ev->name, "new-file") == 0)
			got_create = 1;
		if (ev->wd == 3 && (ev->mask & IN_MODIFY))
			got_modify = 1;
		at += sizeof(*ev) + ev->len;
	}
	if (!got_create || !got_modify)
		fail("events through fd 31: create in dir %s, modify of file %s", got_create ? "seen" : "missing",
		     got_modify ? "seen" : "missing");
	return protocol_report();
}
