// Dump failures: no such pid, a zombie, a task not permitted, an unsupported fd, and the CLI's
// option errors. Each gives a clear message and exit code, leaves nothing frozen or traced, and
// leaves no image directory that looks complete.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { parseDumpArgs } from '../src/cli/commands/dump.js';
import { parseExternal } from '../src/dump/namespaces.js';
import { safe, startDetached } from './lib/detached.js';
import { CrrError, UsageError } from '../src/errors.js';
import { tracer } from '../src/actors/tracer.js';

function children(pid: number): number[] {
  return safe(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/).filter(Boolean).map(Number);
}

function assertUntouched(t: Tap.Test, pid: number) {
  const stat = safe(`/proc/${pid}/stat`).replace(/^.*\) /, '').split(' ')[0];
  t.not(stat, 't', `pid ${pid} not left in tracing stop`);
  t.not(stat, 'T', `pid ${pid} not left stopped`);
  t.match(safe(`/proc/${pid}/status`), /TracerPid:\s+0\n/, `pid ${pid} not left traced`);
}

function assertNoCheckpoint(t: Tap.Test, dir: string) {
  t.notOk(existsSync(join(dir, 'inventory.img')), 'no inventory.img');
  t.same(existsSync(dir) ? readdirSync(dir) : [], [], 'no partial images left');
}

async function kill(pids: number[]) {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await sleep(50);
}

t.test('no such pid', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-err-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const err = await dump({ pid: 999999, imagesDir: dir }).catch((e) => e);
  t.type(err, CrrError);
  t.match(err.message, /pid 999999: no such process/);
  t.equal(err.exitCode, 3);
  assertNoCheckpoint(t, dir);
});

t.test('a zombie as the root is refused; a tree holding a zombie dumps', async (t) => {
  // sh forks a child that exits at once, then execs sleep, which never reaps it.
  const pid = await startDetached(['sh', '-c', '/bin/true & exec /usr/bin/sleep 1000']);
  await sleep(200);
  const kids = children(pid);
  t.teardown(() => kill([pid, ...kids]));
  t.equal(kids.length, 1, 'one unreaped child');
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-err-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const direct = await dump({ pid: kids[0]!, imagesDir: dir }).catch((e) => e);
  t.type(direct, CrrError);
  t.match(direct.message, new RegExp(`pid ${kids[0]}: is a zombie`));
  assertNoCheckpoint(t, dir);
  const res = await dump({ pid, imagesDir: dir, leaveRunning: true });
  t.same(res.pids, [pid, kids[0]], 'the tree with its zombie dumped');
  assertUntouched(t, pid);
  t.match(safe(`/proc/${kids[0]}/stat`), /\) Z /, 'the zombie is still a zombie');
});

t.test('a task not permitted (a kernel thread)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-err-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const err = await dump({ pid: 2, imagesDir: dir }).catch((e) => e);
  t.type(err, CrrError);
  t.match(err.message, /pid 2: not permitted to trace/);
  assertUntouched(t, 2);
  assertNoCheckpoint(t, dir);
});

t.test('an unsupported fd (a vsock socket) names pid, fd and kind; the task runs on untouched', async (t) => {
  const pid = await startDetached(['/usr/bin/python3', '-c', 'import socket, time\ns = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM, 0)\ntime.sleep(1000)']);
  t.teardown(() => kill([pid]));
  const socketFd = () => readdirSync(`/proc/${pid}/fd`).map(Number).find((n) => spawnSync('readlink', [`/proc/${pid}/fd/${n}`], { encoding: 'utf8' }).stdout.startsWith('socket:'));
  for (let i = 0; i < 200 && socketFd() === undefined; i++) await sleep(20);
  const fd = socketFd();
  t.ok(fd !== undefined, 'the program holds a socket');
  const mapsBefore = safe(`/proc/${pid}/maps`);
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-err-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const err = await dump({ pid, imagesDir: dir }).catch((e) => e);
  t.type(err, CrrError);
  t.match(err.message, new RegExp(`pid ${pid}: fd ${fd} is a socket`));
  assertUntouched(t, pid);
  t.equal(safe(`/proc/${pid}/maps`), mapsBefore, 'scratch area removed, mappings as before');
  assertNoCheckpoint(t, dir);
});

