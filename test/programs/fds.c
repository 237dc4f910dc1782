/* Self-checking file-descriptor program: regular files at odd fd numbers (7, 42, 100, 200, 513)
 * with offsets, O_APPEND, O_NONBLOCK, FD_CLOEXEC, read-only and write-only access, and fd 200 a
 * dup of 42 (one shared open file description). After a restore: the same set of fds, each the
 * same file (st_dev/st_ino), same flags and offset, 42/200 still sharing one offset, and a write
 * to the O_APPEND fd lands at the end of the file. Usage: fds RESULT_FILE */
#include "common.h"
#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>

struct tracked_fd {
	int fd;
	const char *name;
	int open_flags;
	long offset; /* where it is left before READY */
	char path[4096];
	dev_t dev;
	ino_t ino;
	int status_flags, fd_flags;
};

static struct tracked_fd fds[] = {
	{ .fd = 7, .name = "read-only.txt", .open_flags = O_RDONLY, .offset = 100 },
	{ .fd = 42, .name = "write-only.txt", .open_flags = O_WRONLY, .offset = 1234 },
	{ .fd = 100, .name = "append.log", .open_flags = O_WRONLY | O_APPEND, .offset = -1 /* end */ },
	{ .fd = 513, .name = "read-write.bin", .open_flags = O_RDWR | O_NONBLOCK | O_CLOEXEC, .offset = 777 },
};
#define FD_COUNT (sizeof(fds) / sizeof(fds[0]))
#define DUP_OF_42 200
#define FILE_BYTES 8192

static const int expected_fds[] = { 0, 1, 2, 7, 42, 100, DUP_OF_42, 513 };
#define EXPECTED_COUNT (sizeof(expected_fds) / sizeof(expected_fds[0]))

static unsigned char content_byte(int fd, long offset)
{
	return (unsigned char)(fd * 31 + offset * 7 + (offset >> 8));
}

static void open_at_number(struct tracked_fd *t, const char *dir)
{
	snprintf(t->path, sizeof(t->path), "%s/%s", dir, t->name);
	int fd = open(t->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	unsigned char data[FILE_BYTES];
	for (long i = 0; i < FILE_BYTES; i++)
		data[i] = content_byte(t->fd, i);
	if (fd < 0 || write(fd, data, FILE_BYTES) != FILE_BYTES)
		exit(3);
	close(fd);
	fd = open(t->path, t->open_flags);
	if (fd < 0 || dup3(fd, t->fd, t->open_flags & O_CLOEXEC) != t->fd)
		exit(3);
	close(fd);
	if (t->offset >= 0)
		lseek(t->fd, t->offset, SEEK_SET);
	else
		t->offset = lseek(t->fd, 0, SEEK_END);
	struct stat st;
	fstat(t->fd, &st);
	t->dev = st.st_dev;
	t->ino = st.st_ino;
	t->status_flags = fcntl(t->fd, F_GETFL) & (O_ACCMODE | O_APPEND | O_NONBLOCK);
	t->fd_flags = fcntl(t->fd, F_GETFD);
}

static void check_fd_set(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		fail("cannot list /proc/self/fd");
		return;
	}
	int seen = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name), known = 0;
		if (fd == dirfd(d))
			continue;
		for (unsigned i = 0; i < EXPECTED_COUNT; i++)
			known |= expected_fds[i] == fd;
		if (!known)
			fail("unexpected fd %d is open", fd);
		seen += known;
	}
	closedir(d);
	if (seen != (int)EXPECTED_COUNT)
		fail("%d of the %zu expected fds are open", seen, EXPECTED_COUNT);
}

