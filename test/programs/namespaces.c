/* namespaces: a parent P that unshares its UTS and IPC namespaces, names its host crr-ns-host
 * and domain crr-ns.example, sets IPC limits (kernel.msgmax 12345, kernel.sem "300 64000 50
 * 210", fs.mqueue.msg_max 42), then forks a child C that sleeps (C shares P's namespaces).
 * Check (P on SIGUSR1): uname's node and domain names, the three sysctls, and C in P's UTS and
 * IPC namespaces (same /proc/PID/ns links).
 * Setups (argv[2]): plain; sysv (P also makes SysV objects in its IPC namespace: a message queue
 * with two messages, a set of three semaphores, a 10,000-byte segment, detached, and a
 * 3-page one it keeps attached (C inherits the attachment) and removes (IPC_RMID); the check
 * finds each by key at the id it had, with its contents, and the attached one still attached by
 * both and marked SHM_DEST); net (P also unshares a network
 * namespace, brings lo up and listens on 127.0.0.1:4242; the check finds lo up, C in P's network
 * namespace, and connects to the listener and gets a byte across);
 * user (P also unshares a user namespace first: a child of its, still in crr's, writes the maps
 * "0 100000 65536" for uids and gids and exits; the check finds P root in it with those maps);
 * cgroup (P first enters the cgroup directory argv[3] then also unshares a cgroup namespace; the
 * check finds P at the root of every hierarchy of it, C too);
 * nested (C unshares UTS, IPC and network namespaces of its own, names its host crr-nested, makes
 * a message queue with one message, brings its lo up, makes a unix socketpair at 60/61 with
 * bytes queued and listens on 127.0.0.1:4243 at 62, then forks a grandchild G that shares them;
 * the check finds the bytes through a copy of C's fd 61 and, entering C's namespaces, that name,
 * queue, lo and listener, G in C's namespaces and C in none of P's);
 * for the dump's refusals: nested-socket (nested, C also holding at 63 a UDP socket P made in its
 * network namespace before the fork),
 * nested-pid (C unshares a PID namespace: G is in one other than C's), netdev (net, plus a
 * veth pair made by ip).
 * Breaks: hostname (P renames its host before checking), msgmax (P changes kernel.msgmax). */
#include "common.h"
#include <sched.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/syscall.h>

static const char *const breaks[] = { "hostname", "msgmax", NULL };

#define HOST "crr-ns-host"
#define DOMAIN "crr-ns.example"
#define MSGMAX "12345"
#define SEM "300\t64000\t50\t210"
#define MQ_MSG_MAX "42"

#define MSG_KEY 0x4352
#define SEM_KEY 0x4353
#define SHM_KEY 0x4354
#define SHM_BYTES 10000
#define KEPT_BYTES (3 * 4096)
static int msg_id, sem_id, shm_id, kept_id;
static unsigned char *kept; /* a segment P keeps attached, removed (IPC_RMID) while attached */

struct text_message {
	long mtype;
	char text[16];
};

static unsigned char shm_byte(int i)
{
	return (unsigned char)(i * 7 + 3);
}

static int make_sysv(void)
{
	/* One object of each kind made and removed first: the real ones get ids other than 0. */
	if (msgctl(msgget(IPC_PRIVATE, 0600), IPC_RMID, NULL) || semctl(semget(IPC_PRIVATE, 1, 0600), 0, IPC_RMID) ||
	    shmctl(shmget(IPC_PRIVATE, 4096, 0600), IPC_RMID, NULL))
		return -1;
	msg_id = msgget(MSG_KEY, IPC_CREAT | 0640);
	struct text_message first = { 5, "first" }, second = { 9, "second one" };
	if (msg_id < 0 || msgsnd(msg_id, &first, 6, 0) || msgsnd(msg_id, &second, 11, 0))
		return -1;
	sem_id = semget(SEM_KEY, 3, IPC_CREAT | 0600);
	unsigned short values[3] = { 4, 0, 32767 };
	if (sem_id < 0 || semctl(sem_id, 0, SETALL, values))
		return -1;
	shm_id = shmget(SHM_KEY, SHM_BYTES, IPC_CREAT | 0600);
	unsigned char *at = shm_id < 0 ? (void *)-1 : shmat(shm_id, NULL, 0);
	if (at == (void *)-1)
		return -1;
	for (int i = 0; i < SHM_BYTES; i++)
		at[i] = shm_byte(i);
	if (shmdt(at))
		return -1;
	kept_id = shmget(IPC_PRIVATE, KEPT_BYTES, IPC_CREAT | 0600);
	kept = kept_id < 0 ? (void *)-1 : shmat(kept_id, NULL, 0);
	if (kept == (void *)-1)
		return -1;
	for (int i = 0; i < KEPT_BYTES; i++)
		kept[i] = shm_byte(i + 1);
	return shmctl(kept_id, IPC_RMID, NULL);
}