/**
 * Starts a Python program, waits until `ready(pid)` says it is set up, and dumps it: the dump
 * must fail naming what `expected(pid)` matches, leave the task untouched and no checkpoint.
 */
async function refusedPython(t: Tap.Test, lines: string[], ready: (pid: number) => boolean, expected: (pid: number) => RegExp): Promise<void> {
  const pid = await startDetached(['/usr/bin/python3', '-c', ['import ctypes, os, select, time', ...lines, 'time.sleep(1000)'].join('\n')]);
  t.teardown(() => kill([pid]));
  for (let i = 0; i < 200 && !ready(pid); i++) await sleep(20);
  t.ok(ready(pid), 'the program is set up');
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-err-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const err = await dump({ pid, imagesDir: dir }).catch((e) => e);
  t.type(err, CrrError);
  t.match(err.message, expected(pid), 'the error names what it is');
  assertUntouched(t, pid);
  assertNoCheckpoint(t, dir);
}

t.test("an io_uring's rings mapped after its fd was closed: refused, naming the mapping; the task runs on untouched", async (t) => {
  // io_uring_setup (425), the submission ring mapped (IORING_OFF_SQ_RING), the fd closed: only the mapping is left.
  const setUp = [
    'libc = ctypes.CDLL(None, use_errno=True)',
    'libc.mmap.restype = ctypes.c_void_p',
    'params = ctypes.create_string_buffer(120)',
    'fd = libc.syscall(425, 8, params)',
    'assert fd >= 0, os.strerror(ctypes.get_errno())',
    'ring = libc.mmap(None, 4096, 3, 0x01 | 0x8000, fd, ctypes.c_long(0))',
    'assert ring not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())',
    'os.close(fd)',
  ];
  const ring = (pid: number) => safe(`/proc/${pid}/maps`).split('\n').find((l) => l.endsWith('anon_inode:[io_uring]'))?.split(' ')[0];
  const ioUringFd = (pid: number) => readdirSync(`/proc/${pid}/fd`).some((n) => safe(`/proc/${pid}/fdinfo/${n}`).includes('SqMask'));
  await refusedPython(t, setUp, (pid) => ring(pid) !== undefined && !ioUringFd(pid), (pid) => new RegExp(`pid ${pid}: mapping ${ring(pid)} anon_inode:\\[io_uring\\]: memory of a kernel object`));
});

// mq_open's queue and memfd_secret's area look like regular files with a path (/NAME on the
// mqueue filesystem, /secretmem (deleted)) that opens nothing again.
const UNREOPENABLE = {
  'a POSIX message queue': ["rt = ctypes.CDLL('librt.so.1', use_errno=True)", "fd = rt.mq_open(b'/crr-dump-errors', os.O_CREAT | os.O_RDWR, 0o600, None)", "rt.mq_unlink(b'/crr-dump-errors')"],
  'a memfd_secret area': ['fd = ctypes.CDLL(None, use_errno=True).syscall(447, 0)'],
};
for (const [what, make] of Object.entries(UNREOPENABLE)) {
  t.test(`an fd of ${what} is refused, naming pid, fd and kind; the task runs on untouched`, async (t) => {
    const setUp = [...make, 'assert fd >= 0, os.strerror(ctypes.get_errno())', 'os.dup2(fd, 40)'];
    await refusedPython(t, setUp, (pid) => existsSync(`/proc/${pid}/fd/40`), (pid) => new RegExp(`pid ${pid}: fd \\d+ is ${what} \\(`));
  });
}