static void check_one(const struct tracked_fd *t)
{
	struct stat st;
	if (fstat(t->fd, &st) != 0) {
		fail("fd %d is not open", t->fd);
		return;
	}
	if (st.st_dev != t->dev || st.st_ino != t->ino)
		fail("fd %d is another file (ino %lu, was %lu)", t->fd, (unsigned long)st.st_ino,
		     (unsigned long)t->ino);
	char link[64], target[4096] = "";
	snprintf(link, sizeof(link), "/proc/self/fd/%d", t->fd);
	if (readlink(link, target, sizeof(target) - 1) < 0 || strcmp(target, t->path) != 0)
		fail("fd %d points at '%s', expected '%s'", t->fd, target, t->path);
	int status_flags = fcntl(t->fd, F_GETFL) & (O_ACCMODE | O_APPEND | O_NONBLOCK);
	if (status_flags != t->status_flags)
		fail("fd %d status flags %#o, expected %#o", t->fd, status_flags, t->status_flags);
	int fd_flags = fcntl(t->fd, F_GETFD);
	if (fd_flags != t->fd_flags)
		fail("fd %d FD_CLOEXEC %d, expected %d", t->fd, fd_flags, t->fd_flags);
	long offset = lseek(t->fd, 0, SEEK_CUR);
	if (offset != t->offset)
		fail("fd %d offset %ld, expected %ld", t->fd, offset, t->offset);
}

static void check_contents_and_sharing(void)
{
	unsigned char got;
	/* read-only fd: reading continues at the saved offset */
	if (read(7, &got, 1) != 1 || got != content_byte(7, fds[0].offset))
		fail("fd 7 read the wrong byte at offset %ld", fds[0].offset);
	/* 42 and 200 share one open file description, so one offset */
	lseek(42, 5, SEEK_CUR);
	long shared = lseek(DUP_OF_42, 0, SEEK_CUR);
	if (shared != fds[1].offset + 5)
		fail("fd 200 offset %ld after moving fd 42 to %ld: not one file description", shared,
		     fds[1].offset + 5);
	/* O_APPEND: a write lands at the end whatever the offset */
	static const char line[] = "written after restore\n";
	lseek(100, 0, SEEK_SET);
	if (write(100, line, sizeof(line) - 1) != sizeof(line) - 1)
		fail("write to fd 100 failed: %s", strerror(errno));
	char tail[sizeof(line)] = "";
	int reader = open(fds[2].path, O_RDONLY);
	if (reader < 0 || pread(reader, tail, sizeof(line) - 1, FILE_BYTES) != sizeof(line) - 1 ||
	    memcmp(tail, line, sizeof(line) - 1) != 0)
		fail("the write to the O_APPEND fd did not land at the end of the file");
	if (reader >= 0)
		close(reader);
}

static void break_state(void)
{
	if (breaking("offset"))
		lseek(7, 1, SEEK_CUR);
	if (breaking("flags"))
		fcntl(513, F_SETFL, fcntl(513, F_GETFL) & ~O_NONBLOCK);
	if (breaking("cloexec"))
		fcntl(513, F_SETFD, 0);
	if (breaking("extra-fd"))
		dup2(0, 300);
	if (breaking("shared")) { /* fd 200 becomes its own description of the same file */
		int own = open(fds[1].path, O_WRONLY);
		lseek(own, fds[1].offset, SEEK_SET);
		dup2(own, DUP_OF_42);
		close(own);
	}
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = { "offset", "flags", "cloexec", "extra-fd", "shared", NULL };
	protocol_start(argc, argv, kinds, 0);
	char given[4096], dir[PATH_MAX];
	result_dir(given, sizeof(given));
	if (!realpath(given, dir)) /* /proc/self/fd links are canonical paths */
		return 3;
	for (unsigned i = 0; i < FD_COUNT; i++)
		open_at_number(&fds[i], dir);
	if (dup2(42, DUP_OF_42) != DUP_OF_42)
		return 3;
	protocol_ready();
	wait_for_check();
	break_state();
	check_fd_set();
	for (unsigned i = 0; i < FD_COUNT; i++)
		check_one(&fds[i]);
	check_contents_and_sharing();
	return protocol_report();
}