static void check_sysv(void)
{
	if (msgget(MSG_KEY, 0) != msg_id || semget(SEM_KEY, 0, 0) != sem_id || shmget(SHM_KEY, 0, 0) != shm_id) {
		fail("SysV ids by key: msg %d sem %d shm %d, not %d %d %d", msgget(MSG_KEY, 0), semget(SEM_KEY, 0, 0),
		     shmget(SHM_KEY, 0, 0), msg_id, sem_id, shm_id);
		return;
	}
	struct text_message m;
	ssize_t n = msgrcv(msg_id, &m, sizeof(m.text), 0, IPC_NOWAIT);
	if (n != 6 || m.mtype != 5 || strcmp(m.text, "first"))
		fail("the first message is not (5, \"first\")");
	n = msgrcv(msg_id, &m, sizeof(m.text), 0, IPC_NOWAIT);
	if (n != 11 || m.mtype != 9 || strcmp(m.text, "second one"))
		fail("the second message is not (9, \"second one\")");
	unsigned short values[3] = { 0 };
	if (semctl(sem_id, 0, GETALL, values) || values[0] != 4 || values[1] != 0 || values[2] != 32767)
		fail("the semaphores are %u %u %u, not 4 0 32767", values[0], values[1], values[2]);
	unsigned char *at = shmat(shm_id, NULL, SHM_RDONLY);
	if (at == (void *)-1) {
		fail("shmat: %s", strerror(errno));
		return;
	}
	for (int i = 0; i < SHM_BYTES; i++)
		if (at[i] != shm_byte(i)) {
			fail("the segment differs at byte %d", i);
			break;
		}
	shmdt(at);
	for (int i = 0; i < KEPT_BYTES; i++)
		if (kept[i] != shm_byte(i + 1)) {
			fail("the attached segment differs at byte %d", i);
			break;
		}
	struct shmid_ds ds;
	if (shmctl(kept_id, IPC_STAT, &ds))
		fail("the attached segment %d: %s", kept_id, strerror(errno));
	else if (ds.shm_nattch != 2 || !(ds.shm_perm.mode & SHM_DEST))
		fail("the attached segment has %lu attachments, mode %#o (want 2, P's and C's, and SHM_DEST)", (unsigned long)ds.shm_nattch,
		     ds.shm_perm.mode);
}

static void check_same_ns(pid_t child, const char *kind);

#define PORT 4242
static int listener = -1;

static short lo_flags(int request, short set)
{
	struct ifreq req;
	memset(&req, 0, sizeof(req));
	strcpy(req.ifr_name, "lo");
	req.ifr_flags = set;
	int sock = socket(AF_INET, SOCK_DGRAM, 0);
	int rc = sock < 0 ? -1 : ioctl(sock, request, &req);
	if (sock >= 0)
		close(sock);
	return rc < 0 ? -1 : req.ifr_flags;
}

