/* Self-checking process-tree program: 20 processes over 3 sessions and 7 process groups,
 * with a group whose leader is a sibling (B leads C), one led by an uncle (B leads F1), one
 * whose leader is a zombie (Z exited with status 7, unreaped; Y stays in its group) and a
 * chain E1 -> E2 -> E3 -> E4 under the session leader E. After a restore every process checks
 * its own ppid/pgid/sid (the root only pgid/sid: its parent is whoever restored it); the root
 * relays SIGUSR1 to all, gathers their RESULT_FILE.<pid> files, reaps Z expecting status 7.
 *
 *   R (session 1, group R) --- A (group A) --- A1, A2 (group A)
 *     |- B (group B)   |- C (group B)   |- F (group R) --- F1 (group B)
 *     |- D (session 2) --- D1 (group D1) --- D4;  D2 (group D1);  D3 (group D)
 *     |- E (session 3) --- E1 --- E2 (group E2) --- E3 --- E4
 *     |- Z (group Z, zombie, exit 7)   |- Y (group Z)
 * Usage: tree RESULT_FILE */
#include "common.h"
#include <sys/wait.h>

#define MEMBERS 18 /* all but the root and the zombie */

static int ready_pipe[2];
static pid_t member_pids[MEMBERS];

/* A member's life after its own setup: record who it is, tell the root (its PID through the
 * pipe; closing the pipe end means "settled"), wait, check, leave its result, stay alive. */
static void settle_and_serve(const char *role)
{
	pid_t ppid = getppid(), pgid = getpgid(0), sid = getsid(0), self = getpid();
	if (write(ready_pipe[1], &self, sizeof(self)) != sizeof(self))
		_exit(3);
	close(ready_pipe[1]);
	wait_for_check();
	if (breaking("pgid") && strcmp(role, "F1") == 0)
		setpgid(0, 0);
	if (breaking("sid") && strcmp(role, "E4") == 0)
		setsid();
	char text[256], path[4096];
	if (getppid() != ppid || getpgid(0) != pgid || getsid(0) != sid)
		snprintf(text, sizeof(text), "FAIL %s (pid %d): ppid/pgid/sid %d/%d/%d, were %d/%d/%d\n",
			 role, self, getppid(), getpgid(0), getsid(0), ppid, pgid, sid);
	else
		snprintf(text, sizeof(text), "PASS\n");
	snprintf(path, sizeof(path), "%s.%d", result_path, self);
	write_file_atomically(path, text);
	for (;;)
		pause();
}

/* Forks a child that runs `body`; the parent also sets the child's group when asked (both
 * sides call setpgid so neither can run ahead of the other). */
static pid_t spawn(void (*body)(void), pid_t group)
{
	pid_t pid = fork();
	if (pid < 0)
		_exit(3);
	if (pid == 0) {
		if (ready_pipe[0] >= 0) { /* only the root reads; EOF needs every other end closed */
			close(ready_pipe[0]);
			ready_pipe[0] = -1;
		}
		if (group >= 0)
			setpgid(0, group);
		body();
		_exit(0);
	}
	if (group >= 0)
		setpgid(pid, group ? group : pid);
	return pid;
}

static void leaf_a1(void) { settle_and_serve("A1"); }
static void leaf_a2(void) { settle_and_serve("A2"); }
static void proc_a(void)
{
	spawn(leaf_a1, -1);
	spawn(leaf_a2, -1);
	settle_and_serve("A");
}
static void proc_b(void) { settle_and_serve("B"); }
static void proc_c(void) { settle_and_serve("C"); }
static pid_t group_b;
static void leaf_f1(void) { settle_and_serve("F1"); }
static void proc_f(void)
{
	spawn(leaf_f1, group_b);
	settle_and_serve("F");
}
static void leaf_d4(void) { settle_and_serve("D4"); }
static void proc_d1(void)
{
	spawn(leaf_d4, -1);
	settle_and_serve("D1");
}
static pid_t group_d1;
static void leaf_d2(void) { settle_and_serve("D2"); }
static void leaf_d3(void) { settle_and_serve("D3"); }
static void proc_d(void)
{
	setsid();
	group_d1 = spawn(proc_d1, 0);
	spawn(leaf_d2, group_d1);
	spawn(leaf_d3, -1);
	settle_and_serve("D");
}
static void leaf_e4(void) { settle_and_serve("E4"); }
static void proc_e3(void)
{
	spawn(leaf_e4, -1);
	settle_and_serve("E3");
}
static void proc_e2(void)
{
	spawn(proc_e3, -1);
	settle_and_serve("E2");
}
static void proc_e1(void)
{
	spawn(proc_e2, 0);
	settle_and_serve("E1");
}
static void proc_e(void)
{
	setsid();
	spawn(proc_e1, -1);
	settle_and_serve("E");
}
static int go_pipe[2];
static void proc_z(void)
{
	close(ready_pipe[1]);
	close(go_pipe[1]);
	char byte;
	if (read(go_pipe[0], &byte, 1) < 0)
		_exit(3);
	_exit(7);
}
static void proc_y(void)
{
	close(go_pipe[0]);
	close(go_pipe[1]);
	settle_and_serve("Y");
}

