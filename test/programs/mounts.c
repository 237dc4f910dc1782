/* mounts: a program in a mount namespace of its own (unshared, made private). In its directory:
 * t, a tmpfs (size=4m, mode=0750) holding note ("tmpfs note\n", open at fd 40 at offset 6), a
 * directory sub and a symlink link -> note; b, a read-only bind mount of src (holding bound,
 * "bound data\n"). argv[2], a mount of crr's namespace the test made, is detached.
 * Check (SIGUSR1): fd 40 at offset 6 reads "note\n"; t/note, t/link and t/sub are there; t is a
 * tmpfs mount of mode 0750 (its own device); b/bound reads "bound data\n" and b takes no write
 * (EROFS); argv[2] is no mount point any more.
 * Break: tmpfs (P unmounts t before checking). */
#include "common.h"
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

static const char *const breaks[] = { "tmpfs", NULL };

static char dir[4096], tmp[4200], note[4300], src[4200], bind_dir[4200];

static int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	int ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	close(fd);
	return ok ? 0 : -1;
}

static void expect_text(const char *path, const char *want)
{
	char got[256] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, got, sizeof(got) - 1);
	if (fd >= 0)
		close(fd);
	got[n > 0 ? n : 0] = 0;
	if (strcmp(got, want))
		fail("%s reads '%s', not '%s'", path, got, want);
}

/* A mount point: its device differs from its parent directory's. */
static int is_mount_point(const char *path)
{
	char parent[4300];
	snprintf(parent, sizeof(parent), "%s/..", path);
	struct stat a, b;
	return stat(path, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	if (argc < 3) {
		write_result("ERROR usage: mounts RESULT_FILE MOUNT_TO_DETACH\n");
		return 2;
	}
	result_dir(dir, sizeof(dir));
	snprintf(tmp, sizeof(tmp), "%s/t", dir);
	snprintf(note, sizeof(note), "%s/t/note", dir);
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(bind_dir, sizeof(bind_dir), "%s/b", dir);
	char path[4300];
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return 3;
	if (mkdir(tmp, 0755) || mount("tmpfs", tmp, "tmpfs", MS_NOSUID, "size=4m,mode=0750"))
		return 4;
	snprintf(path, sizeof(path), "%s/t/sub", dir);
	if (write_text(note, "tmpfs note\n") || mkdir(path, 0700))
		return 5;
	snprintf(path, sizeof(path), "%s/t/link", dir);
	if (symlink("note", path))
		return 6;
	int fd = open(note, O_RDWR);
	if (fd < 0 || dup2(fd, 40) != 40 || lseek(40, 6, SEEK_SET) != 6)
		return 7;
	close(fd);
	snprintf(path, sizeof(path), "%s/bound", src);
	if (mkdir(src, 0755) || write_text(path, "bound data\n") || mkdir(bind_dir, 0755))
		return 8;
	if (mount(src, bind_dir, NULL, MS_BIND, NULL) || mount(NULL, bind_dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL))
		return 9;
	if (umount2(argv[2], MNT_DETACH))
		return 10;
	protocol_ready();
	wait_for_check();
	if (breaking("tmpfs"))
		umount2(tmp, MNT_DETACH);
	char got[16] = "";
	if (pread(40, got, 5, 6) != 5 || memcmp(got, "note\n", 5))
		fail("fd 40 at offset 6 reads '%.5s', not 'note\\n'", got);
	if (lseek(40, 0, SEEK_CUR) != 6)
		fail("fd 40 is not at offset 6");
	expect_text(note, "tmpfs note\n");
	snprintf(path, sizeof(path), "%s/t/link", dir);
	expect_text(path, "tmpfs note\n");
	struct stat st;
	snprintf(path, sizeof(path), "%s/t/sub", dir);
	if (stat(path, &st) || !S_ISDIR(st.st_mode) || (st.st_mode & 0777) != 0700)
		fail("t/sub is not a directory of mode 0700");
	if (!is_mount_point(tmp) || stat(tmp, &st) || (st.st_mode & 0777) != 0750)
		fail("t is not a mount point of mode 0750");
	snprintf(path, sizeof(path), "%s/bound", bind_dir);
	expect_text(path, "bound data\n");
	snprintf(path, sizeof(path), "%s/new", bind_dir);
	if (write_text(path, "x") == 0 || errno != EROFS)
		fail("b takes a write (not read-only)");
	if (is_mount_point(argv[2]))
		fail("%s is still a mount point", argv[2]);
	return protocol_report();
}