t.test("a pidfd of a thread (PIDFD_THREAD) is refused, naming pid, fd and thread", async (t) => {
  const setUp = [
    'import threading',
    'libc = ctypes.CDLL(None, use_errno=True)',
    'tids = []',
    'threading.Thread(target=lambda: (tids.append(threading.get_native_id()), time.sleep(1000)), daemon=True).start()',
    'while not tids: time.sleep(0.01)',
    'fd = libc.syscall(434, tids[0], os.O_EXCL)', // pidfd_open(tid, PIDFD_THREAD)
    'assert fd >= 0, os.strerror(ctypes.get_errno())',
    'os.dup2(fd, 40)',
  ];
  const thread = (pid: number) => readdirSync(`/proc/${pid}/task`).map(Number).find((tid) => tid !== pid);
  await refusedPython(t, setUp, (pid) => existsSync(`/proc/${pid}/fd/40`), (pid) => new RegExp(`pid ${pid}: fd \\d+ is a pidfd of thread ${thread(pid)} \\(PIDFD_THREAD\\)`));
});

// The restore adds an epoll's targets at their fd numbers: a target whose fd was closed (its
// file alive through a dup) or names another file now would come back wrong, so both are refused.
const ESCAPED_EPOLL_TARGETS = {
  'closed since': ['d = os.dup(r)', 'os.close(r)'],
  'another file now': ['d = os.dup(r)', 'os.close(r)', 'assert os.open("/dev/null", os.O_RDONLY) == r'],
};
for (const [now, change] of Object.entries(ESCAPED_EPOLL_TARGETS)) {
  t.test(`an epoll watching an fd that is ${now} is refused, naming pid, epoll fd and target`, async (t) => {
    const setUp = ['r, w = os.pipe()', 'ep = select.epoll()', 'ep.register(r, select.EPOLLIN)', ...change, 'os.dup2(ep.fileno(), 50)'];
    const target = (pid: number) => /^tfd:\s*(\d+)/m.exec(safe(`/proc/${pid}/fdinfo/50`))?.[1];
    await refusedPython(t, setUp, (pid) => target(pid) !== undefined, (pid) => new RegExp(`pid ${pid}: fd \\d+ is an epoll instance watching fd ${target(pid)}, which is ${now}`));
  });
}

t.test('a vfork parent waiting for its child is refused, naming why, and left untraced', async (t) => {
  // The child sleeps before it would exec, so the parent stays in the kernel's vfork wait, where
  // no PTRACE_INTERRUPT stops it (and a tracee that never stopped cannot be detached).
  const py = ['import ctypes, time', 'libc = ctypes.CDLL(None)', 'if libc.vfork() == 0:', '    libc.sleep(1000)', '    libc._exit(0)', 'time.sleep(1000)'].join('\n');
  const pid = await startDetached(['/usr/bin/python3', '-c', py]);
  const child = () => Number(safe(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/)[0] ?? 0);
  t.teardown(() => kill([child(), pid].filter(Boolean)));
  for (let i = 0; i < 250 && !child(); i++) await sleep(20);
  t.ok(child(), 'the vfork child exists');
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-err-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const err = await dump({ pid, imagesDir: dir }).catch((e) => e);
  t.type(err, CrrError);
  t.match(err.message, new RegExp(`pid ${pid}: thread ${pid} is a vfork parent waiting for its child to exec or exit \\(state D in \\S+\\): dump once it has`));
  t.match(safe(`/proc/${pid}/status`), /TracerPid:\s+0\n/, 'not left traced');
  assertNoCheckpoint(t, dir);
});