static int listen_on_loopback(void)
{
	if (lo_flags(SIOCSIFFLAGS, IFF_UP) < 0)
		return -1;
	struct sockaddr_in at = { .sin_family = AF_INET, .sin_port = htons(PORT), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	listener = socket(AF_INET, SOCK_STREAM, 0);
	if (listener < 0 || bind(listener, (struct sockaddr *)&at, sizeof(at)) || listen(listener, 4))
		return -1;
	return 0;
}

static void check_network(pid_t child)
{
	short flags = lo_flags(SIOCGIFFLAGS, 0);
	if (flags < 0 || !(flags & IFF_UP))
		fail("lo is not up (flags %#x)", flags);
	check_same_ns(child, "net");
	struct sockaddr_in at = { .sin_family = AF_INET, .sin_port = htons(PORT), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int client = socket(AF_INET, SOCK_STREAM, 0);
	if (client < 0 || connect(client, (struct sockaddr *)&at, sizeof(at))) {
		fail("connecting to 127.0.0.1:%d: %s", PORT, strerror(errno));
		return;
	}
	int served = accept(listener, NULL, NULL);
	char byte = 0;
	if (served < 0 || write(client, "n", 1) != 1 || read(served, &byte, 1) != 1 || byte != 'n')
		fail("no byte across the loopback connection");
	close(client);
	if (served >= 0)
		close(served);
}

static int write_file(const char *path, const char *text);

#define NESTED_HOST "crr-nested"
#define NESTED_KEY 0x4e5354
#define NESTED_TEXT "nested message"

struct nested_msg {
	long mtype;
	char text[64];
};

/* In the child: namespaces of its own with a name, a queue and lo up; then a grandchild in them. */
static void nest(const char *setup)
{
	int pid_ns = !strcmp(setup, "nested-pid");
	if (unshare(pid_ns ? CLONE_NEWPID : CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET))
		_exit(8);
	if (!pid_ns) {
		struct nested_msg m = { .mtype = 7 };
		strcpy(m.text, NESTED_TEXT);
		int q = msgget(NESTED_KEY, IPC_CREAT | 0600);
		int pair[2];
		if (sethostname(NESTED_HOST, strlen(NESTED_HOST)) || q < 0 || msgsnd(q, &m, sizeof(NESTED_TEXT), 0) ||
		    lo_flags(SIOCSIFFLAGS, IFF_UP) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, pair) ||
		    dup2(pair[0], 60) != 60 || dup2(pair[1], 61) != 61 || write(60, NESTED_TEXT, sizeof(NESTED_TEXT)) != sizeof(NESTED_TEXT))
			_exit(12);
		close(pair[0]), close(pair[1]);
	}
	if (!pid_ns) {
		struct sockaddr_in at = { .sin_family = AF_INET, .sin_port = htons(PORT + 1), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0 || bind(s, (struct sockaddr *)&at, sizeof(at)) || listen(s, 4) || dup2(s, 62) != 62)
			_exit(13);
		close(s);
	}
	if (fork() == 0)
		for (;;)
			pause();
}

static void enter(pid_t pid, const char *kind, int nstype)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, kind);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, nstype))
		fail("entering %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static pid_t grandchild;

/* Last of the checks: it leaves P in C's namespaces. */
static void check_nested(pid_t child)
{
	char path[64], kids[64] = { 0 };
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)child, (int)child);
	grandchild = atoi(read_proc_file(path, kids, sizeof(kids)));
	const char *kinds[] = { "uts", "ipc", "net" };
	for (int i = 0; i < 3; i++) {
		char a[64] = { 0 }, b[64] = { 0 }, c[64] = { 0 };
		snprintf(path, sizeof(path), "/proc/self/ns/%s", kinds[i]);
		readlink(path, a, sizeof(a) - 1);
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)child, kinds[i]);
		readlink(path, b, sizeof(b) - 1);
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)grandchild, kinds[i]);
		readlink(path, c, sizeof(c) - 1);
		if (!strcmp(a, b))
			fail("the child is in its parent's %s namespace", kinds[i]);
		if (strcmp(b, c) || !grandchild)
			fail("the grandchild %d is not in the child's %s namespace", (int)grandchild, kinds[i]);
	}
	/* the unix socketpair C made inside its network namespace, with its bytes, through a copy of C's fd 61 */
	char bytes[64] = { 0 };
	int pidfd = syscall(434 /* pidfd_open */, child, 0);
	int copy = pidfd < 0 ? -1 : syscall(438 /* pidfd_getfd */, pidfd, 61, 0);
	if (copy < 0 || recv(copy, bytes, sizeof(bytes), MSG_DONTWAIT) != sizeof(NESTED_TEXT) || strcmp(bytes, NESTED_TEXT))
		fail("the child's socketpair at 60/61 does not hold '%s' (%s)", NESTED_TEXT, copy < 0 ? strerror(errno) : bytes);
	enter(child, "uts", CLONE_NEWUTS);
	struct utsname u;
	uname(&u);
	if (strcmp(u.nodename, NESTED_HOST))
		fail("the child's host name is '%s', not '%s'", u.nodename, NESTED_HOST);
	enter(child, "ipc", CLONE_NEWIPC);
	struct nested_msg m = { 0 };
	int q = msgget(NESTED_KEY, 0);
	if (q < 0 || msgrcv(q, &m, sizeof(m.text), 0, IPC_NOWAIT) != sizeof(NESTED_TEXT) || m.mtype != 7 || strcmp(m.text, NESTED_TEXT))
		fail("the child's message queue: %s", q < 0 ? strerror(errno) : m.text);
	enter(child, "net", CLONE_NEWNET);
	short flags = lo_flags(SIOCGIFFLAGS, 0);
	if (flags < 0 || !(flags & IFF_UP))
		fail("lo is not up in the child's network namespace (flags %#x)", flags);
	struct sockaddr_in at = { .sin_family = AF_INET, .sin_port = htons(PORT + 1), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int client = socket(AF_INET, SOCK_STREAM, 0);
	if (client < 0 || connect(client, (struct sockaddr *)&at, sizeof(at)))
		fail("connecting to the child's listener on 127.0.0.1:%d in its namespace: %s", PORT + 1, strerror(errno));
	if (client >= 0)
		close(client);
}