static char proc_state(pid_t pid, pid_t *pgid)
{
	char path[64], text[512] = "";
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	char *after = n > 0 ? strrchr(text, ')') : NULL;
	char state = 0;
	int ppid = 0, group = 0;
	if (!after || sscanf(after + 2, "%c %d %d", &state, &ppid, &group) != 3)
		return 0;
	if (pgid)
		*pgid = group;
	return state;
}

static void gather_member_results(void)
{
	for (int i = 0; i < MEMBERS; i++) {
		char path[4096], text[512] = "";
		snprintf(path, sizeof(path), "%s.%d", result_path, member_pids[i]);
		int fd = -1;
		for (int tries = 0; tries < 1000 && fd < 0; tries++) { /* up to 10 s */
			fd = open(path, O_RDONLY);
			if (fd < 0)
				usleep(10000);
		}
		if (fd < 0) {
			fail("pid %d wrote no result", member_pids[i]);
			continue;
		}
		ssize_t n = read(fd, text, sizeof(text) - 1);
		close(fd);
		if (n < 4 || strncmp(text, "PASS", 4) != 0)
			fail("%s", strtok(text + (strncmp(text, "FAIL ", 5) == 0 ? 5 : 0), "\n"));
	}
}

static void check_zombie(pid_t zombie)
{
	pid_t pgid = 0;
	char state = proc_state(zombie, &pgid);
	if (state != 'Z')
		fail("pid %d should be a zombie, state '%c'", zombie, state ? state : '?');
	else if (pgid != zombie)
		fail("zombie %d is in group %d, expected its own", zombie, pgid);
	int status = 0;
	pid_t reaped = waitpid(zombie, &status, WNOHANG);
	if (reaped != zombie)
		fail("waitpid(zombie %d) returned %d", zombie, reaped);
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 7)
		fail("zombie status %#x, expected exit 7", status);
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = { "pgid", "sid", "zombie", NULL };
	protocol_start(argc, argv, kinds, 0);
	setsid(); /* fails harmlessly when the runner already made us a session leader */
	if (pipe(ready_pipe) != 0)
		return 3;
	int reader = ready_pipe[0];

	spawn(proc_a, 0);
	group_b = spawn(proc_b, 0);
	spawn(proc_c, group_b);
	spawn(proc_f, -1);
	spawn(proc_d, -1);
	spawn(proc_e, -1);
	if (pipe(go_pipe) != 0)
		return 3;
	pid_t zombie = spawn(proc_z, 0);
	spawn(proc_y, zombie);
	close(go_pipe[0]);
	if (write(go_pipe[1], "x", 1) != 1)
		return 3;
	close(go_pipe[1]);
	close(ready_pipe[1]);

	int members = 0;
	pid_t pid;
	while (read(reader, &pid, sizeof(pid)) == sizeof(pid))
		if (members < MEMBERS)
			member_pids[members++] = pid;
	close(reader);
	if (members != MEMBERS) {
		write_result("ERROR %d members settled, expected %d\n", members, MEMBERS);
		return 2;
	}
	while (proc_state(zombie, NULL) != 'Z')
		usleep(1000);
	pid_t self = getpid();
	protocol_ready();
	wait_for_check();

	for (int i = 0; i < MEMBERS; i++)
		kill(member_pids[i], SIGUSR1);
	if (getpgid(0) != self || getsid(0) != self)
		fail("root pgid/sid %d/%d, expected %d", getpgid(0), getsid(0), self);
	if (breaking("zombie"))
		waitpid(zombie, NULL, 0);
	check_zombie(zombie);
	gather_member_results();
	return protocol_report();
}