t.test('a thread seized that never stopped (a vfork parent) is let go untraced once it stops, where a failed detach left it stopped', async (t) => {
  const py = ['import ctypes, time', 'libc = ctypes.CDLL(None)', 'if libc.vfork() == 0:', '    libc.sleep(1000)', '    libc._exit(0)', 'time.sleep(1000)'].join('\n');
  const stateOf = (pid: number) => ({ state: safe(`/proc/${pid}/stat`).replace(/^.*\) /, '').split(' ')[0], tracer: Number(/TracerPid:\s+(\d+)/.exec(safe(`/proc/${pid}/status`))?.[1] ?? -1) });
  const stuckParent = async () => {
    const pid = await startDetached(['/usr/bin/python3', '-c', py]);
    t.teardown(() => kill([...children(pid), pid]));
    for (let i = 0; i < 250 && !children(pid).length; i++) await sleep(20);
    await tracer.seize(pid, { exitKill: false, traceClone: false });
    await tracer.interrupt(pid);
    const err = await tracer.waitStop(pid, 300).catch((e) => e);
    t.equal(err.code, 'ETIMEDOUT', `pid ${pid} in its vfork wait does not stop`);
    t.equal((await tracer.detach(pid).catch((e) => e)).code, 'ESRCH', 'and cannot be detached');
    return pid;
  };
  // Once its child is gone it leaves the wait and stops for the interrupt.
  const untilItStops = async (pid: number, want: (s: ReturnType<typeof stateOf>) => boolean) => {
    await kill(children(pid));
    for (let i = 0; i < 250 && !want(stateOf(pid)); i++) await sleep(20);
    return stateOf(pid);
  };
  const kept = await stuckParent();
  const keptState = await untilItStops(kept, (s) => s.state === 't');
  t.equal(keptState.state, 't', 'without release: stopped for its tracer');
  t.ok(keptState.tracer > 0 && existsSync(`/proc/self/task/${keptState.tracer}`), `traced by crr's tracer thread (${keptState.tracer})`);
  await tracer.detach(kept);

  const released = await stuckParent();
  await tracer.release(released);
  const after = await untilItStops(released, (s) => s.tracer === 0);
  t.equal(after.tracer, 0, 'released: untraced');
  t.not(after.state, 't', 'and running on, not stopped');
});

t.test('a deleted root directory is refused, naming the task', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-gone-root-'));
  // chroot into the directory, then remove it through an fd of its parent.
  const setUp = [`parent = os.open(${JSON.stringify(tmpdir())}, os.O_RDONLY)`, `os.chroot(${JSON.stringify(dir)})`, `os.rmdir(${JSON.stringify(dir.split('/').pop())}, dir_fd=parent)`, 'os.close(parent)'];
  const rootGone = (pid: number) => spawnSync('readlink', [`/proc/${pid}/root`], { encoding: 'utf8' }).stdout.includes('(deleted)');
  await refusedPython(t, setUp, rootGone, (pid) => new RegExp(`pid ${pid}: its root ${dir} \\(deleted\\) was deleted; crr cannot make a deleted root again`));
});

t.test("SysV shared memory of crr's own IPC namespace is refused, naming the mapping", async (t) => {
  const setUp = [
    'libc = ctypes.CDLL(None, use_errno=True)',
    'libc.shmat.restype = ctypes.c_void_p',
    'segment = libc.shmget(0, 8192, 0o1600)',
    'libc.shmat(segment, None, 0)',
    'libc.shmctl(segment, 0, None)', // IPC_RMID: it goes with the program
  ];
  await refusedPython(t, setUp, (pid) => safe(`/proc/${pid}/maps`).includes('/SYSV'), (pid) => new RegExp(`pid ${pid}: mapping [0-9a-f]+-[0-9a-f]+ /SYSV0+ \\(deleted\\): SysV shared memory of crr's own IPC namespace`));
});