/* A user namespace for P, mapped by a child still in crr's (P cannot map more than itself). */
static int enter_user_namespace(int more_flags)
{
	char dir[4096];
	result_dir(dir, sizeof(dir));
	if (chmod(dir, 0777)) /* P writes its result file as uid 100000 from now on */
		return -1;
	int go[2];
	if (pipe(go))
		return -1;
	pid_t mapper = fork();
	if (mapper == 0) {
		char byte, path[64];
		if (read(go[0], &byte, 1) != 1)
			_exit(1);
		snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)getppid());
		int bad = write_file(path, "0 100000 65536");
		snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)getppid());
		_exit(bad || write_file(path, "0 100000 65536"));
	}
	int status = -1;
	if (mapper < 0 || unshare(CLONE_NEWUSER | more_flags) || write(go[1], "m", 1) != 1 || waitpid(mapper, &status, 0) != mapper)
		return -1;
	close(go[0]);
	close(go[1]);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || setresgid(0, 0, 0) || setresuid(0, 0, 0))
		return -1;
	/* The id change made P undumpable: its /proc/PID/ns links (and C's) would be root's. */
	return prctl(PR_SET_DUMPABLE, 1);
}

/* In a cgroup namespace entered where it was made, every hierarchy's path is its root. */
static void check_cgroup_root(const char *who)
{
	char path[64], text[2048];
	snprintf(path, sizeof(path), "/proc/%s/cgroup", who);
	read_proc_file(path, text, sizeof(text));
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char *colon = strrchr(line, ':');
		if (!colon || strcmp(colon, ":/"))
			fail("%s: cgroup line '%s' is not at the namespace's root", path, line);
	}
}

static void check_user_namespace(void)
{
	char map[256];
	read_proc_file("/proc/self/uid_map", map, sizeof(map));
	unsigned long first = 1, lower = 0, count = 0;
	sscanf(map, "%lu %lu %lu", &first, &lower, &count);
	if (first != 0 || lower != 100000 || count != 65536)
		fail("uid_map is '%lu %lu %lu', not '0 100000 65536'", first, lower, count);
	if (getuid() != 0 || getgid() != 0 || geteuid() != 0)
		fail("P is uid %d gid %d in its user namespace, not root", (int)getuid(), (int)getgid());
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static void check_sysctl(const char *path, const char *want)
{
	char got[256];
	read_proc_file(path, got, sizeof(got));
	char *end = got + strlen(got);
	while (end > got && end[-1] == '\n')
		*--end = 0;
	if (strcmp(got, want))
		fail("%s is '%s', not '%s'", path, got, want);
}

static void check_same_ns(pid_t child, const char *kind)
{
	char mine[64], theirs[64], path[64];
	snprintf(path, sizeof(path), "/proc/self/ns/%s", kind);
	ssize_t a = readlink(path, mine, sizeof(mine) - 1);
	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)child, kind);
	ssize_t b = readlink(path, theirs, sizeof(theirs) - 1);
	if (a < 0 || b < 0 || a != b || memcmp(mine, theirs, a))
		fail("the child is not in the parent's %s namespace", kind);
}