t.test('an AIO ring its task wrote over is refused, naming it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-err-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ready = join(dir, 'ready');
  // io_setup, then the ring's magic (offset 16) zeroed: a ring crr cannot tell the state of.
  const py = ['import ctypes, sys, time', 'ctx = ctypes.c_ulong(0)', 'ctypes.CDLL(None).syscall(206, 16, ctypes.byref(ctx))', 'ctypes.memset(ctx.value + 16, 0, 4)', 'open(sys.argv[1], "w").close()', 'time.sleep(1000)'].join('\n');
  const pid = await startDetached(['/usr/bin/python3', '-c', py, ready]);
  t.teardown(() => kill([pid]));
  for (let i = 0; i < 200 && !existsSync(ready); i++) await sleep(20);
  t.ok(existsSync(ready), 'the program has its AIO ring, overwritten');
  const images = join(dir, 'images');
  const err = await dump({ pid, imagesDir: images }).catch((e) => e);
  t.type(err, CrrError);
  t.match(err.message, new RegExp(`pid ${pid}: AIO ring at [0-9a-f]+-[0-9a-f]+ is not as the kernel made it \\(magic 0, 127 events, head 0, tail 0\\): its state cannot be told`));
  assertUntouched(t, pid);
  assertNoCheckpoint(t, images);
});

t.test('a TCP connection is refused without --tcp-established', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-err-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const readyDir = mkdtempSync(join(tmpdir(), 'crr-dump-err-ready-'));
  t.teardown(() => rmSync(readyDir, { recursive: true, force: true }));
  const ready = join(readyDir, 'connected');
  // The listener is closed once the connection is accepted: only the connection's two ends are left.
  const script = 'import socket, sys, time\nl = socket.socket()\nl.bind(("127.0.0.1", 0))\nl.listen(1)\nc = socket.create_connection(l.getsockname())\na, _ = l.accept()\nl.close()\nopen(sys.argv[1], "w").close()\ntime.sleep(1000)';
  const pid = await startDetached(['/usr/bin/python3', '-c', script, ready]);
  t.teardown(() => kill([pid]));
  for (let i = 0; i < 200 && !existsSync(ready); i++) await sleep(20);
  t.ok(existsSync(ready), 'the program holds both ends of a connection');
  const err = await dump({ pid, imagesDir: dir }).catch((e) => e);
  t.type(err, CrrError);
  t.match(err.message, new RegExp(`pid ${pid}: fd \\d+ is inet socket \\d+: not supported: a TCP connection in state ESTABLISHED \\(dump with --tcp-established`));
  assertUntouched(t, pid);
  assertNoCheckpoint(t, dir);
});

t.test('CLI options: criu names accepted, unsupported ones named', async (t) => {
  const a = parseDumpArgs(['-t', '42', '-D', '/x', '--leave-running', '-vvv', '--shell-job', '--no-default-config', '-o', 'log']);
  t.same([a.pid, a.imagesDir, a.leaveRunning, a.verbosity, a.logFile, a.shellJob], [42, '/x', true, 5, 'log', true]);
  t.same(parseDumpArgs(['--tree=7', '--images-dir=/y', '--verbosity=4', '--timeout', '5']), { pid: 7, imagesDir: '/y', leaveRunning: false, verbosity: 4, logFile: undefined, timeoutSec: 5 });
  t.match(parseDumpArgs(['-t', '7', '-D', '/y', '--skip-in-flight', '--tcp-established']), { skipInFlight: true, tcpEstablished: true }, '--skip-in-flight');
  t.equal(parseDumpArgs(['-t', '7', '-D', '/y', '--prev-images-dir', '../first']).prevImagesDir, '../first', '--prev-images-dir');
  t.same(parseDumpArgs(['-t', '7', '-D', '/y', '--ext-mount-map', '/vol:data', '--external', 'mnt[/logs]:logs']).external, ['mnt[/vol]:data', 'mnt[/logs]:logs'], '--ext-mount-map, the older spelling of --external mnt[...]');
  t.equal(parseDumpArgs(['-t', '1', '-D', 'd', '-v4']).verbosity, 4);
  t.equal(parseDumpArgs(['-t', '1', '-D', 'd', '--tcp-established']).tcpEstablished, true);
  t.match(parseDumpArgs(['-t', '1', '-D', 'd', '--tcp-close', '--ext-unix-sk']), { tcpClose: true, extUnixSk: true }, '--tcp-close, --ext-unix-sk');
  t.equal(parseDumpArgs(['-t', '1', '-D', 'd', '--ghost-limit', '4M']).ghostLimit, 4 << 20);
  t.equal(parseDumpArgs(['-t', '1', '-D', 'd', '--ghost-limit=100']).ghostLimit, 100);
  t.throws(() => parseDumpArgs(['-t', '1', '-D', 'd', '--ghost-limit', 'lots']), /--ghost-limit: 'lots' is not a size/);
  t.throws(() => parseDumpArgs(['-t', '1', '-D', 'd', '--auto-dedup']), new UsageError("unsupported option '--auto-dedup'"));
  t.throws(() => parseDumpArgs(['-t', '1', '-D', 'd', '--lazy-pages']), /unsupported option '--lazy-pages' .*dump as usual, then crr restore --lazy-pages/, "criu's lazy migration: the restore's lazy pages named instead");
  t.throws(() => parseDumpArgs(['-D', 'd']), /-t\/--tree PID is required/);
  t.same(parseDumpArgs(['-t', '1', '-D', 'd', '--external', 'net[4026532177]:extnet']).external, ['net[4026532177]:extnet']);
  t.throws(() => parseExternal(['dev[/x]:m']), /--external 'dev\[\/x\]:m': crr takes net\[INODE\]:KEY \(the tree's network namespace\) and mnt\[MOUNTPOINT\]:KEY/);
  t.throws(() => parseExternal(['net[1]:a', 'net[2]:b']), /one network namespace only/);
  t.same(parseExternal(['net[42]:k', 'mnt[/vol/]:v']), { net: { inode: 42, key: 'k' }, mounts: new Map([['/vol', 'v']]) });
  t.throws(() => parseDumpArgs(['-t', 'abc', '-D', 'd']), /'abc' is not a process id/);
});

for (const [what, py, pattern, link] of [
  ['a pidfd of a process that has exited', 'import os, time\np = os.fork()\nif p == 0:\n  os._exit(0)\nfd = os.pidfd_open(p)\nos.waitpid(p, 0)\ntime.sleep(1000)', 'a pidfd of a process that has exited', /^anon_inode:\[pidfd\]|^pidfd:/],
  ['/dev/console', 'import os, time\nfd = os.open("/dev/console", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)\ntime.sleep(1000)', 'a terminal other than a pseudo-terminal or /dev/tty', /^\/dev\/console\s*$/],
  ['a FIFO', 'import os, time, tempfile\np = tempfile.mktemp()\nos.mkfifo(p)\nfd = os.open(p, os.O_RDWR)\nos.unlink(p)\ntime.sleep(1000)', '(a FIFO|a deleted file)', /\/tmp\//],
] as const) {
  t.test(`unsupported: ${what} is named, the task runs on untouched`, async (t) => {
    const pid = await startDetached(['/usr/bin/python3', '-c', py]);
    t.teardown(() => kill([pid]));
    const holds = () => readdirSync(`/proc/${pid}/fd`).some((n) => link.test(spawnSync('readlink', [`/proc/${pid}/fd/${n}`], { encoding: 'utf8' }).stdout));
    for (let i = 0; i < 500 && !holds(); i++) await sleep(20);
    t.ok(holds(), `the program holds ${what}`);
    const mapsBefore = safe(`/proc/${pid}/maps`);
    const dir = mkdtempSync(join(tmpdir(), 'crr-dump-err-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const err = await dump({ pid, imagesDir: dir }).catch((e) => e);
    t.type(err, CrrError);
    t.match(err.message, new RegExp(`pid ${pid}: fd \\d+ is ${pattern}`));
    assertUntouched(t, pid);
    t.equal(safe(`/proc/${pid}/maps`), mapsBefore, 'scratch area removed, mappings as before');
    assertNoCheckpoint(t, dir);
  });
}