int main(int argc, char **argv)
{
	protocol_start(argc, argv, breaks, 0);
	const char *setup = argc > 2 ? argv[2] : "plain";
	int networked = !strcmp(setup, "net") || !strcmp(setup, "netdev");
	int flags = CLONE_NEWUTS | CLONE_NEWIPC | (networked ? CLONE_NEWNET : 0);
	int user = !strcmp(setup, "user");
	int cgroup = !strcmp(setup, "cgroup");
	if (cgroup) {
		char procs[4200], pid[32];
		snprintf(procs, sizeof(procs), "%s/cgroup.procs", argc > 3 ? argv[3] : "/nonexistent");
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		if (write_file(procs, pid))
			return 11;
		flags |= CLONE_NEWCGROUP;
	}
	if (user ? enter_user_namespace(flags) : unshare(flags))
		return 3;
	if (sethostname(HOST, strlen(HOST)) || setdomainname(DOMAIN, strlen(DOMAIN)))
		return 4;
	if (write_file("/proc/sys/kernel/msgmax", MSGMAX) || write_file("/proc/sys/kernel/sem", "300 64000 50 210") ||
	    write_file("/proc/sys/fs/mqueue/msg_max", MQ_MSG_MAX))
		return 5;
	if (!strcmp(setup, "sysv") && make_sysv())
		return 6;
	if (networked && listen_on_loopback())
		return 9;
	if (!strcmp(setup, "netdev") && system("ip link add crr-v0 type veth peer name crr-v1"))
		return 10;
	if (!strcmp(setup, "nested-socket")) {
		int udp = socket(AF_INET, SOCK_DGRAM, 0);
		if (udp < 0 || dup2(udp, 63) != 63)
			return 14;
		close(udp);
	}
	pid_t child = fork();
	if (child < 0)
		return 7;
	if (child == 0) {
		if (!strncmp(setup, "nested", 6))
			nest(setup);
		for (;;)
			pause();
	}
	protocol_ready();
	wait_for_check();
	if (breaking("hostname"))
		sethostname("renamed", 7);
	if (breaking("msgmax"))
		write_file("/proc/sys/kernel/msgmax", "8192");
	struct utsname u;
	uname(&u);
	if (strcmp(u.nodename, HOST))
		fail("the host name is '%s', not '%s'", u.nodename, HOST);
	if (strcmp(u.domainname, DOMAIN))
		fail("the domain name is '%s', not '%s'", u.domainname, DOMAIN);
	check_sysctl("/proc/sys/kernel/msgmax", MSGMAX);
	check_sysctl("/proc/sys/kernel/sem", SEM);
	check_sysctl("/proc/sys/fs/mqueue/msg_max", MQ_MSG_MAX);
	int nested = !strcmp(setup, "nested") || !strcmp(setup, "nested-socket");
	if (!nested) {
		check_same_ns(child, "uts");
		check_same_ns(child, "ipc");
	}
	if (!strcmp(setup, "sysv"))
		check_sysv();
	if (networked)
		check_network(child);
	if (cgroup) {
		check_cgroup_root("self");
		char child_dir[32];
		snprintf(child_dir, sizeof(child_dir), "%d", (int)child);
		check_cgroup_root(child_dir);
		check_same_ns(child, "cgroup");
	}
	if (user) {
		check_user_namespace();
		check_same_ns(child, "user");
	}
	if (nested)
		check_nested(child);
	int rc = protocol_report();
	if (grandchild > 0)
		kill(grandchild, SIGKILL);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return rc;
}
